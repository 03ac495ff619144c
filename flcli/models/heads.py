"""Output layers and their losses, for a whole cohort at once.

Each head maps the network's outputs on a [K, B] batch to the mean loss of each client over its
masked samples, [K], and the gradient of that loss with respect to the outputs (already scaled by
mask / count, so a backward pass only multiplies it through the layers). A head's `scale`
multiplies that gradient: the engine passes its learning rate, which costs a pass over the small
[K, B, C] outputs instead of one over the [K, P] gradient.
"""

import numpy as np


def sample_weights(mask: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """scale x mask / (samples per client): the weight of each slot in a client's mean, [K, B]."""
    return mask * (scale / np.maximum(mask.sum(axis=1), 1.0))[:, None]


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray, mask: np.ndarray, scale=1.0):
    """Cross-entropy of softmax(logits) [K, B, C] against integer labels y [K, B].

    A C-contiguous logits is overwritten (it becomes the residual returned): pass a fresh array."""
    num_classes = logits.shape[-1]
    flat = np.ascontiguousarray(logits).reshape(-1, num_classes)
    flat -= row_max(flat)[:, None]
    at_label = np.arange(y.size) * num_classes + y.ravel()
    picked = flat.reshape(-1)[at_label].reshape(y.shape)  # shifted logit of the label
    np.exp(flat, out=flat)
    total = row_sum(flat).reshape(y.shape)  # [K, B]
    nll = np.log(total) - picked
    loss = (nll * sample_weights(mask)).sum(axis=1)
    # softmax probabilities, then minus the one-hot label, weighted by scale x mask / count
    weights = sample_weights(mask, scale)
    flat *= (weights / total).reshape(-1, 1)
    flat.reshape(-1)[at_label] -= weights.ravel()
    return loss, flat.reshape(logits.shape)


def row_max(a: np.ndarray) -> np.ndarray:
    """Max of each row of a [N, C] with C small: C strided passes beat a reduction over a short
    last axis (numpy's per-row loop overhead)."""
    best = a[:, 0].copy()
    for column in range(1, a.shape[1]):
        np.maximum(best, a[:, column], out=best)
    return best


def row_sum(a: np.ndarray) -> np.ndarray:
    """Sum of each row of a [N, C] with C small, column by column like row_max. (Not a BLAS
    matrix-vector product: its kernels add a row's terms in an order that depends on where the row
    sits in the block, so a client's numbers would depend on the rest of its cohort.)"""
    total = a[:, 0].copy()
    for column in range(1, a.shape[1]):
        total += a[:, column]
    return total


def sigmoid_cross_entropy(z: np.ndarray, y: np.ndarray, mask: np.ndarray, scale=1.0):
    """Binary cross-entropy of sigmoid(z) [K, B] against labels y in {0, 1} [K, B]."""
    target = y.astype(z.dtype)
    nll = np.maximum(z, 0) - target * z + np.log1p(np.exp(-np.abs(z)))
    weights = sample_weights(mask)
    return (nll * weights).sum(axis=1), (sigmoid(z) - target) * (weights * scale)


def squared_error(prediction: np.ndarray, y: np.ndarray, mask: np.ndarray, scale=1.0):
    """Mean squared error of prediction [K, B] against real targets y [K, B]."""
    residual = prediction - y.astype(prediction.dtype)
    weights = sample_weights(mask)
    return (residual**2 * weights).sum(axis=1), (2 * scale) * residual * weights


def sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def softmax(logits: np.ndarray) -> np.ndarray:
    flat = np.array(logits, copy=True, order="C").reshape(-1, logits.shape[-1])
    flat -= row_max(flat)[:, None]
    np.exp(flat, out=flat)
    flat /= row_sum(flat)[:, None]
    return flat.reshape(logits.shape)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
