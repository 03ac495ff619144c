"""leaf:PATH on a LEAF JSON tree the test writes (3 users), images and Sent140-like text."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flcli.data.leaf import load_leaf
from flcli.data.store import load_partition
from flcli.errors import FLError

USERS = ("f0001_41", "f0002_07", "f0003_12")


def write_leaf(root, text=False, train_sizes=(30, 20, 25), test_size=6, seed=0, test_users=USERS):
    generator = np.random.default_rng(seed)
    splits = (("train", USERS, train_sizes), ("test", test_users, (test_size,) * len(test_users)))
    for split, users, sizes in splits:
        (root / split).mkdir(parents=True, exist_ok=True)
        user_data = {}
        for user, n in zip(users, sizes, strict=True):
            y = generator.integers(0, 3, n).tolist()
            if text:
                words = ("good", "bad", "fine")
                x = [["id", "date", "NO_QUERY", user, f"so {words[c]} today"] for c in y]
            else:
                x = (generator.normal(size=(n, 2, 2)) + np.array(y)[:, None, None]).tolist()
            user_data[user] = {"x": x, "y": y}
        content = {"users": list(users), "num_samples": list(sizes), "user_data": user_data}
        (root / split / f"all_data_0_niid_{split}.json").write_text(json.dumps(content))
    return root


def test_users_are_the_clients_and_the_test_folder_the_test_set(tmp_path):
    data = load_leaf(f"leaf:{write_leaf(tmp_path / 'femnist')}")
    assert data.X.shape == (75 + 18, 4)  # 2x2 images flattened
    assert data.input_shape == (2, 2)  # the nesting of LEAF's lists
    assert data.is_test.sum() == 18
    assert np.bincount(data.groups[~data.is_test]).tolist() == [30, 20, 25]
    assert data.group_names == USERS


def test_flat_samples_have_no_shape_of_their_own(tmp_path):
    root = write_leaf(tmp_path / "flat")
    for file in root.glob("*/*.json"):
        content = json.loads(file.read_text())
        for rows in content["user_data"].values():
            rows["x"] = [np.ravel(x).tolist() for x in rows["x"]]
        file.write_text(json.dumps(content))
    assert load_leaf(f"leaf:{root}").input_shape is None


def test_sent140_text_becomes_a_bag_of_words(tmp_path):
    data = load_leaf(f"leaf:{write_leaf(tmp_path / 'sent140', text=True)}")
    assert data.X.shape[1] == 1024 and data.input_shape is None and data.vocabulary is None
    assert np.allclose(np.linalg.norm(data.X, axis=1), 1.0)


def test_leaf_through_partition_train_and_plot(cli, tmp_path):
    tree = write_leaf(tmp_path / "leaf" / "data")
    part, run = tmp_path / "p", tmp_path / "r"
    result = cli(
        "partition", f"leaf:{tmp_path / 'leaf'}", "--scheme", "natural", "--out", str(part)
    )
    assert result.code == 0, result.err
    meta = json.loads((part / "partition.json").read_text())
    assert meta["client_names"] == list(USERS) and meta["client_sizes"] == [30, 20, 25]
    assert meta["num_test"] == 18 and USERS[0] in result.out
    assert meta["input_shape"] == [2, 2] and load_partition(part).input_shape == (2, 2)
    assert tree.is_dir()
    assert cli("train", str(part), "--rounds", "2", "--out", str(run)).code == 0
    assert cli("plot", str(run), "--out", str(tmp_path / "f.png")).code == 0


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda f: f.write_text("{not json"), "not readable LEAF JSON"),
        (lambda f: f.write_text(json.dumps({"users": ["a"]})), "lacks LEAF's"),
        (
            lambda f: f.write_text(
                json.dumps(
                    {"users": ["a"], "num_samples": [3], "user_data": {"a": {"x": [[1]], "y": [0]}}}
                )
            ),
            "different lengths",
        ),
    ],
)
def test_a_corrupted_leaf_file_is_one_line(cli, tmp_path, damage, fragment):
    write_leaf(tmp_path / "t")
    damage(next((tmp_path / "t" / "train").glob("*.json")))
    result = cli(
        "partition", f"leaf:{tmp_path / 't'}", "--scheme", "natural", "--out", str(tmp_path / "p")
    )
    assert_one_line_error(result, fragment)


def test_a_folder_without_train_and_test_is_refused(tmp_path):
    with pytest.raises(FLError, match="no train/ and test/"):
        load_leaf(f"leaf:{tmp_path}")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.tuples(*[st.integers(1, 12)] * 3), test_size=st.integers(1, 5), seed=st.integers(0, 99)
)
def test_every_leaf_sample_is_read_once(tmp_path_factory, sizes, test_size, seed):
    root = write_leaf(
        tmp_path_factory.mktemp("leaf"), train_sizes=sizes, test_size=test_size, seed=seed
    )
    data = load_leaf(f"leaf:{root}")
    assert len(data.y) == sum(sizes) + 3 * test_size
    assert np.bincount(data.groups[~data.is_test], minlength=3).tolist() == list(sizes)
    assert np.bincount(data.test_groups[data.is_test]).tolist() == [test_size] * 3
    assert (data.test_groups[~data.is_test] == -1).all()


def leaf_test_rows(root, user):
    """(features, labels) of user's rows in the test folder, as LEAF wrote them."""
    content = json.loads(next((root / "test").glob("*.json")).read_text())
    rows = content["user_data"][user]
    return np.reshape(rows["x"], (len(rows["y"]), -1)), np.array(rows["y"])


