"""FedExP, an algorithm from its own file: `fl train P --algo examples/fedexp.py:SPEC`.

Jhunjhunwala, Wang, Joshi 2023, "FedExP: Speeding Up Federated Averaging via Extrapolation"
(ICLR). The clients train as in FedAvg; the server extrapolates along the clients' mean update
with a step size adapted from the updates' spread (a pseudo-gradient step in the spirit of the
Polyak step size):

    mean = (1/M) sum_i delta_i
    eta_g = max(1, sum_i ||delta_i||^2 / (2 M (||mean||^2 + epsilon)))
    w <- w + eta_g * mean

When the clients agree (all delta_i equal) eta_g is 1 and FedExP is FedAvg with a uniform mean;
the more their updates cancel in the mean, the larger the step along what they share.

This file is what a plugin author writes: a factory whose keyword parameters are the
hyperparameters (their defaults are the defaults, Hyper gives help and a check), returning an
Algorithm of pure functions over explicit state, and a SPEC that says what the server reads
(here each client's update norm, so DP, secure aggregation and robust aggregators, which replace
only the mean, are refused for it).
"""

from typing import Annotated

from flcli.algorithms.base import (
    Algorithm,
    AlgorithmSpec,
    ClientUpdates,
    Context,
    Hyper,
    ServerState,
    plain_init,
)
from flcli.options import Check

EPSILON = Hyper(
    "Added to ||mean||^2 so that the step stays finite when the updates cancel.",
    Check(lambda v: v > 0, "must be > 0, e.g. 0.001"),
)


def fedexp(ctx: Context, epsilon: Annotated[float, EPSILON] = 1e-3) -> Algorithm:
    def server_update(state: ServerState, updates: ClientUpdates) -> ServerState:
        deltas = updates.deltas
        mean = deltas.mean(axis=0)
        spread = float((deltas * deltas).sum()) / (2 * len(deltas))
        step = max(1.0, spread / (float(mean @ mean) + epsilon))
        return ServerState(params=state.params + step * mean, extra=state.extra)

    return Algorithm(name="fedexp", server_init=plain_init, server_update=server_update)


SPEC = AlgorithmSpec(
    "fedexp",
    fedexp,
    "Jhunjhunwala et al. 2023 (FedExP)",
    "FedAvg with a server step extrapolated from the spread of the clients' updates",
    reads_clients="each client's update norm to set the server step",
)
