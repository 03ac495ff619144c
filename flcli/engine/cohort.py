"""Vectorized local SGD: a whole cohort of clients trains at once.

Each client walks its own permutation per epoch in batches of B; at step s every client still
training contributes one [B] block of row indices, so a step is a single [K, B] gather and one
cohort-wide loss_grad. Clients of different sizes are handled with a mask: a short last batch masks
its missing slots, and a client that has finished its steps (its epochs, or a straggler's smaller
budget) drops out of the step.
"""

import numpy as np

from flcli.engine.local import (
    Cohort,
    CohortResult,
    LocalSpec,
    LocalWork,
    epoch_orders,
    steps_per_epoch,
)


def train_cohort(
    model,
    x: np.ndarray,
    y: np.ndarray,
    cohort: Cohort,
    w_global: np.ndarray,
    spec: LocalSpec,
    seed: int,
    round: int,
    work: LocalWork | None = None,
) -> CohortResult:
    w_global = np.asarray(w_global, dtype=x.dtype)  # the data's dtype is the compute dtype
    work = work or LocalWork()
    sizes = cohort.sizes
    batch = int(min(spec.batch_size, sizes.max()))
    per_epoch = steps_per_epoch(sizes, batch)
    total_steps = work.step_counts(sizes, batch, spec.epochs)
    orders = epoch_orders(seed, round, cohort.ids, sizes, spec.epochs)
    order_base = np.concatenate([[0], np.cumsum(sizes * spec.epochs)[:-1]])
    slots = np.arange(batch)
    W = np.tile(w_global, (len(sizes), 1)) if work.start is None else work.start.astype(x.dtype)
    everyone = np.arange(len(sizes))
    active, inputs = everyone, work.inputs
    for step in range(int(total_steps.max())):
        if step >= total_steps.min() and (active is everyone or step in total_steps):
            active = np.flatnonzero(step < total_steps)  # changes only when someone finishes
            inputs = {name: value[active] for name, value in work.inputs.items()}
        n, epoch, within = sizes[active], step // per_epoch[active], step % per_epoch[active]
        position = within[:, None] * batch + slots  # [A, B] position inside the epoch's order
        valid = position < n[:, None]
        flat = np.where(valid, order_base[active, None] + (epoch * n)[:, None] + position, 0)
        rows = np.where(valid, orders[flat], 0) + cohort.starts[active, None]
        W_active = W if active is everyone else W[active]
        _, grad = model.loss_grad(W_active, x[rows], y[rows], valid.astype(x.dtype))
        if work.correction is not None:
            grad += work.correction(W_active, w_global, **inputs)
        W_active -= spec.lr * grad
        if active is not everyone:
            W[active] = W_active
    return CohortResult(params=W, num_steps=total_steps)