def test_each_users_test_rows_are_its_clients_local_test_split(cli, tmp_path):
    root = write_leaf(tmp_path / "leaf", test_users=(*USERS, "f0009_99"))
    part_dir, run = tmp_path / "p", tmp_path / "r"
    result = cli("partition", f"leaf:{root}", "--scheme", "natural", "--out", part_dir)
    assert result.code == 0, result.err
    part = load_partition(part_dir)
    assert part.meta["client_names"] == list(USERS)
    assert part.meta["client_test_sizes"] == [6, 6, 6]
    assert part.meta["params"]["client_test_split"] == "own"
    assert part.meta["num_test"] == 24  # the central test set: every user's test rows pooled
    classes = [int(c) for c in part.meta.get("classes", range(part.meta["num_classes"]))]
    starts = part.client_test_offsets
    for client, user in enumerate(USERS):
        x, y = leaf_test_rows(root, user)
        rows = slice(starts[client], starts[client + 1])
        assert np.array_equal(part.x_client_test[rows], x)
        assert np.array_equal(np.array(classes)[part.y_client_test[rows]], y)
    stray, _ = leaf_test_rows(root, "f0009_99")  # a test user with no training rows
    assert not (part.x_client_test[:, None, :] == stray[None]).all(axis=2).any()
    assert (part.x_test[-6:] == stray).all()
    assert not (part.x_train[:, None, :] == part.x_test[None]).all(axis=2).any()
    trained = cli("train", part_dir, "--algo", "ditto", "--rounds", "2", "--out", run)
    assert trained.code == 0, trained.err
    rounds = pd.read_csv(run / "rounds.csv")
    assert rounds["personal_accuracy"].between(0, 1).all()


def test_personal_accuracy_before_training_is_the_global_models_on_the_users_test_rows(
    cli, tmp_path
):
    """Round 0's personal models are the initial global model, and the users' local test rows
    pooled are the central test set here: both accuracies agree."""
    root = write_leaf(tmp_path / "leaf")
    part_dir, run = tmp_path / "p", tmp_path / "r"
    assert cli("partition", f"leaf:{root}", "--scheme", "natural", "--out", part_dir).code == 0
    trained = cli("train", part_dir, "--algo", "fedavglu", "--rounds", "1", "--out", run)
    assert trained.code == 0, trained.err
    first = pd.read_csv(run / "rounds.csv").iloc[0]
    assert first["round"] == 0
    assert first["personal_accuracy"] == pytest.approx(first["test_accuracy"])


def test_merged_users_keep_all_their_test_rows(cli, tmp_path):
    root = write_leaf(tmp_path / "leaf")
    part_dir = tmp_path / "p"
    result = cli(
        "partition", f"leaf:{root}", "--scheme", "natural", "--clients", "2", "--out", part_dir
    )
    assert result.code == 0, result.err
    assert sorted(load_partition(part_dir).meta["client_test_sizes"]) == [6, 12]


def test_client_test_fraction_is_refused_when_the_users_split_is_kept(cli, tmp_path):
    root = write_leaf(tmp_path / "leaf")
    result = cli(
        "partition",
        f"leaf:{root}",
        "--scheme",
        "natural",
        "--client-test-fraction",
        "0.2",
        "--out",
        tmp_path / "p",
    )
    assert_one_line_error(result, "--client-test-fraction", f"leaf:{root}")


def test_a_scheme_that_splits_users_cuts_local_tests_by_fraction(cli, tmp_path):
    root = write_leaf(tmp_path / "leaf")
    part_dir = tmp_path / "p"
    result = cli(
        "partition",
        f"leaf:{root}",
        "--scheme",
        "iid",
        "--clients",
        "3",
        "--client-test-fraction",
        "0.2",
        "--out",
        part_dir,
    )
    assert result.code == 0, result.err
    meta = load_partition(part_dir).meta
    assert meta["params"]["client_test_fraction"] == 0.2
    assert "client_test_split" not in meta["params"]
    assert sum(meta["client_test_sizes"]) + meta["num_train"] == 75


def test_leafs_user_split_has_no_local_test_rows(cli, tmp_path):
    root = write_leaf(tmp_path / "leaf", test_users=("f0008_01", "f0009_99"))
    data = load_leaf(f"leaf:{root}")
    assert data.test_groups is None and data.is_test.sum() == 12
    part_dir = tmp_path / "p"
    assert cli("partition", f"leaf:{root}", "--scheme", "natural", "--out", part_dir).code == 0
    assert not load_partition(part_dir).has_client_test
