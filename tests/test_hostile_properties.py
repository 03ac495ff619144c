"""Generated corruptions of each artifact flcli reads (a partition's data.npz and partition.json,
a run's rounds.csv and checkpoint, a config TOML): refused with exit code 2 and one line, and the
dirs are left as they were (hypothesis)."""

import json
import shutil

import numpy as np
import pytest
from conftest import assert_one_line_error, write_generated_partition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FAST = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
ARRAYS = ("x_train", "y_train", "offsets", "x_test", "y_test")
WEIRD = st.sampled_from([np.nan, np.inf, -np.inf, 1e308, -1e308, 2**62, -1])


@pytest.fixture(scope="module")
def part(tmp_path_factory):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), np.arange(40) % 2
    root = tmp_path_factory.mktemp("props")
    return write_generated_partition(root / "part", x[:32], y[:32], [8] * 4, x[32:], y[32:], 2)


def arrays_of(part):
    with np.load(part / "data.npz") as npz:
        return {name: npz[name] for name in npz.files}


corruption = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(ARRAYS), st.none()),
    st.tuples(st.just("dtype"), st.sampled_from(ARRAYS), st.sampled_from(["U3", "f8", "i8", "?"])),
    st.tuples(st.just("truncate"), st.sampled_from(ARRAYS), st.integers(0, 7)),
    st.tuples(st.just("shuffle"), st.just("offsets"), st.randoms(use_true_random=False)),
    st.tuples(st.just("inject"), st.sampled_from(ARRAYS), WEIRD),
    st.tuples(st.just("flatten_or_grow"), st.sampled_from(ARRAYS), st.booleans()),
)


def corrupt(arrays, kind, name, arg):
    a = arrays[name]
    if kind == "drop":
        del arrays[name]
    elif kind == "dtype":
        arrays[name] = a.astype(arg)
    elif kind == "truncate":
        arrays[name] = a[: min(arg, len(a) - 1)]
    elif kind == "shuffle":
        shuffled = list(a)
        arg.shuffle(shuffled)
        arrays[name] = np.array(shuffled if shuffled != list(a) else shuffled[::-1])
    elif kind == "inject":
        whole = a.dtype.kind != "f" and float(arg).is_integer() and abs(arg) < 2**63
        values = a.astype(np.int64 if whole else np.float64).ravel()
        values[len(values) // 2] = arg
        arrays[name] = values.reshape(a.shape)
    else:
        arrays[name] = a.ravel() if arg else a[..., None]
    return arrays


def unchanged(before, after) -> bool:
    return before.keys() == after.keys() and all(
        before[k].dtype == after[k].dtype
        and before[k].shape == after[k].shape
        and np.array_equal(before[k], after[k], equal_nan=before[k].dtype.kind == "f")
        for k in before
    )


@FAST
@given(corruption, st.booleans())
def test_a_corrupted_partition_is_refused(cli, part, tmp_path_factory, change, rehash):
    from flcli.data.store import array_hash

    work = tmp_path_factory.mktemp("c") / "part"
    shutil.copytree(part, work)
    original = arrays_of(work)
    arrays = corrupt(dict(original), *change)
    benign = change[0] == "inject" and change[1].startswith("x") and abs(change[2]) < np.inf
    if unchanged(original, arrays) or (rehash and benign):  # features as good as any
        return
    np.savez(work / "data.npz", **arrays)
    if rehash and all(n in arrays for n in ARRAYS):  # only the checks can catch it then
        meta = json.loads((work / "partition.json").read_text())
        (work / "partition.json").write_text(json.dumps({**meta, "hash": array_hash(arrays)}))
    before = (work / "data.npz").read_bytes(), (work / "partition.json").read_bytes()
    out = work.parent / "run"
    assert_one_line_error(cli("train", work, "--rounds", 1, "--out", out))
    assert ((work / "data.npz").read_bytes(), (work / "partition.json").read_bytes()) == before
    assert not out.exists()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)


