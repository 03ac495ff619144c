"""What every backend shares about local training: the cohort, the batch orders, the result (the
spec and an algorithm's work are flcli.algorithms.work)."""

from dataclasses import dataclass

import numpy as np

from flcli.rng import Purpose, hash_bits, prefix


@dataclass(frozen=True)
class Cohort:
    """The sampled clients of a round and where their rows are in the training arrays."""

    ids: np.ndarray  # [K] client ids
    starts: np.ndarray  # [K] first row of each client
    sizes: np.ndarray  # [K] rows of each client

    @classmethod
    def of(cls, ids: np.ndarray, offsets: np.ndarray) -> "Cohort":
        ids = np.asarray(ids, dtype=np.int64)
        return cls(ids=ids, starts=offsets[ids], sizes=offsets[ids + 1] - offsets[ids])

    def chunk(self, index: np.ndarray | slice) -> "Cohort":
        return Cohort(ids=self.ids[index], starts=self.starts[index], sizes=self.sizes[index])


@dataclass(frozen=True)
class CohortResult:
    params: np.ndarray  # [K, P] local models after training
    num_steps: np.ndarray  # [K]
    carry: np.ndarray | None = None  # [K, P] LocalWork.carry after training, if any


def epoch_orders(
    seed: int, round: int, ids: np.ndarray, sizes: np.ndarray, epochs: int
) -> np.ndarray:
    """Each client's own sample order for every epoch of this round, laid out flat: client by
    client, epoch by epoch, a permutation of 0..n_k-1 each.

    A client's orders depend only on (seed, round, client): not on the rest of the cohort.
    """
    ids, sizes = np.asarray(ids, dtype=np.int64), np.asarray(sizes, dtype=np.int64)
    lengths = np.repeat(sizes, epochs)  # one segment per (client, epoch)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    segment = np.repeat(np.arange(len(lengths), dtype=np.uint64), lengths)
    position = np.arange(lengths.sum()) - np.repeat(starts, lengths)
    epoch = np.repeat(np.tile(np.arange(epochs), len(ids)), lengths)
    client = np.repeat(ids, sizes * epochs)
    counter = (epoch.astype(np.uint64) << np.uint64(32)) | position.astype(np.uint64)
    keys = hash_bits(seed, Purpose.SHUFFLE, round, client, counter) >> np.uint64(32)
    order = np.argsort((segment << np.uint64(32)) | keys, kind="stable")
    return order - np.repeat(starts, lengths)


def compiled_epoch_rows(seed: int, round: int, cohort: Cohort, epochs: int) -> np.ndarray:
    """epoch_orders of the cohort as rows of the training arrays (each client's first row added),
    compiled (flcli.engine.orders_kernel): the same values, for runs that load numba anyway."""
    from flcli.engine import orders_kernel

    out = np.empty(int(cohort.sizes.sum()) * epochs, dtype=np.int64)
    ids, sizes, starts = (
        np.ascontiguousarray(a, dtype=np.int64) for a in (cohort.ids, cohort.sizes, cohort.starts)
    )
    orders_kernel.epoch_rows(prefix(seed, Purpose.SHUFFLE, round), ids, sizes, starts, epochs, out)
    return out


def order_starts(sizes: np.ndarray, epochs: int) -> np.ndarray:
    """Where each client's orders start in epoch_orders' flat layout."""
    return np.concatenate([[0], np.cumsum(np.asarray(sizes) * epochs)[:-1]]).astype(np.int64)
