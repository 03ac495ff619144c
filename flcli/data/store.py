"""The partition dir: partition.json (metadata), data.npz (arrays), partition.png (heatmap).

All training samples live in one array, ordered by client; client i holds rows
offsets[i]:offsets[i + 1]. No pickles are written or read.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flcli.data import progress
from flcli.data.validate import (
    EXTRA_ARRAYS,
    NEW_ARRAYS,
    NEW_TEST_ARRAYS,
    OPTIONAL_ARRAYS,
    check_arrays,
    check_description,
)
from flcli.errors import FLError
from flcli.fileio import UMASK, alive, atomic_write

ARRAYS = ("x_train", "y_train", "offsets", "x_test", "y_test")
# OPTIONAL_ARRAYS, clients' local test splits (fl partition --client-test-fraction): client i's
# test rows are client_test_offsets[i]:client_test_offsets[i + 1]


@dataclass(frozen=True)
class Partition:
    meta: dict
    x_train: np.ndarray  # [n, d], rows grouped by client
    y_train: np.ndarray  # [n]
    offsets: np.ndarray  # [num_clients + 1]
    x_test: np.ndarray
    y_test: np.ndarray
    x_client_test: np.ndarray | None = None
    y_client_test: np.ndarray | None = None
    client_test_offsets: np.ndarray | None = None
    # new clients, held out of training entirely (fl partition --new-clients): their training
    # rows, and their local test rows when the partition has clients' test splits
    x_new: np.ndarray | None = None
    y_new: np.ndarray | None = None
    new_offsets: np.ndarray | None = None
    x_new_test: np.ndarray | None = None
    y_new_test: np.ndarray | None = None
    new_test_offsets: np.ndarray | None = None

    @property
    def has_client_test(self) -> bool:
        return self.client_test_offsets is not None

    @property
    def has_new_clients(self) -> bool:
        return self.new_offsets is not None

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        names = ARRAYS + (OPTIONAL_ARRAYS if self.has_client_test else ())
        if self.has_new_clients:
            names += NEW_ARRAYS + (NEW_TEST_ARRAYS if self.new_test_offsets is not None else ())
        return {name: getattr(self, name) for name in names}

    @property
    def num_clients(self) -> int:
        return len(self.offsets) - 1

    @property
    def client_sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def task(self) -> str:
        """classification (the default when partition.json does not say) or regression."""
        return self.meta.get("task", "classification")

    @property
    def num_classes(self) -> int | None:
        """Number of classes; None for regression."""
        return None if self.task == "regression" else int(self.meta["num_classes"])

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample (its features are its values in C order): partition.json's
        input_shape, (C, H, W) of an image or (T,) of a token sequence, else (num_features,)."""
        shape = self.meta.get("input_shape")
        return (self.num_features,) if shape is None else tuple(shape)

    @property
    def vocabulary(self) -> tuple[str, ...] | None:
        """The token of each id of a token sequence's features (id 0 pads a short sequence, id 1
        is an unknown token: flcli.data.sample_format), or None for features that are not tokens."""
        vocabulary = self.meta.get("vocabulary")
        return None if vocabulary is None else tuple(vocabulary)

    @property
    def hash(self) -> str:
        return self.meta["hash"]

    def astype(self, dtype) -> "Partition":
        """The same partition with features (and real-valued targets) in dtype; self if they
        already are."""

        def cast(a: np.ndarray) -> np.ndarray:
            return a.astype(dtype, copy=False) if a.dtype.kind == "f" else a

        arrays = {name: cast(getattr(self, name)) for name in ARRAYS}
        if all(arrays[name] is getattr(self, name) for name in ARRAYS):
            return self
        return dataclasses.replace(self, **arrays)


