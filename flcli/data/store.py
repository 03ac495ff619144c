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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flcli.data import progress
from flcli.data.npzfile import NpzReader, open_npz
from flcli.data.validate import (
    EXTRA_ARRAYS,
    NEW_ARRAYS,
    NEW_TEST_ARRAYS,
    OPTIONAL_ARRAYS,
    check_arrays,
    check_description,
    check_layout,
)
from flcli.data.verified import file_state, forget, is_verified, remember
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

        def cast(name: str, a: np.ndarray) -> np.ndarray:
            wanted = loaded_dtype(name, a.dtype, dtype)
            return a if wanted is None else a.astype(wanted, copy=False)

        arrays = {name: cast(name, getattr(self, name)) for name in ARRAYS}
        if all(arrays[name] is getattr(self, name) for name in ARRAYS):
            return self
        return dataclasses.replace(self, **arrays)


def hashed_names(names) -> tuple[str, ...]:
    """The arrays of names that partition.json's hash covers, in the order it hashes them."""
    return ARRAYS + tuple(name for name in EXTRA_ARRAYS if name in names)


def hash_header(digest, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    """What partition.json's hash takes of an array before its bytes (in C order)."""
    digest.update(f"{name}:{dtype.str}:{shape}".encode())


def array_hash(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in hashed_names(arrays):
        a = np.ascontiguousarray(arrays[name])
        hash_header(digest, name, a.dtype, a.shape)
        # the bytes without a copy (memoryview.cast refuses arrays with a zero in their shape)
        digest.update(a.reshape(-1).view(np.uint8))
    return digest.hexdigest()[:16]


def loaded_dtype(name: str, stored: np.dtype, dtype) -> np.dtype | None:
    """The dtype an array is loaded in for a run in dtype: dtype for the float arrays that
    Partition.astype casts, the stored one (None) for the rest."""
    return np.dtype(dtype) if dtype is not None and name in ARRAYS and stored.kind == "f" else None


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
    if array_hash(arrays) == partition.meta["hash"]:  # what it says, so the next read need not hash
        data_file = out / "data.npz"
        remember(file_state(data_file, os.stat(data_file)), partition.meta["hash"])
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


def partition_files(path: Path) -> tuple[Path, Path]:
    """(partition.json, data.npz) of a partition dir, refused in one line when missing."""
    hint = f"create one with: fl partition digits --clients 10 --scheme iid --out {path}"
    if path.is_file():
        raise FLError(f"{path} is a file; give the partition dir that holds it: {path.parent}")
    if not path.is_dir():
        raise FLError(f"partition dir {path} does not exist; {hint}")
    meta_file, data_file = path / "partition.json", path / "data.npz"
    if not meta_file.is_file() or not data_file.is_file():
        raise FLError(f"{path} is not a partition dir (partition.json or data.npz missing); {hint}")
    return meta_file, data_file


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """A file of the partition dir that cannot be read or parsed is one FLError."""
    try:
        yield
    except FLError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise FLError(f"{path} holds an unreadable partition ({e}); re-create it") from None


def read_arrays(npz: NpzReader, dtype, hashing: bool) -> tuple[dict[str, np.ndarray], str | None]:
    """data.npz's arrays (those Partition.astype casts in dtype, when given), and the hash of what
    was read when hashing, else None."""
    digest = hashlib.sha256() if hashing else None
    arrays = {}
    for name in hashed_names(npz.members):
        member = npz.members[name]
        if digest is not None:
            hash_header(digest, name, member.dtype, member.shape)
        arrays[name] = npz.read(member, loaded_dtype(name, member.dtype, dtype), digest)
    return arrays, None if digest is None else digest.hexdigest()[:16]


def check_edits(meta: dict, meta_file: Path) -> None:
    if DESCRIBED in meta and meta[DESCRIBED] != description_hash(meta):
        raise FLError(
            f"{meta_file} was edited after fl partition wrote it (its description no longer "
            f"matches its {DESCRIBED}); re-create the partition"
        )


def load_partition(path: Path, dtype=None, verify: bool = False) -> Partition:
    """Read and check a partition dir; every problem is an FLError saying what to do.

    dtype (None: as stored) is the run's: the float arrays Partition.astype casts are read
    straight into it, a chunk at a time, so that the stored float64 arrays never sit beside their
    float32 copies. The arrays are hashed against partition.json's hash as they stream, unless
    flcli.data.verified holds a record of this very file matching it; verify=True hashes anyway.
    Every read checks data.npz's array headers against partition.json before reading the arrays,
    and the arrays themselves after (flcli.data.validate)."""
    path = Path(path)
    meta_file, data_file = partition_files(path)
    with reading(path), open_npz(data_file) as npz:
        meta = json.loads(meta_file.read_text())
        missing = [name for name in ARRAYS if name not in npz.members]
        if missing:
            raise FLError(f"{data_file} lacks the array {missing[0]}; re-create the partition")
        check_description(meta, meta_file)
        check_layout({name: m.shape for name, m in npz.members.items()}, meta, meta_file, data_file)
        check_edits(meta, meta_file)
        state = file_state(data_file, npz.stat())
        hashing = verify or not is_verified(state, meta.get("hash"))
        arrays, digest = read_arrays(npz, dtype, hashing)
        if file_state(data_file, npz.stat()) != state:
            raise FLError(
                f"{data_file} was written to as it was read; run again once nothing writes it"
            )
    if hashing and digest != meta.get("hash"):
        forget(state)
        raise FLError(f"{data_file} does not match {meta_file}'s hash; re-create the partition")
    check_arrays(arrays, meta, data_file)
    if meta["client_sizes"] != np.diff(arrays["offsets"]).tolist():
        raise FLError(
            f"{meta_file}'s client_sizes disagree with {data_file}; re-create the partition"
        )
    if hashing:
        remember(state, digest)
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
