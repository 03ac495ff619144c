"""A user's own partition scheme or dataset loader, from a file, a module or an entry point,
through the real command line; every broken one is one line, exit 2."""

import dataclasses
import hashlib
import json
import textwrap

import numpy as np
import pytest
from conftest import assert_one_line_error, install_entry_points
from hypothesis import given, settings
from hypothesis import strategies as st

from flcli.data.config import PartitionConfig
from flcli.data.contract import checked_parts
from flcli.data.partition import SCHEMES
from flcli.errors import FLError
from flcli.rng import Purpose, rng

SCHEMES_FILE = '''
import numpy as np


def round_robin(labels, num_clients, rng, *, min_samples, offset=0):
    """Shuffled, then dealt like cards starting at client `offset`."""
    order = rng.permutation(len(labels))
    return [np.sort(order[(i - offset) % num_clients :: num_clients]) for i in range(num_clients)]


def by_label(labels, num_clients, rng, *, min_samples, mix):
    """Half by label, half at random (mix: the random share)."""
    random = rng.random(len(labels)) < mix
    key = np.where(random, rng.integers(0, num_clients, len(labels)), labels % num_clients)
    return [np.flatnonzero(key == i) for i in range(num_clients)]


def drops_one(labels, num_clients, rng, *, min_samples):
    parts = np.array_split(np.arange(len(labels)), num_clients)
    return [parts[0][1:], *parts[1:]]


def repeats_one(labels, num_clients, rng, *, min_samples):
    parts = np.array_split(np.arange(len(labels)), num_clients)
    return [np.append(parts[0], parts[1][0]), *parts[1:]]


def too_few(labels, num_clients, rng, *, min_samples):
    return np.array_split(np.arange(len(labels)), num_clients - 1)


def floats(labels, num_clients, rng, *, min_samples):
    return [part.astype(float) for part in np.array_split(np.arange(len(labels)), num_clients)]


def raises(labels, num_clients, rng, *, min_samples):
    raise ValueError("no split for you")


def two_args(labels, num_clients):
    return [np.arange(len(labels))]
'''

LOADERS_FILE = '''
import numpy as np

from flcli.data.dataset import Dataset


def blobs(seed, n=400, classes=3):
    """Gaussian blobs: class c centred at c on every axis."""
    generator = np.random.default_rng(seed)
    y = generator.integers(0, classes, n) * 10  # labels 0, 10, 20: not class ids
    X = generator.normal(size=(n, 5)) + (y[:, None] / 10)
    return X, y


def line(n=300):
    X = np.random.default_rng(0).normal(size=(n, 3))
    return X, X @ np.array([1.0, -2.0, 0.5])


def devices():
    X = np.random.default_rng(1).normal(size=(240, 2))
    y = (X[:, 0] > 0).astype(np.int64)
    return Dataset("devices", X, y, 2, ("a", "b"), groups=np.arange(240) % 6)


def with_nan():
    X = np.ones((50, 2))
    X[7, 1] = np.nan
    return X, np.arange(50) % 2


def mismatched():
    return np.ones((50, 2)), np.arange(49) % 2


def one_dimensional():
    return np.ones(50), np.arange(50) % 2


def a_list():
    return [1, 2, 3]


def raises(seed):
    raise ValueError("the data is gone")
'''


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    """The plugin files, imported once per test session under names no other test uses."""
    folder = tmp_path_factory.mktemp("plugins")
    (folder / "fl_test_schemes.py").write_text(textwrap.dedent(SCHEMES_FILE))
    (folder / "fl_test_loaders.py").write_text(textwrap.dedent(LOADERS_FILE))
    package = folder / "fl_test_package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "splits.py").write_text(textwrap.dedent(SCHEMES_FILE))
    return folder


def scheme(plugin_dir, name):
    return f"{plugin_dir / 'fl_test_schemes.py'}:{name}"


def loader(plugin_dir, name):
    return f"{plugin_dir / 'fl_test_loaders.py'}:{name}"


def meta_of(path):
    return json.loads((path / "partition.json").read_text())


