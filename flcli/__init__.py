"""flcli: simulate federated learning on one machine, fast and reproducibly."""

__version__ = "0.1.0"
