"""A partition read in its run's dtype equals the stored one cast by astype, and a changed,
replaced or truncated data.npz is one line (its arrays hashed as they stream)."""

import shutil

import numpy as np
import pytest
from conftest import assert_one_line_error, write_generated_partition

from flcli import api
from flcli.data.store import load_partition


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """Two digits partitions of the same shapes (seeds 0 and 1), written by fl partition."""
    root = tmp_path_factory.mktemp("integrity")
    for seed in (0, 1):
        api.partition(root / f"seed{seed}", dataset="digits", clients=5, scheme="iid", seed=seed)
    return root


@pytest.fixture
def part(parts, tmp_path):
    """A fresh copy of the seed-0 partition (a new path: no record yet)."""
    return shutil.copytree(parts / "seed0", tmp_path / "part")


def middle_of_x_train(part) -> int:
    """Where in data.npz x_train's middle row starts (found by the bytes of that row and its
    neighbours, which are unique)."""
    x_train = load_partition(part).x_train
    middle = len(x_train) // 2
    rows = x_train[middle - 1 : middle + 2].tobytes()
    data = (part / "data.npz").read_bytes()
    assert data.count(rows) == 1
    return data.index(rows) + x_train[0].nbytes


def flip_a_bit(file, at: int) -> None:
    """The lowest bit of byte at, flipped in place: the same file, the same size (and a float64
    value's lowest bit: still finite)."""
    with open(file, "r+b") as f:
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ 1]))


def flip_a_bit_of_x_train(part) -> None:
    flip_a_bit(part / "data.npz", middle_of_x_train(part))


def test_a_changed_byte_in_x_train_is_caught(cli, part, tmp_path):
    flip_a_bit_of_x_train(part)
    result = cli("train", part, "--rounds", 1, "--out", tmp_path / "run")
    assert_one_line_error(result, "data.npz does not match", "re-create the partition")
    assert not (tmp_path / "run").exists()


def test_a_data_npz_replaced_by_another_partitions_is_caught(cli, parts, part, tmp_path):
    shutil.copy2(parts / "seed1" / "data.npz", part / "data.npz")  # its mtime too
    result = cli("train", part, "--rounds", 1, "--out", tmp_path / "run")
    assert_one_line_error(result, "does not match")


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_a_truncated_data_npz_is_an_unreadable_partition(cli, part, tmp_path, keep):
    data = (part / "data.npz").read_bytes()
    (part / "data.npz").write_bytes(data[: int(len(data) * keep)])
    result = cli("train", part, "--rounds", 1, "--out", tmp_path / "run")
    assert_one_line_error(result, "unreadable partition", "re-create it")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Partitions with every optional array: clients' test splits and new clients."""
    root = tmp_path_factory.mktemp("mixed")
    options = dict(dataset="digits", clients=6, scheme="dirichlet", alpha=0.5, seed=2)
    api.partition(root / "tests", client_test_fraction=0.2, new_clients=0.3, **options)
    api.partition(root / "plain", **options)
    return root


@pytest.mark.parametrize("name", ["tests", "plain"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_partition_read_in_a_dtype_is_the_stored_one_cast_by_astype(mixed, name, dtype):
    stored = load_partition(mixed / name)
    loaded = load_partition(mixed / name, dtype)
    expected = stored.astype(dtype)
    assert loaded.arrays.keys() == expected.arrays.keys()
    for key, array in expected.arrays.items():
        assert loaded.arrays[key].dtype == array.dtype, key
        assert np.array_equal(loaded.arrays[key], array), key


def test_regression_targets_are_read_in_the_runs_dtype_too(regression_dir):
    loaded = load_partition(regression_dir, "float32")
    assert loaded.x_train.dtype == loaded.y_train.dtype == np.float32
    assert np.array_equal(loaded.y_train, load_partition(regression_dir).y_train.astype("f4"))


def test_features_beyond_float32_are_refused_for_a_float32_run(cli, tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), np.arange(40) % 2
    x[5, 1] = 1e300
    part = write_generated_partition(tmp_path / "p", x[:32], y[:32], [8] * 4, x[32:], y[32:], 2)
    result = cli("train", part, "--rounds", 1, "--dtype", "float32", "--out", tmp_path / "a")
    assert_one_line_error(result, "x_train", "beyond ±3.4e38", "--dtype float64")
    assert load_partition(part, "float64").x_train[5, 1] == 1e300
