"""Evaluation of parameter vectors on data, in chunks to bound memory: on a whole dataset, and
per client (the fairness view, q-FFL's losses, personal models on local test splits).

The metrics depend on the task: classification gives loss (mean cross-entropy) and accuracy;
regression gives loss (the mean squared error the models minimise), mse and r2.
"""

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from flcli.engine.blas import one_blas_thread
from flcli.engine.cohort import default_threads
from flcli.engine.local import Cohort
from flcli.models.base import log_probabilities

CHUNK = 8192
SUFFIXES = ("mean", "std", "p10", "p90", "jain", "gini")


def jain_index(values: np.ndarray) -> float:
    """Jain's fairness index (sum x)^2 / (n sum x^2): 1 when every client scores alike, 1/n when
    one client has everything; NaN when every value is 0."""
    squares = float(np.sum(np.square(values)))
    return float(np.sum(values)) ** 2 / (len(values) * squares) if squares > 0 else math.nan


def gini(values: np.ndarray) -> float:
    """The Gini coefficient sum_i sum_j |x_i - x_j| / (2 n^2 mean): 0 when every client scores
    alike; NaN when the mean is 0. From the sorted values: sum_i (2i - n - 1) x_(i) / (n^2 mean)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n, mean = len(x), float(np.mean(x))
    if mean <= 0:
        return math.nan
    rank = np.arange(1, n + 1)
    return float(np.sum((2 * rank - n - 1) * x) / (n * n * mean))


def distribution(values: np.ndarray, prefix: str) -> dict[str, float]:
    """prefix_mean/_std/_p10/_p90/_jain/_gini of per-client values (NaN for no clients)."""
    names = [f"{prefix}_{suffix}" for suffix in SUFFIXES]
    if not len(values):
        return dict.fromkeys(names, math.nan)
    stats = (
        values.mean(),
        values.std(),
        np.percentile(values, 10),
        np.percentile(values, 90),
        jain_index(values),
        gini(values),
    )
    return {name: float(value) for name, value in zip(names, stats, strict=True)}


def per_sample(model, w: np.ndarray, x: np.ndarray, y: np.ndarray, rows=None):
    """(loss [N], correct [N] as 0/1) of the model with parameters w on each row (each of `rows`,
    an index into x and y, when given: gathered a chunk at a time); for regression the loss is
    the squared error and correct is None. Chunks of CHUNK rows run in one thread per core (each
    chunk's rows are computed alike whatever the threads, so the numbers are too)."""
    count = len(y) if rows is None else len(rows)
    loss = np.empty(count)
    correct = None if model.task == "regression" else np.empty(count)
    chunks = [slice(start, start + CHUNK) for start in range(0, count, CHUNK)]

    def score(chunk: slice) -> None:
        taken = chunk if rows is None else rows[chunk]
        features, labels = x[taken], y[taken]
        if correct is None:
            prediction = model.predict(w, features).astype(np.float64)
            loss[chunk] = (prediction - labels) ** 2
            return
        log_proba = log_probabilities(model, w, features)
        loss[chunk] = -log_proba[np.arange(len(labels)), labels]
        correct[chunk] = log_proba.argmax(axis=1) == labels

    with one_blas_thread():
        threads = min(default_threads(), len(chunks))
        if threads > 1:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(score, chunks))
        else:
            for chunk in chunks:
                score(chunk)
    return loss, correct


