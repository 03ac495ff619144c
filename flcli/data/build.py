"""Build a partition from a PartitionConfig: load, split, partition, describe."""

from typing import Any

import numpy as np

from flcli.data import partition as schemes
from flcli.data import progress, stats
from flcli.data.config import PartitionConfig
from flcli.data.contract import Scheme, user_scheme
from flcli.data.dataset import Dataset
from flcli.data.datasets import load_dataset
from flcli.data.files import TableOptions, columns_text
from flcli.data.holdout import with_client_test, with_new_clients, with_own_client_test
from flcli.data.sample_format import parse_input_shape
from flcli.data.samples import sample_description
from flcli.data.store import Partition, array_hash
from flcli.data.text import TextOptions
from flcli.data.user_code import check_arguments
from flcli.errors import FLError
from flcli.plugins import entry_points, find
from flcli.rng import Purpose, rng

DEFAULT_CLIENTS = 10
DEFAULT_TEST_SIZE = 0.2


def build_partition(config: PartitionConfig) -> Partition:
    """Load the dataset, hold out its test split, then split the training set among clients.

    clients None means 10, or the data's own clients for the natural scheme; test_size None
    means 0.2, or the dataset's own split (synthetic, fcube). The scheme's options not given take
    the defaults of its function; an option it does not take is an error."""
    scheme = find_scheme(config.scheme)
    options = chosen_options(scheme, config)
    num_clients = config.clients
    if num_clients is None and not scheme.own_clients:
        num_clients = DEFAULT_CLIENTS
    group_by = options.get("by") if scheme.own_clients else None
    data = load_dataset(
        config.dataset,
        config.seed,
        config.target,
        config.encode,
        group_by,
        dataset_args=config.dataset_args,
        table=TableOptions(config.drop, config.features, config.impute),
        text=TextOptions(config.text, config.sequence_length, config.vocabulary_size),
    )
    check_scheme_fits(scheme, data, config)
    train, test, params = split_train_test(data, config.test_size, config.seed)
    min_samples = config.min_samples
    if min_samples is None:
        fixed = scheme.own_clients or scheme.given_sizes
        min_samples = 1 if fixed else default_min_samples(len(train), num_clients)
    labels = data.y[train] if data.num_classes else np.zeros(len(train), dtype=np.int64)
    inputs = scheme_inputs(scheme, options, data, train)
    among = f"{num_clients} clients" if num_clients else "its clients"
    progress.stage(f"splitting {len(train):,} samples among {among} ({scheme.name})")
    parts, min_samples_default, min_samples = split_with_default_min(
        scheme, config, labels, num_clients, min_samples, options, inputs
    )
    columns = None
    if scheme.vertical:  # every client holds every row: one block, the columns in meta
        columns, parts = parts, [np.arange(len(train))]
    progress.stage(f"gathering {len(parts):,} clients' arrays")
    arrays = client_arrays(data, train, test, parts)
    if scheme.perturb is not None:
        scheme.perturb(arrays["x_train"], arrays["offsets"], config.seed, **options)
    params.update(recorded_options(scheme, options))
    params["min_samples"] = min_samples
    if min_samples_default is not None:
        params["min_samples_default"] = min_samples_default
    params.update(dataset_params(config))
    meta = {
        "dataset": config.dataset,
        "scheme": config.scheme,
        "params": params,
        "seed": config.seed,
        "task": data.task,
        "num_clients": len(parts),
        "num_features": int(data.X.shape[1]),
        "num_train": int(len(train)),
        "num_test": int(len(test)),
        "client_sizes": np.diff(arrays["offsets"]).tolist(),
        **describe(data, arrays),
        **sample_description(data, config.input_shape),
        "hash": None,  # set last, of the arrays the holdouts leave
    }
    if data.source is not None:
        meta["dataset_source"] = data.source
    if columns is not None:
        meta["vertical"] = vertical_meta(columns, inputs["features"])
    if config.drop or config.features or data.group_names is not None:
        meta["feature_names"] = list(feature_names(data))
    names = client_names(scheme, data, train, len(parts))
    if names is not None:
        meta["client_names"] = names
    built = with_local_tests(Partition(meta=meta, **arrays), data, train, parts, scheme, config)
    if config.new_clients:
        built = with_new_clients(built, config.new_clients, config.seed)
    built.meta["hash"] = array_hash(built.arrays)
    return built


def check_scheme_fits(scheme: Scheme, data: Dataset, config: PartitionConfig) -> None:
    """Refuse a scheme (or --client-test-fraction) that the loaded data cannot take."""
    if data.vocabulary is not None and scheme.perturb is not None:
        raise FLError(
            f"--scheme {scheme.name} adds noise to the features, and token ids cannot take it; "
            "choose another scheme"
        )
    if own_local_tests(data, scheme) and config.client_test_fraction:
        raise FLError(
            f"{config.dataset} gives each client its own local test rows (its users' test "
            "split); drop --client-test-fraction"
        )
    if data.task == "regression" and scheme.label_skew:
        others = [name for name, other in schemes.SCHEMES.items() if not other.label_skew]
        raise FLError(
            f"--scheme {scheme.name} skews labels, and {config.dataset} has a regression target; "
            f"use {', '.join(others[:-1])} or {others[-1]}"
        )


