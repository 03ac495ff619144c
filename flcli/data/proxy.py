"""FedDF's unlabeled proxy set from outside the clients' shards (fl train --proxy SOURCE).

SOURCE is `holdout` (the default: a --proxy-fraction of every client's shard, held out of local
training, as before), a partition dir (its central test features x_test, e.g. a second partition
of the same dataset with another seed), or a file of features in the partition's feature space:
an .npz (its array `x`, or its only 2-D array) or a .csv/.parquet whose columns are all numeric
features. Labels are never read: a column named like the partition's label must be left out.
The rows must have the partition's feature count and be finite; no client loses a row.
"""

import zipfile
from pathlib import Path

import numpy as np

from flcli.errors import FLError

HOLDOUT = "holdout"


def read_npz_features(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise FLError(f"--proxy {path} is not a readable .npz file ({e}); re-write it") from None
    if "x" in arrays:
        return arrays["x"]
    two_d = [a for a in arrays.values() if a.ndim == 2]
    if len(two_d) != 1:
        raise FLError(f"--proxy {path}: name the features array x (it has {', '.join(arrays)})")
    return two_d[0]


def read_proxy(source: str) -> np.ndarray:
    path = Path(source)
    if path.is_dir():
        from flcli.data.store import load_partition

        return load_partition(path).x_test
    if not path.is_file():
        raise FLError(
            f"--proxy {source!r} is neither holdout, a partition dir nor a file; give one of them"
        )
    if path.suffix.lower() == ".npz":
        return read_npz_features(path)
    from flcli.data.files import read_table

    frame = read_table(path)
    text = [c for c in frame.columns if frame[c].dtype.kind not in "biuf"]
    if text:
        raise FLError(f"--proxy {source}: column {text[0]!r} is not numeric; keep only features")
    return frame.to_numpy(np.float64)


def load_proxy(source: str, num_features: int, dtype) -> np.ndarray:
    """The proxy rows of source, checked against the partition's feature count, in dtype."""
    found = read_proxy(source)
    try:
        x = np.asarray(found, dtype=np.float64)
    except (TypeError, ValueError):
        raise FLError(f"--proxy {source}: the features are not numbers; re-write them") from None
    if x.ndim != 2 or x.shape[1] != num_features or not len(x):
        raise FLError(
            f"--proxy {source} has shape {x.shape}; the partition has {num_features} features, "
            f"so give rows of {num_features} numbers"
        )
    if not np.isfinite(x).all():
        raise FLError(f"--proxy {source} has missing or infinite values; fill or drop those rows")
    return x.astype(dtype)
