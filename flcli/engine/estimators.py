"""Local training of scikit-learn estimators: client by client, through the estimator's own
partial_fit or fit (see flcli.models.sklearn). Same signature and result as the engine's trainers.

An algorithm's gradient correction (FedProx's proximal pull, SCAFFOLD's control variates) cannot
reach inside partial_fit, so it is applied after each local pass: one step
w <- w - lr * correction(w, w_global, per-client inputs) with lr = --lr (flcli.algorithms.work's
correction_at: the linear pull and shift, and the correction function).

The server formulas that divide by the client's step size (SCAFFOLD's option II variates, FedDyn's
gradient state, q-FedAvg's L = 1 / lr) take --lr for it, while the estimator steps with its own
learning rate: their scale is the papers' only when --lr is the estimator's (constant) step.
"""

import numpy as np
from threadpoolctl import threadpool_limits

from flcli.algorithms.work import LocalSpec, LocalWork, correction_at, corrects, steps_per_epoch
from flcli.engine.local import Cohort, CohortResult, epoch_orders
from flcli.errors import RunFailed
from flcli.rng import Purpose, rng


def train_estimators(
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
    with threadpool_limits(limits=1):  # small per-client fits: BLAS threads only contend
        return train_one_by_one(
            model, x, y, cohort, w_global, spec, seed, round, work or LocalWork()
        )


def train_one_by_one(model, x, y, cohort, w_global, spec, seed, round, work: LocalWork):
    """A straggler's step budget (work.max_steps, in --batch-size steps) is honoured by
    partial_fit to the batch: its whole passes, then the first rows of one more. An estimator
    without partial_fit cannot stop inside a pass, so it does its whole passes, at least one."""
    if work.step is not None:  # a user's algorithm (built-in ones say refuses_estimators)
        raise RunFailed(
            f"sklearn:{model.name} trains through its own fit, which cannot take the algorithm's "
            "own local step (LocalWork.step); use a NumPy model such as --model softmax"
        )
    full_passes = spec.epochs if model.mode != "fit" else 1  # a plain refit ignores its start
    per_pass = steps_per_epoch(cohort.sizes, spec.batch_size)
    params, steps = [], []
    for k, (client, start, size) in enumerate(
        zip(cohort.ids, cohort.starts, cohort.sizes, strict=True)
    ):
        random_state = int(rng(seed, Purpose.SHUFFLE, round, client).integers(2**31 - 1))
        anchor = w_global if work.start is None else work.start[k]
        estimator = model.estimator_at(anchor, random_state, spec.batch_size)
        inputs = {name: value[k : k + 1] for name, value in work.inputs.items()}
        shift = None if work.shift is None else work.shift[k : k + 1]
        orders = epoch_orders(seed, round, [client], [size], full_passes).reshape(-1, size)
        budget = None if work.max_steps is None else int(work.max_steps[k])
        taken = 0
        for order in passes_within(orders, budget, int(per_pass[k]), spec.batch_size, model.mode):
            rows = start + order
            try:
                taken += model.local_pass(estimator, x[rows], y[rows])
            except ValueError as failure:
                raise RunFailed(
                    f"sklearn:{model.name} failed on client {client} in round {round}: {failure}"
                ) from None
            if corrects(work):
                w = model.params_of(estimator)
                pull = correction_at(work, w[None], w_global, inputs, shift)[0]
                model.set_params(estimator, w - spec.lr * pull)
        params.append(model.params_of(estimator))
        steps.append(taken)
    return CohortResult(
        params=np.stack(params).astype(x.dtype), num_steps=np.array(steps, dtype=np.int64)
    )


def passes_within(orders: np.ndarray, budget: int | None, per_pass: int, batch: int, mode: str):
    """The row orders of the local passes a budget of steps allows (all of them for None)."""
    if budget is None or budget >= len(orders) * per_pass:
        return list(orders)
    whole = budget // per_pass
    if mode != "partial_fit":
        return list(orders[: max(1, whole)])
    rest = budget - whole * per_pass  # steps into one more pass
    return [*orders[:whole], *([orders[whole][: rest * batch]] if rest else [])]
