"""Figures that describe a partition: label counts per client and heterogeneity."""

import numpy as np


def label_counts_from_offsets(y: np.ndarray, offsets: np.ndarray, num_classes: int) -> np.ndarray:
    """[clients, classes] counts of rows grouped by client (client i: offsets[i]:offsets[i+1])."""
    num_clients = len(offsets) - 1
    client_of = np.repeat(np.arange(num_clients), np.diff(offsets))
    flat = np.bincount(client_of * num_classes + y, minlength=num_clients * num_classes)
    return flat.reshape(num_clients, num_classes)


def label_counts(parts: list[np.ndarray], labels: np.ndarray, num_classes: int) -> np.ndarray:
    """[clients, classes] number of samples of each class held by each client."""
    order = np.concatenate(parts)
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])])
    return label_counts_from_offsets(labels[order], offsets, num_classes)


def js_divergences(counts: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of each client's label distribution to the
    global one."""
    sizes = counts.sum(axis=1, keepdims=True)
    p = counts / np.where(sizes > 0, sizes, 1)
    q = counts.sum(axis=0) / counts.sum()
    m = (p + q) / 2

    def kl(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(a > 0, a * np.log2(a / b), 0.0)
        return terms.sum(axis=1)

    return np.clip(0.5 * kl(p, m) + 0.5 * kl(np.broadcast_to(q, p.shape), m), 0.0, 1.0)


def heterogeneity(counts: np.ndarray) -> dict[str, float]:
    """Skew figures: mean Jensen-Shannon divergence (base 2, in [0, 1]) of the clients' label
    distributions to the global one, mean labels per client, coefficient of variation of sizes."""
    sizes = counts.sum(axis=1)
    return {
        "js_divergence": float(js_divergences(counts[sizes > 0]).mean()),
        "labels_per_client": float((counts > 0).sum(axis=1).mean()),
        "size_cv": size_cv(sizes),
    }


def size_cv(sizes: np.ndarray) -> float:
    sizes = np.asarray(sizes, dtype=np.float64)
    return float(sizes.std() / sizes.mean())


def target_heterogeneity(y: np.ndarray, offsets: np.ndarray) -> dict[str, float]:
    """Skew figures of a regression partition: coefficient of variation of the sizes, and the
    spread of the clients' mean targets relative to the spread of all targets."""
    sizes = np.diff(offsets)
    means = np.add.reduceat(y, offsets[:-1]) / sizes if len(y) else np.zeros(0)
    shift = float(means.std() / y.std()) if y.std() > 0 else 0.0
    return {"size_cv": size_cv(sizes), "target_shift": shift}
