"""--backend names -> the function that trains a cohort."""

from flcli.engine.cohort import train_cohort
from flcli.engine.serial import train_serial

BACKENDS = {
    "vectorized": train_cohort,
    "serial": train_serial,
}


def trainer_for(model, backend: str):
    """The trainer of a round's cohort: the backend's, unless the model trains itself client by
    client (scikit-learn estimators, which cannot be vectorized over a cohort)."""
    if getattr(model, "trains_client_by_client", False):
        from flcli.engine.estimators import train_estimators

        return train_estimators
    return BACKENDS[backend]
