"""Local training of scikit-learn estimators: client by client, through the estimator's own
partial_fit or fit (see flcli.models.sklearn). Same signature and result as the engine's trainers.

An algorithm's gradient correction (FedProx's proximal pull, SCAFFOLD's control variates) cannot
reach inside partial_fit, so it is applied after each local pass: one step
w <- w - lr * correction(w, w_global) with lr = --lr.
"""

import numpy as np
from threadpoolctl import threadpool_limits

from flcli.engine.local import Cohort, CohortResult, LocalSpec, epoch_orders
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
    correction=None,
) -> CohortResult:
    with threadpool_limits(limits=1):  # small per-client fits: BLAS threads only contend
        return train_one_by_one(model, x, y, cohort, w_global, spec, seed, round, correction)


def train_one_by_one(model, x, y, cohort, w_global, spec, seed, round, correction):
    passes = spec.epochs if model.mode != "fit" else 1  # a plain refit ignores its start
    params, steps = [], []
    for client, start, size in zip(cohort.ids, cohort.starts, cohort.sizes, strict=True):
        random_state = int(rng(seed, Purpose.SHUFFLE, round, client).integers(2**31 - 1))
        estimator = model.estimator_at(w_global, random_state, spec.batch_size)
        orders = epoch_orders(seed, round, [client], [size], passes).reshape(passes, size)
        taken = 0
        for order in orders:
            rows = start + order
            try:
                taken += model.local_pass(estimator, x[rows], y[rows])
            except ValueError as failure:
                raise RunFailed(
                    f"sklearn:{model.name} failed on client {client} in round {round}: {failure}"
                ) from None
            if correction is not None:
                w = model.params_of(estimator)
                model.set_params(estimator, w - spec.lr * correction(w[None], w_global)[0])
        params.append(model.params_of(estimator))
        steps.append(taken)
    return CohortResult(
        params=np.stack(params).astype(x.dtype), num_steps=np.array(steps, dtype=np.int64)
    )
