"""Personalization by a local step of the algorithm's own (LocalWork.step): every local step looks
at the client's loss at more than one point. Write eta for --lr, F_k(w; D) for client k's mean
loss on the rows D, B for the minibatch of a local step.

- per-fedavg (Fallah, Mokhtari, Ozdaglar 2020, "Personalized Federated Learning with Theoretical
  Guarantees: A Model-Agnostic Meta-Learning Approach", NeurIPS, Algorithm 1). Each local step
  adapts w~ = w - alpha grad F_k(w; D) with alpha = --lr, then moves the meta-model
    first order (--variant fo):   w <- w - beta grad F_k(w~; D')
    Hessian-free (--variant hf):  w <- w - beta (g - alpha d),  g = grad F_k(w~; D'),
                                  d = (grad F_k(w + delta g; D'') - grad F_k(w - delta g; D''))
                                      / (2 delta)
  with beta = --beta (default: --lr, so alpha = beta = eta) and delta = --delta: d approximates
  the Hessian-vector product hess F_k(w; D'') g of the exact MAML gradient
  (I - alpha hess F_k(w; D'')) g to O(delta^2), by two gradients instead of a Hessian.
  D, D' (and D'') are disjoint parts of the step's minibatch B: its even and odd positions
  (fo), its positions 0, 1, 2 mod 3 (hf). The server averages the local models as FedAvg does.
  A client's personal model is the new global model after one SGD step at alpha on one
  minibatch of its own training rows (the paper's evaluation).
- pfedme (T. Dinh, Tran, Nguyen 2020, "Personalized Federated Learning with Moreau Envelopes",
  NeurIPS): each local step solves the Moreau envelope's inner problem on its minibatch B
  approximately, theta = argmin_theta F_k(theta; B) + lambda/2 ||theta - w||^2, by --inner-steps
  (K) steps of gradient descent at --personal-lr (nu) started at w:
  theta <- theta - nu (grad F_k(theta; B) + lambda (theta - w)); then w <- w - eta lambda
  (w - theta). The server moves w <- (1 - beta) w + beta sum_k n_k w_k / sum_k n_k with beta =
  --server-beta (so beta = 1 is the average of the local models). A client's personal model is
  theta for its next minibatch around the new global model: K inner steps from w_{t+1} on one
  minibatch of its rows.

Neither keeps per-client state (the personal models are recomputed each round from the global
model): memory is FedAvg's, plus one [A, P] copy per step (the adapted model or theta). Each step
costs 2 (per-fedavg) or K (pfedme) gradient evaluations over the minibatch.
"""

from functools import partial
from typing import Annotated

import numpy as np

from flcli.algorithms.base import (
    Algorithm,
    AlgorithmSpec,
    ClientUpdates,
    Context,
    Hyper,
    ServerState,
    Train,
    as_new_clients,
    plain_init,
)
from flcli.algorithms.fedavg import fedavg_update
from flcli.algorithms.work import LocalWork
from flcli.options import Check

POSITIVE = Check(lambda v: v > 0, "must be > 0, e.g. 0.05")
BETA = Hyper(
    "Per-FedAvg's outer (meta) step beta; the inner step alpha is --lr. Default: --lr.", POSITIVE
)
VARIANT = Hyper(
    "Per-FedAvg's variant: fo (first order) or hf (Hessian-free, a finite-difference "
    "Hessian-vector product).",
    Check(lambda v: v in ("fo", "hf"), "must be fo or hf"),
)
DELTA = Hyper("Per-FedAvg (HF)'s finite-difference step delta.", POSITIVE)
PFEDME_LAMBDA = Hyper(
    "pFedMe's lambda: the pull of personal models to the local one.",
    POSITIVE,
    flag="--pfedme-lambda",
)
PERSONAL_LR = Hyper("pFedMe's inner step nu on the personal model theta.", POSITIVE)
INNER_STEPS = Hyper(
    "pFedMe's K: gradient steps that solve each step's inner problem.",
    Check(lambda v: isinstance(v, int) and 1 <= v <= 1000, "must be an integer in 1..1000, e.g. 5"),
)
SERVER_BETA = Hyper(
    "pFedMe's server step beta: w <- (1 - beta) w + beta * mean of the local models.",
    Check(lambda v: 0 < v <= 10, "must be in (0, 10], e.g. 1.0"),
)
OWN_STEP = (
    "its local step is its own (LocalWork.step), which a scikit-learn estimator's fit cannot take"
)


def parts(mask: np.ndarray, count: int) -> list[np.ndarray]:
    """mask [A, B] cut into `count` disjoint masks by position modulo count."""
    cut = []
    for part in range(count):
        mine = np.zeros_like(mask)
        mine[:, part::count] = mask[:, part::count]
        cut.append(mine)
    return cut


