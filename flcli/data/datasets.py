"""Datasets by name: scikit-learn's bundled sets, generators with parameters in the name
(`synthetic:alpha=1,beta=1`), the user's .csv/.parquet/.npz files, `openml:NAME`, and the user's
own loader (`FILE.py:NAME`, `package.module:NAME` or an installed package's entry point)."""

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flcli import plugins
from flcli.data.dataset import Dataset
from flcli.data.files import (
    TableOptions,
    dataset_from_frame,
    load_file,
    load_openml,
    standardize,
)
from flcli.data.flower_export import load_flower
from flcli.data.generators import GENERATORS, generate
from flcli.data.hf import load_hf
from flcli.data.leaf import load_leaf
from flcli.data.text import TextOptions
from flcli.data.user_code import load_user_dataset
from flcli.errors import FLError
from flcli.rng import Purpose, rng

__all__ = ["DATASETS", "Dataset", "catalogue", "load_dataset"]


def _sklearn_loader(
    loader_name: str,
    scale: Callable[[np.ndarray], np.ndarray],
    task: str = "classification",
    input_shape: tuple[int, ...] | None = None,
):
    """A loader of one of scikit-learn's bundled sets; input_shape is its samples' shape (while
    --by leaves all its columns features)."""

    def load(name: str, group_by: str | None = None) -> Dataset:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader_name)()
        names = [str(n) for n in getattr(bunch, "feature_names", range(bunch.data.shape[1]))]
        frame = pd.DataFrame(np.asarray(bunch.data, dtype=np.float64), columns=names)
        frame["target"] = bunch.target
        data = dataset_from_frame(name, frame, "target", group_by=group_by, scale=scale, task=task)
        if input_shape is None or group_by is not None:
            return data
        return dataclasses.replace(data, input_shape=input_shape)

    return load


DATASETS: dict[str, tuple[Callable[..., Dataset], str]] = {
    "digits": (
        _sklearn_loader("load_digits", lambda X: X / 16.0, input_shape=(1, 8, 8)),
        "8x8 handwritten digits, 1,797 images, 64 pixel features in [0, 1], 10 classes (embedded)",
    ),
    "iris": (
        _sklearn_loader("load_iris", standardize),
        "Fisher's iris flowers, 150 samples, 4 standardized features, 3 classes",
    ),
    "wine": (
        _sklearn_loader("load_wine", standardize),
        "wine cultivars, 178 samples, 13 standardized chemical features, 3 classes",
    ),
    "breast-cancer": (
        _sklearn_loader("load_breast_cancer", standardize),
        "Wisconsin breast cancer, 569 samples, 30 standardized features, 2 classes",
    ),
    "diabetes": (
        _sklearn_loader("load_diabetes", standardize, task="regression"),
        "diabetes progression, 442 patients, 10 standardized features, regression target",
    ),
}


def catalogue() -> dict[str, str]:
    """What `fl list datasets` shows: name (or pattern) -> one line."""
    rows = {name: text for name, (_, text) in DATASETS.items()}
    rows.update({example: text for _, text, example in GENERATORS.values()})
    rows["FILE.csv|.parquet|.npz"] = (
        "your own table: --target COLUMN names the label, other columns are standardized numeric "
        "features (--encode one-hot encodes text columns); .parquet needs flcli[parquet]"
    )
    rows["leaf:PATH"] = (
        "a LEAF benchmark as its preprocessing writes it (PATH/train, PATH/test JSON): its users "
        "are the natural clients (--scheme natural), each with its own test rows as its local "
        "test split, and all test rows pooled the central test set; text (Sent140, Shakespeare) "
        "as a hashed bag of words, or token ids with --text chars|words"
    )
    rows["hf:NAME[@REVISION][:SPLIT]"] = (
        "a Hugging Face dataset (a save_to_disk folder offline, or a hub name) through the "
        "datasets library, flcli[hf]: --by COLUMN its natural clients (writer_id), images and "
        "lists of numbers flattened into features (images channels first), --target or its "
        "ClassLabel column the label"
    )
    rows["flower:DIR"] = (
        "partitions in Flower Datasets' layout (flwr-datasets create's DIR/partition_i, or fl "
        "partition --export flower DIR): each partition a natural client, DIR/test the test set"
    )
    rows["openml:NAME"] = (
        "an OpenML dataset (name or id) through scikit-learn's fetch_openml and its cache"
    )
    rows["FILE.py:NAME|package.module:NAME"] = (
        "your own loader: a function (taking seed, if it wants it, and --dataset-arg KEY=VALUE) "
        "that returns a flcli.data.dataset.Dataset or a tuple (X, y)"
    )
    for name, point in plugins.entry_points("dataset").items():
        rows.setdefault(name, f"installed plugin loader {point.value} (--dataset-arg KEY=VALUE)")
    return rows