def array_hash(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in ARRAYS + tuple(n for n in EXTRA_ARRAYS if n in arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        # the bytes without a copy (memoryview.cast refuses arrays with a zero in their shape)
        digest.update(a.reshape(-1).view(np.uint8))
    return digest.hexdigest()[:16]


def _same_partition(out: Path, meta: dict) -> bool:
    try:
        existing = json.loads((out / "partition.json").read_text())
    except (OSError, ValueError):
        return False
    return existing.get("hash") == meta["hash"] and existing.get("params") == meta["params"]


BUILDING = ".building-"  # in the name of the temporary dir a partition is built in, before its pid


def building_dir(out: Path) -> Path:
    """A new hidden dir beside out, named after this process: .<out>.building-<pid>-<random>."""
    return Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}{BUILDING}{os.getpid()}-"))


def remove_orphaned_builds(parent: Path) -> None:
    """Delete the temporary dirs in parent of partitions whose process is gone (a kill -9 mid-write
    leaves them: nothing else would ever remove them)."""
    if os.name != "posix" or not parent.is_dir():  # os.kill(pid, 0) only probes on POSIX
        return
    for leftover in parent.glob(f".*{BUILDING}*-*"):
        pid = leftover.name.rsplit(BUILDING, 1)[1].split("-")[0]
        if leftover.is_dir() and pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def write_partition(partition: Partition, out: Path, draw_heatmap=None) -> bool:
    """Write the partition dir atomically (built in a temporary dir, then renamed).

    Returns False when out already holds this very partition (nothing written); raises FLError when
    out exists and holds anything else.
    """
    out = Path(out)
    if out.exists():
        if _same_partition(out, partition.meta):
            return False
        raise FLError(
            f"--out {out} already exists and is not this partition; choose a new --out or delete it"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_builds(out.parent)
    tmp = building_dir(out)
    try:
        arrays = partition.arrays
        progress.stage(f"writing {out}")
        atomic_write(tmp / "data.npz", lambda f: np.savez(f, **arrays))  # uncompressed: fast
        described = {**partition.meta, DESCRIBED: description_hash(partition.meta)}
        (tmp / "partition.json").write_text(json.dumps(described, indent=2) + "\n")
        if draw_heatmap is not None:
            progress.stage("drawing partition.png")
            draw_heatmap(partition, tmp / "partition.png")
        os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp makes it private; a plain mkdir would not
        try:
            os.rename(tmp, out)
        except OSError:  # another process (a second fl sweep) put the same partition there first
            if not _same_partition(out, partition.meta):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            return False
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return True


def read_meta(path: Path) -> dict:
    """partition.json of a partition dir (without reading the arrays)."""
    path = Path(path)
    try:
        meta = json.loads((path / "partition.json").read_text())
    except OSError:
        raise FLError(
            f"{path} is not a partition dir (no partition.json); create one with: "
            f"fl partition digits --clients 10 --out {path}"
        ) from None
    except ValueError as e:
        raise FLError(f"{path}/partition.json is not valid JSON ({e}); re-create it") from None
    if not isinstance(meta, dict) or "client_sizes" not in meta:
        raise FLError(f"{path}/partition.json is not a partition description; re-create it")
    check_description(meta, path / "partition.json")
    return meta


def load_partition(path: Path) -> Partition:
    """Read and check a partition dir; every problem is an FLError saying what to do."""
    path = Path(path)
    hint = f"create one with: fl partition digits --clients 10 --scheme iid --out {path}"
    if path.is_file():
        raise FLError(f"{path} is a file; give the partition dir that holds it: {path.parent}")
    if not path.is_dir():
        raise FLError(f"partition dir {path} does not exist; {hint}")
    meta_file, data_file = path / "partition.json", path / "data.npz"
    if not meta_file.is_file() or not data_file.is_file():
        raise FLError(f"{path} is not a partition dir (partition.json or data.npz missing); {hint}")
    try:
        meta = json.loads(meta_file.read_text())
        with np.load(data_file, allow_pickle=False) as npz:
            names = ARRAYS + EXTRA_ARRAYS
            arrays = {name: npz[name] for name in names if name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise FLError(f"{path} holds an unreadable partition ({e}); re-create it") from None
    missing = [name for name in ARRAYS if name not in arrays]
    if missing:
        raise FLError(f"{data_file} lacks the array {missing[0]}; re-create the partition")
    if not isinstance(meta, dict) or meta.get("hash") != array_hash(arrays):
        raise FLError(f"{data_file} does not match {meta_file}'s hash; re-create the partition")
    check_description(meta, meta_file)
    check_arrays(arrays, meta, data_file)
    sizes = np.diff(arrays["offsets"])
    if meta["client_sizes"] != sizes.tolist():
        raise FLError(
            f"{meta_file}'s client_sizes disagree with {data_file}; re-create the partition"
        )
    if DESCRIBED in meta and meta[DESCRIBED] != description_hash(meta):
        raise FLError(
            f"{meta_file} was edited after fl partition wrote it (its description no longer "
            f"matches its {DESCRIBED}); re-create the partition"
        )
    return Partition(meta=meta, **arrays)


DESCRIBED = (
    "description_hash"  # partition.json's digest of itself: written since flcli 0.1's 27th stop
)


def description_hash(meta: dict) -> str:
    """sha256 of what partition.json says of the partition (every key but the data's hash and
    this one), as JSON reads it back, so that a hand edit of the dataset, scheme or seed it names
    is told from the file fl partition wrote. Older partition dirs have none and pass."""
    canonical = json.loads(json.dumps(meta))
    kept = {key: value for key, value in canonical.items() if key not in ("hash", DESCRIBED)}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def partition_from_arrays(
    x_train: np.ndarray,
    y_train: np.ndarray,
    sizes: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    dataset: str,
    num_classes: int | None = None,
    scheme: str = "natural",
    seed: int = 0,
) -> Partition:
    """A Partition of arrays whose training rows are already grouped by client (sizes[i] rows
    each), for generated data and benchmarks; num_classes None makes it a regression partition."""
    from flcli.data.stats import heterogeneity, label_counts_from_offsets, size_cv

    sizes = np.asarray(sizes, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    arrays = {"x_train": x_train, "y_train": y_train, "offsets": offsets}
    arrays.update(x_test=x_test, y_test=y_test)
    meta = {
        "dataset": dataset,
        "scheme": scheme,
        "params": {},
        "seed": seed,
        "task": "regression" if num_classes is None else "classification",
        "num_clients": len(sizes),
        "num_features": int(x_train.shape[1]),
        "num_train": len(y_train),
        "num_test": len(y_test),
        "client_sizes": sizes.tolist(),
        "heterogeneity": {"size_cv": size_cv(sizes)},
    }
    if num_classes is not None:
        counts = label_counts_from_offsets(y_train, offsets, num_classes)
        meta.update(num_classes=num_classes, label_counts=counts.tolist())
        meta["heterogeneity"] = heterogeneity(counts)
    meta["hash"] = array_hash(arrays)
    return Partition(meta=meta, **arrays)
