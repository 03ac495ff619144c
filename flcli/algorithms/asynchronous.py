"""Asynchronous FL: the server updates as clients arrive, not in rounds (flcli.engine.asynchronous
runs them on an event queue of simulated arrival times, --concurrency clients training at once).

Staleness tau of an update: server updates made since the model its client started from.

FedAsync (Xie, Koyejo and Gupta 2019, "Asynchronous Federated Optimization"), every arrival:
    x_t = (1 - alpha_t) x_{t-1} + alpha_t x_new,  alpha_t = alpha * s(tau)
with s constant (1), polynomial s_a(tau) = (tau + 1)^(-a), or hinge s_{a,b}(tau) = 1 if tau <= b
else 1 / (a (tau - b) + 1) (the paper's section 5.2).

FedBuff (Nguyen et al. 2022, "Federated Learning with Buffered Asynchronous Aggregation",
Algorithm 1), every K arrivals with local updates Delta_k = x_k - x_start(k):
    x <- x + eta_g * (1/K) sum_k s(tau_k) Delta_k,  s(tau) = 1 / sqrt(1 + tau)
(the paper's staleness scaling; `--staleness-scaling none` takes s = 1). The paper's mean is the
plain one over the buffer: each arrival counts once, whatever its sample count.
"""

from typing import Annotated

import numpy as np

from flcli.algorithms.base import (
    SERVER_LR,
    Algorithm,
    AlgorithmSpec,
    ClientUpdates,
    Context,
    Hyper,
    ServerState,
    plain_init,
)
from flcli.options import Check, within

MIXING = Hyper(
    "FedAsync's mixing weight alpha of an arriving model.",
    within(0, 1, 0.6, "(]"),
)
STALENESS_FN = Hyper(
    "FedAsync's staleness function: constant, polynomial or hinge.",
    Check(
        lambda v: v in ("constant", "polynomial", "hinge"), ": choose constant, polynomial or hinge"
    ),
)
STALENESS_A = Hyper(
    "a of FedAsync's polynomial (tau+1)^-a or hinge 1/(a(tau-b)+1).",
    Check(lambda v: v >= 0, "must be >= 0, e.g. 0.5"),
)
STALENESS_B = Hyper(
    "b of FedAsync's hinge: updates at most b stale keep the full weight.",
    Check(lambda v: isinstance(v, int) and v >= 0, "must be an integer >= 0, e.g. 4"),
)
BUFFER = Hyper(
    "FedBuff's K: arrivals per server update.",
    Check(lambda v: isinstance(v, int) and v >= 1, "must be a positive integer, e.g. 10"),
)
SCALING = Hyper(
    "FedBuff's staleness scaling: sqrt (1/sqrt(1+tau)) or none.",
    Check(lambda v: v in ("sqrt", "none"), ": choose sqrt or none"),
)


def staleness_weight(tau: np.ndarray, function: str, a: float, b: int) -> np.ndarray:
    """FedAsync's s(tau) for each staleness."""
    tau = np.asarray(tau, dtype=np.float64)
    if function == "constant":
        return np.ones_like(tau)
    if function == "polynomial":
        return (tau + 1.0) ** (-a)
    return np.where(tau <= b, 1.0, 1.0 / (a * (tau - b) + 1.0))


def fedasync(
    ctx: Context,
    mixing: Annotated[float, MIXING] = 0.6,
    staleness_fn: Annotated[str, STALENESS_FN] = "polynomial",
    staleness_a: Annotated[float | None, STALENESS_A] = None,
    staleness_b: Annotated[int, STALENESS_B] = 4,
) -> Algorithm:
    a = staleness_a if staleness_a is not None else (10.0 if staleness_fn == "hinge" else 0.5)

    def server_update(state: ServerState, updates: ClientUpdates) -> ServerState:
        params = state.params
        for local, tau in zip(updates.params, updates.staleness, strict=True):
            weight = mixing * float(staleness_weight(tau, staleness_fn, a, staleness_b))
            params = (1.0 - weight) * params + weight * local
        return ServerState(params=params.astype(state.params.dtype, copy=False), extra=state.extra)

    return Algorithm("fedasync", plain_init, server_update, buffer_size=1)


def fedbuff(
    ctx: Context,
    buffer_size: Annotated[int, BUFFER] = 10,
    server_lr: Annotated[float, SERVER_LR] = 1.0,
    staleness_scaling: Annotated[str, SCALING] = "sqrt",
) -> Algorithm:
    def server_update(state: ServerState, updates: ClientUpdates) -> ServerState:
        tau = np.asarray(updates.staleness, dtype=np.float64)
        scale = 1.0 / np.sqrt(1.0 + tau) if staleness_scaling == "sqrt" else np.ones_like(tau)
        step = (scale.astype(updates.deltas.dtype) @ updates.deltas) / len(tau)
        return ServerState(params=state.params + server_lr * step, extra=state.extra)

    return Algorithm("fedbuff", plain_init, server_update, buffer_size=buffer_size)


READS = "every arrival's local model and staleness, one by one"
SPECS = (
    AlgorithmSpec(
        "fedasync",
        fedasync,
        "Xie et al. 2019",
        "asynchronous: mixes each arriving model in at alpha * s(staleness); --concurrency "
        "clients train at once",
        reads_clients=READS,
        refuses_estimators="trains on an event queue of local SGD runs",
        asynchronous=True,
        display_name="FedAsync",
    ),
    AlgorithmSpec(
        "fedbuff",
        fedbuff,
        "Nguyen et al. 2022",
        "asynchronous: a server step every K arrivals, stale updates scaled by 1/sqrt(1+tau); "
        "fast under slow, heterogeneous devices",
        reads_clients=READS,
        refuses_estimators="trains on an event queue of local SGD runs",
        asynchronous=True,
        display_name="FedBuff",
    ),
)
