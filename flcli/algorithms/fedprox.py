"""FedProx (Li et al. 2020, "Federated Optimization in Heterogeneous Networks", MLSys).

Each client minimizes F_k(w) + mu/2 ||w - w_t||^2 from the global model w_t, so every local step
is w <- w - eta (grad F_k(w) + mu (w - w_t)); the server takes the sample-weighted mean as FedAvg
does. Stragglers' partial work is aggregated, not dropped (the paper's systems heterogeneity).
"""

from typing import Annotated

import numpy as np

from flcli.algorithms.base import Algorithm, AlgorithmSpec, Context, Hyper, ServerState, plain_init
from flcli.algorithms.fedavg import fedavg_update
from flcli.algorithms.work import LocalWork
from flcli.options import Check

MU = Hyper("Proximal term weight.", Check(lambda v: v >= 0, "must be >= 0, e.g. 0.01"))


def fedprox(ctx: Context, mu: Annotated[float, MU] = 0.01) -> Algorithm:
    def client_work(state: ServerState, ids: np.ndarray) -> LocalWork:
        return LocalWork(pull=mu)  # the gradient of mu/2 ||w - w_t||^2

    return Algorithm(
        name="fedprox",
        server_init=plain_init,
        server_update=fedavg_update,
        client_work=client_work,
    )


SPEC = AlgorithmSpec(
    "fedprox",
    fedprox,
    "Li et al. 2020 (FedProx)",
    "proximal term --mu keeps local models near the global one; non-IID data, stragglers",
    display_name="FedProx",
)
