"""A partition's data.npz is hashed in full when it is written or changed, not on every read:
flcli.data.verified keeps a record of each file that matched its partition.json, and a read trusts
a file whose stat still matches it. What a record can and cannot tell, fl inspect --verify, a run
loaded straight in its dtype, and the cache or partition dir that cannot be written."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_one_line_error, write_generated_partition

from flcli import api
from flcli.data.store import load_partition
from flcli.data.verified import file_state, is_verified, remember
from flcli.errors import FLError


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


def meta_hash(part) -> str:
    return json.loads((part / "partition.json").read_text())["hash"]


def recorded(part) -> bool:
    data = part / "data.npz"
    return is_verified(file_state(data, os.stat(data)), meta_hash(part))


def middle_row(partition) -> np.ndarray:
    return partition.x_train[len(partition.x_train) // 2]


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


def test_fl_partition_records_its_data_npz_and_a_first_read_records_a_copy(parts, part):
    assert recorded(parts / "seed0") and recorded(parts / "seed1")
    assert not recorded(part)  # copied: another path and inode
    load_partition(part)
    assert recorded(part)


def test_a_changed_byte_is_caught_though_a_record_says_the_file_matched(cli, part, tmp_path):
    load_partition(part)
    assert recorded(part)
    flip_a_bit_of_x_train(part)
    result = cli("train", part, "--rounds", 1, "--out", tmp_path / "run")
    assert_one_line_error(result, "data.npz does not match", "re-create the partition")
    assert not (tmp_path / "run").exists()


def test_putting_the_mtime_back_does_not_hide_a_change(part):
    load_partition(part)
    before = os.stat(part / "data.npz")
    flip_a_bit_of_x_train(part)
    os.utime(part / "data.npz", ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(part / "data.npz")
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    with pytest.raises(FLError, match="does not match"):  # the ctime moved, and is recorded
        load_partition(part)


def test_a_record_that_still_matches_is_trusted_and_verify_hashes_anyway(cli, part):
    """The limit of a record: a change no stat shows (a clock set back, a rewrite within one tick
    of the filesystem's clock) is not seen, here forged by recording the changed file. verify=True
    and fl inspect --verify hash in full, and drop the record of a file that fails."""
    original = middle_row(load_partition(part))
    flip_a_bit_of_x_train(part)
    data = part / "data.npz"
    remember(file_state(data, os.stat(data)), meta_hash(part))
    trusted = middle_row(load_partition(part))
    assert not np.array_equal(trusted, original)  # the changed bytes, unhashed
    assert_one_line_error(cli("inspect", part, "--verify"), "does not match")
    assert not recorded(part)
    with pytest.raises(FLError, match="does not match"):
        load_partition(part)


def test_fl_inspect_verify_hashes_and_says_so(cli, part):
    result = cli("inspect", part, "--verify")
    assert result.code == 0
    assert f"data.npz's arrays match partition.json's hash {meta_hash(part)}" in result.out
    assert recorded(part)


def test_a_data_npz_replaced_by_another_partitions_is_caught(cli, parts, part, tmp_path):
    load_partition(part)
    shutil.copy2(parts / "seed1" / "data.npz", part / "data.npz")  # its mtime too
    result = cli("train", part, "--rounds", 1, "--out", tmp_path / "run")
    assert_one_line_error(result, "does not match")


def test_a_data_npz_written_to_while_it_is_read_is_refused(part, monkeypatch):
    from flcli.data import store

    at = middle_of_x_train(part)

    def read_then_changed(*args, **kwargs):
        arrays = read_arrays(*args, **kwargs)
        flip_a_bit(part / "data.npz", at)
        return arrays

    read_arrays = store.read_arrays
    monkeypatch.setattr(store, "read_arrays", read_then_changed)
    with pytest.raises(FLError, match="was written to as it was read"):
        load_partition(part)
    assert not recorded(part)


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_a_truncated_data_npz_is_an_unreadable_partition(cli, part, tmp_path, keep):
    data = (part / "data.npz").read_bytes()
    (part / "data.npz").write_bytes(data[: int(len(data) * keep)])
    result = cli("train", part, "--rounds", 1, "--out", tmp_path / "run")
    assert_one_line_error(result, "unreadable partition", "re-create it")


def test_a_changed_hash_in_partition_json_is_caught_though_the_data_is_recorded(cli, parts, part):
    meta = json.loads((part / "partition.json").read_text())
    meta["hash"] = meta_hash(parts / "seed1")
    (part / "partition.json").write_text(json.dumps(meta))
    assert_one_line_error(cli("inspect", part, "--verify"), "does not match")


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


def test_a_cache_that_cannot_be_written_keeps_no_record_and_reads_still_work(
    cli, part, tmp_path, monkeypatch
):
    blocked = tmp_path / "a-file"
    blocked.write_text("flcli cannot make its cache dir under a file")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    for _ in range(2):
        assert load_partition(part).hash == meta_hash(part)
    assert not recorded(part)
    assert cli("partition", "digits", "--clients", "3", "--out", tmp_path / "new").code == 0
    assert cli("train", tmp_path / "new", "--rounds", 1, "--out", tmp_path / "run").code == 0


def test_a_read_only_partition_dir_trains(cli, part, tmp_path):
    for file in part.iterdir():
        file.chmod(0o444)
    part.chmod(0o555)
    try:
        assert cli("train", part, "--rounds", 1, "--out", tmp_path / "run").code == 0
        assert recorded(part)
    finally:
        part.chmod(0o755)


def test_processes_reading_a_partition_at_once_all_succeed_and_leave_a_record(part):
    reads = "from flcli.data.store import load_partition\nfor _ in range(5): load_partition(r'%s')"
    readers = [
        subprocess.Popen([sys.executable, "-c", reads % part], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for reader in readers:
        assert reader.wait(timeout=120) == 0, reader.stderr.read()
    assert recorded(part)
