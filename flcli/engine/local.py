"""What every backend shares about local training: the spec, the batch orders, the result."""

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from flcli.rng import Purpose, hash_bits


@dataclass(frozen=True)
class LocalSpec:
    epochs: int
    batch_size: int
    lr: float


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


# correction(W [K, P], anchor [P], **inputs) -> [K, P], added to the gradient of every local step;
# inputs are the per-client arrays of LocalWork.inputs, restricted to the same K clients as W.
Correction = Callable[..., np.ndarray]


@dataclass(frozen=True)
class LocalWork:
    """What an algorithm asks of the cohort's local training beyond plain SGD from the anchor.

    Everything is per client along the first axis, so a backend can split it into chunks. The
    correction must be picklable (a module-level function, bound with functools.partial).
    """

    correction: Correction | None = None
    inputs: dict[str, np.ndarray] = field(default_factory=dict)  # [K, ...] each
    start: np.ndarray | None = None  # [K, P] where each client starts (default: the anchor)
    max_steps: np.ndarray | None = None  # [K] step budgets below the full one (stragglers)

    def chunk(self, index: np.ndarray | slice) -> "LocalWork":
        def cut(a):
            return None if a is None else a[index]

        inputs = {name: value[index] for name, value in self.inputs.items()}
        return replace(self, inputs=inputs, start=cut(self.start), max_steps=cut(self.max_steps))

    def step_counts(self, sizes: np.ndarray, batch_size: int, epochs: int) -> np.ndarray:
        """[K] local steps each client takes: its full budget, or less for a straggler."""
        full = steps_per_epoch(sizes, batch_size) * epochs
        return full if self.max_steps is None else np.minimum(full, self.max_steps)


@dataclass(frozen=True)
class CohortResult:
    params: np.ndarray  # [K, P] local models after training
    num_steps: np.ndarray  # [K]


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


def steps_per_epoch(sizes: np.ndarray, batch_size: int) -> np.ndarray:
    return -(-np.asarray(sizes) // batch_size)
