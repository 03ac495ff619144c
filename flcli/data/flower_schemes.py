"""Flower Datasets' partitioners that flcli's other schemes do not cover, under their names:
size (SizePartitioner and its linear, square and exponential forms), inner-dirichlet
(InnerDirichletPartitioner), distribution (DistributionPartitioner, FedProx's MNIST) and
grouped-natural (GroupedNaturalIdPartitioner). Each is a scheme function as flcli.data.contract
describes; where Flower keeps the dataset's order, flcli shuffles with the PARTITION stream.
"""

import numpy as np

from flcli.data.contract import check_min_samples, group_indices
from flcli.data.sizes import law_weights, whole_sizes
from flcli.errors import FLError


def client_of_counts(labels: np.ndarray, counts: np.ndarray, rng) -> list[np.ndarray]:
    """Deal each class's samples (in random order) to the clients by counts[client, class]."""
    client_of = np.empty(len(labels), dtype=np.int64)
    num_clients = counts.shape[0]
    for c, label in enumerate(np.unique(labels)):
        members = rng.permutation(np.flatnonzero(labels == label))
        client_of[members] = np.repeat(np.arange(num_clients), counts[:, c])
    return group_indices(client_of, num_clients)


def size(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    *,
    min_samples: int,
    sizes: str = "linear",
) -> list[np.ndarray]:
    """Client i's share of the samples is proportional to --sizes' law at i (linear: i + 1,
    square: (i + 1)^2, exponential: e^i, a list, or a function of i); labels IID."""
    counts = whole_sizes(len(labels), law_weights(sizes, num_clients))
    order = rng.permutation(len(labels))
    parts = [np.sort(p) for p in np.split(order, np.cumsum(counts)[:-1])]
    return check_min_samples(parts, min_samples, f"size ({sizes})")


def inner_dirichlet(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    *,
    min_samples: int,
    sizes: str = "equal",
    alpha: float = 0.5,
) -> list[np.ndarray]:
    """Client sizes given (--sizes equal, a law or N1,N2,...), then each client's label mix
    p_i ~ Dir(alpha): clients in random order draw their samples' classes from p_i among the
    classes not yet used up (a used-up class's share goes to the others)."""
    if not alpha > 0:
        raise FLError(f"--alpha {alpha} must be > 0; e.g. 0.1 (strong skew) to 100 (near IID)")
    weights = np.ones(num_clients) if sizes == "equal" else law_weights(sizes, num_clients)
    client_sizes = whole_sizes(len(labels), weights)
    check_min_samples([np.empty(s) for s in client_sizes], min_samples, "inner-dirichlet sizes")
    left = np.unique(labels, return_counts=True)[1].astype(np.int64)
    mixes = rng.dirichlet(np.full(len(left), alpha), size=num_clients)
    counts = np.zeros((num_clients, len(left)), dtype=np.int64)
    for client in rng.permutation(num_clients):
        need = int(client_sizes[client])
        while need:
            p = mixes[client] * (left > 0)
            p = p / p.sum() if p.sum() > 0 else (left > 0) / (left > 0).sum()
            taken = np.minimum(rng.multinomial(need, p), left)
            counts[client] += taken
            left -= taken
            need -= int(taken.sum())
    return [np.sort(p) for p in client_of_counts(labels, counts, rng)]


def distribution(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    *,
    min_samples: int,
    classes_per_client: int = 2,
    sigma: float = 2.0,
) -> list[np.ndarray]:
    """FedProx's MNIST: client i holds the K classes i, i + 1, ..., i + K - 1 (mod the number of
    classes); each class is shared among its holders in proportion to LogNormal(0, --sigma)
    draws, one per (client, class), so sizes follow a power law; each (client, class) first gets
    ceil(min_samples / K) samples where the class has enough."""
    classes = np.unique(labels)
    k, num_classes = classes_per_client, len(classes)
    if not 1 <= k <= num_classes:
        raise FLError(
            f"--classes-per-client {k} must be between 1 and the {num_classes} classes of the "
            "training set"
        )
    if num_clients + k - 1 < num_classes:
        raise FLError(
            f"--clients {num_clients} with --classes-per-client {k} leave classes without a "
            f"holder; use at least {num_classes - k + 1} clients or a larger K"
        )
    if not 0 < sigma < np.inf:
        raise FLError(f"--sigma {sigma} must be a finite number > 0, e.g. 2")
    holds = (np.arange(num_classes)[None, :] - np.arange(num_clients)[:, None]) % num_classes < k
    draws = np.exp(rng.normal(0.0, sigma, (num_clients, num_classes))) * holds
    totals = np.unique(labels, return_counts=True)[1]
    counts = np.zeros((num_clients, num_classes), dtype=np.int64)
    preassigned = -(-min_samples // k)  # Flower's preassigned_num_samples_per_label
    for c in range(num_classes):
        base = preassigned * holds[:, c]
        if base.sum() > totals[c]:
            base[:] = 0
        counts[:, c] = base + whole_sizes(int(totals[c] - base.sum()), draws[:, c])
    parts = [np.sort(p) for p in client_of_counts(labels, counts, rng)]
    return check_min_samples(parts, min_samples, f"distribution (K={k}, sigma={sigma})")


def grouped_natural(
    labels: np.ndarray,
    num_clients: int | None,
    rng: np.random.Generator,
    *,
    min_samples: int,
    groups: np.ndarray | None,
    by: str | None = None,
    group_size: int = 2,
) -> list[np.ndarray]:
    """Flower Datasets' GroupedNaturalIdPartitioner (mode allow-smaller): the natural clients
    (values of --by) in sorted order, every --group-size consecutive ones one client; the last
    client may hold fewer."""
    if groups is None:
        raise FLError(
            "--scheme grouped-natural needs --by COLUMN, or a dataset with its own clients"
        )
    if group_size < 1:
        raise FLError(f"--group-size {group_size} must be at least 1, e.g. 10")
    _, group_of = np.unique(groups, return_inverse=True)
    merged = -(-(int(group_of.max()) + 1) // group_size)
    if num_clients is not None and num_clients != merged:
        raise FLError(
            f"--group-size {group_size} makes {merged} clients of the natural ones; drop "
            f"--clients {num_clients} (or set it to {merged})"
        )
    parts = group_indices(group_of // group_size, merged)
    return check_min_samples(parts, min_samples, f"grouped-natural (G={group_size})")