def evaluate(model, w: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The task's metrics of the model with parameters w on (x, y)."""
    loss, correct = per_sample(model, w, x, y)
    if correct is not None:
        return {"loss": float(loss.mean()), "accuracy": float(correct.mean())}
    mse = float(loss.mean())
    variance = float(np.var(y.astype(np.float64)))
    r2 = 1.0 - mse / variance if variance > 0 else float("nan")
    return {"loss": mse, "mse": mse, "r2": r2}


def client_rows(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The rows of clients whose shards are rows starts[k]:starts[k] + sizes[k], concatenated."""
    first = np.repeat(starts - np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes)
    return first + np.arange(sizes.sum())


def client_scores(
    model, w: np.ndarray, x: np.ndarray, y: np.ndarray, starts: np.ndarray, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """(mean loss [K], accuracy [K] or None for regression) of one model w on each client's rows."""
    rows = client_rows(starts, sizes)
    return per_client(*per_sample(model, w, x[rows], y[rows]), sizes)


def per_client(loss: np.ndarray, correct: np.ndarray | None, sizes: np.ndarray):
    """(mean loss [K], accuracy [K] or None) from per-sample scores laid out client by client."""
    owner = np.repeat(np.arange(len(sizes)), sizes)
    count = np.maximum(sizes, 1)
    mean_loss = np.bincount(owner, loss, minlength=len(sizes)) / count
    if correct is None:
        return mean_loss, None
    return mean_loss, np.bincount(owner, correct, minlength=len(sizes)) / count


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


def round_rows(model, w, partition, round: int, ids: np.ndarray, totals: dict, train_clients=None):
    """(the rounds.csv row, the round's clients.csv columns) of the global model w after a round
    whose cohort was ids; totals are the running byte and time counters; train_clients: the
    clients whose training rows give train_loss (None: all of them)."""
    cohort = Cohort.of(ids, partition.offsets)
    scores, fairness, per_client_scores = global_scores(model, w, partition, cohort, train_clients)
    record = {"round": round, **scores, "clients": len(ids) if round else 0, **totals}
    record.update(fairness)
    clients = {"round": np.full(len(ids), round), "client": ids, "n": cohort.sizes}
    clients.update(per_client_scores)
    return record, clients


def global_scores(model, w, partition, cohort, train_clients=None) -> tuple[dict, dict, dict]:
    """What a round logs of the global model w: (test metrics as test_* and train_loss on the
    training rows of train_clients, all the partition's when None; the fairness columns
    client_accuracy_mean/_std/_p10/_p90/_jain/_gini; each cohort client's loss and accuracy on
    its rows [K]), from one pass over the training rows needed."""
    test = evaluate(model, w, partition.x_test, partition.y_test)
    train_loss, losses, correct = train_scores(model, w, partition, cohort, train_clients)
    loss, accuracy = per_client(losses, correct, cohort.sizes)
    scores = {f"test_{name}": value for name, value in test.items()}
    scores["train_loss"] = train_loss
    if accuracy is None:
        return scores, {}, {"loss": loss}
    fairness = distribution(accuracy, "client_accuracy")  # an empty cohort: NaN (DP's Poisson)
    return scores, fairness, {"loss": loss, "accuracy": accuracy}


def train_scores(model, w, partition, cohort, train_clients=None):
    """(train_loss: the mean loss over the training rows of train_clients, or of every client
    when None; the cohort's per-sample losses and correct flags, laid out client by client).
    Each training row needed is scored once: those of train_clients and the cohort's."""
    x, y, offsets = partition.x_train, partition.y_train, partition.offsets
    if train_clients is None:
        losses, correct = per_sample(model, w, x, y)
        rows = client_rows(cohort.starts, cohort.sizes)
        return float(losses.mean()), losses[rows], None if correct is None else correct[rows]
    scored = np.union1d(train_clients, cohort.ids)
    sizes = offsets[scored + 1] - offsets[scored]
    losses, correct = per_sample(model, w, x, y, client_rows(offsets[scored], sizes))
    begins = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # each scored client's first score

    def scores_of(clients: np.ndarray) -> np.ndarray:
        at = np.searchsorted(scored, clients)
        return client_rows(begins[at], sizes[at])

    train_loss = float(losses[scores_of(train_clients)].mean())
    rows = scores_of(cohort.ids)
    return train_loss, losses[rows], None if correct is None else correct[rows]
