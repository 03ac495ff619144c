"""FedNova (Wang et al. 2020, "Tackling the Objective Inconsistency Problem in Heterogeneous
Federated Optimization", NeurIPS).

Clients that take more local steps pull FedAvg towards their own optimum. FedNova averages each
client's update normalized by its step count a_i (vanilla SGD: a_i = tau_i local steps) and
rescales by the effective step count: with p_i = n_i / sum_j n_j,
w_{t+1} = w_t + tau_eff sum_i p_i (w_i - w_t) / tau_i, tau_eff = sum_i p_i tau_i.
Equal step counts give FedAvg; stragglers' partial work counts at its own weight.
"""

import numpy as np

from flcli.algorithms.base import (
    Algorithm,
    AlgorithmSpec,
    ClientUpdates,
    Context,
    ServerState,
    plain_init,
)


def fednova_update(state: ServerState, updates: ClientUpdates) -> ServerState:
    p = updates.num_samples / updates.num_samples.sum()
    steps = updates.num_steps.astype(np.float64)
    tau_eff = p @ steps
    step = tau_eff * (p @ (updates.deltas / steps[:, None]))
    return ServerState(params=state.params + step, extra=state.extra)


def fednova(ctx: Context) -> Algorithm:
    return Algorithm(name="fednova", server_init=plain_init, server_update=fednova_update)


SPEC = AlgorithmSpec(
    "fednova",
    fednova,
    "Wang et al. 2020 (FedNova)",
    "averages updates normalized by local steps; clients doing unequal work",
    reads_clients="each client's step count to normalize its update",
    own_weighting="it weighs each client by its sample share inside its own normalized rule",
    display_name="FedNova",
)
