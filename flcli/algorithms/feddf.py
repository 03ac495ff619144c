"""FedDF, federated ensemble distillation (Lin, Kong, Stich, Jaggi 2020, "Ensemble Distillation for
Robust Model Fusion in Federated Learning", NeurIPS); `--algo feddist`.

The server holds an unlabeled proxy set D (--proxy holdout: a --proxy-fraction of every client's
shard, held out of local training; --proxy DIR|FILE: rows from outside the shards). Each round
it averages the clients' models as FedAvg does, w = sum n_k w_k / n,
then distills the clients' ensemble into w: the teacher is the softmax of the averaged logits
(AvgLogits), t(d) = softmax(mean_k f(w_k, d) / T), and w is trained on the mean over d of
L(w; d) = T^2 KL(t(d) || softmax(f(w, d) / T)).
Averaged log-probabilities stand in for averaged logits: they differ by a per-row constant, which
the softmax ignores.

The student's optimizer (student=...):

- sgd (the default): --distill-steps full-batch gradient steps of size --lr on D,
  w <- w - lr * grad L(w; D).
- adam, the paper's server optimizer: D is split once per round, by rng(seed, PROXY, round), into
  a validation part V (20%) and a training part; each epoch is a fresh permutation of the training
  part (from the same generator) cut into minibatches of student_batch rows, and every minibatch
  B takes one Adam step (Kingma & Ba 2015, bias-corrected, beta1 0.9, beta2 0.999, eps 1e-8):
      g = grad L(w; B), m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2,
      w <- w - student_lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps),
  with m, v = 0 at the round's start. After each epoch L(w; V) is evaluated; distillation stops
  when it has not improved for `patience` evaluations, or after --distill-steps Adam steps, and
  the student with the lowest validation loss seen (the starting one included) is kept.

With estimators that have no parameters to average (e.g. --model sklearn:RandomForestClassifier),
feddist runs in its fitted-member form, feddist_fitted.

Each round every sampled client k fits its own estimator f_k from scratch on its shard. The server
labels its unlabeled proxy set D (a --proxy-fraction of every shard, held out of local training)
with the clients' ensemble, softened by the temperature T,

    t(d) = normalize( ((1/K) sum_k p_k(d))^(1/T) )   (t is the plain mean of the members'
                                                      predict_proba at T = 1),

and the student w, the global model, is trained on the mean over d of
T^2 KL(t(d) || softmax(f(w, d) / T)) as above (sgd or adam), starting from last round's student.

The student is a NumPy softmax regression, not the clients' estimator class refitted on the
ensemble's hard labels, because (1) FedDF distills soft labels, which carry what the ensemble is
unsure of and which a tree cannot be fitted to; (2) a flat parameter vector carries over from round
to round (what round r's ensemble taught is kept and refined in round r + 1, where a refitted tree
would forget it) and is what checkpoint.npz stores, so a resumed run continues exactly, with no
pickled estimators on disk; (3) it is small to send to clients and fast to evaluate. Its capacity
(a linear model) bounds what the student can learn from the ensemble.
"""

import math
from dataclasses import dataclass
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
)
from flcli.errors import FLError
from flcli.models.base import capabilities_of, log_probabilities
from flcli.models.linear import SoftmaxRegression
from flcli.options import Check, within
from flcli.rng import Purpose, rng

TEMPERATURE = Hyper("Distillation temperature.", Check(lambda v: v > 0, "must be > 0, e.g. 1"))
STEPS = Hyper(
    "Server distillation steps.",
    Check(lambda v: isinstance(v, int) and v >= 0, "must be an integer >= 0, e.g. 50"),
)
PROXY = Hyper(
    "Fraction of each shard held out as the proxy set.",
    within(0, 1, 0.1, "()"),
)
STUDENT = Hyper(
    "The student's optimizer: sgd (full-batch steps at --lr) or adam (the paper's: minibatch Adam "
    "with early stopping on a validation part of the proxy set).",
    Check(lambda v: v in ("sgd", "adam"), "must be sgd or adam"),
)
STUDENT_LR = Hyper(
    "Adam's step size (student=adam).", Check(lambda v: v > 0, "must be > 0, e.g. 1e-3")
)
STUDENT_BATCH = Hyper(
    "Proxy rows per Adam minibatch (student=adam).",
    Check(lambda v: isinstance(v, int) and v >= 1, "must be a positive integer, e.g. 128"),
)
PATIENCE = Hyper(
    "Validation evaluations (one per epoch over the proxy set) without improvement before "
    "distillation stops (student=adam).",
    Check(lambda v: isinstance(v, int) and v >= 1, "must be a positive integer, e.g. 10"),
)
VALIDATION_FRACTION = 0.2  # of the proxy set, held out of Adam's minibatches for early stopping


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
    """student=sgd: `steps` full-batch gradient steps of size lr."""
    for _ in range(steps):
        _, grad = model.distill_loss_grad(w, x, targets, temperature)
        w = w - lr * grad
    return w


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba 2015, Algorithm 1), bias-corrected."""

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def step(self, w, grad, m, v, t: int):
        """Step t (from 1): the new (w, m, v)."""
        m = self.beta1 * m + (1 - self.beta1) * grad
        v = self.beta2 * v + (1 - self.beta2) * grad * grad
        m_hat = m / (1 - self.beta1**t)
        v_hat = v / (1 - self.beta2**t)
        return w - self.lr * m_hat / (np.sqrt(v_hat) + self.eps), m, v


@dataclass(frozen=True)
class AdamStudent:
    """student=adam: minibatch Adam with early stopping on a validation part of the proxy set."""

    adam: Adam
    batch: int
    patience: int
    max_steps: int
    seed: int

    def split(self, n: int, round: int):
        """(generator, training rows, validation rows) of round `round`'s proxy set of n rows."""
        generator = rng(self.seed, Purpose.PROXY, round, 0)
        order = generator.permutation(n)
        held = math.ceil(VALIDATION_FRACTION * n) if n >= 2 else 0
        return generator, order[held:], order[:held]

    def distill(self, model, w, x, targets, temperature: float, round: int) -> np.ndarray:
        generator, train, valid = self.split(len(x), round)
        x_valid, targets_valid = x[valid], targets[valid]

        def valid_loss(params):
            return model.distill_loss_grad(params, x_valid, targets_valid, temperature)[0]

        m, v, t = np.zeros_like(w), np.zeros_like(w), 0
        best, best_loss, waited = w, valid_loss(w) if len(valid) else math.inf, 0
        while t < self.max_steps and waited < self.patience:
            order = generator.permutation(train)
            for start in range(0, len(order), self.batch):
                rows = order[start : start + self.batch]
                _, grad = model.distill_loss_grad(w, x[rows], targets[rows], temperature)
                t += 1
                w, m, v = self.adam.step(w, grad, m, v, t)
                if t == self.max_steps:
                    break
            if not len(valid):  # too few proxy rows to hold any out: the last student
                best = w
                continue
            loss = valid_loss(w)
            if loss < best_loss:
                best, best_loss, waited = w, loss, 0
            else:
                waited += 1
        return best