def own_local_tests(data: Dataset, scheme: Scheme) -> bool:
    """Whether the clients take the data's own local test rows: the data has them (LEAF) and
    each client is one of its groups or a union of them."""
    return data.test_groups is not None and data.is_test is not None and scheme.own_clients


def with_local_tests(built: Partition, data, train, parts, scheme, config) -> Partition:
    """The partition with its clients' local test splits: the data's own, or a
    --client-test-fraction of every shard, or none."""
    if own_local_tests(data, scheme):
        return with_own_client_test(built, *own_client_test(data, train, parts))
    if config.client_test_fraction:
        return with_client_test(built, config.client_test_fraction, config.seed)
    return built


def own_client_test(data: Dataset, train: np.ndarray, parts: list[np.ndarray]):
    """(x, y, offsets) of each client's own test rows, in the data's order: the test rows of the
    groups its training rows come from."""
    groups = data.groups[train]
    client_of_group = np.full(int(groups.max()) + 1, -1, dtype=np.int64)
    for client, part in enumerate(parts):
        client_of_group[groups[part]] = client
    owner = data.test_groups
    rows = np.flatnonzero(data.is_test & (owner >= 0) & (owner < len(client_of_group)))
    clients = client_of_group[owner[rows]]
    rows, clients = rows[clients >= 0], clients[clients >= 0]
    rows = rows[np.argsort(clients, kind="stable")]
    sizes = np.bincount(clients, minlength=len(parts))
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return data.X[rows], data.y[rows], offsets


def split_with_default_min(scheme, config, labels, num_clients, min_samples, options, inputs):
    """(parts, the default min_samples that was lowered or None, the min_samples used)."""
    try:
        parts = scheme.split(
            labels, num_clients, rng(config.seed, Purpose.PARTITION), min_samples, options, **inputs
        )
    except schemes.TooFewSamples as short:
        if config.min_samples is not None or short.largest < 1:
            raise
        # the default minimum is unreachable for this seed: take the largest that a draw reaches
        # (the same draws, in the same order, so the partition is that of --min-samples largest)
        parts = scheme.split(
            labels,
            num_clients,
            rng(config.seed, Purpose.PARTITION),
            short.largest,
            options,
            **inputs,
        )
        return parts, min_samples, short.largest
    return parts, None, min_samples


def client_names(scheme: Scheme, data: Dataset, train: np.ndarray, num_clients: int):
    """The natural clients' own names (hospital_a, a LEAF user), when each is one client."""
    if scheme.name != "natural" or data.group_names is None or data.groups is None:
        return None
    ids = np.unique(data.groups[train])
    if len(ids) != num_clients:  # merged
        return None
    return [data.group_names[i] for i in ids]


def vertical_meta(columns: list[np.ndarray], features: tuple[str, ...]) -> dict[str, Any]:
    """What partition.json records of a vertical partition: each client's feature columns."""
    return {
        "num_clients": len(columns),
        "feature_columns": [[features[j] for j in group] for group in columns],
        "feature_indices": [group.tolist() for group in columns],
    }


def find_scheme(name: str) -> Scheme:
    """A built-in scheme by name, or a user's by reference (FILE.py:NAME, package.module:NAME)
    or by the entry point an installed package adds."""
    if name in schemes.SCHEMES:
        return schemes.SCHEMES[name]
    found = find(name, "scheme")
    if found is None:
        known = [*schemes.SCHEMES, *entry_points("scheme")]
        raise FLError(f"unknown scheme {name!r}; choose one of: {', '.join(known)}")
    function, source = found
    return user_scheme(function, name, source)


def chosen_options(scheme: Scheme, config: PartitionConfig) -> dict[str, Any]:
    """The scheme's options from the config, checked against its function's signature: a
    built-in scheme's from their own fields (alpha ...), a user's from --scheme-arg."""
    given = {name: getattr(config, name) for name in schemes.OPTIONS}
    if scheme.reference is None:
        if config.scheme_args:
            raise FLError(
                f"--scheme-arg applies to your own scheme (--scheme FILE.py:NAME or "
                f"package.module:NAME), not to --scheme {scheme.name}"
            )
        return schemes.scheme_options(scheme, given)
    for name, value in given.items():
        if value is not None:
            refused = schemes.does_not_apply(name, scheme.name)
            raise FLError(f"{refused} (your own scheme takes --scheme-arg KEY=VALUE)")
    label = f"--scheme {scheme.name}"
    check_arguments(scheme.options, scheme.open_ended, config.scheme_args, label, "--scheme-arg")
    return {**scheme.defaults, **config.scheme_args}


