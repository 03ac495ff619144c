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

    The work is done class-major, on the [C, K B] transpose, so that every operation over the
    classes is a pass over whole contiguous rows: a few NumPy calls per step, whatever K and B.
    A C-contiguous logits is overwritten (it becomes the residual returned): pass a fresh array."""
    residual = np.ascontiguousarray(logits)
    num_classes, n = logits.shape[-1], y.size
    z = np.ascontiguousarray(residual.reshape(n, num_classes).T)  # [C, n]
    z -= z.max(axis=0)
    at_label = y.ravel() * n + np.arange(n)  # each sample's label in z, flattened
    flat = z.reshape(-1)
    picked = flat[at_label]  # shifted logit of the label
    np.exp(z, out=z)
    total = class_sum(z)
    loss = ((np.log(total) - picked).reshape(y.shape) * sample_weights(mask)).sum(axis=1)
    # softmax probabilities, then minus the one-hot label, weighted by scale x mask / count
    weights = sample_weights(mask, scale).ravel()
    z *= weights / total
    flat[at_label] -= weights
    residual.reshape(n, num_classes)[...] = z.T
    return loss, residual


def class_sum(z: np.ndarray) -> np.ndarray:
    """Sum over the classes of a class-major z [C, n], class after class. (Not z.sum(axis=0): NumPy
    does not fix the order of a reduction, and for n = 1 it sums pairwise, so a client's numbers
    would depend on the rest of its cohort.)"""
    total = z[0].copy()
    for row in z[1:]:
        total += row
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
    """Probabilities [..., C] of logits [..., C], class-major like softmax_cross_entropy."""
    num_classes = logits.shape[-1]
    z = np.ascontiguousarray(logits.reshape(-1, num_classes).T)  # [C, n]
    z -= z.max(axis=0)
    np.exp(z, out=z)
    z /= class_sum(z)
    return np.ascontiguousarray(z.T).reshape(logits.shape)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - row_max(logits)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def row_max(z: np.ndarray) -> np.ndarray:
    """z.max(axis=-1, keepdims=True), class after class: a maximum is exact in any order, and
    NumPy's reduction over a short last axis costs about 30 ns a row (3x this, for 10 classes)."""
    if z.shape[-1] > 64:
        return z.max(axis=-1, keepdims=True)
    largest = z[..., 0].copy()
    for column in range(1, z.shape[-1]):
        np.maximum(largest, z[..., column], out=largest)
    return largest[..., None]
