"""FedAvg (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from
Decentralized Data").

Each sampled client k runs E epochs of minibatch SGD from the global model w_t; the server takes
the sample-size-weighted mean of the local models: w_{t+1} = sum_k n_k w_k / sum_k n_k
(equivalently w_t + sum_k n_k (w_k - w_t) / sum_k n_k).
"""

from flcli.algorithms.base import (
    Algorithm,
    AlgorithmSpec,
    ClientUpdates,
    Context,
    ServerState,
    plain_init,
)


def fedavg_update(state: ServerState, updates: ClientUpdates) -> ServerState:
    step = updates.aggregate(updates.deltas, updates.num_samples)
    return ServerState(params=state.params + step, extra=state.extra)


def fedavg(ctx: Context) -> Algorithm:
    return Algorithm(name="fedavg", server_init=plain_init, server_update=fedavg_update)


SPEC = AlgorithmSpec(
    "fedavg",
    fedavg,
    "McMahan et al. 2017",
    "weighted mean of locally trained models; the baseline to beat (drops stragglers)",
    drop_stragglers=True,
    display_name="FedAvg",
)
