"""Evaluation of parameter vectors on data, in chunks to bound memory: on a whole dataset, and
per client (the fairness view, q-FFL's losses, personal models on local test splits)."""

import numpy as np

CHUNK = 8192


def per_sample(model, w: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cross-entropy [N], correct [N] as 0/1) of the model with parameters w on each row."""
    nll, correct = np.empty(len(y)), np.empty(len(y))
    for start in range(0, len(y), CHUNK):
        stop = start + CHUNK
        proba = model.predict_proba(w, x[start:stop])
        labels = y[start:stop]
        picked = proba[np.arange(len(labels)), labels]
        nll[start:stop] = -np.log(np.maximum(picked, 1e-300))
        correct[start:stop] = proba.argmax(axis=1) == labels
    return nll, correct


def evaluate(model, w: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the model with parameters w on (x, y)."""
    nll, correct = per_sample(model, w, x, y)
    return float(nll.mean()), float(correct.mean())


def client_rows(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The rows of clients whose shards are rows starts[k]:starts[k] + sizes[k], concatenated."""
    first = np.repeat(starts - np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes)
    return first + np.arange(sizes.sum())


def client_scores(
    model, w: np.ndarray, x: np.ndarray, y: np.ndarray, starts: np.ndarray, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(mean loss [K], accuracy [K]) of one model w on each client's rows."""
    rows = client_rows(starts, sizes)
    return per_client(*per_sample(model, w, x[rows], y[rows]), sizes)


def per_client(nll: np.ndarray, correct: np.ndarray, sizes: np.ndarray):
    """(mean loss [K], accuracy [K]) from per-sample scores laid out client after client."""
    owner = np.repeat(np.arange(len(sizes)), sizes)
    count = np.maximum(sizes, 1)
    loss = np.bincount(owner, nll, minlength=len(sizes)) / count
    return loss, np.bincount(owner, correct, minlength=len(sizes)) / count


def personal_scores(
    model, W: np.ndarray, x: np.ndarray, y: np.ndarray, starts: np.ndarray, sizes: np.ndarray
) -> np.ndarray:
    """[K] number of correct predictions of client k's own model W[k] on its rows."""
    return np.array(
        [
            per_sample(model, w, x[s : s + n], y[s : s + n])[1].sum()
            for w, s, n in zip(W, starts, sizes, strict=True)
        ]
    )
