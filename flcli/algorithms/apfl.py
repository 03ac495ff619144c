"""APFL (Deng, Kamani, Mahdavi 2020, "Adaptive Personalized Federated Learning",
arXiv:2003.13461), with a fixed mixing weight alpha (--apfl-alpha).

Every client k keeps a personal model v_k (kept across rounds, starting at the initial model).
In each local step on minibatch xi, from the step's start values,
    w_k <- w_k - eta grad F_k(w_k; xi)
    v_k <- v_k - eta grad_v F_k(vbar_k; xi) = v_k - eta alpha grad F_k(vbar_k; xi),
    vbar_k = alpha v_k + (1 - alpha) w_k,
eta being --lr. The server averages the local models w_k as FedAvg does (the aggregate). A
client's personal model is vbar_k = alpha v_k + (1 - alpha) w_{t+1}, its personal model mixed
with the new global one (the paper's output). alpha = 0 is FedAvg (v never moves and the personal
model is the global one); alpha = 1 trains v_k alone, a local model.

Memory: [N, P] personal models in ServerState.extra (in the checkpoint), as Ditto's. The
adaptive alpha of the paper (alpha_k <- alpha_k - eta <v_k - w_k, grad F_k(vbar_k)>) is not built.
"""

from functools import partial
from typing import Annotated

import numpy as np

from flcli.algorithms.aggregate import scatter
from flcli.algorithms.base import Algorithm, AlgorithmSpec, Context, Hyper, ServerState, Train
from flcli.algorithms.fedavg import fedavg_update
from flcli.algorithms.work import LocalWork
from flcli.options import within

ALPHA = Hyper(
    "APFL's mixing weight alpha of the personal model in alpha v + (1 - alpha) w.",
    within(0, 1, 0.25, "[]"),
)


def apfl_step(model, W, X, y, mask, lr, anchor, *, carry, alpha: float) -> None:
    """One APFL step of the cohort: W (the local models w) and carry (the personal models v),
    both in place, from their values at the step's start."""
    mixed = alpha * carry + (1 - alpha) * W
    _, personal = model.loss_grad(mixed, X, y, mask, scale=lr * alpha)
    _, local = model.loss_grad(W, X, y, mask, scale=lr)
    W -= local
    carry -= personal


def apfl(ctx: Context, apfl_alpha: Annotated[float, ALPHA] = 0.25) -> Algorithm:
    step = partial(apfl_step, alpha=apfl_alpha)

    def server_init(params: np.ndarray, num_clients: int) -> ServerState:
        return ServerState(params.copy(), {"personal": np.tile(params, (num_clients, 1))})

    def client_work(state: ServerState, ids: np.ndarray) -> LocalWork:
        return LocalWork(step=step, carry=state.extra["personal"][ids])

    def carried(state: ServerState, ids: np.ndarray, carry: np.ndarray) -> ServerState:
        personal = scatter(state.extra["personal"], ids, carry)
        return ServerState(state.params, {**state.extra, "personal": personal}, state.uplink)

    def personalize(before: ServerState, after: ServerState, ids: np.ndarray, train: Train):
        mixed = apfl_alpha * after.extra["personal"][ids] + (1 - apfl_alpha) * after.params
        return after, mixed

    def personalize_new(state: ServerState, ids: np.ndarray, train: Train, losses):
        """A new client's v starts at the global model and trains alongside w by APFL's step
        for a round's local epochs; its personal model mixes that v with the global model."""
        start = np.tile(state.params, (len(ids), 1))
        v = train(state.params, LocalWork(step=step, carry=start), ctx.local_epochs).carry
        return apfl_alpha * v + (1 - apfl_alpha) * state.params

    return Algorithm(
        name="apfl",
        server_init=server_init,
        server_update=fedavg_update,
        client_work=client_work,
        carried=carried,
        personalize=personalize,
        personalize_new=personalize_new,
    )


SPEC = AlgorithmSpec(
    "apfl",
    apfl,
    "Deng et al. 2020 (APFL)",
    "each client mixes a personal model with the global one by --apfl-alpha; personalization",
    personalizes=True,
    refuses_estimators=(
        "its local step also trains a personal model, which a scikit-learn estimator's fit cannot"
    ),
    display_name="APFL",
    client_state=1,
)
