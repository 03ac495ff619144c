"""Central evaluation of one parameter vector on a dataset, in chunks to bound memory.

The metrics depend on the task: classification gives loss (mean cross-entropy) and accuracy;
regression gives loss (the mean squared error the models minimise), mse and r2.
"""

import numpy as np

CHUNK = 8192


def evaluate(model, w: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The task's metrics of the model with parameters w on (x, y)."""
    if model.task == "regression":
        return regression_metrics(model, w, x, y)
    return classification_metrics(model, w, x, y)


def classification_metrics(model, w, x, y) -> dict[str, float]:
    loss_sum, correct = 0.0, 0
    for start in range(0, len(y), CHUNK):
        proba = model.predict_proba(w, x[start : start + CHUNK])
        labels = y[start : start + CHUNK]
        picked = proba[np.arange(len(labels)), labels].astype(np.float64)
        loss_sum += float(-np.log(np.maximum(picked, 1e-300)).sum())
        correct += int((proba.argmax(axis=1) == labels).sum())
    return {"loss": loss_sum / len(y), "accuracy": correct / len(y)}


def regression_metrics(model, w, x, y) -> dict[str, float]:
    squared = 0.0
    for start in range(0, len(y), CHUNK):
        prediction = model.predict(w, x[start : start + CHUNK]).astype(np.float64)
        squared += float(((prediction - y[start : start + CHUNK]) ** 2).sum())
    mse = squared / len(y)
    variance = float(np.var(y.astype(np.float64)))
    r2 = 1.0 - mse / variance if variance > 0 else float("nan")
    return {"loss": mse, "mse": mse, "r2": r2}
