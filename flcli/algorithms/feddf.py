"""FedDF, federated ensemble distillation (Lin, Kong, Stich, Jaggi 2020, "Ensemble Distillation for
Robust Model Fusion in Federated Learning", NeurIPS); `--algo feddist`.

The server holds an unlabeled proxy set D (a --proxy-fraction of every client's shard, held out of
local training). Each round it averages the clients' models as FedAvg does, w = sum n_k w_k / n,
then distills the clients' ensemble into w: the teacher is the softmax of the averaged logits
(AvgLogits), t(d) = softmax(mean_k f(w_k, d) / T), and w takes --distill-steps gradient steps
(step size --lr, full batch over D) on the mean over d of T^2 KL(t(d) || softmax(f(w, d) / T)).
Averaged log-probabilities stand in for averaged logits: they differ by a per-row constant, which
the softmax ignores.
"""

import numpy as np

from flcli.algorithms.base import Algorithm, ClientUpdates, Context, ServerState, plain_init
from flcli.errors import FLError
from flcli.models.base import capabilities_of


def ensemble_targets(model, client_params: np.ndarray, x: np.ndarray, temperature: float):
    """[N, C] softened predictions of the ensemble of the client models [K, P] on x."""
    mean_log = sum(np.log(np.maximum(model.predict_proba(w, x), 1e-300)) for w in client_params)
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
    ctx: Context, temperature: float, distill_steps: int, proxy_fraction: float
) -> Algorithm:
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
