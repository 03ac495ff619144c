"""Linear models on a flat parameter vector: softmax, logistic and least-squares regression.

- softmax: w = [vec(W) (D x C, row-major), b (C)]; mean cross-entropy of softmax(x W + b);
  gradient X^T (p - onehot(y)) / n and sum(p - onehot(y)) / n.
- logistic (binary): w = [v (D), b]; mean cross-entropy of sigmoid(x v + b); gradient
  X^T (p - y) / n and sum(p - y) / n.
- linear (least squares): w = [v (D), b]; mean squared error of x v + b; gradient
  2 X^T (x v + b - y) / n and 2 sum(x v + b - y) / n.

Each is a dense network without a hidden layer ([D, C] or [D, 1] and its loss), so its fused
local steps are the MLP's compiled ones (flcli.models.dense).
"""

import numpy as np

from flcli.errors import FLError
from flcli.models.base import Capabilities
from flcli.models.dense import DenseSteps, FusedSteps
from flcli.models.heads import (
    log_softmax,
    sigmoid,
    sigmoid_cross_entropy,
    softmax,
    softmax_cross_entropy,
    squared_error,
)


def whole_model_head(model) -> slice:
    """The last layer: for a one-layer model, every parameter (the body is empty)."""
    return slice(0, model.num_params)


class SoftmaxRegression(FusedSteps):
    task = "classification"
    capabilities = Capabilities(
        fused_step=True,
        fused_steps=True,
        fused_for_long_runs=True,
        distillable=True,
        exact_log_proba=True,
        splits_head=True,
    )

    @classmethod
    def for_data(cls, num_features: int, num_classes: int, dtype: str, hidden=None):
        return cls(num_features, num_classes, dtype)

    def __init__(self, num_features: int, num_classes: int, dtype="float64"):
        self.num_features = num_features
        self.num_classes = num_classes
        self.dtype = np.dtype(dtype)
        self.num_params = num_features * num_classes + num_classes
        self.fused = DenseSteps((num_features, num_classes), "softmax")  # a network of one layer

    def init(self, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(self.num_params, dtype=self.dtype)

    head_slice = whole_model_head

    def _unpack(self, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d, c = self.num_features, self.num_classes
        return W[..., : d * c].reshape(*W.shape[:-1], d, c), W[..., d * c :]

    def loss_grad(self, W, X, y, mask, out=None, scale=1.0, workspace=None):
        weights, bias = self._unpack(W)  # [K, D, C], [K, C]
        logits = X @ weights
        logits += bias[:, None, :]
        loss, residual = softmax_cross_entropy(logits, y, mask, scale)
        grad = np.empty_like(W) if out is None else out
        grad_w, grad_b = self._unpack(grad)
        np.matmul(np.swapaxes(X, 1, 2), residual, out=grad_w)
        residual.sum(axis=1, out=grad_b)
        return loss, grad

    def logits(self, w, X):
        weights, bias = self._unpack(w)
        logits = X @ weights
        logits += bias  # in place: no second [N, C] array
        return logits

    def predict_proba(self, w, X):
        return softmax(self.logits(w, X))

    def log_proba(self, w, X):
        """log predict_proba, from the logits: finite where a probability underflows to 0."""
        return log_softmax(self.logits(w, X))

    def predict(self, w, X):
        return self.predict_proba(w, X).argmax(axis=1)

    def distill_loss_grad(self, w, X, targets, temperature):
        """Knowledge distillation towards soft targets [N, C] (Hinton et al. 2015): the mean over
        rows of T^2 KL(targets || softmax(logits / T)), and its gradient with respect to w [P]."""
        weights, bias = self._unpack(w)
        log_student = log_softmax((X @ weights + bias) / temperature)
        safe = np.where(targets > 0, targets, 1.0)
        kl = (targets * (np.log(safe) - log_student)).sum(axis=1).mean()
        residual = temperature * (np.exp(log_student) - targets) / len(X)  # d loss / d logits
        return temperature**2 * kl, np.concatenate([(X.T @ residual).ravel(), residual.sum(0)])


class _AffineScore:
    """A score x v + b per sample, shared by the logistic and the least-squares model."""

    head_loss = "squared"  # its loss, as flcli.models.dense.HEADS names it

    def __init__(self, num_features: int, dtype="float64"):
        self.num_features = num_features
        self.dtype = np.dtype(dtype)
        self.num_params = num_features + 1
        self.fused = DenseSteps((num_features, 1), self.head_loss)  # a network of one output

    def init(self, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(self.num_params, dtype=self.dtype)

    head_slice = whole_model_head

    def score(self, W, X):
        """x v + b for W [K, P] and X [K, B, D] -> [K, B]; or w [P] and X [N, D] -> [N]."""
        v, b = W[..., : self.num_features], W[..., self.num_features]
        if W.ndim == 1:
            return X @ v + b
        return (X @ v[:, :, None])[..., 0] + b[:, None]

    def grad_from(self, W, X, dscore, out=None):
        grad = np.empty_like(W) if out is None else out
        grad[:, : self.num_features] = (np.swapaxes(X, 1, 2) @ dscore[:, :, None])[..., 0]
        grad[:, self.num_features] = dscore.sum(axis=1)
        return grad


class LogisticRegression(_AffineScore, FusedSteps):
    task = "classification"
    capabilities = Capabilities(
        fused_step=True,
        fused_steps=True,
        fused_for_long_runs=True,
        exact_log_proba=True,
        splits_head=True,
    )

    @classmethod
    def for_data(cls, num_features: int, num_classes: int, dtype: str, hidden=None):
        if num_classes != 2:
            raise FLError(
                f"--model logistic is binary but the partition has {num_classes} classes; "
                "use --model softmax"
            )
        return cls(num_features, dtype)

    num_classes = 2
    head_loss = "sigmoid"

    def loss_grad(self, W, X, y, mask, out=None, scale=1.0, workspace=None):
        loss, dscore = sigmoid_cross_entropy(self.score(W, X), y, mask, scale)
        return loss, self.grad_from(W, X, dscore, out)

    def predict_proba(self, w, X):
        p = sigmoid(self.score(w, X))
        return np.stack([1 - p, p], axis=1)

    def log_proba(self, w, X):
        """log predict_proba, from the score s: log sigmoid(-s) and log sigmoid(s)."""
        s = self.score(w, X)
        return -np.stack([np.logaddexp(0, s), np.logaddexp(0, -s)], axis=1)

    def predict(self, w, X):
        return (self.score(w, X) > 0).astype(np.int64)


class LinearRegression(_AffineScore, FusedSteps):
    """No predict_proba: a regression model is scored by predict (see flcli.models.base)."""

    task = "regression"
    capabilities = Capabilities(
        fused_step=True, fused_steps=True, fused_for_long_runs=True, splits_head=True
    )

    @classmethod
    def for_data(cls, num_features: int, num_classes: None, dtype: str, hidden=None):
        return cls(num_features, dtype)

    def loss_grad(self, W, X, y, mask, out=None, scale=1.0, workspace=None):
        loss, dscore = squared_error(self.score(W, X), y, mask, scale)
        return loss, self.grad_from(W, X, dscore, out)

    def predict(self, w, X):
        return self.score(w, X)
