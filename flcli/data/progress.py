"""What building a partition is doing, for whoever shows it (fl partition's progress bar).

The data code reports stages ("reading data.csv", "splitting among 1000 clients") and the bytes of
a file read so far; nothing is shown unless a caller listens (with listening(...)). A plain
function call per report: reading a small file costs nothing more.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO

# (stage, bytes done, bytes in all or None): called at each stage and as a file is read
Listener = Callable[[str, int, int | None], None]
_listener: ContextVar[Listener | None] = ContextVar("partition_progress", default=None)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send the reports made inside the block to `listener`."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def stage(text: str, total: int | None = None) -> None:
    """A new stage begins (total: its size in bytes, when it reads a file)."""
    listener = _listener.get()
    if listener is not None:
        listener(text, 0, total)


class CountingReader:
    """A binary file whose reads report how far they got (for pandas' CSV parser)."""

    def __init__(self, handle: IO[bytes], text: str, total: int):
        self.handle, self.text, self.total = handle, text, total
        self.listener = _listener.get()

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(size)
        if self.listener is not None:
            self.listener(self.text, self.handle.tell(), self.total)
        return chunk

    def __iter__(self):  # pandas checks that a buffer is iterable
        return iter(self.handle)

    def __getattr__(self, name):
        return getattr(self.handle, name)
