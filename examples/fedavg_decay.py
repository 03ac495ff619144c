"""FedAvg with a decaying server step, an algorithm from its own file:
`fl train P --algo examples/fedavg_decay.py:fedavg_decay --algo-arg decay=0.8`.

w <- w + eta_t * sum_k n_k delta_k / sum_k n_k, with eta_1 = server_lr and eta_{t+1} = decay * eta_t
(server_lr = 1 and decay = 1 is FedAvg). The step lives in the server state, so a resumed run
continues with the step it had reached.
"""

from typing import Annotated

import numpy as np

from flcli.algorithms.base import Algorithm, ClientUpdates, Context, Hyper, ServerState
from flcli.options import Check

STEP = Hyper("Server step at round 1.", Check(lambda v: v > 0, "must be > 0, e.g. 1.0"))


def fedavg_decay(
    ctx: Context, server_lr: Annotated[float, STEP] = 1.0, decay: float = 0.9
) -> Algorithm:
    """FedAvg whose server step shrinks by `decay` every round."""

    def server_init(params, num_clients):
        return ServerState(params=params.copy(), extra={"step": np.array(server_lr)})

    def server_update(state: ServerState, updates: ClientUpdates) -> ServerState:
        mean = updates.aggregate(updates.deltas, updates.num_samples)
        step = state.extra["step"]
        return ServerState(state.params + step * mean, {"step": step * decay})

    return Algorithm(name="fedavg_decay", server_init=server_init, server_update=server_update)
