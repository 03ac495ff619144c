"""Central evaluation of one parameter vector on a dataset, in chunks to bound memory."""

import numpy as np

CHUNK = 8192


def evaluate(model, w: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the model with parameters w on (x, y)."""
    loss_sum, correct = 0.0, 0
    for start in range(0, len(y), CHUNK):
        proba = model.predict_proba(w, x[start : start + CHUNK])
        labels = y[start : start + CHUNK]
        picked = proba[np.arange(len(labels)), labels]
        loss_sum += float(-np.log(np.maximum(picked, 1e-300)).sum())
        correct += int((proba.argmax(axis=1) == labels).sum())
    return loss_sum / len(y), correct / len(y)
