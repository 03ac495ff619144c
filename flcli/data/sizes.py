"""Client-size laws of Flower Datasets' size partitioners, and sizes given as numbers.

`--sizes linear|square|exponential` are Flower Datasets' LinearPartitioner, SquarePartitioner and
ExponentialPartitioner: client i (0-based) gets a share proportional to i + 1, (i + 1)^2 or e^i;
`--sizes FILE.py:NAME|package.module:NAME` a function of the client id (Flower's
SizePartitioner's partition_id_to_size_fn); `--sizes N1,N2,...` sizes (or relative weights)
given one per client. Shares become whole sizes by largest remainders.
"""

import numpy as np

from flcli import plugins
from flcli.errors import FLError

LAWS = {
    "linear": lambda ids: ids + 1.0,
    "square": lambda ids: (ids + 1.0) ** 2,
    "exponential": lambda ids: np.exp(ids - (len(ids) - 1.0)),  # e^i, scaled so it stays finite
}
SIZE_LAWS = (*LAWS, "N1,N2,...", "FILE.py:NAME")


def given_weights(text: str, num_clients: int) -> np.ndarray | None:
    """The numbers of `--sizes 30,50,20`, one per client; None if text is not such a list."""
    pieces = text.split(",")
    try:
        weights = np.array([float(p) for p in pieces])
    except ValueError:
        return None
    if len(weights) != num_clients:
        raise FLError(
            f"--sizes {text} gives {len(weights)} sizes for --clients {num_clients}; give one "
            "per client"
        )
    if not (np.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
        raise FLError(f"--sizes {text}: sizes must be finite numbers >= 0, not all 0")
    return weights


def law_weights(law: str, num_clients: int) -> np.ndarray:
    """Relative sizes of num_clients clients under a named law, a list or a user's function."""
    ids = np.arange(num_clients, dtype=np.float64)
    if law in LAWS:
        return LAWS[law](ids)
    weights = given_weights(law, num_clients)
    if weights is not None:
        return weights
    found = plugins.find(law, "size") if plugins.is_reference(law) else None
    if found is None:
        raise FLError(f"--sizes {law!r} is unknown; choose one of: {', '.join(SIZE_LAWS)}")
    function, _ = found
    label = f"--sizes {law}"
    values = [plugins.call(function, label, i) for i in range(num_clients)]
    try:
        weights = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise FLError(f"{label} must return a number for each client id") from None
    if weights.ndim != 1 or not (np.isfinite(weights).all() and (weights >= 0).all()):
        raise FLError(f"{label} must return a finite number >= 0 for each client id")
    if weights.sum() <= 0:
        raise FLError(f"{label} returned 0 for every client; return positive sizes")
    return weights


def whole_sizes(n: int, weights: np.ndarray) -> np.ndarray:
    """n split in proportion to weights: floors, then one more to the largest remainders."""
    share = n * weights / weights.sum()
    sizes = np.floor(share).astype(np.int64)
    leftover = n - int(sizes.sum())
    sizes[np.argsort(sizes - share, kind="stable")[:leftover]] += 1
    return sizes
