"""Generated datasets, named with their parameters: `synthetic:alpha=1,beta=1`, `fcube`,
`classification:n_samples=2000,n_classes=4`, `images:samples=2000,noise=0.2`.

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


IMAGE_DEFAULTS = {
    "samples": 2000,
    "channels": 3,
    "size": 32,
    "classes": 10,
    "templates": 3,
    "noise": 0.2,
}
CANVAS = 0.5  # the grey an image's pattern is placed on
CONTRAST = (0.3, 0.5)  # the range of a pattern's largest deviation from the canvas


def images(params: dict, rng: np.random.Generator) -> Dataset:
    """Class-conditional images [channels, size, size], float32 in [0, 1], for CNNs.

    Each class has a few (templates) random smooth colour patterns of 5/8 of the image's side,
    zero mean in each channel. A sample of class k: one of k's patterns, at a random contrast,
    placed at a random position on a grey canvas, plus pixel noise (uniform, of std noise),
    clipped to [0, 1]. As the pattern moves by up to 3/8 of the image, a class's mean image is a
    blur of its patterns, which a linear model of the pixels tells apart only in part, while a
    convolution that finds a pattern wherever it is separates the classes. Labels are balanced
    (samples % classes in a random order).
    """
    _check_keys("images", params, tuple(IMAGE_DEFAULTS))
    given = {**IMAGE_DEFAULTS, **params}
    least = {"samples": 1, "channels": 1, "size": 4, "classes": 2, "templates": 1}
    samples, channels, size, classes, templates = (
        _whole("images", key, given[key], low) for key, low in least.items()
    )
    noise = given["noise"]
    if noise < 0:
        raise FLError(f"images:noise={noise:g} must be >= 0 (the std of the pixel noise)")
    pixels = samples * channels * size * size  # float32, and a few copies while partitioned
    refuse_beyond_memory(4.0 * pixels * 4, f"images:samples={samples}", "generate fewer samples")
    side = size // 2 + size // 8
    patterns = smooth_patterns(classes * templates, channels, side, rng)
    y = rng.permutation(np.arange(samples) % classes)
    chosen = y * templates + rng.integers(templates, size=samples)
    contrast = rng.uniform(*CONTRAST, samples).astype(np.float32)
    corners = rng.integers(0, size - side + 1, (samples, 2))
    X = rng.random((samples, channels, size, size), dtype=np.float32)
    spread = noise * math.sqrt(12)  # a uniform on [0, spread) has std noise
    X *= np.float32(spread)
    X += np.float32(CANVAS - spread / 2)
    for rows, (top, left) in rows_by_corner(corners, size - side + 1):
        block = patterns[chosen[rows]] * contrast[rows, None, None, None]
        X[rows, :, top : top + side, left : left + side] += block
    np.clip(X, 0.0, 1.0, out=X)
    return Dataset(
        name="images",
        X=X.reshape(samples, -1),
        y=y.astype(np.int64),
        num_classes=classes,
        feature_names=tuple(f"x{j}" for j in range(channels * size * size)),
        input_shape=(channels, size, size),
    )


def smooth_patterns(count: int, channels: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """[count, channels, side, side] float32: uniform noise on a coarse grid (a quarter of the
    side) interpolated up to side x side, each channel shifted to zero mean and the pattern
    scaled to a largest absolute value of 1."""
    from scipy.ndimage import zoom

    coarse = max(3, side // 4)
    grid = rng.uniform(-1.0, 1.0, (count, channels, coarse, coarse))
    patterns = zoom(
        grid, (1, 1, side / coarse, side / coarse), order=1, mode="nearest", grid_mode=True
    )
    patterns = patterns - patterns.mean(axis=(2, 3), keepdims=True)
    largest = np.abs(patterns).max(axis=(1, 2, 3), keepdims=True)
    return (patterns / np.maximum(largest, 1e-12)).astype(np.float32)


def rows_by_corner(corners: np.ndarray, span: int):
    """(the rows, (top, left)) for each corner position that corners [n, 2] hold."""
    keys = corners[:, 0] * span + corners[:, 1]
    order = np.argsort(keys, kind="stable")
    starts = np.searchsorted(keys[order], np.arange(span * span + 1))
    for key in range(span * span):
        if starts[key] < starts[key + 1]:
            yield order[starts[key] : starts[key + 1]], divmod(key, span)


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
    "images": (
        images,
        "class-conditional colour images for CNNs (input_shape channels x size x size): each "
        "class a few smooth patterns placed anywhere, plus noise (samples=2000, channels=3, "
        "size=32, classes=10, templates=3, noise=0.2)",
        "images:samples=2000,noise=0.2",
    ),
}


def generate(spec: str, rng: np.random.Generator) -> Dataset:
    family, params = parse_params(spec)
    generator = GENERATORS[family][0]
    return generator(params, rng)