def test_a_scheme_from_a_file_partitions_and_its_partition_trains(cli, plugin_dir, tmp_path):
    out = tmp_path / "p"
    args = ["--scheme", scheme(plugin_dir, "round_robin"), "--scheme-arg", "offset=2"]
    result = cli("partition", "digits", *args, "--clients", 6, "--seed", 1, "--out", out)
    assert result.code == 0, result.err
    assert "wrote" in result.out and "JS divergence" in result.out
    meta = meta_of(out)
    assert meta["scheme"] == scheme(plugin_dir, "round_robin") and meta["num_clients"] == 6
    assert sum(meta["client_sizes"]) == meta["num_train"]
    source = meta["params"]["scheme_source"]
    file = plugin_dir / "fl_test_schemes.py"
    assert source["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert source["file"] == str(file.resolve())
    assert meta["params"]["scheme_args"] == {"offset": 2}
    assert cli("partition", "digits", *args, "--clients", 6, "--seed", 1, "--out", out).code == 0
    trained = cli("train", out, "--rounds", 2, "--out", tmp_path / "run")
    assert trained.code == 0, trained.err
    assert "round 2" in trained.out


def test_a_required_scheme_option_comes_from_scheme_arg(cli, plugin_dir, tmp_path):
    args = ["--scheme", scheme(plugin_dir, "by_label"), "--clients", 5, "--out", tmp_path / "p"]
    assert_one_line_error(cli("partition", *args), "needs --scheme-arg mix=VALUE")
    result = cli("partition", *args, "--scheme-arg", "mix=0.25")
    assert result.code == 0, result.err
    assert meta_of(tmp_path / "p")["params"]["scheme_args"] == {"mix": 0.25}


def test_a_scheme_from_an_importable_module(cli, plugin_dir, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    name = "fl_test_package.splits:round_robin"
    result = cli("partition", "--scheme", name, "--clients", 4, "--out", tmp_path / "p")
    assert result.code == 0, result.err
    assert meta_of(tmp_path / "p")["params"]["scheme_source"]["reference"] == name


def test_a_dataset_loader_partitions_and_its_partition_trains(cli, plugin_dir, tmp_path):
    out = tmp_path / "p"
    name = loader(plugin_dir, "blobs")
    args = ["--dataset-arg", "n=500", "--scheme", "dirichlet", "--clients", 5, "--out", out]
    result = cli("partition", name, *args)
    assert result.code == 0, result.err
    meta = meta_of(out)
    assert meta["dataset"] == name and meta["task"] == "classification"
    assert meta["num_train"] + meta["num_test"] == 500 and meta["num_features"] == 5
    assert meta["classes"] == ["0", "10", "20"]
    assert meta["params"]["dataset_args"] == {"n": 500}
    file = plugin_dir / "fl_test_loaders.py"
    assert meta["dataset_source"]["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    trained = cli("train", out, "--rounds", 2, "--out", tmp_path / "run")
    assert trained.code == 0, trained.err


def test_the_loader_gets_the_seed_and_gives_a_regression_target_or_its_own_clients(
    cli, plugin_dir, tmp_path
):
    for seed in (0, 1):
        args = ["--seed", seed, "--clients", 3, "--out", tmp_path / f"s{seed}"]
        assert cli("partition", loader(plugin_dir, "blobs"), *args).code == 0
    assert meta_of(tmp_path / "s0")["hash"] != meta_of(tmp_path / "s1")["hash"]
    result = cli("partition", loader(plugin_dir, "line"), "--out", tmp_path / "line")
    assert result.code == 0, result.err
    assert meta_of(tmp_path / "line")["task"] == "regression"
    natural = ["--scheme", "natural", "--out", tmp_path / "natural"]
    assert cli("partition", loader(plugin_dir, "devices"), *natural).code == 0
    assert meta_of(tmp_path / "natural")["num_clients"] == 6


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--scheme", "missing_file.py:split"], ["missing_file.py does not exist"]),
        (["--scheme", "S:nothing"], ["has no 'nothing'", "round_robin"]),
        (["--scheme", "S:raises"], ["--scheme", "raised ValueError: no split for you"]),
        (["--scheme", "S:drops_one"], ["leaves out 1 training sample", "sample 0"]),
        (["--scheme", "S:repeats_one"], ["more than one client"]),
        (["--scheme", "S:too_few"], ["returned 3 index arrays for --clients 4"]),
        (["--scheme", "S:floats"], ["client 0", "integers"]),
        (["--scheme", "S:two_args"], ["takes (labels, num_clients)"]),
        (["--scheme", "S:round_robin", "--scheme-arg", "shift=1"], ["shift", "offset"]),
        (
            ["--scheme", "S:round_robin", "--alpha", "0.1"],
            ["--alpha does not apply", "--scheme-arg"],
        ),
        (["--scheme", "dirichlet", "--scheme-arg", "alpha=0.1"], ["--scheme-arg applies to"]),
        (["L:with_nan"], ["DATASET", "missing or infinite", "row 7"]),
        (["L:mismatched"], ["50 rows but y of shape (49,)"]),
        (["L:one_dimensional"], ["must be 2-D"]),
        (["L:a_list"], ["returned a list", "Dataset or a tuple (X, y)"]),
        (["L:raises"], ["fl_test_loaders.py:raises raised ValueError: the data is gone"]),
        (["L:blobs", "--dataset-arg", "rows=9"], ["--dataset-arg rows", "seed, n, classes"]),
        (["L:blobs", "--target", "y"], ["--target and --encode apply to files"]),
        (["L:line", "--scheme", "shards"], ["regression target"]),
        (["digits", "--dataset-arg", "n=3"], ["--dataset-arg applies to your own loader"]),
    ],
)
def test_a_broken_plugin_is_one_line_with_exit_code_2(cli, plugin_dir, tmp_path, args, fragments):
    args = [
        a.replace("S:", scheme(plugin_dir, "")).replace("L:", loader(plugin_dir, "")) for a in args
    ]
    result = cli("partition", *args, "--clients", 4, "--out", tmp_path / "p")
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "p").exists()


