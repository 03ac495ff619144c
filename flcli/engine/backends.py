"""--backend names -> the function that trains a cohort."""

from flcli.engine.cohort import train_cohort
from flcli.engine.serial import train_serial

BACKENDS = {
    "vectorized": train_cohort,
    "serial": train_serial,
}
