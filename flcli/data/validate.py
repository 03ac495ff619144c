"""What a partition dir must hold to be trained on: partition.json's keys and types, and the
arrays of data.npz (dtypes, shapes, ranges, and their agreement with each other and with
partition.json). Every failure is one FLError naming the file, the field and the fix."""

import json
from pathlib import Path

import numpy as np

from flcli.data.sample_format import shape_problem, shape_text, vocabulary_problem
from flcli.data.samples import token_ids_problem
from flcli.errors import FLError

REBUILD = "re-create the partition with fl partition"
TASKS = ("classification", "regression")
OPTIONAL_ARRAYS = ("x_client_test", "y_client_test", "client_test_offsets")
# new clients, held out of training (fl partition --new-clients): new client j's training rows are
# x_new[new_offsets[j]:new_offsets[j + 1]], its local test rows (with --client-test-fraction)
# x_new_test[new_test_offsets[j]:new_test_offsets[j + 1]]
NEW_ARRAYS = ("x_new", "y_new", "new_offsets")
NEW_TEST_ARRAYS = ("x_new_test", "y_new_test", "new_test_offsets")
EXTRA_ARRAYS = OPTIONAL_ARRAYS + NEW_ARRAYS + NEW_TEST_ARRAYS


def refused(file: Path, what: str) -> FLError:
    return FLError(f"{file}: {what}; {REBUILD}")


