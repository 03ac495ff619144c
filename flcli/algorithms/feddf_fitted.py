"""FedDF for estimators without parameters to average (Lin, Kong, Stich, Jaggi 2020, "Ensemble
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

import numpy as np

from flcli.algorithms.base import Context, EnsembleAlgorithm, ServerState
from flcli.algorithms.feddf import distill
from flcli.models.linear import SoftmaxRegression


def soften(proba: np.ndarray, temperature: float) -> np.ndarray:
    """proba^(1/T) normalized per row: softmax(log(proba) / T)."""
    powered = np.power(proba, 1.0 / temperature)
    return powered / powered.sum(axis=1, keepdims=True)


def feddist_fitted(
    ctx: Context, temperature: float, distill_steps: int, proxy_fraction: float
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
