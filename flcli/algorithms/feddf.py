"""FedDF, federated ensemble distillation (Lin, Kong, Stich, Jaggi 2020, "Ensemble Distillation for
Robust Model Fusion in Federated Learning", NeurIPS); `--algo feddist`.

The server holds an unlabeled proxy set D (--proxy holdout: a --proxy-fraction of every client's
shard, held out of local training; --proxy DIR|FILE: rows from outside the shards). Each round
it averages the clients' models as FedAvg does, w = sum n_k w_k / n,
then distills the clients' ensemble into w: the teacher is the softmax of the averaged logits
(AvgLogits), t(d) = softmax(mean_k f(w_k, d) / T), and w takes --distill-steps gradient steps
(step size --lr, full batch over D) on the mean over d of T^2 KL(t(d) || softmax(f(w, d) / T)).
Averaged log-probabilities stand in for averaged logits: they differ by a per-row constant, which
the softmax ignores.

With estimators that have no parameters to average (e.g. --model sklearn:RandomForestClassifier),
feddist runs in its fitted-member form, feddist_fitted:
Distillation for Robust Model Fusion in Federated Learning", NeurIPS); `--algo feddist` with e.g.
`--model sklearn:RandomForestClassifier`.

Each round every sampled client k fits its own estimator f_k from scratch on its shard. The server
labels its unlabeled proxy set D (a --proxy-fraction of every shard, held out of local training)
with the clients' ensemble, softened by the temperature T,

    t(d) = normalize( ((1/K) sum_k p_k(d))^(1/T) )   (t is the plain mean of the members'
                                                      predict_proba at T = 1),

and the student w, the global model, takes --distill-steps full-batch gradient steps of size --lr
on the mean over d of T^2 KL(t(d) || softmax(f(w, d) / T)), starting from last round's student:
w <- w - lr * grad_w T^2 KL(t || softmax(f(w, .) / T)).

The student is a NumPy softmax regression, not the clients' estimator class refitted on the
ensemble's hard labels, because (1) FedDF distills soft labels, which carry what the ensemble is
unsure of and which a tree cannot be fitted to; (2) a flat parameter vector carries over from round
to round (what round r's ensemble taught is kept and refined in round r + 1, where a refitted tree
would forget it) and is what checkpoint.npz stores, so a resumed run continues exactly, with no
pickled estimators on disk; (3) it is small to send to clients and fast to evaluate. Its capacity
(a linear model) bounds what the student can learn from the ensemble.
"""

from typing import Annotated

import numpy as np

from flcli.algorithms.base import (
    Algorithm,
    AlgorithmSpec,
    ClientUpdates,
    Context,
    EnsembleAlgorithm,
    Hyper,
    ServerState,
    plain_init,
)
from flcli.errors import FLError
from flcli.models.base import capabilities_of, log_probabilities
from flcli.models.linear import SoftmaxRegression
from flcli.options import Check

TEMPERATURE = Hyper("Distillation temperature.", Check(lambda v: v > 0, "must be > 0, e.g. 1"))
STEPS = Hyper(
    "Server distillation steps.",
    Check(lambda v: isinstance(v, int) and v >= 0, "must be an integer >= 0, e.g. 50"),
)
PROXY = Hyper(
    "Fraction of each shard held out as the proxy set.",
    Check(lambda v: 0 < v < 1, "must be in (0, 1), e.g. 0.1"),
)


def ensemble_targets(model, client_params: np.ndarray, x: np.ndarray, temperature: float):
    """[N, C] softened predictions of the ensemble of the client models [K, P] on x, from the
    models' exact log-probabilities (a probability that underflows, as float32 ones do, would make
    the teacher NaN)."""
    mean_log = sum(log_probabilities(model, w, x) for w in client_params)
    scaled = mean_log / (len(client_params) * temperature)
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def distill(model, w, x, targets, temperature: float, steps: int, lr: float) -> np.ndarray:
    for _ in range(steps):
        _, grad = model.distill_loss_grad(w, x, targets, temperature)
        w = w - lr * grad
    return w


def feddist(
    ctx: Context,
    temperature: Annotated[float, TEMPERATURE] = 1.0,
    distill_steps: Annotated[int, STEPS] = 50,
    proxy_fraction: Annotated[float, PROXY] = 0.1,
) -> Algorithm:
    """proxy_fraction is read by the engine, which holds the proxy set out of the shards under
    --proxy holdout (the default); --proxy DIR|FILE gives it from outside (flcli.data.proxy)."""
    if not capabilities_of(ctx.model).distillable:
        raise FLError("--algo feddist needs a model that can be distilled; use --model softmax")

    def server_update(state: ServerState, updates: ClientUpdates) -> ServerState:
        average = state.params + updates.aggregate(updates.deltas, updates.num_samples)
        if ctx.x_proxy is None or not len(ctx.x_proxy):
            return ServerState(params=average, extra=state.extra)
        clients = state.params + updates.deltas
        teacher = ensemble_targets(ctx.model, clients, ctx.x_proxy, temperature)
        params = distill(
            ctx.model, average, ctx.x_proxy, teacher, temperature, distill_steps, ctx.lr
        )
        return ServerState(params=params, extra=state.extra)

    return Algorithm(name="feddist", server_init=plain_init, server_update=server_update)


def soften(proba: np.ndarray, temperature: float) -> np.ndarray:
    """proba^(1/T) normalized per row: softmax(log(proba) / T)."""
    powered = np.power(proba, 1.0 / temperature)
    return powered / powered.sum(axis=1, keepdims=True)


def feddist_fitted(
    ctx: Context,
    temperature: Annotated[float, TEMPERATURE] = 1.0,
    distill_steps: Annotated[int, STEPS] = 50,
    proxy_fraction: Annotated[float, PROXY] = 0.1,
) -> EnsembleAlgorithm:
    dtype = np.float64 if ctx.x_proxy is None else ctx.x_proxy.dtype  # None: only validating
    student = SoftmaxRegression(ctx.model.num_features, ctx.model.num_classes, dtype)

    def server_init(init_rng: np.random.Generator, num_clients: int) -> ServerState:
        return ServerState(params=student.init(init_rng))

    def server_update(state: ServerState, round: int, ids: np.ndarray, members: list):
        teacher = soften(ctx.model.predict_proba(members, ctx.x_proxy), temperature)
        params = distill(
            student, state.params, ctx.x_proxy, teacher, temperature, distill_steps, ctx.lr
        )
        return ServerState(params=params, extra=state.extra)

    return EnsembleAlgorithm(
        name="feddist",
        server_init=server_init,
        server_update=server_update,
        voters=lambda state: None,
        student=student,
    )


SPEC = AlgorithmSpec(
    "feddist",
    feddist,
    "Lin et al. 2020 (FedDF)",
    "averages, then distills the clients' ensemble on a proxy set; models hard to average",
    reads_clients="each client's model to distill their ensemble",
    ensemble_factory=feddist_fitted,
    holds_out_proxy=True,
    display_name="FedDF",
)