@FAST
@given(
    st.sampled_from(
        [
            "num_clients",
            "num_classes",
            "client_sizes",
            "dataset",
            "scheme",
            "params",
            "task",
            "hash",
            "label_counts",
            "seed",
        ]
    ),
    json_values,
    st.booleans(),
)
def test_a_garbled_partition_json_is_refused(cli, part, tmp_path_factory, key, value, drop):
    work = tmp_path_factory.mktemp("m") / "part"
    shutil.copytree(part, work)
    meta = json.loads((work / "partition.json").read_text())
    if (drop and key in ("task", "label_counts")) or (key == "params" and isinstance(value, dict)):
        return  # optional keys, and params are the partition's own notes
    if drop:
        meta.pop(key)
    elif meta.get(key) == value or (key == "task" and value == "classification"):
        return
    else:
        meta[key] = value
    (work / "partition.json").write_text(json.dumps(meta))
    assert_one_line_error(cli("train", work, "--rounds", 1, "--out", work.parent / "run"))
    assert not (work.parent / "run").exists()


@pytest.fixture(scope="module")
def stopped(part):
    from flcli import api
    from flcli.config import TrainConfig

    run = part.parent / "stopped"
    rounds = api.prepare_training(part, TrainConfig(rounds=3, checkpoint_every=1), run).rounds()
    next(rounds), next(rounds)
    rounds.close()
    return run


INTEGER_COLUMNS = ("round", "clients", "bytes_up", "bytes_down")


def is_float(text: str) -> bool:
    try:
        return abs(float(text)) < float("inf") or text == "nan"
    except ValueError:
        return False


cell = st.sampled_from(["abc", "nan", "inf", "-inf", "", "1e999", "0x10", "\u00e9", "1,2", "-3"])


@FAST
@given(st.integers(0, 1), st.integers(0, 9), cell)
def test_a_garbled_rounds_csv_is_refused_on_resume(
    cli, part, stopped, tmp_path_factory, row, col, text
):
    run = tmp_path_factory.mktemp("r") / "run"
    shutil.copytree(stopped, run)
    lines = (run / "rounds.csv").read_text().splitlines()
    cells = lines[row + 1].split(",")
    col = col % len(cells)
    column = lines[0].split(",")[col]
    if cells[col] == text or (column not in INTEGER_COLUMNS and is_float(text)):
        return  # a real number (NaN too: flcli writes it) in a metric column is no corruption
    cells[col] = text
    lines[row + 1] = ",".join(cells)
    (run / "rounds.csv").write_text("\n".join(lines) + "\n")
    before = (run / "rounds.csv").read_bytes()
    result = cli("train", part, "--rounds", 3, "--checkpoint-every", 1, "--out", run, "--resume")
    assert_one_line_error(result)
    assert (run / "rounds.csv").read_bytes() == before


@FAST
@given(
    hnp.arrays(
        st.sampled_from([np.float64, np.float32, np.int64]),
        hnp.array_shapes(min_dims=0, max_dims=2, max_side=9),
    )
)
def test_a_checkpoint_of_another_shape_is_refused(cli, part, stopped, tmp_path_factory, params):
    run = tmp_path_factory.mktemp("k") / "run"
    shutil.copytree(stopped, run)
    with np.load(run / "checkpoint.npz") as npz:
        arrays = {name: npz[name] for name in npz.files}
    if params.shape == arrays["params"].shape and params.dtype.kind == "f":
        return
    np.savez(run / "checkpoint.npz", **{**arrays, "params": params})
    result = cli("train", part, "--rounds", 3, "--checkpoint-every", 1, "--out", run, "--resume")
    assert_one_line_error(result, "checkpoint.npz")


@FAST
@given(st.binary(max_size=60))
def test_random_bytes_as_a_config_file_are_refused(cli, part, tmp_path_factory, data):
    work = tmp_path_factory.mktemp("t")
    (work / "c.toml").write_bytes(b"rounds = 'x'\n" + data)  # never a valid config
    result = cli("train", part, "--config", work / "c.toml", "--out", work / "run")
    assert_one_line_error(result)
    assert not (work / "run").exists()