def meta_step(
    model, W, X, y, mask, lr, anchor, *, beta: float, variant: str = "fo", delta: float = 1e-3
) -> None:
    """Per-FedAvg's local step, in place: W <- W - beta grad F(W - lr grad F(W; D); D') (fo), or
    with the Hessian-free correction W <- W - beta (g - lr d) (hf; see the module's docstring)."""
    batches = parts(mask, 2 if variant == "fo" else 3)
    _, step = model.loss_grad(W, X, y, batches[0], scale=lr)
    _, outer = model.loss_grad(W - step, X, y, batches[1])
    if variant == "hf":
        _, plus = model.loss_grad(W + delta * outer, X, y, batches[2])
        _, minus = model.loss_grad(W - delta * outer, X, y, batches[2])
        outer -= (lr / (2 * delta)) * (plus - minus)
    W -= beta * outer


def inner_solution(model, W, X, y, mask, *, lam: float, nu: float, steps: int) -> np.ndarray:
    """theta ~ argmin F(theta; batch) + lam/2 ||theta - W||^2: `steps` gradient steps at nu
    from W."""
    theta = W.copy()
    for _ in range(steps):
        _, grad = model.loss_grad(theta, X, y, mask, scale=nu)
        theta -= grad + (nu * lam) * (theta - W)
    return theta


def moreau_step(model, W, X, y, mask, lr, anchor, *, lam: float, nu: float, steps: int) -> None:
    """pFedMe's local step: W <- W - lr lam (W - theta(W))."""
    theta = inner_solution(model, W, X, y, mask, lam=lam, nu=nu, steps=steps)
    W -= (lr * lam) * (W - theta)


def personal_step(model, W, X, y, mask, lr, anchor, *, lam: float, nu: float, steps: int):
    """pFedMe's personal model: W <- theta(W) (used for one step from the new global model)."""
    W[...] = inner_solution(model, W, X, y, mask, lam=lam, nu=nu, steps=steps)


def one_step(ids: np.ndarray) -> np.ndarray:
    return np.ones(len(ids), dtype=np.int64)


def per_fedavg(
    ctx: Context,
    beta: Annotated[float | None, BETA] = None,
    variant: Annotated[str, VARIANT] = "fo",
    delta: Annotated[float, DELTA] = 1e-3,
) -> Algorithm:
    beta = ctx.lr if beta is None else beta  # the meta-model moves at FedAvg's local step
    step = partial(meta_step, beta=beta, variant=variant, delta=delta)

    def client_work(state: ServerState, ids: np.ndarray) -> LocalWork:
        return LocalWork(step=step)

    def personalize_new(state: ServerState, ids: np.ndarray, train: Train, losses):
        return train(state.params, LocalWork(max_steps=one_step(ids)), 1).params

    return Algorithm(
        name="per-fedavg",
        server_init=plain_init,
        server_update=fedavg_update,
        client_work=client_work,
        personalize=as_new_clients(personalize_new),
        personalize_new=personalize_new,
    )


def pfedme(
    ctx: Context,
    pfedme_lambda: Annotated[float, PFEDME_LAMBDA] = 15.0,
    personal_lr: Annotated[float, PERSONAL_LR] = 0.01,
    inner_steps: Annotated[int, INNER_STEPS] = 5,
    server_beta: Annotated[float, SERVER_BETA] = 1.0,
) -> Algorithm:
    solve = dict(lam=pfedme_lambda, nu=personal_lr, steps=inner_steps)

    def client_work(state: ServerState, ids: np.ndarray) -> LocalWork:
        return LocalWork(step=partial(moreau_step, **solve))

    def server_update(state: ServerState, updates: ClientUpdates) -> ServerState:
        mean = updates.aggregate(updates.deltas, updates.num_samples)
        return ServerState(state.params + server_beta * mean, state.extra)

    def personalize_new(state: ServerState, ids: np.ndarray, train: Train, losses):
        work = LocalWork(step=partial(personal_step, **solve), max_steps=one_step(ids))
        return train(state.params, work, 1).params

    return Algorithm(
        name="pfedme",
        server_init=plain_init,
        server_update=server_update,
        client_work=client_work,
        personalize=as_new_clients(personalize_new),
        personalize_new=personalize_new,
    )


SPECS = (
    AlgorithmSpec(
        "pfedme",
        pfedme,
        "T. Dinh et al. 2020 (pFedMe)",
        "personal models by Moreau envelopes (--pfedme-lambda, --inner-steps); personalization",
        personalizes=True,
        refuses_estimators=OWN_STEP,
        display_name="pFedMe",
    ),
    AlgorithmSpec(
        "per-fedavg",
        per_fedavg,
        "Fallah et al. 2020 (Per-FedAvg, first-order or Hessian-free: --variant)",
        "a meta-model one local step (--lr) from each client's own; personalization",
        personalizes=True,
        refuses_estimators=OWN_STEP,
        display_name="Per-FedAvg (FO)",
    ),
)
