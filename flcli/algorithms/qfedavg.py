"""q-FedAvg (Li, Sanjabi, Beirami, Smith 2020, "Fair Resource Allocation in Federated Learning",
ICLR): minimizes the q-FFL objective sum_k p_k F_k^{q+1} / (q + 1), which weighs clients with a
high loss more as q grows (q = 0 is FedAvg's objective).

With F_k the global model's loss on client k's data, L = 1 / eta (eta: the local learning rate) and
Dw_k = L (w_t - w_k) from the client's local training:
Delta_k = F_k^q Dw_k,  h_k = q F_k^(q-1) ||Dw_k||^2 + L F_k^q,
w_{t+1} = w_t - sum_k p_k Delta_k / sum_k p_k h_k,  p_k = n_k / sum_j n_j.
(The paper samples clients with probability p_k and sums uniformly; flcli samples uniformly, so
the sums carry p_k. The reference code adds 1e-10 to F_k; so does this.)
"""

from typing import Annotated

import numpy as np

from flcli.algorithms.base import (
    STEP_SIZE_CAVEAT,
    Algorithm,
    AlgorithmSpec,
    ClientUpdates,
    Context,
    Hyper,
    ServerState,
    plain_init,
)
from flcli.options import Check

Q = Hyper("Fairness exponent.", Check(lambda v: v >= 0, "must be >= 0, e.g. 1"))


def qfedavg(ctx: Context, q: Annotated[float, Q] = 0.1) -> Algorithm:
    lipschitz = 1.0 / ctx.lr

    def server_update(state: ServerState, updates: ClientUpdates) -> ServerState:
        p = updates.num_samples / updates.num_samples.sum()
        loss = updates.losses + 1e-10
        grads = -lipschitz * updates.deltas  # L (w_t - w_k)
        deltas = np.float_power(loss, q)[:, None] * grads
        h = q * np.float_power(loss, q - 1) * (grads * grads).sum(axis=1)
        h = h + lipschitz * np.float_power(loss, q)
        return ServerState(params=state.params - (p @ deltas) / (p @ h), extra=state.extra)

    return Algorithm(
        name="qfedavg",
        server_init=plain_init,
        server_update=server_update,
        needs_client_losses=True,
    )


SPEC = AlgorithmSpec(
    "qfedavg",
    qfedavg,
    "Li et al. 2020 (q-FFL)",
    "weighs clients with a high loss more (--q); when the worst clients matter (fairness)",
    reads_clients="each client's loss and update norm",
    own_weighting="it weighs each client by its sample share and its loss, by its own rule",
    approximate_with_estimators=STEP_SIZE_CAVEAT,
    display_name="q-FedAvg",
)