def distiller(ctx: Context, student: str, steps: int, lr: float, batch: int, patience: int):
    """(model, w, x, targets, temperature, round) -> the distilled student, as `student` says."""
    if student == "sgd":
        return lambda model, w, x, targets, temperature, round: distill(
            model, w, x, targets, temperature, steps, ctx.lr
        )
    return AdamStudent(Adam(lr), batch, patience, steps, ctx.seed).distill


def feddist(
    ctx: Context,
    temperature: Annotated[float, TEMPERATURE] = 1.0,
    distill_steps: Annotated[int, STEPS] = 50,
    proxy_fraction: Annotated[float, PROXY] = 0.1,
    student: Annotated[str, STUDENT] = "sgd",
    student_lr: Annotated[float, STUDENT_LR] = 1e-3,
    student_batch: Annotated[int, STUDENT_BATCH] = 128,
    patience: Annotated[int, PATIENCE] = 10,
) -> Algorithm:
    """proxy_fraction is read by the engine, which holds the proxy set out of the shards under
    --proxy holdout (the default); --proxy DIR|FILE gives it from outside (flcli.data.proxy)."""
    if not capabilities_of(ctx.model).distillable:
        raise FLError("--algo feddist needs a model that can be distilled; use --model softmax")
    train_student = distiller(ctx, student, distill_steps, student_lr, student_batch, patience)

    adam = student == "adam"

    def server_init(params: np.ndarray, num_clients: int) -> ServerState:
        # adam: the server's round count, which addresses the validation split and minibatches
        extra = {"distill_round": np.asarray(0)} if adam else {}
        return ServerState(params=params.copy(), extra=extra)

    def server_update(state: ServerState, updates: ClientUpdates) -> ServerState:
        average = state.params + updates.aggregate(updates.deltas, updates.num_samples)
        extra = state.extra
        if adam:
            extra = {**extra, "distill_round": np.asarray(extra["distill_round"]) + 1}
        if ctx.x_proxy is None or not len(ctx.x_proxy):
            return ServerState(params=average, extra=extra)
        clients = state.params + updates.deltas
        teacher = ensemble_targets(ctx.model, clients, ctx.x_proxy, temperature)
        round = int(extra.get("distill_round", 0))
        params = train_student(ctx.model, average, ctx.x_proxy, teacher, temperature, round)
        return ServerState(params=params, extra=extra)

    return Algorithm(name="feddist", server_init=server_init, server_update=server_update)


def soften(proba: np.ndarray, temperature: float) -> np.ndarray:
    """proba^(1/T) normalized per row: softmax(log(proba) / T)."""
    powered = np.power(proba, 1.0 / temperature)
    return powered / powered.sum(axis=1, keepdims=True)


def feddist_fitted(
    ctx: Context,
    temperature: Annotated[float, TEMPERATURE] = 1.0,
    distill_steps: Annotated[int, STEPS] = 50,
    proxy_fraction: Annotated[float, PROXY] = 0.1,
    student: Annotated[str, STUDENT] = "sgd",
    student_lr: Annotated[float, STUDENT_LR] = 1e-3,
    student_batch: Annotated[int, STUDENT_BATCH] = 128,
    patience: Annotated[int, PATIENCE] = 10,
) -> EnsembleAlgorithm:
    dtype = np.float64 if ctx.x_proxy is None else ctx.x_proxy.dtype  # None: only validating
    regression = SoftmaxRegression(ctx.model.num_features, ctx.model.num_classes, dtype)
    train_student = distiller(ctx, student, distill_steps, student_lr, student_batch, patience)

    def server_init(init_rng: np.random.Generator, num_clients: int) -> ServerState:
        return ServerState(params=regression.init(init_rng))

    def server_update(state: ServerState, round: int, ids: np.ndarray, members: list):
        teacher = soften(ctx.model.predict_proba(members, ctx.x_proxy), temperature)
        params = train_student(regression, state.params, ctx.x_proxy, teacher, temperature, round)
        return ServerState(params=params, extra=state.extra)

    return EnsembleAlgorithm(
        name="feddist",
        server_init=server_init,
        server_update=server_update,
        voters=lambda state: None,
        student=regression,
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
