"""A model from its own file: `fl train P --model examples/ridge_softmax.py:RidgeSoftmax
--model-arg l2=0.01`.

Multinomial logistic regression with an L2 penalty (l2/2 ||W||^2 on the weights, not the
biases), written against flcli's model protocol (flcli.models.base): a flat parameter vector
w = [vec(W) (D x C, row-major), b (C)], and every method works on a whole cohort of K clients at
once, W [K, P], X [K, B, D], y [K, B], mask [K, B] (the real samples of each client's batch).

    loss_k = mean over k's masked batch of -log softmax(x W_k + b_k)[y] + l2/2 ||W_k||^2
    grad_k = [X^T (p - onehot(y)) / n_k + l2 W_k,  sum(p - onehot(y)) / n_k]

The constructor takes (num_features, num_classes, dtype) and the --model-arg values.
"""

import numpy as np

from flcli.models.base import Capabilities


class RidgeSoftmax:
    task = "classification"
    capabilities = Capabilities(exact_log_proba=True)
    default_lr = 0.5  # the --lr this model trains well with when none is given

    def __init__(self, num_features: int, num_classes: int, dtype="float64", l2: float = 1e-3):
        if not l2 >= 0:
            raise ValueError(f"l2 {l2} must be >= 0")
        self.num_features, self.num_classes, self.l2 = num_features, num_classes, l2
        self.dtype = np.dtype(dtype)
        self.num_params = num_features * num_classes + num_classes

    def init(self, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(self.num_params, dtype=self.dtype)

    def unpack(self, w: np.ndarray):
        d, c = self.num_features, self.num_classes
        return w[..., : d * c].reshape(*w.shape[:-1], d, c), w[..., d * c :]

    def logits(self, w: np.ndarray, X: np.ndarray) -> np.ndarray:
        weights, bias = self.unpack(w)
        return X @ weights + bias[..., None, :] if w.ndim == 2 else X @ weights + bias

    def loss_grad(self, W, X, y, mask, out=None, scale=1.0, workspace=None):
        logits = self.logits(W, X)  # [K, B, C]
        logits -= logits.max(axis=-1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        count = np.maximum(mask.sum(axis=1), 1.0)[:, None]  # [K, 1]
        weight = mask / count  # each sample's share of its client's mean
        picked = np.take_along_axis(log_p, y[..., None].astype(np.int64), axis=-1)[..., 0]
        weights, _ = self.unpack(W)
        penalty = 0.5 * self.l2 * (weights**2).sum(axis=(1, 2))
        loss = -(picked * weight).sum(axis=1) + penalty
        residual = np.exp(log_p)
        np.put_along_axis(
            residual, y[..., None].astype(np.int64), np.take_along_axis(
                residual, y[..., None].astype(np.int64), axis=-1) - 1.0, axis=-1
        )  # fmt: skip
        residual *= weight[..., None]
        grad = np.empty_like(W) if out is None else out
        grad_w, grad_b = self.unpack(grad)
        grad_w[...] = np.swapaxes(X, 1, 2) @ residual + self.l2 * weights
        grad_b[...] = residual.sum(axis=1)
        grad *= scale
        return loss, grad

    def log_proba(self, w, X):
        logits = self.logits(w, X)
        logits -= logits.max(axis=-1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))

    def predict_proba(self, w, X):
        return np.exp(self.log_proba(w, X))

    def predict(self, w, X):
        return self.logits(w, X).argmax(axis=-1)
