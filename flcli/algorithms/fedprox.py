"""FedProx (Li et al. 2020, "Federated Optimization in Heterogeneous Networks", MLSys).

Each client minimizes F_k(w) + mu/2 ||w - w_t||^2 from the global model w_t, so every local step
is w <- w - eta (grad F_k(w) + mu (w - w_t)); the server takes the sample-weighted mean as FedAvg
does. Stragglers' partial work is aggregated, not dropped (the paper's systems heterogeneity).
"""

from functools import partial

import numpy as np

from flcli.algorithms.base import Algorithm, Context, ServerState, plain_init
from flcli.algorithms.fedavg import fedavg_update
from flcli.engine.local import LocalWork


def proximal(W: np.ndarray, anchor: np.ndarray, *, mu: float) -> np.ndarray:
    """Gradient of mu/2 ||w - anchor||^2 for each row of W."""
    return mu * (W - anchor)


def fedprox(ctx: Context, mu: float) -> Algorithm:
    correction = partial(proximal, mu=mu)

    def client_work(state: ServerState, ids: np.ndarray) -> LocalWork:
        return LocalWork(correction=correction)

    return Algorithm(
        name="fedprox",
        server_init=plain_init,
        server_update=fedavg_update,
        client_work=client_work,
    )
