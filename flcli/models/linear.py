"""Softmax (multinomial logistic) regression on a flat parameter vector.

Parameters: w = [vec(W) (D x C, row-major), b (C)]. Loss per client: mean cross-entropy of
softmax(x W + b) over its masked batch; gradient X^T (p - onehot(y)) / n and sum(p - onehot(y)) / n.
"""

import numpy as np


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class SoftmaxRegression:
    def __init__(self, num_features: int, num_classes: int):
        self.num_features = num_features
        self.num_classes = num_classes
        self.num_params = num_features * num_classes + num_classes

    def init(self, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(self.num_params)

    def _unpack(self, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d, c = self.num_features, self.num_classes
        return W[..., : d * c].reshape(*W.shape[:-1], d, c), W[..., d * c :]

    def loss_grad(self, W, X, y, mask):
        weights, bias = self._unpack(W)  # [K, D, C], [K, C]
        logits = X @ weights + bias[:, None, :]  # [K, B, C]
        logits -= logits.max(axis=-1, keepdims=True)
        exp = np.exp(logits)
        total = exp.sum(axis=-1)  # [K, B]
        at_label = np.arange(y.size) * self.num_classes + y.ravel()
        counts = np.maximum(mask.sum(axis=1), 1.0)  # [K]
        nll = np.log(total) - logits.reshape(-1)[at_label].reshape(y.shape)
        loss = (nll * mask).sum(axis=1) / counts
        residual = exp / total[..., None]  # softmax probabilities, then minus the one-hot label
        residual.reshape(-1)[at_label] -= 1.0
        residual *= (mask / counts[:, None])[..., None]
        grad = np.empty_like(W)
        grad_w, grad_b = self._unpack(grad)
        np.matmul(np.swapaxes(X, 1, 2), residual, out=grad_w)
        residual.sum(axis=1, out=grad_b)
        return loss, grad

    def predict_proba(self, w, X):
        weights, bias = self._unpack(w)
        return np.exp(_log_softmax(X @ weights + bias))

    def distill_loss_grad(self, w, X, targets, temperature):
        """Knowledge distillation towards soft targets [N, C] (Hinton et al. 2015): the mean over
        rows of T^2 KL(targets || softmax(logits / T)), and its gradient with respect to w [P]."""
        weights, bias = self._unpack(w)
        log_student = _log_softmax((X @ weights + bias) / temperature)
        safe = np.where(targets > 0, targets, 1.0)
        kl = (targets * (np.log(safe) - log_student)).sum(axis=1).mean()
        residual = temperature * (np.exp(log_student) - targets) / len(X)  # d loss / d logits
        return temperature**2 * kl, np.concatenate([(X.T @ residual).ravel(), residual.sum(0)])
