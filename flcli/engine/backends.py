"""--backend names -> the function that trains a cohort.

vectorized and serial are plain functions; process and ray are trainers with the same signature
that hold a run's shared data and workers (make_backend builds one per run). All but serial take
the model's compiled steps unless the run is built with compiled False (flcli.engine.compiled).
"""

from functools import partial

from flcli.engine.cohort import train_cohort
from flcli.engine.serial import train_serial
from flcli.models.base import capabilities_of

BACKENDS = {
    "vectorized": train_cohort,
    "serial": train_serial,
}


def make_backend(
    name: str, jobs: int | None = None, ray_address: str | None = None, compiled: bool = True
):
    """The trainer of --backend `name` for one run."""
    if name == "process":
        from flcli.engine.process import ProcessTrainer

        return ProcessTrainer(jobs, compiled)
    if name == "ray":
        from flcli.engine.raybackend import RayTrainer

        return RayTrainer(jobs, ray_address, compiled)
    if name == "vectorized" and not compiled:
        return partial(train_cohort, compiled=False)
    return BACKENDS[name]


def check_backend(name: str) -> None:
    """Raise FLError now, before a run starts, when the backend cannot work here."""
    if name == "ray":
        from flcli.engine.raybackend import import_ray

        import_ray()


def trainer_for(
    model,
    backend: str,
    jobs: int | None = None,
    ray_address: str | None = None,
    compiled: bool = True,
):
    """The trainer of a run's cohorts: the backend's, unless the model trains itself client by
    client (scikit-learn estimators, which cannot be vectorized over a cohort). compiled: whether
    it takes the model's compiled steps."""
    if capabilities_of(model).trains == "client_by_client":
        from flcli.engine.estimators import train_estimators

        return train_estimators
    return make_backend(backend, jobs, ray_address, compiled)
