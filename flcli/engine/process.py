"""--backend process: chunks of the cohort trained in worker processes (joblib's loky).

The training arrays are written once per run to .npy files that every worker memory-maps (the
operating system shares their pages; nothing is copied per round or per worker), and the loky
workers are reused from round to round. Each round a worker receives only its chunk of the cohort
and of the algorithm's per-client work, the global model and the local spec, runs the same
vectorized trainer on its chunk, and writes its local models into a memory-mapped [K, P] file, read
back once the round is done: they do not travel back through loky's pipes (76 MB for 1,000
MLP(256) clients in float32, which took longer than the training).
"""

import functools
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

import numpy as np
from joblib.executor import get_memmapping_executor
from joblib.externals.loky import cpu_count

from flcli.algorithms.work import LocalSpec, LocalWork
from flcli.engine.chunks import chunks_of
from flcli.engine.cohort import train_cohort
from flcli.engine.local import Cohort, CohortResult
from flcli.fileio import alive
from flcli.plugins import plugin_folders


@functools.lru_cache(maxsize=4)  # a worker keeps the last few runs' arrays mapped
def _mapped(path: str) -> np.ndarray:
    return np.asarray(np.load(path, mmap_mode="r"))


def start_worker(parent: int, paths: tuple[str, ...] = ()) -> None:
    """In a worker: Ctrl-C reaches the whole process group, and the parent alone handles it. A
    worker whose parent is killed (kill -9 runs no cleanup) exits, instead of idling on for minutes
    with the run's stdout and stderr open. (parent is given, not read here: the parent may be gone
    before a slow worker starts.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.path.extend(path for path in paths if path not in sys.path)  # users' plugin folders
    threading.Thread(target=exit_when_orphaned, args=(parent,), daemon=True).start()


@functools.cache  # one object per parent: loky restarts its workers for a new initializer
def worker_initializer(parent: int, paths: tuple[str, ...] = ()) -> functools.partial:
    """What a worker runs first; paths: the folders of the users' plugin files, so that the
    worker unpickles their functions and classes (a worker started earlier lacks them: a new
    initializer restarts the workers)."""
    return functools.partial(start_worker, parent, paths)


def exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


SHARE_PREFIX = "flcli-"  # + the pid of the run's process + "-"


def remove_orphaned_shares(folder: Path | None = None) -> None:
    """Delete the shared arrays of runs whose process is gone (a kill -9 skips their cleanup)."""
    if os.name != "posix":  # os.kill(pid, 0) only probes a process on POSIX
        return
    for share in Path(folder or tempfile.gettempdir()).glob(f"{SHARE_PREFIX}*-*"):
        pid = share.name[len(SHARE_PREFIX) :].split("-")[0]
        if pid.isdigit() and (share / "x.npy").is_file() and not alive(int(pid)):
            shutil.rmtree(share, ignore_errors=True)


def _train_chunk(model, paths, w_global, spec, seed, round, compiled, rows, cohort, work):
    """Trains one chunk on the mapped x and y; its local models go to rows `rows` of the output."""
    x_path, y_path, out_path, carry_path = paths
    x, y = _mapped(x_path), _mapped(y_path)
    out = np.load(out_path, mmap_mode="r+")[rows]
    carry = None if carry_path is None else np.load(carry_path, mmap_mode="r+")[rows]
    args = (w_global, spec, seed, round, work, 1, out, carry, compiled)
    return train_cohort(model, x, y, cohort, *args).num_steps


class ProcessTrainer:
    """A trainer with train_cohort's signature whose work runs in `jobs` worker processes."""

    def __init__(self, jobs: int | None = None, compiled: bool = True):
        """compiled: as train_cohort's."""
        self.jobs = jobs or cpu_count()
        self.compiled = compiled
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
        out_path = str(Path(x_path).with_name("params.npy"))
        params = np.lib.format.open_memmap(
            out_path, mode="w+", dtype=x.dtype, shape=(len(cohort.ids), model.num_params)
        )
        carry, carry_path = None, None
        if work is not None and work.carry is not None:
            carry_path = str(Path(x_path).with_name("carry.npy"))
            carry = np.lib.format.open_memmap(
                carry_path, mode="w+", dtype=x.dtype, shape=work.carry.shape
            )
        executor = get_memmapping_executor(
            self.jobs, initializer=worker_initializer(os.getpid(), plugin_folders())
        )
        paths = (x_path, y_path, out_path, carry_path)
        common = (w_global, spec, seed, round, self.compiled)
        train = functools.partial(_train_chunk, model, paths, *common)
        futures = [
            executor.submit(train, rows, chunk, part)
            for rows, chunk, part in chunks_of(cohort, work, self.jobs)
        ]
        num_steps = np.concatenate([future.result() for future in futures])
        # a copy: the file is rewritten next round, while the caller may keep this round's models
        carry = None if carry is None else np.array(carry)
        return CohortResult(params=np.array(params), num_steps=num_steps, carry=carry)

    def _share(self, x: np.ndarray, y: np.ndarray) -> tuple[str, str]:
        """The .npy files holding x and y, written on first use (once per run's arrays)."""
        if self._arrays is not None and self._arrays[0] is x and self._arrays[1] is y:
            return self._paths
        self.close()
        remove_orphaned_shares()
        folder = Path(tempfile.mkdtemp(prefix=f"{SHARE_PREFIX}{os.getpid()}-"))
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
