"""Atomic file writes: write a temporary file in the same directory, then rename it into place.

A killed process leaves either the old file or the new one, never a torn one. (No fsync: that
guards against power loss, not against a killed run, and costs milliseconds per round.)"""

import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = current_umask()  # read once: os.umask can only be read by setting it


def alive(pid: int) -> bool:
    """Whether process pid exists (a temporary file or dir named after a dead one is litter)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def user_cache_dir() -> Path | None:
    """flcli's own cache folder: $XDG_CACHE_HOME/flcli when that is an absolute path, else
    ~/.cache/flcli; None when there is no home folder to put it in."""
    cache = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(cache):
        return Path(cache) / "flcli"
    try:
        return Path.home() / ".cache" / "flcli"
    except RuntimeError:  # no HOME and no password entry to find it in
        return None


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call write(file) on a temporary file beside path, then rename it to path (making the
    missing folders of path first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as failure:
        raise naming(path, failure) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes it private; a plain open() would not
        os.replace(tmp, path)
    except BaseException as failure:
        Path(tmp).unlink(missing_ok=True)
        # a full disk fails in write() with no filename: name the file being written
        if isinstance(failure, OSError) and failure.filename in (tmp, None):
            raise naming(path, failure) from None
        raise


def naming(path: Path, failure: OSError) -> OSError:
    """The same error, naming the path the caller asked for rather than its temporary file."""
    return OSError(failure.errno, failure.strerror, str(path))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_save_figure(path: Path, figure: Any, **savefig_kwargs: Any) -> None:
    """Save a matplotlib figure atomically; the format follows the extension of path."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    atomic_write(path, lambda f: figure.savefig(f, format=fmt, **savefig_kwargs))


@contextmanager
def signals_held(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Run the block whole: Ctrl-C or SIGTERM arriving inside it is handled as it ends (a
    KeyboardInterrupt inside np.savez would leave a half-built ZipFile to complain as it is
    collected). Only the main thread receives signals; elsewhere the block just runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, object]] = []
    previous = {signum: signal.getsignal(signum) for signum in signums}
    for signum in signums:
        signal.signal(signum, lambda number, frame: caught.append((number, frame)))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for number, frame in caught[:1]:
            handler = previous[number]
            if callable(handler):
                handler(number, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(number)
