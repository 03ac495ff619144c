"""flcli.engine.local.epoch_orders compiled: the same orders, bit for bit, for runs that take
their model's compiled steps (numba is loaded for them anyway).

The NumPy function makes a dozen passes over the whole cohort's rows and sorts them all at once:
in a round of small clients that took longer than their training. Here each client's epoch is
hashed and sorted on its own. A row's key is the top 32 bits of its hash; NumPy's stable sort
orders equal keys by position, and so does sorting key << 32 | position, which has no equal
values, so any sort gives the same order."""

import numpy as np
from numba import njit

M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)
S27, S30, S31, S32 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(32)
LOW32 = np.uint64(0xFFFFFFFF)


@njit(inline="always")
def mix(z):
    """flcli.rng._mix: the splitmix64 finalizer."""
    z = (z ^ (z >> S30)) * M1
    z = (z ^ (z >> S27)) * M2
    return z ^ (z >> S31)


@njit(cache=True, nogil=True)
def epoch_rows(prefix, ids, sizes, starts, epochs, out):
    """out: client after client, epoch after epoch, the rows starts[k] + (a permutation of
    0..sizes[k]-1) that epoch_orders gives; prefix: flcli.rng.prefix(seed, SHUFFLE, round)."""
    keys = np.empty(max(sizes.max(), 1) if sizes.size else 1, dtype=np.uint64)
    done = 0
    for k in range(ids.size):
        head = mix(prefix ^ np.uint64(ids[k]))
        size = sizes[k]
        for epoch in range(epochs):
            for i in range(size):
                counter = (np.uint64(epoch) << S32) | np.uint64(i)
                keys[i] = ((mix(head ^ counter) >> S32) << S32) | np.uint64(i)
            ordered = np.sort(keys[:size])
            for i in range(size):
                out[done + i] = starts[k] + np.int64(ordered[i] & LOW32)
            done += size
