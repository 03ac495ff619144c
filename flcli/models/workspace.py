"""Scratch arrays that a model reuses from one local step to the next.

The engine runs many steps of the same shapes. Fresh temporaries each step cost page faults: the
C allocator hands large freed blocks back to the system and maps them again on the next step,
which took 40% of an MLP's step at batch 64. A Workspace hands out the same memory every step.
"""

import math
import queue
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


class Workspace:
    def __init__(self):
        self._memory: dict[str | tuple, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialised C-contiguous array: the same memory at every call with this name (a
        smaller shape is a prefix of it, as when clients finish and the cohort shrinks)."""
        return self._kept(name, shape, dtype, np.empty)

    def zeros(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A read-only array of zeros, kept like the others. (NumPy's maximum is several times
        faster against an array than against the scalar 0.)"""
        return self._kept(("zeros", np.dtype(dtype)), shape, dtype, read_only_zeros)

    def _kept(self, key, shape: tuple[int, ...], dtype, allocate) -> np.ndarray:
        dtype, size = np.dtype(dtype), math.prod(shape)
        memory = self._memory.get(key)
        if memory is None or memory.dtype != dtype or memory.size < size:
            memory = self._memory[key] = allocate(size, dtype)
        return memory[:size].reshape(shape)


def read_only_zeros(size: int, dtype) -> np.ndarray:
    zeros = np.zeros(size, dtype=dtype)
    zeros.flags.writeable = False
    return zeros


class WorkspacePool:
    """Workspaces kept from one chunk of clients, or one round, to the next: each training thread
    borrows one for a chunk, so the pool holds as many as threads ever ran at once."""

    def __init__(self):
        self._free: queue.SimpleQueue[Workspace] = queue.SimpleQueue()

    @contextmanager
    def borrow(self) -> Iterator[Workspace]:
        try:
            space = self._free.get_nowait()
        except queue.Empty:
            space = Workspace()
        try:
            yield space
        finally:
            self._free.put(space)