def is_count(value, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def check_description(meta, meta_file: Path) -> None:
    """The keys of partition.json that flcli reads, with the types it reads them as."""
    if not isinstance(meta, dict):
        raise FLError(f"{meta_file} does not hold a JSON object; {REBUILD}")
    task = meta.get("task", "classification")
    sizes = meta.get("client_sizes")
    checks = [
        ("task", task in TASKS),
        ("num_clients", is_count(meta.get("num_clients"), 1)),
        ("num_classes", task == "regression" or is_count(meta.get("num_classes"), 1)),
        ("client_sizes", isinstance(sizes, list) and all(is_count(s) for s in sizes)),
        ("dataset", isinstance(meta.get("dataset"), str)),
        ("scheme", isinstance(meta.get("scheme"), str)),
        ("params", isinstance(meta.get("params"), dict)),
        ("hash", isinstance(meta.get("hash", ""), str)),
        ("seed", is_count(meta.get("seed"))),
        ("heterogeneity", isinstance(meta.get("heterogeneity", {}), dict)),
    ]
    for key, good in checks:
        if not good:
            raise refused(meta_file, f"{key} is missing or of the wrong type")
    if len(sizes) != meta["num_clients"]:
        raise refused(meta_file, "client_sizes has not num_clients entries")
    if "label_counts" in meta and not good_label_counts(meta):
        raise refused(meta_file, "label_counts is not a clients x classes table")
    check_sample_description(meta, meta_file)


def check_sample_description(meta: dict, meta_file: Path) -> None:
    """input_shape (positive integers whose product is num_features) and vocabulary (strings,
    PAD and UNKNOWN first), when partition.json has them."""
    features = meta.get("num_features")
    if "input_shape" in meta:
        shape = meta["input_shape"]
        problem = shape_problem(shape, features if is_count(features, 1) else None)
        if problem is not None:
            raise FLError(
                f"{meta_file}: input_shape {json_text(shape)} {problem}; {REBUILD} "
                "(--input-shape C,H,W or T whose product is the number of features)"
            )
    if "vocabulary" in meta:
        problem = vocabulary_problem(meta["vocabulary"])
        if problem is not None:
            raise FLError(f"{meta_file}: vocabulary {problem}; {REBUILD} (--text chars or words)")


def json_text(value) -> str:
    """value as partition.json spells it, cut short."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def good_label_counts(meta: dict) -> bool:
    counts = meta["label_counts"]
    return (
        isinstance(counts, list)
        and len(counts) == meta["num_clients"]
        and all(isinstance(row, list) and len(row) == meta.get("num_classes") for row in counts)
        and all(is_count(c) for row in counts for c in row)
    )


def check_layout(
    shapes: dict[str, tuple[int, ...]], meta: dict, meta_file: Path, data_file: Path
) -> None:
    """data.npz's array shapes, from its headers before any array is read, against partition.json:
    x_train and y_train have a row per sample of client_sizes, x_train num_features columns.
    (Arrays that disagree among themselves are left to check_arrays, which says how.)"""
    x_train, y_train = shapes["x_train"], shapes["y_train"]
    if len(x_train) != 2 or y_train != x_train[:1]:
        return
    if x_train[0] != sum(meta["client_sizes"]):
        raise FLError(
            f"{meta_file}'s client_sizes disagree with {data_file} ({x_train[0]} training rows); "
            "re-create the partition"
        )
    widths = {
        shape[1] for name, shape in shapes.items() if name.startswith("x_") and len(shape) == 2
    }
    if widths != {x_train[1]}:
        return
    check_input_shape(meta, x_train[1], data_file)
    features = meta.get("num_features")
    if is_count(features) and x_train[1] != features:
        raise FLError(
            f"{meta_file}'s num_features ({features}) disagrees with {data_file}'s x_train "
            f"({x_train[1]} features); {REBUILD}"
        )


def check_arrays(arrays: dict[str, np.ndarray], meta: dict, data_file: Path) -> None:
    """data.npz's arrays: features 2-D and finite with one feature count, targets 1-D with a row
    count of their features (integer labels in [0, num_classes) or finite reals), and offsets
    that cut the training rows (and the clients' test rows) into num_clients ranges exactly."""
    num_classes = meta.get("num_classes") if meta.get("task") != "regression" else None
    optional = [name for name in OPTIONAL_ARRAYS if name in arrays]
    if optional and len(optional) != len(OPTIONAL_ARRAYS):
        raise refused(data_file, f"{optional[0]} without the rest of {OPTIONAL_ARRAYS}")
    pairs = [("x_train", "y_train"), ("x_test", "y_test")]
    pairs += [("x_client_test", "y_client_test")] if optional else []
    width = None
    for x_name, y_name in pairs:
        width = check_pair(arrays, x_name, y_name, num_classes, width, data_file)
    check_offsets(arrays["offsets"], len(arrays["y_train"]), meta, "offsets", data_file)
    if "client_test_offsets" in arrays:
        rows = len(arrays["y_client_test"])
        check_offsets(arrays["client_test_offsets"], rows, meta, "client_test_offsets", data_file)
    check_new_clients(arrays, meta, num_classes, width, data_file)
    check_samples(arrays, meta, data_file)


def check_samples(arrays: dict[str, np.ndarray], meta: dict, data_file: Path) -> None:
    """partition.json's input_shape multiplies to the arrays' feature count, and the features of
    a partition with a vocabulary are ids of it."""
    check_input_shape(meta, arrays["x_train"].shape[1], data_file)
    if "vocabulary" not in meta:
        return
    for name in arrays:
        if name.startswith("x_"):
            problem = token_ids_problem(arrays[name], len(meta["vocabulary"]))
            if problem is not None:
                raise FLError(f"{data_file}: {name} {problem}; {REBUILD} (--text chars or words)")


def check_input_shape(meta: dict, width: int, data_file: Path) -> None:
    if "input_shape" in meta and shape_problem(meta["input_shape"], width) is not None:
        raise FLError(
            f"{data_file}: partition.json's input_shape {shape_text(meta['input_shape'])} does "
            f"not multiply to its {width} features; {REBUILD} (--input-shape whose product is "
            f"{width})"
        )


def check_new_clients(arrays, meta: dict, num_classes, width, data_file: Path) -> None:
    """The new clients' arrays (all of NEW_ARRAYS or none; NEW_TEST_ARRAYS only with them and with
    the clients' test splits), checked like the training ones against partition.json's
    new_clients."""
    new = [name for name in NEW_ARRAYS + NEW_TEST_ARRAYS if name in arrays]
    if not new and "new_clients" not in meta:
        return
    has_test = "client_test_offsets" in arrays
    wanted = NEW_ARRAYS + (NEW_TEST_ARRAYS if has_test else ())
    if tuple(new) != wanted or not isinstance(meta.get("new_clients"), dict):
        raise refused(data_file, f"the new clients' arrays must be exactly {', '.join(wanted)}")
    described = meta["new_clients"]
    if not all(isinstance(described.get(k), list) for k in ("ids", "sizes")):
        raise refused(data_file, "partition.json's new_clients lacks its ids or sizes")
    count = {"num_clients": len(described["ids"])}
    pairs = [("x_new", "y_new", "new_offsets")]
    pairs += [("x_new_test", "y_new_test", "new_test_offsets")] if has_test else []
    for x_name, y_name, offsets in pairs:
        check_pair(arrays, x_name, y_name, num_classes, width, data_file)
        check_offsets(arrays[offsets], len(arrays[y_name]), count, offsets, data_file)
    if np.diff(arrays["new_offsets"]).tolist() != described["sizes"]:
        raise refused(data_file, "new_offsets disagree with partition.json's new_clients sizes")


def check_pair(arrays, x_name, y_name, num_classes, width, data_file) -> int:
    """One features/targets pair; returns the feature count (which every pair must share)."""
    x, y = arrays[x_name], arrays[y_name]
    if x.ndim != 2 or x.dtype.kind != "f":  # fl partition writes features as floats
        raise refused(data_file, f"{x_name} must be a 2-D array of floats (rows x features)")
    if width is not None and x.shape[1] != width:
        raise FLError(
            f"{data_file}: {x_name} has {x.shape[1]} features, x_train {width}; {REBUILD}"
        )
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        if x.dtype == np.float32:  # loaded for a float32 run: a finite float64 may overflow
            raise FLError(
                f"{data_file}: {x_name} holds NaN or infinite values as float32 (a value beyond "
                f"±3.4e38 overflows); train with --dtype float64, or {REBUILD}"
            )
        raise refused(data_file, f"{x_name} holds NaN or infinite values")
    if y.ndim != 1 or len(y) != len(x):
        raise refused(data_file, f"{y_name} must be 1-D with one value per row of {x_name}")
    if num_classes is None:
        if y.dtype.kind not in "fiu" or (y.dtype.kind == "f" and not np.isfinite(y).all()):
            raise refused(data_file, f"{y_name} must hold finite numbers")
    elif y.dtype.kind not in "iu":
        raise refused(data_file, f"{y_name} must hold integer class labels")
    elif len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise FLError(
            f"{data_file}: {y_name} holds labels outside [0, {num_classes}) (num_classes in "
            f"partition.json); {REBUILD}"
        )
    return x.shape[1]


def check_offsets(offsets: np.ndarray, rows: int, meta: dict, name: str, data_file: Path) -> None:
    """offsets[i]:offsets[i + 1] are client i's rows: from 0, never decreasing, to rows."""
    if offsets.ndim != 1 or offsets.dtype.kind not in "iu":
        raise refused(data_file, f"{name} must be a 1-D integer array")
    if len(offsets) != meta["num_clients"] + 1:
        raise FLError(
            f"{data_file}: {name} has {len(offsets)} entries, num_clients + 1 = "
            f"{meta['num_clients'] + 1} expected; {REBUILD}"
        )
    if offsets[0] != 0 or offsets[-1] != rows or (np.diff(offsets) < 0).any():
        raise FLError(
            f"{data_file}: {name} must rise from 0 to {rows} (the rows it cuts into clients); "
            f"{REBUILD}"
        )
