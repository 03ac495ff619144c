"""Partition schemes: split training-sample indices among clients.

Each scheme takes the training labels, the number of clients and a Generator, and returns one sorted
index array per client; together they cover every training sample exactly once.
"""

import numpy as np

from flcli.errors import FLError

MAX_DIRICHLET_DRAWS = 1000

SCHEMES = {
    "iid": "uniformly shuffled, equal-sized shards (sizes differ by at most one)",
    "dirichlet": "label skew: each class split over clients by proportions ~ Dir(alpha) "
    "(NIID-Bench); small alpha = few labels per client",
}


def stratified_split(
    y: np.ndarray, test_size: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a train/test split that keeps every class's share in both parts."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise FLError(
            f"--test-size {test_size} is out of range; use a fraction in (0, 1), e.g. 0.2"
        )
    indices = np.arange(len(y))
    train, test = train_test_split(
        indices, test_size=test_size, stratify=y, random_state=int(rng.integers(2**31 - 1))
    )
    return np.sort(train), np.sort(test)


def check_feasible(num_samples: int, num_clients: int, min_samples: int) -> None:
    if num_clients < 1:
        raise FLError(f"--clients {num_clients} must be at least 1")
    if num_clients > num_samples:
        raise FLError(
            f"--clients {num_clients} is more than the {num_samples} training samples; "
            f"use at most {num_samples} clients"
        )
    if min_samples * num_clients > num_samples:
        raise FLError(
            f"--min-samples {min_samples} x --clients {num_clients} exceeds the {num_samples} "
            f"training samples; lower --min-samples to at most {num_samples // num_clients}"
        )


def iid(labels: np.ndarray, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(len(labels))
    return [np.sort(part) for part in np.array_split(order, num_clients)]


def dirichlet(
    labels: np.ndarray,
    num_clients: int,
    alpha: float,
    min_samples: int,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Per class, proportions ~ Dir(alpha) over clients; a client already holding its fair share
    (n / num_clients) gets no more (NIID-Bench's balancing). Redrawn until every client has at
    least min_samples."""
    if not alpha > 0:
        raise FLError(f"--alpha {alpha} must be > 0; e.g. 0.1 (strong skew) to 100 (near IID)")
    n = len(labels)
    classes = np.unique(labels)
    for _ in range(MAX_DIRICHLET_DRAWS):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        sizes = np.zeros(num_clients, dtype=np.int64)
        for c in classes:
            members = rng.permutation(np.flatnonzero(labels == c))
            p = rng.dirichlet(np.full(num_clients, alpha))
            p = p * (sizes < n / num_clients)
            p = p / p.sum() if p.sum() > 0 else np.full(num_clients, 1.0 / num_clients)
            cuts = (np.cumsum(p) * len(members)).astype(np.int64)[:-1]
            for client, chunk in enumerate(np.split(members, cuts)):
                parts[client].append(chunk)
                sizes[client] += len(chunk)
        if sizes.min() >= min_samples:
            return [np.sort(np.concatenate(chunks)) for chunks in parts]
    raise FLError(
        f"Dirichlet(alpha={alpha}) left some client with fewer than --min-samples {min_samples} "
        f"in {MAX_DIRICHLET_DRAWS} draws; raise --alpha, use fewer --clients or lower --min-samples"
    )


def partition(
    scheme: str,
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    alpha: float = 0.5,
    min_samples: int = 1,
) -> list[np.ndarray]:
    """Split training-sample indices among clients by the named scheme."""
    check_feasible(len(labels), num_clients, min_samples)
    if scheme == "iid":
        return iid(labels, num_clients, rng)
    if scheme == "dirichlet":
        return dirichlet(labels, num_clients, alpha, min_samples, rng)
    raise FLError(f"unknown scheme {scheme!r}; choose one of: {', '.join(SCHEMES)}")


def label_counts(parts: list[np.ndarray], labels: np.ndarray, num_classes: int) -> np.ndarray:
    """[clients, classes] number of samples of each class held by each client."""
    return np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts])


def heterogeneity(counts: np.ndarray) -> dict[str, float]:
    """Skew figures: mean Jensen-Shannon divergence (base 2, in [0, 1]) of the clients' label
    distributions to the global one, mean labels per client, coefficient of variation of sizes."""
    from scipy.spatial.distance import jensenshannon

    sizes = counts.sum(axis=1)
    global_dist = counts.sum(axis=0) / counts.sum()
    js = [jensenshannon(row / row.sum(), global_dist, base=2) ** 2 for row in counts if row.sum()]
    return {
        "js_divergence": float(np.mean(js)),
        "labels_per_client": float((counts > 0).sum(axis=1).mean()),
        "size_cv": float(sizes.std() / sizes.mean()),
    }