def load_dataset(
    name: str,
    seed: int = 0,
    target: str | None = None,
    encode: bool = False,
    group_by: str | None = None,
    dataset_args: dict[str, Any] | None = None,
    table: TableOptions = TableOptions(),
    text: TextOptions = TextOptions(),
) -> Dataset:
    """Load a dataset by name, generator spec, file path, openml:NAME or a user's loader
    (dataset_args: its keyword arguments); FLError if unknown.

    target and encode apply to files and OpenML; group_by names a column whose values are the
    rows' natural clients (removed from the features); text to LEAF's text samples."""
    family = name.split(":", 1)[0]
    text.check()
    if text.as_sequences and family != "leaf":
        raise FLError(
            f"--text {text.mode} applies to the text samples of leaf:PATH (Sent140, "
            f"Shakespeare), not to {name!r}; drop it"
        )
    builtin = (
        family in ("openml", "leaf", "hf", "flower") or family in GENERATORS or name in DATASETS
    )
    if dataset_args or not builtin:
        user_data = load_user_dataset(name, seed, dataset_args or {})
        if user_data is not None:
            return from_loader(user_data, target, encode, group_by)
        if dataset_args:
            raise FLError(
                "--dataset-arg applies to your own loader (DATASET FILE.py:NAME or "
                f"package.module:NAME), not to {name!r}"
            )
    if family == "openml":
        return load_openml(name, target, encode, group_by, table=table)
    if family == "hf":
        return load_hf(name, target, encode, group_by, table)
    if family == "flower":
        return load_flower(name, target, encode, group_by, table)
    if table.given and not (Path(name).suffix or "/" in name) or table.given and family == "leaf":
        raise FLError(f"--drop, --features and --impute apply to files and openml:, not {name!r}")
    if family == "leaf":
        if target is not None or encode:
            raise FLError(f"--target and --encode do not apply to {name}: LEAF gives its labels")
        return load_leaf(name, group_by, text)
    if (family in GENERATORS or name in DATASETS) and (target is not None or encode):
        raise FLError(f"--target and --encode apply to files and openml:NAME, not to {name!r}")
    if family in GENERATORS:
        if group_by is not None:
            raise FLError(
                f"--by applies to tables (built-in sets, files, openml:); {family} generates "
                "its data (synthetic and fcube have their own clients: drop --by)"
            )
        return generate(name, rng(seed, Purpose.GENERATE))
    if name in DATASETS:
        loader, _ = DATASETS[name]
        return loader(name, group_by)
    if Path(name).suffix or "/" in name:
        return load_file(name, target, encode, group_by, table)
    known = ", ".join([*DATASETS, *GENERATORS, "FILE.csv", "openml:NAME", "FILE.py:NAME"])
    raise FLError(f"unknown dataset {name!r}; choose one of: {known} (see: fl list datasets)")


def from_loader(data: Dataset, target: str | None, encode: bool, group_by: str | None) -> Dataset:
    if target is not None or encode:
        raise FLError(f"--target and --encode apply to files and openml:NAME, not to {data.name!r}")
    if group_by is not None:
        raise FLError(
            "--by applies to tables (built-in sets, files, openml:); your loader gives "
            f"{data.name}'s own clients as Dataset.groups"
        )
    return data
