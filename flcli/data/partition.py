"""flcli's partition schemes, and SCHEMES, the registry of them by name.

Each scheme is a function as flcli.data.contract describes: its keyword parameters with defaults
are its options. It returns one sorted index array per client; together they cover every training
sample exactly once. All randomness comes from the Generator passed in (the PARTITION stream of
--seed). Work is vectorized over samples; loops run over classes, shards or clients only.
"""

import heapq
from typing import Any

import numpy as np

from flcli import rng as streams
from flcli.data.config import PartitionConfig
from flcli.data.contract import Scheme, check_min_samples, group_indices
from flcli.data.flower_schemes import distribution, grouped_natural, inner_dirichlet, size
from flcli.data.schemes import DESCRIPTIONS
from flcli.data.sizes import whole_sizes
from flcli.data.vertical import vertical
from flcli.errors import FLError
from flcli.options import declared, flag_of
from flcli.rng import Purpose

MAX_DIRICHLET_DRAWS = 1000


class TooFewSamples(FLError):
    """A scheme's draws never gave every client min_samples; `largest` is the largest minimum
    client size that a draw reached (for this seed), which a retry with it would meet."""

    def __init__(self, message: str, largest: int):
        super().__init__(message)
        self.largest = largest


SIZE_KINDS = ("dirichlet", "lognormal", "linear", "exponential")


def stratified_split(
    y: np.ndarray, test_size: float, rng: np.random.Generator, stratify: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a train/test split that keeps every class's share in both parts (when every
    class has enough samples to be split; a plain random split otherwise, e.g. regression)."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise FLError(
            f"--test-size {test_size} is out of range; use a fraction in (0, 1), e.g. 0.2"
        )
    indices = np.arange(len(y))
    seed = int(rng.integers(2**31 - 1))
    try:
        train, test = train_test_split(
            indices, test_size=test_size, stratify=y if stratify else None, random_state=seed
        )
    except ValueError:  # a class too small to stratify, or an empty side
        if stratify:
            return stratified_split(y, test_size, rng, stratify=False)
        raise FLError(
            f"--test-size {test_size} leaves an empty train or test set of {len(y)} samples"
        ) from None
    return np.sort(train), np.sort(test)


