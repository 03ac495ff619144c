"""FedSGD (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from
Decentralized Data", the baseline of FedAvg).

Each sampled client computes one gradient g_k of its loss on its whole shard at the global model;
the server steps along their sample-weighted mean: w_{t+1} = w_t - eta_s sum_k n_k g_k / sum_k n_k.
With every client sampled this is centralized full-batch gradient descent with step eta_s.
"""

from typing import Annotated

from flcli.algorithms.base import (
    SERVER_LR,
    Algorithm,
    AlgorithmSpec,
    ClientUpdates,
    Context,
    ServerState,
    plain_init,
)
from flcli.algorithms.work import LocalSpec

WHOLE_SHARD = 2**62  # a batch size no shard reaches: one step over all of a client's samples


def fedsgd(ctx: Context, server_lr: Annotated[float, SERVER_LR] = 0.5) -> Algorithm:
    def local_spec(spec: LocalSpec) -> LocalSpec:
        return LocalSpec(epochs=1, batch_size=WHOLE_SHARD, lr=1.0)  # delta = -g_k

    def server_update(state: ServerState, updates: ClientUpdates) -> ServerState:
        mean_delta = updates.aggregate(updates.deltas, updates.num_samples)
        return ServerState(params=state.params + server_lr * mean_delta, extra=state.extra)

    return Algorithm(
        name="fedsgd", server_init=plain_init, server_update=server_update, local_spec=local_spec
    )


SPEC = AlgorithmSpec(
    "fedsgd",
    fedsgd,
    "McMahan et al. 2017",
    "one full-batch gradient per client, a server step; the no-local-work reference",
    refuses_estimators="needs one full-batch gradient step per client, which an estimator's "
    "own fit does not take",
    display_name="FedSGD",
)
