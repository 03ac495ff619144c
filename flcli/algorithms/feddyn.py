"""FedDyn (Acar et al. 2021, "Federated Learning Based on Dynamic Regularization", ICLR).

Client k keeps g_k (the gradient of its loss at its last local model; 0 at first) and minimizes
L_k(w) - <g_k, w> + alpha/2 ||w - w_{t-1}||^2, so each local step adds alpha (w - w_{t-1}) - g_k
to the gradient. Afterwards g_k <- g_k - alpha (w_k - w_{t-1}). The server keeps h:
h <- h - (alpha / N) sum_{k in S} (w_k - w_{t-1});  w_t = (1/|S|) sum_{k in S} w_k - h / alpha.
(N: all clients; S: the round's participants; uniform means, as in the paper.)
"""

from typing import Annotated

import numpy as np

from flcli.algorithms.aggregate import scatter
from flcli.algorithms.base import (
    STEP_SIZE_CAVEAT,
    Algorithm,
    AlgorithmSpec,
    ClientUpdates,
    Context,
    Hyper,
    ServerState,
)
from flcli.algorithms.work import LocalWork
from flcli.options import Check

ALPHA = Hyper("Dynamic regularization weight.", Check(lambda v: v > 0, "must be > 0, e.g. 0.01"))


def feddyn(ctx: Context, alpha_dyn: Annotated[float, ALPHA] = 0.01) -> Algorithm:
    alpha = alpha_dyn

    def server_init(params: np.ndarray, num_clients: int) -> ServerState:
        extra = {"h": np.zeros_like(params), "client_grad": np.zeros((num_clients, params.size))}
        return ServerState(params=params.copy(), extra=extra)

    def client_work(state: ServerState, ids: np.ndarray) -> LocalWork:
        """The gradient of alpha/2 ||w - w_{t-1}||^2 - <g_k, w>."""
        return LocalWork(pull=alpha, shift=-state.extra["client_grad"][ids])

    def server_update(state: ServerState, updates: ClientUpdates) -> ServerState:
        grads = state.extra["client_grad"]
        new_grads = grads[updates.ids] - alpha * updates.deltas
        h = state.extra["h"] - alpha * updates.deltas.sum(axis=0) / ctx.num_clients
        params = state.params + updates.deltas.mean(axis=0) - h / alpha
        extra = {"h": h, "client_grad": scatter(grads, updates.ids, new_grads)}
        return ServerState(params=params, extra=extra)

    return Algorithm(
        name="feddyn",
        server_init=server_init,
        server_update=server_update,
        client_work=client_work,
    )


SPEC = AlgorithmSpec(
    "feddyn",
    feddyn,
    "Acar et al. 2021 (FedDyn)",
    "dynamic regularization --alpha-dyn aligns local and global optima; full participation",
    reads_clients="each client's update for its gradient state and the uniform mean",
    own_weighting="its means are uniform already",
    approximate_with_estimators=STEP_SIZE_CAVEAT,
    display_name="FedDyn",
    client_state=1,
)
