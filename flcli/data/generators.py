"""Generated datasets, named with their parameters: `synthetic:alpha=1,beta=1`, `fcube`,
`classification:n_samples=2000,n_classes=4`.

Each generator takes its parsed parameters and a Generator (the GENERATE stream of --seed) and
returns a Dataset; synthetic and fcube come with their own clients (`groups`) and test rows.
"""

import inspect
import math

import numpy as np

from flcli.data.dataset import Dataset
from flcli.errors import FLError
from flcli.memory import refuse_beyond_memory


def parse_params(spec: str) -> tuple[str, dict[str, float]]:
    """'synthetic:alpha=1,beta=0.5' -> ('synthetic', {'alpha': 1.0, 'beta': 0.5})."""
    family, _, text = spec.partition(":")
    params: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            params[key.strip()] = float(value)
            if not math.isfinite(params[key.strip()]):
                raise ValueError
        except ValueError:
            example = GENERATORS[family][2] if family in GENERATORS else "synthetic:alpha=1"
            raise FLError(
                f"dataset parameter {item!r} in {spec!r} is not KEY=NUMBER (finite); e.g. {example}"
            ) from None
    # the generated table and a few copies of it while it is split and partitioned
    rows, columns = params.get("n_samples", 1000), params.get("n_features", 20)
    refuse_beyond_memory(
        abs(rows * columns) * 8 * 4, f"{spec}", "generate fewer n_samples or n_features"
    )
    return family, params


def _check_keys(family: str, params: dict, allowed) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise FLError(
            f"{family} has no parameter {unknown[0]!r}; its parameters are: {', '.join(allowed)}"
        )


def _whole(family: str, key: str, value: float, least: int) -> int:
    if value != int(value) or value < least:
        raise FLError(f"{family}:{key}={value:g} must be a whole number >= {least}")
    return int(value)


SYNTHETIC_FEATURES = 60
SYNTHETIC_CLASSES = 10


def synthetic_sizes(num_clients: int, rng: np.random.Generator) -> np.ndarray:
    """Samples per device, n_k = floor(LogNormal(4, 2)) + 50 (FedProx's generator)."""
    return rng.lognormal(4.0, 2.0, num_clients).astype(np.int64) + 50


def synthetic(params: dict, rng: np.random.Generator) -> Dataset:
    """Synthetic(alpha, beta) of FedProx (Li et al., MLSys 2020), as its public generator does it.

    Device k: u_k ~ N(0, alpha), B_k ~ N(0, beta) (standard deviations); W_k [60x10] and b_k have
    entries ~ N(u_k, 1); v_k ~ N(B_k, 1) per feature; x ~ N(v_k, diag(j^-1.2)); y = argmax(x W_k +
    b_k); n_k = floor(LogNormal(4, 2)) + 50; 90% of a device's samples train, 10% test.
    iid=1 draws one W, b ~ N(0, 1) for all devices and sets v_k = 0.
    """
    _check_keys("synthetic", params, ("alpha", "beta", "iid", "clients"))
    alpha, beta = params.get("alpha", 1.0), params.get("beta", 1.0)
    if alpha < 0 or beta < 0:
        raise FLError(f"synthetic:alpha={alpha:g},beta={beta:g} must be >= 0 (standard deviations)")
    iid = params.get("iid", 0.0)
    if iid not in (0.0, 1.0):
        raise FLError(f"synthetic:iid={iid:g} must be 0 or 1")
    num_devices = _whole("synthetic", "clients", params.get("clients", 30), 1)
    d, c = SYNTHETIC_FEATURES, SYNTHETIC_CLASSES
    sizes = synthetic_sizes(num_devices, rng)
    scale = np.arange(1, d + 1) ** -0.6  # standard deviations: Sigma = diag(j^-1.2)
    if iid:
        means = np.zeros((num_devices, d))
        shared_w, shared_b = rng.normal(0, 1, (d, c)), rng.normal(0, 1, c)
    else:
        u = rng.normal(0, alpha, num_devices)
        centres = rng.normal(0, beta, num_devices)
        means = rng.normal(centres[:, None], 1.0, (num_devices, d))
    xs, ys, tests = [], [], []
    for k, n in enumerate(sizes):
        if iid:
            w, b = shared_w, shared_b
        else:
            w, b = rng.normal(u[k], 1.0, (d, c)), rng.normal(u[k], 1.0, c)
        x = means[k] + rng.standard_normal((n, d)) * scale
        xs.append(x)
        ys.append(np.argmax(x @ w + b, axis=1))  # argmax of softmax = argmax of the logits
        test = np.zeros(n, dtype=bool)
        test[rng.permutation(n)[int(0.9 * n) :]] = True
        tests.append(test)
    return Dataset(
        name="synthetic",
        X=np.concatenate(xs),
        y=np.concatenate(ys).astype(np.int64),
        num_classes=c,
        feature_names=tuple(f"x{j}" for j in range(d)),
        groups=np.repeat(np.arange(num_devices), sizes),
        is_test=np.concatenate(tests),
    )


