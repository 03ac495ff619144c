"""The serial reference backend: one client at a time, one minibatch at a time, plain loops.

It shares nothing with the vectorized engine but the model and the batch orders, so agreement
between the two checks the gathers and masks of the vectorized one.
"""

import numpy as np

from flcli.algorithms.work import LocalSpec, LocalWork, correction_at, frozen_index
from flcli.engine.local import Cohort, CohortResult, epoch_orders


def train_serial(
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
    params, steps, carried = [], [], []
    frozen = frozen_index(work)
    for k, (client, start, size) in enumerate(
        zip(cohort.ids, cohort.starts, cohort.sizes, strict=True)
    ):
        w = w_global.copy() if work.start is None else work.start[k].astype(x.dtype)
        inputs = {name: value[k : k + 1] for name, value in work.inputs.items()}
        shift = None if work.shift is None else work.shift[k : k + 1]
        carry = None if work.carry is None else work.carry[k : k + 1].astype(x.dtype)
        more = inputs if carry is None else {**inputs, "carry": carry}  # updated in place
        held = None if frozen is None else w[frozen].copy()
        budget = None if work.max_steps is None else int(work.max_steps[k])
        taken = 0
        orders = epoch_orders(seed, round, [client], [size], spec.epochs)
        for order in orders.reshape(spec.epochs, size):
            for first in range(0, int(size), spec.batch_size):
                if taken == budget:
                    break
                rows = start + order[first : first + spec.batch_size]
                mask = np.ones((1, len(rows)), dtype=x.dtype)
                if work.step is not None:
                    W = w[None].copy()
                    X, Y = x[rows][None], y[rows][None]
                    work.step(model, W, X, Y, mask, spec.lr, w_global, **more)
                    correction = correction_at(work, w[None], w_global, inputs, shift)
                    if correction is not None:
                        W -= spec.lr * correction
                    w = W[0]
                else:
                    _, grad = model.loss_grad(w[None], x[rows][None], y[rows][None], mask)
                    correction = correction_at(work, w[None], w_global, inputs, shift)
                    if correction is not None:
                        grad += correction
                    w = w - spec.lr * grad[0]
                if frozen is not None:
                    w[frozen] = held
                taken += 1
        params.append(w)
        steps.append(taken)
        carried.append(carry)
    carry = None if work.carry is None else np.concatenate(carried)
    steps = np.array(steps, dtype=np.int64)
    return CohortResult(params=np.stack(params), num_steps=steps, carry=carry)
