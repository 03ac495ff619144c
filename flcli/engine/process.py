"""--backend process: chunks of the cohort trained in worker processes (joblib's loky).

The training arrays are written once per run to .npy files that every worker memory-maps (the
operating system shares their pages; nothing is copied per round or per worker), and the loky
workers are reused from round to round. Each round a worker receives only its chunk of the cohort
and of the algorithm's per-client work, the global model and the local spec, and runs the same
vectorized trainer on its chunk.
"""

import functools
import os
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np
from joblib.executor import get_memmapping_executor
from joblib.externals.loky import cpu_count

from flcli.engine.chunks import chunks_of, join
from flcli.engine.cohort import train_cohort
from flcli.engine.local import Cohort, CohortResult, LocalSpec, LocalWork


@functools.lru_cache(maxsize=4)  # a worker keeps the last few runs' arrays mapped
def _mapped(path: str) -> np.ndarray:
    return np.asarray(np.load(path, mmap_mode="r"))


def _train_chunk(model, x_path, y_path, cohort, w_global, spec, seed, round, work):
    x, y = _mapped(x_path), _mapped(y_path)
    return train_cohort(model, x, y, cohort, w_global, spec, seed, round, work, threads=1)


class ProcessTrainer:
    """A trainer with train_cohort's signature whose work runs in `jobs` worker processes."""

    def __init__(self, jobs: int | None = None):
        self.jobs = jobs or cpu_count()
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None
        self._paths: tuple[str, str] | None = None
        self._cleanup: weakref.finalize | None = None

    def __call__(
        self,
        model,
        x: np.ndarray,
        y: np.ndarray,
        cohort: Cohort,
        w_global: np.ndarray,
        spec: LocalSpec,
        seed: int,
        round: int,
        work: LocalWork | None = None,
    ) -> CohortResult:
        x_path, y_path = self._share(x, y)
        # joblib's own reusable executor: the one joblib.Parallel (fl sweep) uses too
        executor = get_memmapping_executor(self.jobs)
        futures = [
            executor.submit(
                _train_chunk, model, x_path, y_path, chunk, w_global, spec, seed, round, part
            )
            for chunk, part in chunks_of(cohort, work, self.jobs)
        ]
        return join([future.result() for future in futures])

    def _share(self, x: np.ndarray, y: np.ndarray) -> tuple[str, str]:
        """The .npy files holding x and y, written on first use (once per run's arrays)."""
        if self._arrays is not None and self._arrays[0] is x and self._arrays[1] is y:
            return self._paths
        self.close()
        folder = Path(tempfile.mkdtemp(prefix=f"flcli-{os.getpid()}-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, folder, True)
        paths = (str(folder / "x.npy"), str(folder / "y.npy"))
        np.save(paths[0], np.ascontiguousarray(x))
        np.save(paths[1], np.ascontiguousarray(y))
        self._arrays, self._paths = (x, y), paths
        return paths

    def close(self) -> None:
        """Delete the shared files (the workers stay up for the next run)."""
        if self._cleanup is not None:
            self._cleanup()
        self._arrays = self._paths = self._cleanup = None
