"""leaf:PATH on a LEAF JSON tree the test writes (3 users), images and Sent140-like text."""

import json

import numpy as np
import pytest
from conftest import assert_one_line_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flcli.data.leaf import load_leaf
from flcli.errors import FLError

USERS = ("f0001_41", "f0002_07", "f0003_12")


def write_leaf(root, text=False, train_sizes=(30, 20, 25), test_size=6, seed=0):
    generator = np.random.default_rng(seed)
    for split, sizes in (("train", train_sizes), ("test", (test_size,) * 3)):
        (root / split).mkdir(parents=True, exist_ok=True)
        user_data = {}
        for user, n in zip(USERS, sizes, strict=True):
            y = generator.integers(0, 3, n).tolist()
            if text:
                words = ("good", "bad", "fine")
                x = [["id", "date", "NO_QUERY", user, f"so {words[c]} today"] for c in y]
            else:
                x = (generator.normal(size=(n, 2, 2)) + np.array(y)[:, None, None]).tolist()
            user_data[user] = {"x": x, "y": y}
        content = {"users": list(USERS), "num_samples": list(sizes), "user_data": user_data}
        (root / split / f"all_data_0_niid_{split}.json").write_text(json.dumps(content))
    return root


def test_users_are_the_clients_and_the_test_folder_the_test_set(tmp_path):
    data = load_leaf(f"leaf:{write_leaf(tmp_path / 'femnist')}")
    assert data.X.shape == (75 + 18, 4)  # 2x2 images flattened
    assert data.is_test.sum() == 18
    assert np.bincount(data.groups[~data.is_test]).tolist() == [30, 20, 25]
    assert data.group_names == USERS


def test_sent140_text_becomes_a_bag_of_words(tmp_path):
    data = load_leaf(f"leaf:{write_leaf(tmp_path / 'sent140', text=True)}")
    assert data.X.shape[1] == 1024
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
