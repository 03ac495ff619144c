"""Flower Datasets' partitioners in flcli (size, inner-dirichlet, distribution, grouped-natural,
vertical), each checked against its definition, and end to end through the command line."""

import json

import numpy as np
import pytest
from conftest import assert_one_line_error
from hypothesis import given, settings
from hypothesis import strategies as st

from flcli.data import partition as schemes
from flcli.data.vertical import vertical
from flcli.errors import FLError
from flcli.rng import Purpose, rng


def split(scheme, labels, clients, seed=0, min_samples=1, **options):
    return schemes.partition(
        scheme, labels, clients, rng(seed, Purpose.PARTITION), min_samples, **options
    )


def labels_of(n, classes, seed=0):
    return np.random.default_rng(seed).integers(0, classes, n)


@pytest.mark.parametrize(
    "law, n, expected",
    [
        ("linear", 150, [10, 20, 30, 40, 50]),
        ("square", 110, [2, 8, 18, 32, 50]),
        ("30,30,40,1,9", 110, [30, 30, 40, 1, 9]),
        ("3,3,4,0.1,0.9", 110, [30, 30, 40, 1, 9]),
    ],
)
def test_size_shares_follow_the_law(law, n, expected):
    parts = split("size", labels_of(n, 3), 5, sizes=law)
    assert [len(p) for p in parts] == expected
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n))


def test_exponential_sizes_grow_by_e():
    sizes = np.array([len(p) for p in split("size", labels_of(100_000, 2), 4, sizes="exponential")])
    assert np.allclose(sizes[1:] / sizes[:-1], np.e, rtol=0.01)


def test_a_size_function_of_the_client_id(tmp_path):
    (tmp_path / "laws.py").write_text("def halves(i):\n    return 2.0 ** -i\n")
    sizes = [
        len(p) for p in split("size", labels_of(700, 2), 3, sizes=f"{tmp_path}/laws.py:halves")
    ]
    assert sizes == [400, 200, 100]


def test_inner_dirichlet_keeps_given_sizes_and_skews_within_them():
    labels = labels_of(1000, 10)
    parts = split("inner-dirichlet", labels, 4, sizes="100,200,300,400", alpha=0.05)
    assert [len(p) for p in parts] == [100, 200, 300, 400]
    few = np.mean([len(np.unique(labels[p])) for p in parts])
    parts = split("inner-dirichlet", labels, 4, sizes="100,200,300,400", alpha=100.0)
    many = np.mean([len(np.unique(labels[p])) for p in parts])
    assert few < many == 10


@settings(max_examples=30, deadline=None)
@given(
    clients=st.integers(1, 20),
    classes=st.integers(1, 10),
    k=st.integers(1, 10),
    sigma=st.floats(0.1, 4),
    seed=st.integers(0, 1000),
)
def test_distribution_gives_client_i_the_classes_i_to_i_plus_k(clients, classes, k, sigma, seed):
    labels = labels_of(400, classes, seed)
    num_classes = len(np.unique(labels))
    try:
        parts = split("distribution", labels, clients, seed, classes_per_client=k, sigma=sigma)
    except FLError as refused:
        assert k > num_classes or clients + k - 1 < num_classes or "--min-samples" in str(refused)
        return
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(400))
    ranks = np.searchsorted(np.unique(labels), labels)
    for i, part in enumerate(parts):
        allowed = {(i + j) % num_classes for j in range(k)}
        assert set(ranks[part].tolist()) <= allowed


def test_grouped_natural_merges_consecutive_natural_clients():
    groups = np.array(["b", "a", "c", "e", "d", "a", "e", "c"])
    parts = split("grouped-natural", np.zeros(8, int), None, groups=groups, group_size=2)
    assert [sorted(set(groups[p])) for p in parts] == [["a", "b"], ["c", "d"], ["e"]]
    with pytest.raises(FLError, match="--group-size 2 makes 3 clients"):
        split("grouped-natural", np.zeros(8, int), 2, groups=groups, group_size=2)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("even", [[0, 1], [2, 3], [4]]),
        ("1,1,3", [[0], [1], [2, 3, 4]]),
        ("0.2,0.4,0.4", [[0], [1, 2], [3, 4]]),
        ("e+a|b|c+d", [[0, 4], [1], [2, 3]]),
    ],
)
def test_vertical_gives_each_client_its_columns(spec, expected):
    columns = vertical(
        np.zeros(4),
        3,
        rng(0, Purpose.PARTITION),
        min_samples=1,
        features=tuple("abcde"),
        feature_groups=spec,
    )
    assert [c.tolist() for c in columns] == expected


@pytest.mark.parametrize(
    "spec, message",
    [("a+z|b", "'z' is not a feature"), ("a+b|b", "two clients"), ("2,3", "--clients 2")],
)
def test_bad_feature_groups_are_refused(spec, message):
    with pytest.raises(FLError, match=message):
        vertical(
            np.zeros(4),
            3,
            rng(0, Purpose.PARTITION),
            min_samples=1,
            features=tuple("abcde"),
            feature_groups=spec,
        )


@pytest.mark.parametrize(
    "args",
    [
        ["--scheme", "size", "--sizes", "square", "--clients", "5"],
        ["--scheme", "inner-dirichlet", "--alpha", "0.3", "--clients", "6"],
        ["--scheme", "distribution", "--clients", "12", "--sigma", "1"],
        ["--scheme", "grouped-natural", "--by", "x0", "--group-size", "3"],
    ],
)
def test_new_schemes_run_through_train_and_plot(cli, tmp_path, args):
    data = tmp_path / "table.csv"
    features = np.random.default_rng(0).normal(size=(300, 3)).round(3)
    rows = [f"{int(a * 2) % 9},{b},{c},{i % 4}" for i, (a, b, c) in enumerate(features)]
    data.write_text("x0,x1,x2,label\n" + "\n".join(rows) + "\n")
    part, run = tmp_path / "p", tmp_path / "r"
    result = cli("partition", str(data), "--target", "label", *args, "--out", str(part))
    assert result.code == 0, result.err
    assert (part / "partition.png").is_file()
    assert cli("train", str(part), "--rounds", "2", "--out", str(run)).code == 0
    assert cli("plot", str(run), "--out", str(tmp_path / "f.png")).code == 0


def test_a_vertical_partition_records_columns_and_train_refuses_it(cli, tmp_path):
    out = tmp_path / "v"
    result = cli("partition", "iris", "--scheme", "vertical", "--clients", "2", "--out", str(out))
    assert result.code == 0, result.err
    meta = json.loads((out / "partition.json").read_text())
    assert meta["vertical"]["num_clients"] == 2
    assert sum(len(c) for c in meta["vertical"]["feature_columns"]) == 4
    refused = cli("train", str(out), "--rounds", "1", "--out", str(tmp_path / "r"))
    assert_one_line_error(refused, "vertical", "--scheme iid")
