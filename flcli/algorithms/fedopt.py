"""Server optimizers over the averaged client update (the FedOpt family).

The clients train as in FedAvg; the server treats Delta_t = sum_k n_k (w_k - w_t) / sum_k n_k as a
pseudo-gradient (an ascent direction) and steps with its own optimizer:

- fedavgm (Hsu et al. 2019, "Measuring the Effects of Non-Identical Data Distribution for Federated
  Visual Classification"): v <- beta v + Delta_t; w <- w + eta_s v. eta_s = 1, beta = 0 is FedAvg.
- fedadagrad, fedadam, fedyogi (Reddi et al. 2021, "Adaptive Federated Optimization", ICLR,
  Algorithm 2): m <- beta1 m + (1 - beta1) Delta_t, then
  Adagrad v <- v + Delta_t^2, Adam v <- beta2 v + (1 - beta2) Delta_t^2,
  Yogi v <- v - (1 - beta2) Delta_t^2 sign(v - Delta_t^2); w <- w + eta_s m / (sqrt(v) + tau).
  As in the paper: no bias correction, v starts at tau^2 (m at 0).
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
)
from flcli.options import Check, within

MOMENTUM = Hyper("Server momentum.", within(0, 1, 0.9))
BETA1 = Hyper("First-moment decay.", within(0, 1, 0.9))
BETA2 = Hyper("Second-moment decay.", within(0, 1, 0.99))
TAU = Hyper("Adaptivity floor.", Check(lambda v: v > 0, "must be > 0, e.g. 0.001"))


def fedavgm(
    ctx: Context,
    server_lr: Annotated[float, SERVER_LR] = 1.0,
    server_momentum: Annotated[float, MOMENTUM] = 0.9,
) -> Algorithm:
    def server_init(params: np.ndarray, num_clients: int) -> ServerState:
        return ServerState(params=params.copy(), extra={"momentum": np.zeros_like(params)})

    def server_update(state: ServerState, updates: ClientUpdates) -> ServerState:
        delta = updates.aggregate(updates.deltas, updates.num_samples)
        velocity = server_momentum * state.extra["momentum"] + delta
        return ServerState(state.params + server_lr * velocity, {"momentum": velocity})

    return Algorithm(name="fedavgm", server_init=server_init, server_update=server_update)


def second_moment(kind: str, v: np.ndarray, square: np.ndarray, beta2: float) -> np.ndarray:
    if kind == "adagrad":
        return v + square
    if kind == "adam":
        return beta2 * v + (1 - beta2) * square
    return v - (1 - beta2) * square * np.sign(v - square)  # yogi


def adaptive(kind: str, server_lr: float, beta1: float, tau: float, beta2: float) -> Algorithm:
    def server_init(params: np.ndarray, num_clients: int) -> ServerState:
        extra = {"m": np.zeros_like(params), "v": np.full_like(params, tau**2)}
        return ServerState(params=params.copy(), extra=extra)

    def server_update(state: ServerState, updates: ClientUpdates) -> ServerState:
        delta = updates.aggregate(updates.deltas, updates.num_samples)
        m = beta1 * state.extra["m"] + (1 - beta1) * delta
        v = second_moment(kind, state.extra["v"], delta * delta, beta2)
        params = state.params + server_lr * m / (np.sqrt(v) + tau)
        return ServerState(params=params, extra={"m": m, "v": v})

    return Algorithm(name=f"fed{kind}", server_init=server_init, server_update=server_update)


def fedadagrad(
    ctx: Context,
    server_lr: Annotated[float, SERVER_LR] = 0.3,
    beta1: Annotated[float, BETA1] = 0.9,
    tau: Annotated[float, TAU] = 1e-3,
) -> Algorithm:
    return adaptive("adagrad", server_lr, beta1, tau, beta2=0.0)


def fedadam(
    ctx: Context,
    server_lr: Annotated[float, SERVER_LR] = 0.1,
    beta1: Annotated[float, BETA1] = 0.9,
    beta2: Annotated[float, BETA2] = 0.99,
    tau: Annotated[float, TAU] = 1e-3,
) -> Algorithm:
    return adaptive("adam", server_lr, beta1, tau, beta2)


def fedyogi(
    ctx: Context,
    server_lr: Annotated[float, SERVER_LR] = 0.1,
    beta1: Annotated[float, BETA1] = 0.9,
    beta2: Annotated[float, BETA2] = 0.99,
    tau: Annotated[float, TAU] = 1e-3,
) -> Algorithm:
    return adaptive("yogi", server_lr, beta1, tau, beta2)


FEDOPT = "Reddi et al. 2021 (FedOpt)"
SPECS = (
    AlgorithmSpec(
        "fedavgm",
        fedavgm,
        "Hsu et al. 2019 (FedAvgM)",
        "server momentum --server-momentum on the averaged update; non-IID, partial sampling",
        display_name="FedAvgM",
    ),
    AlgorithmSpec(
        "fedadagrad",
        fedadagrad,
        FEDOPT,
        "Adagrad on the server; sparse or rarely seen features",
        display_name="FedAdagrad",
    ),
    AlgorithmSpec(
        "fedadam",
        fedadam,
        FEDOPT,
        "Adam on the server; less tuning of the client --lr, heterogeneous data",
        display_name="FedAdam",
    ),
    AlgorithmSpec(
        "fedyogi",
        fedyogi,
        FEDOPT,
        "Yogi on the server; like fedadam with a steadier effective step",
        display_name="FedYogi",
    ),
)
