"""What an algorithm asks of its clients' local training: the spec (epochs, batch, step size) and
the work beyond plain SGD from the global model (a gradient correction and its per-client inputs,
where each client starts, step budgets). The engine's backends carry it out.

A correction of the form pull (w - anchor) + shift[k] (FedProx, SCAFFOLD, FedDyn, Ditto) is given
as data, LocalWork.pull and LocalWork.shift, which a model's compiled steps apply themselves; any
other is a function, LocalWork.correction, which the engine calls at every step in NumPy."""

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class LocalSpec:
    epochs: int
    batch_size: int
    lr: float


# correction(W [K, P], anchor [P], **inputs) -> [K, P], added to the gradient of every local step;
# inputs are the per-client arrays of LocalWork.inputs, restricted to the same K clients as W.
Correction = Callable[..., np.ndarray]
# step(model, W [A, P], X [A, B, D], y [A, B], mask [A, B], lr, anchor [P], **inputs) -> None:
# a local step of the algorithm's own that replaces the plain SGD step, updating W in place (Per-
# FedAvg's two-batch meta step, pFedMe's inner solve); picklable like the correction.
Step = Callable[..., None]


@dataclass(frozen=True)
class LocalWork:
    """What an algorithm asks of the cohort's local training beyond plain SGD from the anchor.

    Everything is per client along the first axis, so a backend can split it into chunks. The
    correction must be picklable (a module-level function, bound with functools.partial).
    """

    correction: Correction | None = None
    inputs: dict[str, np.ndarray] = field(default_factory=dict)  # [K, ...] each
    # the linear correction pull (w - anchor) + shift[k], added to every step's gradient besides
    # the correction function's: a float, and [K, P] or None
    pull: float = 0.0
    shift: np.ndarray | None = None
    start: np.ndarray | None = None  # [K, P] where each client starts (default: the anchor)
    max_steps: np.ndarray | None = None  # [K] step budgets below the full one (stragglers)
    # [P] bool, the same for every client: coordinates that do not train (each client's stay at
    # its start values after every step: FedRep's and FedBABU's frozen head or body)
    frozen: np.ndarray | None = None
    step: Step | None = None  # a local step of its own instead of plain SGD (not for estimators)
    # [K, P] a second vector per client that `step` updates alongside the model, in place, as its
    # keyword `carry` (APFL's personal model v); the trained carry is CohortResult.carry
    carry: np.ndarray | None = None

    def chunk(self, index: np.ndarray | slice) -> "LocalWork":
        def cut(a):
            return None if a is None else a[index]

        inputs = {name: value[index] for name, value in self.inputs.items()}
        return replace(
            self,
            inputs=inputs,
            shift=cut(self.shift),
            start=cut(self.start),
            max_steps=cut(self.max_steps),
            carry=cut(self.carry),
        )

    def step_counts(self, sizes: np.ndarray, batch_size: int, epochs: int) -> np.ndarray:
        """[K] local steps each client takes: its full budget, or less for a straggler."""
        full = steps_per_epoch(sizes, batch_size) * epochs
        return full if self.max_steps is None else np.minimum(full, self.max_steps)


def corrects(work: LocalWork) -> bool:
    """Whether the work adds a correction to the gradient of its steps."""
    return bool(work.pull) or work.shift is not None or work.correction is not None


def correction_at(
    work: LocalWork,
    W: np.ndarray,
    anchor: np.ndarray,
    inputs: dict[str, np.ndarray],
    shift: np.ndarray | None,
) -> np.ndarray | None:
    """The work's gradient correction at W [K, P], or None without one: pull (W - anchor) + shift,
    plus the correction function's (inputs and shift: those of the same K clients as W)."""
    total = work.pull * (W - anchor) if work.pull else None  # as NumPy rounds it: W's dtype
    if shift is not None:
        total = shift if total is None else total + shift
    if work.correction is not None:
        more = work.correction(W, anchor, **inputs)
        total = more if total is None else total + more
    return total


def frozen_index(work: LocalWork) -> np.ndarray | None:
    """The indices of the coordinates work keeps at their start values, or None."""
    return None if work.frozen is None else np.flatnonzero(work.frozen)


def steps_per_epoch(sizes: np.ndarray, batch_size: int) -> np.ndarray:
    return -(-np.asarray(sizes) // batch_size)