def test_entry_points_are_listed_and_used_by_name(cli, plugin_dir, tmp_path, monkeypatch):
    site = install_entry_points(
        tmp_path / "site",
        "[flcli.schemes]\ndealt = fl_test_package.splits:round_robin\n\n"
        "[flcli.datasets]\nblobs3 = fl_test_loaders:blobs\n",
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(plugin_dir))
    assert "dealt" in cli("list", "schemes").out
    assert "blobs3" in cli("list", "datasets").out
    result = cli(
        "partition", "blobs3", "--scheme", "dealt", "--clients", 4, "--out", tmp_path / "p"
    )
    assert result.code == 0, result.err
    meta = meta_of(tmp_path / "p")
    assert meta["params"]["scheme_source"]["entry_point"] == "dealt"
    assert meta["dataset_source"]["reference"] == "fl_test_loaders:blobs"


def test_a_sweep_with_a_plugin_scheme_in_base(cli, plugin_dir, tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text(
        textwrap.dedent(f"""
        name = "plugged"
        [base]
        scheme = "{scheme(plugin_dir, "round_robin")}"
        scheme_args = {{ offset = 1 }}
        clients = 4
        rounds = 1
        [grid]
        seed = [0, 1]
        lr = [0.1, 0.5]
        """)
    )
    result = cli("sweep", sweep, "--jobs", 2, "--out", tmp_path / "out")
    assert result.code == 0, result.err
    assert "4 trained" in result.out
    partitions = sorted((tmp_path / "out" / "partitions").iterdir())
    assert len(partitions) == 2
    for partition in partitions:
        assert meta_of(partition)["params"]["scheme_args"] == {"offset": 1}


def test_api_partition_takes_a_config_and_options_over_it(plugin_dir, tmp_path):
    from flcli import api

    config = PartitionConfig(scheme=scheme(plugin_dir, "round_robin"), clients=3)
    built, written = api.partition(tmp_path / "p", config, scheme_args={"offset": 1})
    assert written and built.meta["params"]["scheme_args"] == {"offset": 1}
    with pytest.raises(FLError, match="num_clients"):
        api.partition(tmp_path / "q", num_clients=3)


def test_the_help_defaults_of_scheme_options_are_the_functions_defaults():
    fields = {item.name: item for item in dataclasses.fields(PartitionConfig)}
    for registered in SCHEMES.values():
        for name, default in registered.defaults.items():
            assert getattr(PartitionConfig(), name) is None  # not given: the scheme's default
            shown = fields[name].metadata["show_default"]
            per_scheme = f"{registered.name}: {default}"  # an option whose default differs
            assert shown in (None, str(default)) or per_scheme in shown, (
                registered.name,
                name,
                shown,
                default,
            )


@pytest.mark.parametrize("name", [name for name, s in SCHEMES.items() if not s.vertical])
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(30, 300),
    clients=st.integers(1, 12),
    classes=st.integers(2, 8),
    seed=st.integers(0, 2**16),
)
def test_the_result_check_accepts_every_builtin_split_and_refuses_a_broken_one(
    name, n, clients, classes, seed
):
    labels = np.random.default_rng(seed).integers(0, classes, n)
    inputs = {"values": np.linspace(0, 1, n), "groups": labels}
    registered = SCHEMES[name]
    clients = None if registered.own_clients else clients
    try:
        parts = registered.split(labels, clients, rng(seed, Purpose.PARTITION), 1, {}, **inputs)
    except FLError:
        return  # infeasible settings (e.g. more clients than a label-skew scheme allows)
    checked = checked_parts(parts, n, len(parts), 1, name)
    assert all(np.array_equal(a, b) for a, b in zip(checked, parts, strict=True))
    counts = np.bincount(np.concatenate(checked), minlength=n)
    assert (counts == 1).all()
    biggest = int(np.argmax([len(p) for p in parts]))
    if len(parts) > 1 and len(parts[biggest]) > 1:
        moved = [p.copy() for p in parts]
        moved[biggest] = moved[biggest][1:]  # drop one sample
        with pytest.raises(FLError, match="leaves out 1"):
            checked_parts(moved, n, len(parts), 1, name)
        moved[biggest] = np.append(parts[biggest], parts[biggest][0])  # give one twice
        with pytest.raises(FLError, match="more than one client"):
            checked_parts(moved, n, len(parts), 1, name)
