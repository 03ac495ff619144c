"""--algo names -> factories, with the paper and when to use each."""

from flcli.algorithms.base import Algorithm
from flcli.algorithms.fedavg import fedavg
from flcli.errors import FLError

ALGORITHMS = {
    "fedavg": (
        fedavg,
        "McMahan et al. 2017: weighted mean of locally trained models; the baseline to beat",
    ),
}


def make_algorithm(name: str, params: dict | None = None) -> Algorithm:
    if name not in ALGORITHMS:
        raise FLError(f"unknown algorithm {name!r}; choose one of: {', '.join(ALGORITHMS)}")
    factory, _ = ALGORITHMS[name]
    params = dict(params or {})
    return factory(**params)
