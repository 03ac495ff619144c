"""--backend ray: chunks of the cohort as Ray tasks (optional extra: pip install 'flcli[ray]').

The training arrays are put in Ray's object store once per run; each round's tasks get references
to them (read zero-copy by the workers), their chunk of the cohort, the global model and the spec.
--ray-address joins an existing cluster; otherwise a local Ray with --jobs CPUs (default 2) is
started and kept for the rest of the process. Either way flcli's package travels to the workers in
Ray's runtime environment (py_modules), so the nodes need only Python with Ray and flcli's
dependencies.
"""

import logging
import socket
from pathlib import Path

import numpy as np

from flcli.algorithms.work import LocalSpec, LocalWork
from flcli.engine.chunks import chunks_of, join
from flcli.engine.cohort import train_cohort
from flcli.engine.local import Cohort, CohortResult
from flcli.errors import FLError
from flcli.plugins import share_with_ray

LOCAL_CPUS = 2


def import_ray():
    try:
        import ray
    except ImportError:
        raise FLError(
            "--backend ray needs Ray, which is not installed; install it with: "
            "pip install 'flcli[ray]' (or choose --backend process)"
        ) from None
    return ray


PACKAGE_EXCLUDES = ["__pycache__", "*.pyc", "*.nbi", "*.nbc"]


def package_runtime_env() -> dict:
    """A Ray runtime environment that ships the flcli package this process imports to every worker
    (the working tree or the installed copy, whichever runs here)."""
    import flcli

    return {"py_modules": [str(Path(flcli.__file__).parent)], "excludes": PACKAGE_EXCLUDES}


def _train_chunk(model, x, y, cohort, w_global, spec, seed, round, work, compiled):
    args = (w_global, spec, seed, round, work)
    return train_cohort(model, x, y, cohort, *args, threads=1, compiled=compiled)


CONNECT_TIMEOUT_S = 5.0


def check_reachable(address: str) -> None:
    """A HOST:PORT or ray://HOST:PORT that nothing answers on is one line now, not a Ray join
    that waits for minutes (auto is left to Ray)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or "://" in host:
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, OverflowError) as failure:
        raise FLError(
            f"--ray-address {address}: nothing answers there ({failure.strerror or failure}); "
            "check the address (ray status prints it) or omit it for a local Ray"
        ) from None


def init_ray(ray, address: str | None, cpus: int | None, runtime_env: dict) -> None:
    """Join the cluster at address, or start a local Ray of `cpus` CPUs (address "local": without
    it, ray.init joins the last cluster started on this machine if it still runs, and then refuses
    num_cpus); quiet, with the runtime environment the workers import from."""
    settings = {"log_to_driver": False, "logging_level": logging.ERROR, "runtime_env": runtime_env}
    if address is None:
        ray.init(address="local", num_cpus=cpus or LOCAL_CPUS, include_dashboard=False, **settings)
        return
    try:
        ray.init(address=address, **settings)
    except ConnectionError as failure:
        raise FLError(
            f"--ray-address {address}: cannot join the cluster ({failure}); check the address "
            "(ray status prints it) or omit it for a local Ray"
        ) from None


class RayTrainer:
    """A trainer with train_cohort's signature whose work runs as Ray tasks."""

    def __init__(self, jobs: int | None = None, address: str | None = None, compiled=True):
        """compiled: as train_cohort's."""
        self.jobs = jobs
        self.address = address
        self.compiled = compiled
        if address:
            check_reachable(address)
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None
        self._refs = None
        self._remote = None

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
        ray = self._start()
        x_ref, y_ref = self._share(ray, x, y)
        common = (w_global, spec, seed, round)
        futures = [
            self._remote.remote(model, x_ref, y_ref, chunk, *common, part, self.compiled)
            for _, chunk, part in chunks_of(cohort, work, self._parallelism(ray))
        ]
        return join(ray.get(futures))

    def _start(self):
        ray = import_ray()
        if not ray.is_initialized():
            init_ray(ray, self.address, self.jobs, package_runtime_env())
        if self._remote is None:
            share_with_ray()  # a user's model or algorithm file, which Ray's workers cannot import
            self._remote = ray.remote(num_cpus=1)(_train_chunk)
        return ray

    def _parallelism(self, ray) -> int:
        return self.jobs or max(1, int(ray.cluster_resources().get("CPU", LOCAL_CPUS)))

    def _share(self, ray, x: np.ndarray, y: np.ndarray):
        """Object refs of x and y, put in the object store on first use (once per run)."""
        if self._arrays is None or self._arrays[0] is not x or self._arrays[1] is not y:
            self._refs = (ray.put(x), ray.put(y))
            self._arrays = (x, y)
        return self._refs

    def close(self) -> None:
        """Release this run's arrays from the object store (Ray itself stays up)."""
        self._arrays = self._refs = None
