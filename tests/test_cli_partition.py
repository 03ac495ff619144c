"""End to end: fl partition with every dataset kind and scheme, fl inspect, and bad input."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error

from flcli.data.partition import SCHEMES
from flcli.data.store import load_partition

SCHEME_FLAGS = {
    "iid": [],
    "dirichlet": ["--alpha", "0.5"],
    "pathological": ["--classes-per-client", "3"],
    "shards": ["--shards-per-client", "2"],
    "quantity": ["--sizes", "lognormal"],
    "noise": ["--noise-std", "0.2"],
    "continuous": ["--strictness", "0.8"],
    "natural": [],
    "size": ["--sizes", "linear"],
    "inner-dirichlet": ["--alpha", "0.5"],
    "distribution": ["--classes-per-client", "3", "--sigma", "1"],
    "grouped-natural": ["--group-size", "4"],
    "vertical": ["--feature-groups", "even"],
}
OWN_CLIENTS = ("natural", "grouped-natural")
DATASET_FLAGS = {
    "digits": {
        "continuous": ["--by", "pixel_3_4"],
        "natural": ["--by", "pixel_0_3"],
        "grouped-natural": ["--by", "pixel_0_3"],
    },
    "synthetic": {"continuous": ["--by", "x0"]},
}


def meta_of(path):
    return json.loads((path / "partition.json").read_text())


@pytest.mark.parametrize("dataset", list(DATASET_FLAGS))
@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_every_scheme_through_the_cli(cli, tmp_path, dataset, scheme):
    clients = [] if scheme in OWN_CLIENTS else ["--clients", "8"]
    extra = DATASET_FLAGS[dataset].get(scheme, [])
    out = tmp_path / "p"
    args = ["partition", dataset, "--scheme", scheme, *clients, *SCHEME_FLAGS[scheme], *extra]
    result = cli(*args, "--seed", "3", "--out", out)
    assert result.code == 0, result.err
    assert "wrote" in result.out and "JS divergence" in result.out
    part = load_partition(out)
    meta = part.meta
    assert meta["scheme"] == scheme and meta["task"] == "classification"
    assert sum(meta["client_sizes"]) == meta["num_train"] == len(part.y_train)
    assert min(meta["client_sizes"]) >= meta["params"]["min_samples"]
    assert (out / "partition.png").stat().st_size > 10_000
    if scheme == "vertical":
        assert meta["vertical"]["num_clients"] == 8
    elif scheme not in OWN_CLIENTS:
        assert meta["num_clients"] == 8
    elif dataset == "synthetic":
        assert meta["num_clients"] == (30 if scheme == "natural" else 8)


def test_alpha_1000_is_as_even_as_iid_and_alpha_005_is_dominated(cli, tmp_path):
    js = {}
    for name, flags in {
        "iid": ["--scheme", "iid"],
        "even": ["--scheme", "dirichlet", "--alpha", "1000"],
        "skewed": ["--scheme", "dirichlet", "--alpha", "0.05", "--min-samples", "5"],
    }.items():
        assert cli("partition", "--clients", "10", *flags, "--out", tmp_path / name).code == 0
        js[name] = meta_of(tmp_path / name)["heterogeneity"]["js_divergence"]
    assert js["even"] < 0.02 and abs(js["even"] - js["iid"]) < 0.02
    counts = np.asarray(meta_of(tmp_path / "skewed")["label_counts"])
    top_two = np.sort(counts, axis=1)[:, -2:].sum(axis=1) / counts.sum(axis=1)
    assert np.mean(top_two >= 0.8) > 0.5  # most clients: one or two labels are 80%+
    assert js["skewed"] > 0.4


def test_pathological_two_gives_exactly_two_labels_per_client(cli, tmp_path):
    out = tmp_path / "p"
    args = ["--scheme", "pathological", "--classes-per-client", "2", "--clients", "20"]
    assert cli("partition", "digits", *args, "--out", out).code == 0
    counts = np.asarray(meta_of(out)["label_counts"])
    assert ((counts > 0).sum(axis=1) == 2).all()


def test_noise_scheme_adds_noise_growing_with_the_client_index(cli, tmp_path):
    for scheme, noise in (("iid", []), ("noise", ["--noise-std", "0.5"])):
        args = ["--scheme", scheme, *noise, "--clients", "5"]
        assert cli("partition", "digits", *args, "--out", tmp_path / scheme).code == 0
    clean, noisy = load_partition(tmp_path / "iid"), load_partition(tmp_path / "noise")
    assert np.array_equal(clean.y_train, noisy.y_train)  # same IID split, only inputs differ
    stds = [
        (noisy.x_train - clean.x_train)[clean.offsets[i] : clean.offsets[i + 1]].std()
        for i in range(5)
    ]
    assert np.allclose(stds, [0, 0.125, 0.25, 0.375, 0.5], atol=0.02)
    assert np.array_equal(noisy.x_test, clean.x_test)


def test_regression_dataset(cli, tmp_path):
    out = tmp_path / "p"
    result = cli("partition", "diabetes", "--scheme", "quantity", "--out", out)
    assert result.code == 0, result.err
    meta = meta_of(out)
    assert meta["task"] == "regression"
    assert "num_classes" not in meta and "label_counts" not in meta
    assert load_partition(out).y_train.dtype == np.float64
    assert_one_line_error(
        cli("partition", "diabetes", "--scheme", "dirichlet", "--out", tmp_path / "q"),
        "regression target",
        "quantity",
    )


def test_csv_with_natural_clients_through_the_cli(cli, tmp_path):
    generator = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "x1": generator.normal(size=300),
            "x2": generator.normal(size=300),
            "hospital": np.repeat(["a", "b", "c", "d", "e", "f"], 50),
            "label": generator.integers(0, 3, 300),
        }
    )
    table.to_csv(tmp_path / "h.csv", index=False)
    out = tmp_path / "p"
    args = ["--target", "label", "--scheme", "natural", "--by", "hospital"]
    result = cli("partition", tmp_path / "h.csv", *args, "--out", out)
    assert result.code == 0, result.err
    meta = meta_of(out)
    assert meta["num_clients"] == 6 and meta["num_features"] == 2
    assert meta["params"]["target"] == "label" and meta["params"]["by"] == "hospital"


def test_inspect_prints_the_report_of_an_existing_partition(cli, dirichlet_dir):
    result = cli("inspect", dirichlet_dir)
    assert result.code == 0
    assert "JS divergence" in result.out and "label mix" in result.out
    assert_one_line_error(cli("inspect", dirichlet_dir / "nothing"), "not a partition dir")


def test_list_datasets_and_schemes(cli):
    datasets = cli("list", "datasets").out
    for name in ("digits", "diabetes", "synthetic:alpha=1,beta=1", "fcube", "openml:NAME"):
        assert name in datasets
    schemes = cli("list", "schemes").out
    assert all(name in schemes for name in SCHEMES)


@pytest.fixture
def bad_csv(tmp_path):
    table = pd.DataFrame(
        {"a": [1.0, 2.0, np.nan, 4.0] * 5, "name": ["x", "y"] * 10, "label": [0, 1] * 10}
    )
    table.to_csv(tmp_path / "bad.csv", index=False)
    return tmp_path / "bad.csv"


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["missing.csv", "--target", "y"], ["missing.csv does not exist"]),
        (["BAD", "--target", "colour"], ["--target 'colour' is not a column", "a, name, label"]),
        (["BAD", "--target", "label"], ["feature column 'name' is not numeric", "--encode"]),
        (["BAD", "--target", "label", "--encode"], ["feature column 'a' has missing"]),
        (["BAD", "--target", "a"], ["target column 'a' has missing"]),
        (["--scheme", "pathological", "--classes-per-client", "11"], ["between 1 and the 10"]),
        (["--scheme", "dirichlet", "--alpha", "0"], ["--alpha 0.0 must be > 0"]),
        (["--scheme", "dirichlet", "--alpha", "-1"], ["--alpha -1.0 must be > 0"]),
        (["--scheme", "continuous"], ["needs --by FEATURE", "pixel_0_0"]),
        (["--scheme", "natural"], ["needs --by COLUMN"]),
        (["--scheme", "quantity", "--sizes", "cubic"], ["--sizes 'cubic' is unknown"]),
        (["--scheme", "zipf"], ["unknown scheme 'zipf'"]),
        (["nonsense"], ["unknown dataset 'nonsense'"]),
        (["synthetic", "--test-size", "0.3"], ["own test split"]),
        (["synthetic:alpha=-1"], ["must be >= 0"]),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2(cli, tmp_path, bad_csv, args, fragments):
    args = [str(bad_csv) if a == "BAD" else a for a in args]
    result = cli("partition", *args, "--out", tmp_path / "p")
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "p").exists()
