"""Datasets by name: features X (float64, scaled to about unit range) and labels y."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from flcli.errors import FLError


@dataclass(frozen=True)
class Dataset:
    name: str
    X: np.ndarray  # [n, d] float64
    y: np.ndarray  # [n] int64 class ids 0..num_classes-1
    num_classes: int


def _standardize(X: np.ndarray) -> np.ndarray:
    std = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)


def _sklearn_loader(loader_name: str, scale: Callable[[np.ndarray], np.ndarray]):
    def load(name: str) -> Dataset:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader_name)()
        X = scale(np.asarray(bunch.data, dtype=np.float64))
        y = np.asarray(bunch.target, dtype=np.int64)
        return Dataset(name=name, X=X, y=y, num_classes=int(y.max()) + 1)

    return load


DATASETS: dict[str, tuple[Callable[[str], Dataset], str]] = {
    "digits": (
        _sklearn_loader("load_digits", lambda X: X / 16.0),
        "8x8 handwritten digits, 1,797 images, 64 pixel features in [0, 1], 10 classes (embedded)",
    ),
    "iris": (
        _sklearn_loader("load_iris", _standardize),
        "Fisher's iris flowers, 150 samples, 4 standardized features, 3 classes",
    ),
    "wine": (
        _sklearn_loader("load_wine", _standardize),
        "wine cultivars, 178 samples, 13 standardized chemical features, 3 classes",
    ),
    "breast-cancer": (
        _sklearn_loader("load_breast_cancer", _standardize),
        "Wisconsin breast cancer, 569 samples, 30 standardized features, 2 classes",
    ),
}


def load_dataset(name: str) -> Dataset:
    """Load a built-in dataset by name, or raise FLError listing the known names."""
    if name not in DATASETS:
        known = ", ".join(DATASETS)
        raise FLError(f"unknown dataset {name!r}; choose one of: {known}")
    loader, _ = DATASETS[name]
    return loader(name)
