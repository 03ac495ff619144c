"""SCAFFOLD (Karimireddy et al. 2020, "SCAFFOLD: Stochastic Controlled Averaging for Federated
Learning", ICML), with option II control variates.

The server keeps a control variate c and every client one c_i (zero until the client first trains,
kept across rounds). Local steps are corrected for client drift: y <- y - eta_l (g_i(y) + c - c_i).
After K_i steps from x, option II: c_i+ = c_i - c + (x - y_i) / (K_i eta_l). The server moves
x <- x + eta_g sum_i n_i (y_i - x) / sum_i n_i and c <- c + (1/N) sum_{i in S} (c_i+ - c_i).
(The paper averages the model deltas uniformly; weighting by n_i, as NIID-Bench does, keeps
SCAFFOLD equal to FedAvg when the corrections vanish on clients of different sizes.)
"""

from typing import Annotated

import numpy as np

from flcli.algorithms.aggregate import scatter
from flcli.algorithms.base import (
    SERVER_LR,
    STEP_SIZE_CAVEAT,
    Algorithm,
    AlgorithmSpec,
    ClientUpdates,
    Context,
    ServerState,
)
from flcli.algorithms.work import LocalWork


def scaffold(ctx: Context, server_lr: Annotated[float, SERVER_LR] = 1.0) -> Algorithm:
    def server_init(params: np.ndarray, num_clients: int) -> ServerState:
        extra = {"c": np.zeros_like(params), "client_c": np.zeros((num_clients, params.size))}
        return ServerState(params=params.copy(), extra=extra)

    def client_work(state: ServerState, ids: np.ndarray) -> LocalWork:
        return LocalWork(shift=state.extra["c"][None, :] - state.extra["client_c"][ids])

    def server_update(state: ServerState, updates: ClientUpdates) -> ServerState:
        c, client_c = state.extra["c"], state.extra["client_c"]
        old = client_c[updates.ids]
        new = old - c - updates.deltas / (updates.num_steps[:, None] * ctx.lr)
        step = updates.aggregate(updates.deltas, updates.num_samples)
        extra = {
            "c": c + (new - old).sum(axis=0) / ctx.num_clients,
            "client_c": scatter(client_c, updates.ids, new),
        }
        return ServerState(params=state.params + server_lr * step, extra=extra)

    return Algorithm(
        name="scaffold",
        server_init=server_init,
        server_update=server_update,
        client_work=client_work,
        models_per_message=2,
    )


SPEC = AlgorithmSpec(
    "scaffold",
    scaffold,
    "Karimireddy et al. 2020 (SCAFFOLD)",
    "control variates cancel client drift; strong label skew, many local steps",
    reads_clients="each client's update to set its control variate",
    approximate_with_estimators=STEP_SIZE_CAVEAT,
    display_name="SCAFFOLD",
    client_state=1,
)
