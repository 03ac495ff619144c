"""The in-memory dataset every loader returns."""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    name: str
    X: np.ndarray  # [n, d] float64 (generated images: float32), each sample flat in C order
    y: np.ndarray  # [n] int64 class ids 0..num_classes-1, or float64 targets (regression)
    num_classes: int | None  # None for a regression target
    feature_names: tuple[str, ...] = ()
    groups: np.ndarray | None = None  # [n] the data's own client of each row (-1: test rows)
    is_test: np.ndarray | None = None  # [n] bool, when the data comes with its own test split
    classes: tuple[str, ...] | None = None  # the original label of each class id, from files
    source: dict[str, str] | None = None  # a user's loader: its reference, file and sha256
    group_names: tuple[str, ...] | None = None  # the name of each group id (hospital_a, ...)
    # [n] the group whose own test row each test row is (LEAF's users' splits), -1 for training
    # rows and for test rows of no group; None: the test rows are only the central test set
    test_groups: np.ndarray | None = None
    # the shape of one sample, whose product is d: (C, H, W) of an image, (T,) of a token
    # sequence; None: a plain row of features (flcli.data.sample_format)
    input_shape: tuple[int, ...] | None = None
    # a token sequence's vocabulary: the token of each id, PAD and UNKNOWN first
    vocabulary: tuple[str, ...] | None = None

    @property
    def task(self) -> str:
        return "regression" if self.num_classes is None else "classification"