def scheme_inputs(
    scheme: Scheme, options: dict[str, Any], data: Dataset, train: np.ndarray
) -> dict[str, np.ndarray | None]:
    """What flcli hands the scheme besides labels: the --by feature, the data's own clients."""
    inputs = {}
    if "values" in scheme.inputs:
        inputs["values"] = feature_values(data, options.get("by"), train, scheme.name)
    if "groups" in scheme.inputs:
        inputs["groups"] = None if data.groups is None else data.groups[train]
    if "features" in scheme.inputs:
        inputs["features"] = feature_names(data)
    return inputs


def client_arrays(
    data: Dataset, train: np.ndarray, test: np.ndarray, parts: list[np.ndarray]
) -> dict[str, np.ndarray]:
    order = train[np.concatenate(parts)]
    client_sizes = np.array([len(p) for p in parts], dtype=np.int64)
    return {
        "x_train": data.X[order],
        "y_train": data.y[order],
        "offsets": np.concatenate([[0], np.cumsum(client_sizes)]).astype(np.int64),
        "x_test": data.X[test],
        "y_test": data.y[test],
    }


def recorded_options(scheme: Scheme, options: dict[str, Any]) -> dict[str, Any]:
    """The options that shape this scheme, as partition.json records them; a user's scheme's
    under scheme_args, with its source (reference, file, sha256)."""
    if scheme.reference is not None:
        args = {"scheme_args": {k: recordable(v) for k, v in options.items()}} if options else {}
        return {**args, "scheme_source": scheme.source}
    idle = scheme.idle_options(options)
    return {k: v for k, v in options.items() if k not in idle and v is not None}


def recordable(value: Any) -> Any:
    """value as JSON can hold it: a plain value as it is, anything else as its repr."""
    if isinstance(value, bool | int | float | str | type(None)):
        return value
    if isinstance(value, list | tuple):
        return [recordable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): recordable(v) for k, v in value.items()}
    return repr(value)


def dataset_params(config: PartitionConfig) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if config.target is not None:
        params["target"] = config.target
    if config.encode:
        params["encode"] = True
    if config.dataset_args:
        params["dataset_args"] = recordable(config.dataset_args)
    for name in ("drop", "features", "impute", "sequence_length", "vocabulary_size"):
        if getattr(config, name) is not None:
            params[name] = getattr(config, name)
    if config.input_shape is not None:
        params["input_shape"] = list(parse_input_shape(config.input_shape))
    if config.text != "hashed":
        params["text"] = config.text
    return params


def split_train_test(data: Dataset, test_size: float | None, seed: int):
    """Train and test row indices, and the params that describe the split."""
    if data.is_test is not None:
        if test_size is not None:
            raise FLError(f"{data.name} comes with its own test split; drop --test-size")
        return np.flatnonzero(~data.is_test), np.flatnonzero(data.is_test), {"test_split": "own"}
    test_size = DEFAULT_TEST_SIZE if test_size is None else test_size
    stratify = data.task == "classification"
    train, test = schemes.stratified_split(data.y, test_size, rng(seed, Purpose.SPLIT), stratify)
    return train, test, {"test_size": test_size}


def default_min_samples(num_train: int, num_clients: int) -> int:
    return max(1, min(10, num_train // (3 * max(num_clients, 1))))


def feature_values(data: Dataset, by: str | None, train: np.ndarray, scheme: str) -> np.ndarray:
    if by is None or by not in data.feature_names:
        given = "needs --by FEATURE" if by is None else f"--by {by!r} is not a feature"
        raise FLError(
            f"--scheme {scheme} {given}; features of {data.name}: "
            f"{columns_text(data.feature_names)}"
        )
    return data.X[train, data.feature_names.index(by)]


def feature_names(data: Dataset) -> tuple[str, ...]:
    names = tuple(data.feature_names)
    return (
        names if len(names) == data.X.shape[1] else tuple(f"x{j}" for j in range(data.X.shape[1]))
    )


def describe(data: Dataset, arrays: dict) -> dict:
    """num_classes, label_counts and heterogeneity (classification), or size and target figures."""
    if data.num_classes is None:
        return {"heterogeneity": stats.target_heterogeneity(arrays["y_train"], arrays["offsets"])}
    counts = stats.label_counts_from_offsets(arrays["y_train"], arrays["offsets"], data.num_classes)
    figures = {
        "num_classes": data.num_classes,
        "label_counts": counts.tolist(),
        "heterogeneity": stats.heterogeneity(counts),
    }
    if data.classes is not None and list(data.classes) != [str(c) for c in range(len(counts[0]))]:
        figures["classes"] = list(data.classes)
    return figures