def split_by_sizes(order: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    return [np.sort(part) for part in np.split(order, np.cumsum(sizes)[:-1])]


def iid(labels: np.ndarray, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(len(labels))
    return [np.sort(part) for part in np.array_split(order, num_clients)]


def noise(
    labels: np.ndarray, num_clients: int, rng: np.random.Generator, *, noise_std: float = 0.1
) -> list[np.ndarray]:
    """An IID split; the clients' inputs get their noise afterwards (add_feature_noise)."""
    if noise_std < 0:
        raise FLError(f"--noise-std {noise_std} must be >= 0, e.g. 0.1")
    return iid(labels, num_clients, rng)


def dirichlet(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    *,
    min_samples: int,
    alpha: float = 0.5,
) -> list[np.ndarray]:
    """Per class, proportions ~ Dir(alpha) over clients; a client already holding its fair share
    (n / num_clients) gets no more (NIID-Bench's balancing). Redrawn until every client has at
    least min_samples."""
    check_alpha(alpha)
    n = len(labels)
    members_of = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    largest = 0
    for _ in range(MAX_DIRICHLET_DRAWS):
        client_of = np.empty(n, dtype=np.int64)
        sizes = np.zeros(num_clients, dtype=np.int64)
        for class_members in members_of:
            members = rng.permutation(class_members)
            p = rng.dirichlet(np.full(num_clients, alpha))
            open_clients = sizes < n / num_clients
            p = p * open_clients
            if p.sum() > 0:
                p = p / p.sum()
            else:  # all the mass fell on full clients (tiny alpha): draw again among the others
                p[open_clients] = rng.dirichlet(np.full(open_clients.sum(), alpha))
            cuts = (np.cumsum(p) * len(members)).astype(np.int64)
            counts = np.diff(cuts, prepend=0)
            counts[-1] += len(members) - cuts[-1]
            client_of[members] = np.repeat(np.arange(num_clients), counts)
            sizes += counts
        if sizes.min() >= min_samples:
            return group_indices(client_of, num_clients)
        largest = max(largest, int(sizes.min()))
    fix = (
        f"the largest minimum that works for it is {largest}: lower --min-samples to {largest}, "
        "or raise --alpha, or use fewer --clients"
        if largest
        else "some client got no sample in every draw: raise --alpha or use fewer --clients"
    )
    raise TooFewSamples(
        f"Dirichlet(alpha={alpha}) over {num_clients} clients left some client with fewer than "
        f"--min-samples {min_samples} in all {MAX_DIRICHLET_DRAWS} draws of this seed; {fix}",
        largest,
    )


def pathological(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    *,
    min_samples: int,
    classes_per_client: int = 2,
) -> list[np.ndarray]:
    """Every client holds exactly K classes; each class is split evenly among its holders. Classes
    are dealt so that every class has a holder (no sample is dropped), the rest at random."""
    classes = np.unique(labels)
    num_classes, k = len(classes), classes_per_client
    if not 1 <= k <= num_classes:
        raise FLError(
            f"--classes-per-client {k} must be between 1 and the {num_classes} classes of the "
            "training set"
        )
    if num_clients * k < num_classes:
        raise FLError(
            f"--clients {num_clients} x --classes-per-client {k} cannot cover the {num_classes} "
            f"classes; use at least {-(-num_classes // k)} clients or a larger K"
        )
    held = np.full((num_clients, k), -1, dtype=np.int64)
    slots = np.arange(num_classes)  # column-major: client t % N takes class perm[t] in slot t // N
    held[slots % num_clients, slots // num_clients] = rng.permutation(num_classes)
    for client in range(num_clients):
        missing = int((held[client] < 0).sum())
        if missing:
            free = np.setdiff1d(np.arange(num_classes), held[client])
            held[client, k - missing :] = rng.choice(free, missing, replace=False)
    client_of = np.empty(len(labels), dtype=np.int64)
    for c, label in enumerate(classes):
        holders = np.flatnonzero((held == c).any(axis=1))
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) < len(holders):
            raise FLError(
                f"class {label} has {len(members)} training samples for {len(holders)} clients "
                "holding it; use fewer --clients or a smaller --classes-per-client"
            )
        counts = np.full(len(holders), len(members) // len(holders))
        counts[: len(members) % len(holders)] += 1
        client_of[members] = np.repeat(holders, counts)
    parts = group_indices(client_of, num_clients)
    return check_min_samples(parts, min_samples, f"pathological K={k}")


def shards(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    *,
    min_samples: int,
    shards_per_client: int = 2,
) -> list[np.ndarray]:
    """McMahan et al. (2017): sort by label, cut into clients x S equal shards, give each client S
    shards at random."""
    s = shards_per_client
    if s < 1 or num_clients * s > len(labels):
        raise FLError(
            f"--shards-per-client {s} must be >= 1 with --clients x shards at most the "
            f"{len(labels)} training samples"
        )
    order = np.lexsort((rng.random(len(labels)), labels))  # by label, random within a label
    pieces = np.array_split(order, num_clients * s)
    deal = rng.permutation(num_clients * s).reshape(num_clients, s)
    parts = [np.sort(np.concatenate([pieces[j] for j in row])) for row in deal]
    return check_min_samples(parts, min_samples, f"shards ({s} per client)")


def check_alpha(alpha: float) -> None:
    if not alpha > 0:
        raise FLError(f"--alpha {alpha} must be > 0; e.g. 0.1 (strong skew) to 100 (near IID)")


def size_weights(kind: str, num_clients: int, alpha: float, rng) -> np.ndarray:
    """Relative client sizes: Dir(alpha), LogNormal(0, sigma) (lognormal:SIGMA, default 1),
    proportional to i + 1 (linear) or to e^i (exponential, as Flower Datasets)."""
    name, _, arg = kind.partition(":")
    if name == "dirichlet" and not arg:
        check_alpha(alpha)
        weights = rng.dirichlet(np.full(num_clients, alpha))
        if not np.isfinite(weights).all():
            raise FLError(f"--alpha {alpha} is too small to draw sizes; raise it, e.g. 0.1")
        return weights
    if name == "lognormal":
        try:
            sigma = float(arg) if arg else 1.0
        except ValueError:
            sigma = -1.0
        if not 0 < sigma < np.inf:
            raise FLError(f"--sizes {kind}: SIGMA must be a finite number > 0, e.g. lognormal:1.5")
        log_weights = rng.normal(0.0, sigma, num_clients)
        return np.exp(log_weights - log_weights.max())  # LogNormal(0, sigma), up to a factor
    if name == "linear" and not arg:
        return np.arange(1.0, num_clients + 1)
    if name == "exponential" and not arg:
        return np.exp(np.arange(num_clients) - (num_clients - 1.0))
    raise FLError(f"--sizes {kind!r} is unknown; choose one of: {', '.join(SIZE_KINDS)}")


def sizes_from_weights(n: int, weights: np.ndarray, min_samples: int) -> np.ndarray:
    """min_samples each, the rest shared in proportion to weights (largest remainders)."""
    return whole_sizes(n - min_samples * len(weights), weights) + min_samples


def quantity(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    *,
    min_samples: int,
    sizes: str = "dirichlet",
    alpha: float = 0.5,
) -> list[np.ndarray]:
    """Client sizes drawn from --sizes, samples dealt uniformly at random (labels IID)."""
    weights = size_weights(sizes, num_clients, alpha, rng)
    counts = sizes_from_weights(len(labels), weights, min_samples)
    return split_by_sizes(rng.permutation(len(labels)), counts)


def continuous(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    *,
    values: np.ndarray | None,
    by: str | None = None,
    strictness: float = 0.5,
) -> list[np.ndarray]:
    """Flower Datasets' ContinuousPartitioner: sort samples by s * z + (1 - s) * noise (z the
    standardized feature `by`, whose values flcli hands over, noise ~ N(0, 1)) and cut the order
    into equal clients."""
    if values is None:
        raise FLError("--scheme continuous needs --by FEATURE, the feature to sort clients by")
    if not 0.0 <= strictness <= 1.0:
        raise FLError(f"--strictness {strictness} must be in [0, 1]: 0 is IID, 1 strictly sorted")
    std = values.std()
    if std < 1e-12 and strictness > 0:
        raise FLError("the --by feature is constant; choose another feature or --strictness 0")
    z = (values - values.mean()) / (std if std > 0 else 1.0)
    blended = strictness * z + (1.0 - strictness) * rng.standard_normal(len(values))
    order = np.argsort(blended, kind="stable")
    return [np.sort(part) for part in np.array_split(order, num_clients)]


def natural(
    labels: np.ndarray,
    num_clients: int | None,
    rng: np.random.Generator,
    *,
    min_samples: int,
    groups: np.ndarray | None,
    by: str | None = None,
) -> list[np.ndarray]:
    """One client per group (the values of column `by`, grouped by flcli, or the data's own
    devices); with fewer clients, whole groups are merged, largest first into the currently
    smallest client (groups of equal size in random order)."""
    if groups is None:
        raise FLError("--scheme natural needs --by COLUMN, or a dataset with its own clients")
    ids, group_of = np.unique(groups, return_inverse=True)
    group_sizes = np.bincount(group_of)
    if num_clients is None or num_clients == len(ids):
        parts = group_indices(group_of, len(ids))
        return check_min_samples(parts, min_samples, "natural")
    if num_clients > len(ids):
        raise FLError(
            f"the data has {len(ids)} natural clients; use --clients {len(ids)} or fewer "
            "(or drop --clients)"
        )
    shuffled = rng.permutation(len(ids))
    largest_first = shuffled[np.argsort(-group_sizes[shuffled], kind="stable")]
    client_of_group = np.empty(len(ids), dtype=np.int64)
    load = [(0, client) for client in range(num_clients)]
    for group in largest_first:
        size, client = heapq.heappop(load)
        client_of_group[group] = client
        heapq.heappush(load, (size + int(group_sizes[group]), client))
    parts = group_indices(client_of_group[group_of], num_clients)
    return check_min_samples(parts, min_samples, "natural")


def add_feature_noise(x: np.ndarray, offsets: np.ndarray, seed: int, *, noise_std: float) -> None:
    """In place: client i's rows get Gaussian noise of std noise_std * i / (N - 1), from the
    stream (seed, NOISE, 0, i)."""
    num_clients = len(offsets) - 1
    for i in range(1, num_clients):
        std = noise_std * i / (num_clients - 1)
        rows = slice(offsets[i], offsets[i + 1])
        x[rows] += streams.rng(seed, Purpose.NOISE, 0, i).normal(0.0, std, x[rows].shape)


def quantity_idle(options: dict[str, Any]) -> dict[str, str]:
    sizes = options["sizes"]
    return {} if sizes == "dirichlet" else {"alpha": f"applies to --sizes dirichlet, not {sizes}"}


SCHEMES = {
    scheme.name: scheme
    for scheme in (
        Scheme(iid, DESCRIPTIONS["iid"]),
        Scheme(dirichlet, DESCRIPTIONS["dirichlet"], label_skew=True),
        Scheme(pathological, DESCRIPTIONS["pathological"], label_skew=True),
        Scheme(shards, DESCRIPTIONS["shards"], label_skew=True),
        Scheme(quantity, DESCRIPTIONS["quantity"], idle=quantity_idle),
        Scheme(noise, DESCRIPTIONS["noise"], perturb=add_feature_noise),
        Scheme(continuous, DESCRIPTIONS["continuous"]),
        Scheme(natural, DESCRIPTIONS["natural"], own_clients=True),
        Scheme(size, DESCRIPTIONS["size"], given_sizes=True),
        Scheme(
            inner_dirichlet,
            DESCRIPTIONS["inner-dirichlet"],
            label_skew=True,
            given_sizes=True,
            alias="inner-dirichlet",
        ),
        Scheme(distribution, DESCRIPTIONS["distribution"], label_skew=True),
        Scheme(
            grouped_natural,
            DESCRIPTIONS["grouped-natural"],
            own_clients=True,
            alias="grouped-natural",
        ),
        Scheme(vertical, DESCRIPTIONS["vertical"], vertical=True),
    )
}
OPTIONS = list(dict.fromkeys(name for scheme in SCHEMES.values() for name in scheme.options))
FLAGS = {item.name: flag_of(item) for item in declared(PartitionConfig)}


def builtin(name: str) -> Scheme:
    if name not in SCHEMES:
        raise FLError(f"unknown scheme {name!r}; choose one of: {', '.join(SCHEMES)}")
    return SCHEMES[name]


def does_not_apply(option: str, scheme: str) -> str:
    users = [other.name for other in SCHEMES.values() if option in other.options]
    takes = f"it shapes {', '.join(users)}" if users else "no scheme takes it"
    return f"{FLAGS.get(option, option)} does not apply to --scheme {scheme}; {takes}"


def scheme_options(scheme: Scheme, given: dict[str, Any]) -> dict[str, Any]:
    """A built-in scheme's options: those given (None: not given), the others at its defaults.
    An option it does not take, or that another option's value leaves without effect, is an
    FLError (it would be silently ignored)."""
    for name, value in given.items():
        if value is not None and name not in scheme.options:
            raise FLError(does_not_apply(name, scheme.name))
    options = {**scheme.defaults, **{k: v for k, v in given.items() if v is not None}}
    for name, why in scheme.idle_options(options).items():
        if given.get(name) is not None:
            raise FLError(f"{FLAGS[name]} {why}")
    return options


def partition(
    scheme: str,
    labels: np.ndarray,
    num_clients: int | None,
    rng: np.random.Generator,
    min_samples: int = 1,
    *,
    values: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    **options: Any,
) -> list[np.ndarray]:
    """Split training-sample indices among clients by the built-in scheme named, with its
    options (alpha=0.1 ...). `values` is the feature that continuous sorts by; `groups` the
    natural client of each sample."""
    chosen = builtin(scheme)
    chosen_options = scheme_options(chosen, options)
    return chosen.split(
        labels, num_clients, rng, min_samples, chosen_options, values=values, groups=groups
    )
