"""Build a partition from a dataset name and a scheme: split, partition, describe."""

import numpy as np

from flcli.data import partition as schemes
from flcli.data.datasets import load_dataset
from flcli.data.store import Partition, array_hash
from flcli.errors import FLError
from flcli.rng import Purpose, rng


def build_partition(
    dataset: str,
    num_clients: int,
    scheme: str = "iid",
    alpha: float = 0.5,
    test_size: float = 0.2,
    min_samples: int | None = None,
    seed: int = 0,
) -> Partition:
    """Stratified train/test split of the dataset, then the training set split among clients."""
    data = load_dataset(dataset)
    train, test = schemes.stratified_split(data.y, test_size, rng(seed, Purpose.SPLIT))
    if min_samples is None:
        min_samples = max(1, min(10, len(train) // (3 * max(num_clients, 1))))
    if min_samples < 1:
        raise FLError(f"--min-samples {min_samples} must be at least 1")
    y_train = data.y[train]
    parts = schemes.partition(
        scheme,
        y_train,
        num_clients,
        rng(seed, Purpose.PARTITION),
        alpha=alpha,
        min_samples=min_samples,
    )
    order = np.concatenate(parts)
    sizes = np.array([len(p) for p in parts], dtype=np.int64)
    arrays = {
        "x_train": data.X[train][order],
        "y_train": y_train[order],
        "offsets": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        "x_test": data.X[test],
        "y_test": data.y[test],
    }
    counts = schemes.label_counts(parts, y_train, data.num_classes)
    params = {"test_size": test_size, "min_samples": min_samples}
    if scheme == "dirichlet":
        params["alpha"] = alpha
    meta = {
        "dataset": dataset,
        "scheme": scheme,
        "params": params,
        "seed": seed,
        "num_clients": num_clients,
        "num_classes": data.num_classes,
        "num_features": int(data.X.shape[1]),
        "num_train": int(len(train)),
        "num_test": int(len(test)),
        "client_sizes": sizes.tolist(),
        "label_counts": counts.tolist(),
        "heterogeneity": schemes.heterogeneity(counts),
        "hash": array_hash(arrays),
    }
    return Partition(meta=meta, **arrays)
