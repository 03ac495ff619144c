"""Records of data.npz files whose arrays were hashed in full and matched partition.json's hash,
so that a later read trusts a file no write has touched since instead of hashing it again.

One small JSON file per data.npz in flcli's cache dir (verified/ under fileio.user_cache_dir()),
named after the file's real path, written atomically: the path, device, inode, size, mtime and
ctime of the bytes that were hashed, and the hash they matched. Any write to the file changes its
ctime, and so does os.utime putting an mtime back, so a record that still matches means the same
bytes, short of a system clock set back, or a rewrite of the same size within the timestamp tick
of the write that was recorded. A cache dir flcli cannot write keeps no record: each read hashes.
"""

import hashlib
import json
import os
from pathlib import Path

from flcli.fileio import atomic_write_json, user_cache_dir


def file_state(path: Path, stat: os.stat_result) -> dict:
    """What a record keeps of a file: where it is, and what any write to it changes."""
    return {
        "file": str(Path(path).resolve()),
        "device": stat.st_dev,
        "inode": stat.st_ino,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
    }


def record_path(state: dict) -> Path | None:
    cache = user_cache_dir()
    if cache is None:
        return None
    name = hashlib.sha256(state["file"].encode()).hexdigest()[:32]
    return cache / "verified" / f"{name}.json"


def is_verified(state: dict, digest: str) -> bool:
    """Whether a record says the file in this very state matched digest."""
    path = record_path(state)
    if path is None:
        return False
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):  # no record yet, or not one flcli wrote
        return False
    return record == {**state, "hash": digest}


def remember(state: dict, digest: str) -> None:
    """Record that the file in this state matched digest (nothing, if the cache cannot be
    written: the next read hashes again)."""
    path = record_path(state)
    if path is None:
        return
    try:
        atomic_write_json(path, {**state, "hash": digest})
    except OSError:
        return


def forget(state: dict) -> None:
    """Drop the file's record (its bytes did not match)."""
    path = record_path(state)
    if path is None:
        return
    try:
        path.unlink(missing_ok=True)
    except OSError:
        return