def fcube(params: dict, rng: np.random.Generator) -> Dataset:
    """FCUBE of NIID-Bench (Li et al., ICDE 2022): points in [-1, 1]^3, label 0 where x1 > 0 and 1
    otherwise. Party p (of 4) holds one pair of mirrored octants, (+, s2, s3) and (-, -s2, -s3),
    so every party sees both labels but a different part of the cube; the test set is uniform."""
    _check_keys("fcube", params, ("n_train", "n_test"))
    per_party = _whole("fcube", "n_train", params.get("n_train", 4000), 8) // 4
    n_test = _whole("fcube", "n_test", params.get("n_test", 1000), 1)
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]])  # (s2, s3) per party
    x = rng.random((4, per_party, 3))
    x[:, :, 1:] *= signs[:, None, :]
    mirrored = np.arange(per_party) % 2 == 1
    x[:, mirrored] *= -1
    train = x.reshape(-1, 3)
    test = rng.uniform(-1, 1, (n_test, 3))
    X = np.concatenate([train, test])
    return Dataset(
        name="fcube",
        X=X,
        y=(X[:, 0] <= 0).astype(np.int64),
        num_classes=2,
        feature_names=("x1", "x2", "x3"),
        groups=np.concatenate([np.repeat(np.arange(4), per_party), np.full(n_test, -1)]),
        is_test=np.arange(len(X)) >= len(train),
    )


def classification(params: dict, rng: np.random.Generator) -> Dataset:
    """scikit-learn's make_classification with the given keyword arguments; n_informative defaults
    to enough informative features for the classes (sklearn's default of 2 fits 2 classes)."""
    from sklearn.datasets import make_classification

    accepted = [
        name
        for name in inspect.signature(make_classification).parameters
        if name not in ("random_state", "shuffle", "weights")
    ]
    _check_keys("classification", params, accepted)
    kwargs: dict = {
        k: int(v) if v == int(v) and k.startswith("n_") else v for k, v in params.items()
    }
    kwargs.setdefault("n_samples", 1000)
    classes = kwargs.setdefault("n_classes", 2)
    features = kwargs.setdefault("n_features", 20)
    clusters = kwargs.get("n_clusters_per_class", 2)
    wanted = max(2, math.ceil(math.log2(max(classes * clusters, 2))))
    kwargs.setdefault("n_informative", min(features, wanted))
    kwargs.setdefault("n_redundant", min(2, features - kwargs["n_informative"]))
    try:
        X, y = make_classification(**kwargs, random_state=int(rng.integers(2**31 - 1)))
    except (ValueError, TypeError) as e:
        raise FLError(f"classification:{spec_of(params)}: {e}") from None
    return Dataset(
        name="classification",
        X=X,
        y=y.astype(np.int64),
        num_classes=int(classes),
        feature_names=tuple(f"x{j}" for j in range(X.shape[1])),
    )


def spec_of(params: dict) -> str:
    return ",".join(f"{k}={v:g}" for k, v in params.items())


# family -> (generator, one-line description, example spec)
GENERATORS = {
    "synthetic": (
        synthetic,
        "FedProx's Synthetic(alpha, beta): 30 devices (clients=N), 60 features, 10 classes, "
        "LogNormal sizes, own 90/10 split per device; iid=1 for the IID variant",
        "synthetic:alpha=1,beta=1",
    ),
    "fcube": (
        fcube,
        "NIID-Bench's FCUBE: 3-D points labelled by the sign of x1, 4 parties of mirrored "
        "octants (n_train=4000, n_test=1000)",
        "fcube",
    ),
    "classification": (
        classification,
        "scikit-learn's make_classification with its keyword arguments as parameters",
        "classification:n_samples=2000,n_features=20,n_classes=4",
    ),
}


def generate(spec: str, rng: np.random.Generator) -> Dataset:
    family, params = parse_params(spec)
    generator = GENERATORS[family][0]
    return generator(params, rng)
