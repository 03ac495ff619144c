"""Build a partition from a dataset name and a scheme: load, split, partition, describe."""

import math

import numpy as np

from flcli.data import partition as schemes
from flcli.data import stats
from flcli.data.dataset import Dataset
from flcli.data.datasets import load_dataset
from flcli.data.files import columns_text
from flcli.data.schemes import scheme_options, shaping_options
from flcli.data.store import Partition, array_hash
from flcli.errors import FLError
from flcli.rng import Purpose, rng

DEFAULT_CLIENTS = 10
DEFAULT_TEST_SIZE = 0.2


def build_partition(
    dataset: str = "digits",
    num_clients: int | None = None,
    scheme: str = "iid",
    alpha: float | None = None,
    classes_per_client: int | None = None,
    shards_per_client: int | None = None,
    sizes: str | None = None,
    noise_std: float | None = None,
    by: str | None = None,
    strictness: float | None = None,
    target: str | None = None,
    encode: bool = False,
    test_size: float | None = None,
    min_samples: int | None = None,
    seed: int = 0,
) -> Partition:
    """Load the dataset, hold out its test split, then split the training set among clients.

    num_clients None means 10, or the data's own clients for the natural scheme; test_size None
    means 0.2, or the dataset's own split (synthetic, fcube). The scheme's own options (alpha ...
    strictness) None take SCHEME_OPTIONS' defaults; another scheme's option is an error."""
    if scheme not in schemes.SCHEMES:
        raise FLError(f"unknown scheme {scheme!r}; choose one of: {', '.join(schemes.SCHEMES)}")
    options = scheme_options(
        scheme,
        {
            "alpha": alpha,
            "classes_per_client": classes_per_client,
            "shards_per_client": shards_per_client,
            "sizes": sizes,
            "noise_std": noise_std,
            "by": by,
            "strictness": strictness,
        },
    )
    if not isinstance(seed, int) or seed < 0:
        raise FLError(f"--seed {seed} must be an integer >= 0, e.g. 0")
    numbers = {
        "--alpha": options["alpha"],
        "--noise-std": options["noise_std"],
        "--strictness": options["strictness"],
        "--test-size": test_size,
    }
    for flag, value in numbers.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise FLError(f"{flag} {value} must be a finite number")
    if scheme != "natural" and num_clients is None:
        num_clients = DEFAULT_CLIENTS
    if options["noise_std"] < 0:
        raise FLError(f"--noise-std {options['noise_std']} must be >= 0, e.g. 0.1")
    data = load_dataset(dataset, seed, target, encode, by if scheme == "natural" else None)
    if data.task == "regression" and scheme in schemes.LABEL_SKEW:
        raise FLError(
            f"--scheme {scheme} skews labels, and {dataset} has a regression target; use iid, "
            "quantity, noise, continuous or natural"
        )
    train, test, params = split_train_test(data, test_size, seed)
    if min_samples is None:
        min_samples = 1 if scheme == "natural" else default_min_samples(len(train), num_clients)
    labels = data.y[train] if data.num_classes else np.zeros(len(train), dtype=np.int64)
    parts = schemes.partition(
        scheme,
        labels,
        num_clients,
        rng(seed, Purpose.PARTITION),
        options["alpha"],
        min_samples,
        classes_per_client=options["classes_per_client"],
        shards_per_client=options["shards_per_client"],
        sizes=options["sizes"],
        values=feature_values(data, by, train) if scheme == "continuous" else None,
        strictness=options["strictness"],
        groups=None if data.groups is None else data.groups[train],
    )
    order = train[np.concatenate(parts)]
    client_sizes = np.array([len(p) for p in parts], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(client_sizes)]).astype(np.int64)
    x_train = data.X[order]
    if scheme == "noise":
        add_feature_noise(x_train, offsets, options["noise_std"], seed)
    arrays = {
        "x_train": x_train,
        "y_train": data.y[order],
        "offsets": offsets,
        "x_test": data.X[test],
        "y_test": data.y[test],
    }
    params.update(scheme_params(scheme, options))
    params["min_samples"] = min_samples
    if target is not None:
        params["target"] = target
    if encode:
        params["encode"] = True
    meta = {
        "dataset": dataset,
        "scheme": scheme,
        "params": params,
        "seed": seed,
        "task": data.task,
        "num_clients": len(parts),
        "num_features": int(data.X.shape[1]),
        "num_train": int(len(train)),
        "num_test": int(len(test)),
        "client_sizes": client_sizes.tolist(),
        **describe(data, arrays),
        "hash": array_hash(arrays),
    }
    return Partition(meta=meta, **arrays)


def split_train_test(data: Dataset, test_size: float | None, seed: int):
    """Train and test row indices, and the params that describe the split."""
    if data.is_test is not None:
        if test_size is not None:
            raise FLError(f"{data.name} comes with its own test split; drop --test-size")
        return np.flatnonzero(~data.is_test), np.flatnonzero(data.is_test), {"test_split": "own"}
    test_size = DEFAULT_TEST_SIZE if test_size is None else test_size
    stratify = data.task == "classification"
    train, test = schemes.stratified_split(data.y, test_size, rng(seed, Purpose.SPLIT), stratify)
    return train, test, {"test_size": test_size}


def default_min_samples(num_train: int, num_clients: int) -> int:
    return max(1, min(10, num_train // (3 * max(num_clients, 1))))


def feature_values(data: Dataset, by: str | None, train: np.ndarray) -> np.ndarray:
    if by is None or by not in data.feature_names:
        given = "needs --by FEATURE" if by is None else f"--by {by!r} is not a feature"
        raise FLError(
            f"--scheme continuous {given}; features of {data.name}: "
            f"{columns_text(data.feature_names)}"
        )
    return data.X[train, data.feature_names.index(by)]


def add_feature_noise(x: np.ndarray, offsets: np.ndarray, noise_std: float, seed: int) -> None:
    """In place: client i's rows get Gaussian noise of std noise_std * i / (N - 1), from the
    stream (seed, NOISE, 0, i)."""
    num_clients = len(offsets) - 1
    for i in range(1, num_clients):
        std = noise_std * i / (num_clients - 1)
        rows = slice(offsets[i], offsets[i + 1])
        x[rows] += rng(seed, Purpose.NOISE, 0, i).normal(0.0, std, x[rows].shape)


def scheme_params(scheme: str, options: dict) -> dict:
    """The options that shape this scheme, as recorded in partition.json."""
    keys = shaping_options(scheme, options["sizes"])
    return {key: options[key] for key in keys if options[key] is not None}


def describe(data: Dataset, arrays: dict) -> dict:
    """num_classes, label_counts and heterogeneity (classification), or size and target figures."""
    if data.num_classes is None:
        return {"heterogeneity": stats.target_heterogeneity(arrays["y_train"], arrays["offsets"])}
    counts = stats.label_counts_from_offsets(arrays["y_train"], arrays["offsets"], data.num_classes)
    figures = {
        "num_classes": data.num_classes,
        "label_counts": counts.tolist(),
        "heterogeneity": stats.heterogeneity(counts),
    }
    if data.classes is not None and list(data.classes) != [str(c) for c in range(len(counts[0]))]:
        figures["classes"] = list(data.classes)
    return figures
