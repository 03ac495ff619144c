"""A user's own scheme or dataset loader: found by reference (FILE.py:NAME, package.module:NAME)
or by an installed package's entry point, its keyword arguments checked against its signature,
called so that whatever it raises is one line naming it, and a loader's result checked.

A dataset loader is called with `seed` (when it has a parameter of that name) and the
--dataset-arg values, and returns a flcli.data.dataset.Dataset or a tuple (X, y): X a 2-D array of
numbers [samples, features], y one value per sample, integers for classes (classification) or
floats (regression). Neither may hold NaN or infinite values.
"""

import dataclasses
import inspect
from typing import Any

import numpy as np

from flcli import plugins
from flcli.data.dataset import Dataset
from flcli.errors import FLError

REQUIRED = inspect.Parameter.empty
KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def signature_of(function: Any, label: str) -> inspect.Signature:
    if not callable(function):
        raise FLError(f"{label} is a {type(function).__name__}, not a function")
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):
        raise FLError(f"{label}: its parameters cannot be read; make it a plain function") from None


def keyword_parameters(signature: inspect.Signature, skip: int = 0) -> tuple[dict[str, Any], bool]:
    """({name: default, or REQUIRED} of the parameters that can be given by keyword after the
    first `skip` positional ones, whether it takes **kwargs)."""
    listed = list(signature.parameters.values())
    positional = [p for p in listed if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    skipped = {p.name for p in positional[:skip]}
    keywords = {
        p.name: p.default for p in listed if p.kind in KEYWORD_KINDS and p.name not in skipped
    }
    return keywords, any(p.kind == p.VAR_KEYWORD for p in listed)


def check_arguments(
    parameters: dict[str, Any], open_ended: bool, given: dict[str, Any], label: str, flag: str
) -> None:
    """Every name given is a parameter (unless it takes **kwargs), every parameter without a
    default is given: else one line naming them."""
    unknown = [] if open_ended else [name for name in given if name not in parameters]
    if unknown:
        raise FLError(
            f"{flag} {', '.join(unknown)}: {label} has no such parameter; it takes: "
            f"{', '.join(parameters) or 'none'}"
        )
    missing = [name for name, default in parameters.items() if default is REQUIRED]
    missing = [name for name in missing if name not in given]
    if missing:
        needed = " ".join(f"{flag} {name}=VALUE" for name in missing)
        raise FLError(f"{label} needs {needed} (no default)")


def load_user_dataset(name: str, seed: int, dataset_args: dict[str, Any]) -> Dataset | None:
    """The Dataset a user's loader returns, checked; None when `name` names no loader."""
    found = plugins.find(name, "dataset")
    if found is None:
        return None
    loader, source = found
    label = f"DATASET {name}"
    parameters, open_ended = keyword_parameters(signature_of(loader, label))
    arguments = {"seed": seed} if "seed" in parameters else {}
    arguments.update(dataset_args)
    check_arguments(parameters, open_ended, arguments, label, "--dataset-arg")
    result = plugins.call(loader, label, **arguments)
    return dataclasses.replace(checked_dataset(result, name, label), source=source)


def checked_dataset(result: Any, name: str, label: str) -> Dataset:
    """A loader's Dataset or (X, y) as a valid Dataset, or one line saying what is wrong."""
    if isinstance(result, Dataset):
        X, y = features(result.X, label), result.y
    elif isinstance(result, tuple) and len(result) == 2:
        X, y = features(result[0], label), result[1]
    else:
        raise FLError(
            f"{label} returned a {type(result).__name__}; return a flcli.data.dataset.Dataset "
            "or a tuple (X, y)"
        )
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(X):
        raise FLError(
            f"{label} returned X with {len(X)} rows but y of shape {y.shape}; y must hold one "
            "value per row of X"
        )
    if isinstance(result, Dataset):
        return checked_own_dataset(result, X, y, label)
    names = tuple(f"x{j}" for j in range(X.shape[1]))
    if y.dtype.kind in "iub":
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise FLError(f"{label} returned labels y of one class only; a classifier needs two")
        shown = tuple(str(c) for c in classes)
        return Dataset(name, X, codes.astype(np.int64), len(classes), names, classes=shown)
    return Dataset(name, X, target(y, label), None, names)


def features(X: Any, label: str) -> np.ndarray:
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise FLError(f"{label} returned X that is not an array of numbers") from None
    if X.ndim != 2 or not X.size:
        raise FLError(
            f"{label} returned X of shape {X.shape}; X must be 2-D, [samples, features], "
            "and not empty"
        )
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        raise FLError(
            f"{label} returned X with missing or infinite values (NaN or inf) in {bad.sum()} "
            f"row(s) (the first: row {np.argmax(bad)}); fill or drop them"
        )
    return np.ascontiguousarray(X)


def target(y: np.ndarray, label: str) -> np.ndarray:
    if y.dtype.kind != "f":
        raise FLError(
            f"{label} returned y of type {y.dtype}; y must hold integers (class labels) or "
            "floats (a regression target)"
        )
    if not np.isfinite(y).all():
        raise FLError(f"{label} returned y with missing or infinite values (NaN or inf)")
    return y.astype(np.float64)


def checked_own_dataset(data: Dataset, X: np.ndarray, y: np.ndarray, label: str) -> Dataset:
    """A loader's own Dataset: y as its num_classes says, per-row fields as long as X."""
    if data.num_classes is None:
        y = target(y, label)
    elif y.dtype.kind not in "iu" or not ((y >= 0) & (y < data.num_classes)).all():
        raise FLError(
            f"{label} returned a Dataset with num_classes={data.num_classes}: y must hold the "
            f"class ids 0 to {data.num_classes - 1}"
        )
    names = data.feature_names or tuple(f"x{j}" for j in range(X.shape[1]))
    if len(names) != X.shape[1]:
        raise FLError(
            f"{label} returned {len(names)} feature_names for the {X.shape[1]} columns of X"
        )
    for field in ("groups", "is_test", "test_groups"):
        rows = getattr(data, field)
        if rows is not None and np.shape(rows) != (len(X),):
            raise FLError(
                f"{label} returned Dataset.{field} of shape {np.shape(rows)}, not ({len(X)},)"
            )
    return dataclasses.replace(
        data, X=X, y=y.astype(np.int64) if data.num_classes else y, feature_names=names
    )
