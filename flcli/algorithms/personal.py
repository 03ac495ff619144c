"""Personalization: every client of a round also ends up with a model of its own, scored on its
local test split (personal_accuracy in rounds.csv).

- ditto (Li, Hu, Beirami, Smith 2021, "Ditto: Fair and Robust Federated Learning Through
  Personalization", ICML): the global model is trained as in FedAvg; each sampled client k also
  updates its personal model v_k (kept across rounds, starting at the initial model) for
  --personal-epochs of SGD on F_k(v) + lambda/2 ||v - w_t||^2:
  v_k <- v_k - eta (grad F_k(v_k) + lambda (v_k - w_t)), w_t the global model it received.
- fedavglu (FedAvg with a local update, the seed article's personalization baseline): after the
  server's FedAvg step, each sampled client fine-tunes the new global model w_{t+1} on its own data
  for --personal-epochs of plain SGD; the fine-tuned model is scored, then discarded.
"""

from typing import Annotated

import numpy as np

from flcli.algorithms.aggregate import scatter
from flcli.algorithms.base import (
    PERSONAL_EPOCHS,
    Algorithm,
    AlgorithmSpec,
    Context,
    Hyper,
    ServerState,
    Train,
    as_new_clients,
)
from flcli.algorithms.fedavg import fedavg_update
from flcli.algorithms.work import LocalWork
from flcli.options import Check

LAMBDA = Hyper(
    "Pull of personal models to the global one.",
    Check(lambda v: v >= 0, "must be >= 0, e.g. 0.1"),
    flag="--lambda",
)
DITTO_EPOCHS = Hyper(
    PERSONAL_EPOCHS.help + " Default: --local-epochs.",
    PERSONAL_EPOCHS.check,
    default_from="local_epochs",
)


def ditto(
    ctx: Context,
    lam: Annotated[float, LAMBDA] = 0.1,
    personal_epochs: Annotated[int | None, DITTO_EPOCHS] = None,
) -> Algorithm:
    def server_init(params: np.ndarray, num_clients: int) -> ServerState:
        return ServerState(params.copy(), {"personal": np.tile(params, (num_clients, 1))})

    def personalize(before: ServerState, after: ServerState, ids: np.ndarray, train: Train):
        work = LocalWork(pull=lam, start=before.extra["personal"][ids])
        personal = train(before.params, work, personal_epochs).params
        extra = {**after.extra, "personal": scatter(after.extra["personal"], ids, personal)}
        return ServerState(params=after.params, extra=extra), personal

    def personalize_new(state: ServerState, ids: np.ndarray, train: Train, losses):
        """A new client's personal model starts at the global model (as every v_k starts at the
        initial one) and trains by Ditto's rule around it."""
        return train(state.params, LocalWork(pull=lam), personal_epochs).params

    return Algorithm(
        name="ditto",
        server_init=server_init,
        server_update=fedavg_update,
        personalize=personalize,
        personalize_new=personalize_new,
    )


def fedavglu(ctx: Context, personal_epochs: Annotated[int, PERSONAL_EPOCHS] = 1) -> Algorithm:
    def personalize_new(state: ServerState, ids: np.ndarray, train: Train, losses):
        return train(state.params, LocalWork(), personal_epochs).params

    def server_init(params: np.ndarray, num_clients: int) -> ServerState:
        return ServerState(params=params.copy())

    return Algorithm(
        name="fedavglu",
        server_init=server_init,
        server_update=fedavg_update,
        personalize=as_new_clients(personalize_new),
        personalize_new=personalize_new,
    )


SPECS = (
    AlgorithmSpec(
        "ditto",
        ditto,
        "Li et al. 2021 (Ditto)",
        "a personal model per client pulled to the global one by --lambda; personalization",
        personalizes=True,
        display_name="Ditto",
        client_state=1,
    ),
    AlgorithmSpec(
        "fedavglu",
        fedavglu,
        "FedAvg with a local update",
        "each client fine-tunes the global model (--personal-epochs); cheap personalization",
        personalizes=True,
        display_name="FedAvg+LU",
    ),
)
