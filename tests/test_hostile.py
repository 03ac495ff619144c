"""Hostile input through the CLI: every case is refused with exit code 2 and one line on stderr,
no traceback, and the dirs it was given are left as they were."""

import hashlib
import json
import shutil

import numpy as np
import pytest
from conftest import assert_one_line_error, write_generated_partition

BIG = "99999999999999999999999"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A tiny classification partition (4 clients, 3 classes) and a completed 2-round run of it."""
    root = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)), np.arange(60) % 3
    part = write_generated_partition(root / "part", x[:48], y[:48], [12] * 4, x[48:], y[48:], 3)
    return root, part


def digest(*dirs) -> str:
    """The bytes of every file under dirs (a check that nothing there was touched)."""
    h = hashlib.sha256()
    for d in dirs:
        for file in sorted(p for p in d.rglob("*") if p.is_file() and p.name != ".lock"):
            h.update(str(file).encode() + file.read_bytes())
    return h.hexdigest()


FLAG_CASES = [
    # (extra fl train flags, fragment of the one line)
    (["--rounds", BIG], "--rounds"),
    (["--rounds", "0"], "--rounds"),
    (["--rounds", "-3"], "--rounds"),
    (["--rounds", "nan"], "--rounds"),
    (["--rounds", "1e9"], "--rounds"),
    (["--local-epochs", BIG], "--local-epochs"),
    (["--local-epochs", "10000000"], "--local-epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", BIG], "--batch-size"),
    (["--clients-per-round", "0"], "--clients-per-round"),
    (["--clients-per-round", BIG], "--clients-per-round"),
    (["--fraction", "0"], "--fraction"),
    (["--fraction", "1.5"], "--fraction"),
    (["--fraction", "nan"], "--fraction"),
    (["--seed", str(2**64)], "--seed"),
    (["--seed", str(2**63)], "--seed"),
    (["--seed", "-1"], "--seed"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--lr", "-0.1"], "--lr"),
    (["--lr", "0"], "--lr"),
    (["--model", "mlp", "--hidden", "0"], "--hidden"),
    (["--model", "mlp", "--hidden", "10,-1"], "--hidden"),
    (["--model", "mlp", "--hidden", "a,b"], "--hidden"),
    (["--model", "mlp", "--hidden", BIG], "--hidden"),
    (["--model", "mlp", "--hidden", "100000000"], "--hidden"),
    (["--model", "mlp", "--hidden", "100000,100000"], "memory"),
    (["--dp-clip", "inf"], "--dp-clip"),
    (["--dp-clip", "nan"], "--dp-clip"),
    (["--dp-clip", "-1"], "--dp-clip"),
    (["--dp-clip", "1", "--dp-noise", "nan"], "--dp-noise"),
    (["--dp-clip", "1", "--dp-noise", "inf"], "--dp-noise"),
    (["--dp-clip", "1", "--dp-epsilon", "nan"], "--dp-epsilon"),
    (["--dp-clip", "1", "--dp-epsilon", "inf"], "--dp-epsilon"),
    (["--dp-clip", "1", "--dp-epsilon", "-2"], "--dp-epsilon"),
    (["--dp-clip", "1", "--dp-epsilon", "2", "--dp-delta", "0.5"], "--dp-delta"),
    (["--dp-clip", "1", "--dp-epsilon", "2", "--dp-delta", "0.3"], "--dp-delta"),
    (["--dp-clip", "1", "--dp-epsilon", "2", "--dp-delta", "1"], "--dp-delta"),
    (["--dp-clip", "1", "--dp-epsilon", "2", "--dp-delta", "nan"], "--dp-delta"),
    (["--dp-clip", "1", "--dp-epsilon", "2", "--dp-delta", "0"], "--dp-delta"),
    (["--model", "sklearn:VotingClassifier"], "VotingClassifier"),
    (["--model", "sklearn:NoSuchEstimator"], "NoSuchEstimator"),
    (["--model", "nosuchmodel"], "nosuchmodel"),
    (["--algo", "nosuchalgo"], "nosuchalgo"),
    (["--algo", "../../etc/passwd.py:f"], "passwd"),
    (["--model-arg", "alpha"], "--model-arg"),
    (["--algo-arg", "=3"], "--algo-arg"),
    (["--backend", "gpu"], "--backend"),
    (["--jobs", "0"], "--jobs"),
    (["--dtype", "float16"], "--dtype"),
    (["--checkpoint-every", "0"], "--checkpoint-every"),
    (["--checkpoint-every", "-1"], "--checkpoint-every"),
    (["--dropout", "1.5"], "--dropout"),
    (["--dropout", "nan"], "--dropout"),
    (["--aggregator", "nope"], "--aggregator"),
    (["--attack", "nope"], "--attack"),
    (["--malicious", "0.9"], "--malicious"),
    (["--mu", "nan"], "--mu"),
    (["--mu", "-1"], "--mu"),
    (["--algo", "fedprox", "--mu", "inf"], "--mu"),
    (["--secure-agg", "--secagg-threshold", "1"], "--secagg-threshold"),
    (["--secure-agg", "--secagg-threshold", "2"], "--secagg-threshold"),
]


@pytest.mark.parametrize("flags, fragment", FLAG_CASES, ids=lambda v: " ".join(map(str, v)))
def test_train_flags_at_the_edges_are_one_line_errors(cli, small, tmp_path, flags, fragment):
    root, part = small
    before = digest(part)
    result = cli("train", part, "--out", tmp_path / "run", *flags)
    assert_one_line_error(result, fragment)
    assert digest(part) == before
    assert not (tmp_path / "run").exists()


def edit_npz(part, **changes):
    """Rewrite part's data.npz with some arrays changed (None drops one), hash kept in step so
    that only the validation can catch it."""
    from flcli.data.store import array_hash

    with np.load(part / "data.npz") as npz:
        arrays = {name: npz[name] for name in npz.files}
    for name, value in changes.items():
        if value is None:
            arrays.pop(name)
        else:
            arrays[name] = value
    np.savez(part / "data.npz", **arrays)
    meta = json.loads((part / "partition.json").read_text())
    if all(n in arrays for n in ("x_train", "y_train", "offsets", "x_test", "y_test")):
        meta["hash"] = array_hash(arrays)
    (part / "partition.json").write_text(json.dumps(meta))


X = np.random.default_rng(1).normal(size=(48, 4))
NPZ_CASES = [
    (dict(offsets=np.array([0, 12, 24, 36, 50])), "offsets"),
    (dict(offsets=np.array([0, 12, 24, 36, 40])), "offsets"),
    (dict(offsets=np.array([0, 24, 12, 36, 48])), "offsets"),
    (dict(offsets=np.array([-12, 12, 24, 36, 48])), "offsets"),
    (dict(offsets=np.array([0, 12, 24, 48])), "offsets"),
    (dict(offsets=np.array([0.0, 12, 24, 36, 48])), "offsets"),
    (dict(offsets=np.array([[0, 12, 24, 36, 48]])), "offsets"),
    (dict(offsets=None), "offsets"),
    (dict(x_train=X.ravel()), "x_train"),
    (dict(x_train=X[:, :3]), "x_test has 4 features"),
    (dict(x_train=np.where(X > 1, np.nan, X)), "x_train"),
    (dict(x_train=np.where(X > 1, np.inf, X)), "x_train"),
    (dict(x_train=X.astype(str)), "x_train"),
    (dict(x_train=None), "x_train"),
    (dict(x_train=X[:40]), "y_train"),
    (dict(y_train=-(np.arange(48) % 3)), "labels outside"),
    (dict(y_train=np.arange(48) % 3 + 3), "labels outside"),
    (dict(y_train=(np.arange(48) % 3).astype(float)), "integer class labels"),
    (dict(y_train=(np.arange(48) % 3).astype(str)), "integer class labels"),
    (dict(y_train=np.zeros((48, 2), dtype=int)), "y_train"),
    (dict(y_test=np.arange(12) % 3 + 7), "labels outside"),
    (dict(y_test=np.arange(11) % 3), "y_test"),
    (dict(x_test=np.zeros((12, 5))), "features"),
    (dict(x_test=np.full((12, 4), np.nan)), "x_test"),
    (dict(y_test=None), "y_test"),
    (dict(client_test_offsets=np.array([0, 1, 2, 3, 4])), "client_test"),
]

META_CASES = [
    (lambda m: m.pop("client_sizes"), "client_sizes"),
    (lambda m: m.update(client_sizes="12"), "client_sizes"),
    (lambda m: m.update(client_sizes=[12, 12, 12, -12]), "client_sizes"),
    (lambda m: m.update(client_sizes=[12, 12, 24]), "client_sizes"),
    (lambda m: m.update(client_sizes=[12.0, 12, 12, 12]), "client_sizes"),
    (lambda m: m.update(num_classes=2), "label_counts"),
    (lambda m: m.update(num_classes=True), "num_classes"),
    (lambda m: m.update(num_classes="3"), "num_classes"),
    (lambda m: m.update(num_classes=0), "num_classes"),
    (lambda m: m.update(num_clients=5), "num_clients"),
    (lambda m: m.update(num_clients=None), "num_clients"),
    (lambda m: m.update(task="clustering"), "task"),
    (lambda m: m.update(dataset=3), "dataset"),
    (lambda m: m.update(scheme=None), "scheme"),
    (lambda m: m.update(params=[]), "params"),
    (lambda m: m.update(seed=-1), "seed"),
    (lambda m: m.update(hash="0" * 16), "hash"),
    (lambda m: m.update(hash=7), "hash"),
    (lambda m: m.update(label_counts=[[1]]), "label_counts"),
    (lambda m: m.update(heterogeneity=[1]), "heterogeneity"),
    (lambda m: m.clear(), "partition"),
]


@pytest.fixture
def part_copy(small, tmp_path):
    copy = tmp_path / "part"
    shutil.copytree(small[1], copy)
    return copy


@pytest.mark.parametrize("changes, fragment", NPZ_CASES, ids=range(len(NPZ_CASES)))
def test_a_corrupted_data_npz_never_trains(cli, part_copy, tmp_path, changes, fragment):
    edit_npz(part_copy, **changes)
    before = digest(part_copy)
    assert_one_line_error(cli("train", part_copy, "--rounds", 1, "--out", tmp_path / "r"), fragment)
    assert digest(part_copy) == before and not (tmp_path / "r").exists()


@pytest.mark.parametrize("edit, fragment", META_CASES, ids=range(len(META_CASES)))
def test_a_garbled_partition_json_never_trains(cli, part_copy, tmp_path, edit, fragment):
    meta = json.loads((part_copy / "partition.json").read_text())
    edit(meta)
    (part_copy / "partition.json").write_text(json.dumps(meta))
    before = digest(part_copy)
    assert_one_line_error(cli("train", part_copy, "--rounds", 1, "--out", tmp_path / "r"), fragment)
    assert digest(part_copy) == before and not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def interrupted(small):
    """A run of 3 rounds stopped after round 1, as Ctrl-C leaves it."""
    from flcli import api
    from flcli.config import TrainConfig

    root, part = small
    run = root / "interrupted"
    rounds = api.prepare_training(part, TrainConfig(rounds=3, checkpoint_every=1), run).rounds()
    next(rounds), next(rounds)
    rounds.close()
    return run


def set_json(run, value):
    (run / "run.json").write_text(json.dumps(value))


def edit_checkpoint(run, **changes):
    with np.load(run / "checkpoint.npz") as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays.update(changes)
    np.savez(run / "checkpoint.npz", **{k: v for k, v in arrays.items() if v is not None})


RUN_CASES = [
    (lambda r: set_json(r, [1, 2]), "not a run"),
    (lambda r: set_json(r, {"status": "running"}), "lacks a config"),
    (lambda r: set_json(r, {**json.loads((r / "run.json").read_text()), "status": 3}), "status"),
    (lambda r: (r / "run.json").write_bytes(b"\xff\xfe garbage"), "not a flcli run"),
    (lambda r: (r / "rounds.csv").write_text("round,test_accuracy\n0,abc\n"), "abc"),
    (lambda r: (r / "rounds.csv").write_text("round,test_accuracy\nx,0.1\n"), "round"),
    (lambda r: (r / "rounds.csv").write_text("round,test_accuracy\n0,0.1,7\n"), "line 2"),
    (lambda r: (r / "rounds.csv").write_text("round,test_accuracy\n0\n"), "line 2"),
    (lambda r: (r / "rounds.csv").write_text("round,test_accuracy\n1,0.1\n0,0.2\n"), "order"),
    (lambda r: (r / "rounds.csv").write_text("round,test_accuracy\n-1,0.1\n"), "round"),
    (lambda r: (r / "rounds.csv").write_text("round,test_accuracy\n0,inf\n"), "infinite"),
    (lambda r: edit_checkpoint(r, params=np.zeros(7)), "params"),
    (lambda r: edit_checkpoint(r, params=np.zeros((2, 15))), "params"),
    (lambda r: edit_checkpoint(r, params=np.full(15, np.nan)), "params"),
    (lambda r: edit_checkpoint(r, params=np.array(["a"] * 15)), "params"),
    (lambda r: edit_checkpoint(r, params=None), "checkpoint.npz"),
    (lambda r: edit_checkpoint(r, round=np.array([1, 2])), "checkpoint.npz"),
    (lambda r: edit_checkpoint(r, extra_momentum=np.zeros(3)), "extra_"),
    (lambda r: (r / "checkpoint.npz").write_bytes(b""), "checkpoint.npz"),
]


@pytest.mark.parametrize("damage, fragment", RUN_CASES, ids=range(len(RUN_CASES)))
def test_a_damaged_run_dir_is_refused_on_resume(
    cli, small, interrupted, tmp_path, damage, fragment
):
    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    damage(run)
    before = digest(run)
    result = cli(
        "train", small[1], "--rounds", 3, "--checkpoint-every", 1, "--out", run, "--resume"
    )
    assert_one_line_error(result, fragment)
    assert digest(run) == before


TOML_CASES = [
    (b"\x00\xff\xfe random bytes \x9c", "not valid TOML"),
    (b"rounds = ", "not valid TOML"),
    (b"model_args = [['alpha', 0.1]]", "model_args"),
    (b"model_args = []", "model_args"),
    (b"model_args = 3", "model_args"),
    (b"algo_args = 'mu'", "algo_args"),
    (b"algo_args = [1]", "algo_args"),
    (b"rounds = 'ten'", "rounds"),
    (b"rounds = 1e30", "rounds"),
    (b"rounds = 99999999999999999", "rounds"),
    (b"rounds = -1", "rounds"),
    (b"lr = nan", "lr"),
    (b"lr = inf", "lr"),
    (b"lr = true", "lr"),
    (b"seed = 18446744073709551616", "seed"),
    (b"hidden = [0]", "hidden"),
    (b"model = 3", "model"),
    (b"nonsense_key = 1", "nonsense_key"),
    (b"partition = 3", "partition"),
    (b"[algo_args]\nmu = 'x'", "mu"),
    ('seed = "\u202e\u0000"'.encode(), "not valid TOML"),
    ('seed = "\u202e"'.encode(), "seed"),
    (b"dp_delta = 0.5\ndp_clip = 1.0\ndp_noise = 1.0", "--dp-delta"),
]


@pytest.mark.parametrize("text, fragment", TOML_CASES, ids=range(len(TOML_CASES)))
def test_a_hostile_config_file_is_one_line(cli, small, tmp_path, text, fragment):
    (tmp_path / "c.toml").write_bytes(text)
    result = cli("train", small[1], "--config", tmp_path / "c.toml", "--out", tmp_path / "r")
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "r").exists()


SWEEP_CASES = [
    ('name = ".."', "name"),
    ('name = "."', "name"),
    ('name = "/etc"', "name"),
    ('name = "a/../../b"', "name"),
    ('name = "x;touch${IFS}PWNED;echo"', "name"),
    ('name = "$(touch PWNED)"', "name"),
    ('name = "a b"', "name"),
    ('name = "a\\nb"', "name"),
    ('name = "a\\u0000"', "name"),
    ('name = ""', "name"),
    ("name = 3", "name"),
    ("[base]\nrounds = 1", "name"),
    ('name = "ok"\nbase = 3', "base"),
    ('name = "ok"\n[grid]\nseed = 3', "seed"),
    ('name = "ok"\n[grid]\nseed = []', "seed"),
    ('name = "ok"\n[grid]\nseed = [1, {a = 1}]', "mixes"),
    ('name = "ok"\n[grid]\nseed = [1, 1]', "twice"),
    ('name = "ok"\n[grid]\nrounds = [0, 1]', "rounds"),
    ('name = "ok"\n[base]\nbogus = 1', "bogus"),
    ('name = "ok"\nextra = 1', "extra"),
    ('name = "ok"\n[base]\nseed = 9223372036854775808', "seed"),
]


@pytest.mark.parametrize("text, fragment", SWEEP_CASES, ids=range(len(SWEEP_CASES)))
def test_a_hostile_sweep_file_is_one_line_and_writes_nothing(cli, tmp_path, text, fragment):
    (tmp_path / "s.toml").write_text(text)
    result = cli("sweep", tmp_path / "s.toml", "--dry-run")
    assert_one_line_error(result, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]


PARTITION_CASES = [
    (["classification:n_samples=nan"], "n_samples"),
    (["classification:n_samples=inf"], "n_samples"),
    (["classification:n_samples=-5"], "n_samples"),
    (["classification:n_samples=1e15"], "memory"),
    (["classification:n_features=1e12"], "memory"),
    (["classification:nope=1"], "nope"),
    (["classification:n_samples"], "n_samples"),
    (["nosuchdataset"], "nosuchdataset"),
    (["digits", "--clients", "0"], "--clients"),
    (["digits", "--clients", BIG], "--clients"),
    (["digits", "--clients", "100000"], "--clients"),
    (["digits", "--scheme", "dirichlet", "--alpha", "nan"], "--alpha"),
    (["digits", "--scheme", "dirichlet", "--alpha", "inf"], "--alpha"),
    (["digits", "--scheme", "dirichlet", "--alpha", "0"], "--alpha"),
    (["digits", "--scheme", "nope"], "nope"),
    (["digits", "--seed", "-1"], "--seed"),
    (["digits", "--seed", str(2**64)], "--seed"),
    (["digits", "--test-fraction", "1.5"], "--test-fraction"),
    (["digits", "--test-fraction", "nan"], "--test-fraction"),
    (["digits", "--client-test-fraction", "1"], "--client-test-fraction"),
    (["missing.csv"], "missing.csv"),
]


@pytest.mark.parametrize("args, fragment", PARTITION_CASES, ids=range(len(PARTITION_CASES)))
def test_hostile_partition_options_are_one_line(cli, tmp_path, args, fragment):
    result = cli("partition", *args, "--out", tmp_path / "p")
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "p").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary dir left either


def test_report_and_plot_never_write_over_a_run_or_a_partition(cli, small, interrupted, tmp_path):
    root, part = small
    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    before = digest(run, part)
    cases = [
        ("report", run, "--out", run / "rounds.csv"),
        ("report", run, "--out", run / "run.json"),
        ("report", run, "--out", run / "checkpoint.npz"),
        ("plot", run, "--out", run / "rounds.csv"),
        ("plot", run, "--out", part / "partition.png"),
        ("report", run, "--out", part / "partition.json"),
        ("plot", run, "--out", run),
        ("report", run, "--target-accuracy", "nan"),
        ("plot", run, "--out", tmp_path / "a.png", "--smooth", "0"),
        ("plot", run, "--out", tmp_path / "a.png", "--metric", "nope"),
        ("plot", run, "--out", tmp_path / "a.png", "--x", "nope"),
        ("report", run, "--format", "nope"),
        ("report", tmp_path / "nothing-here"),
    ]
    for args in cases:
        assert_one_line_error(cli(*args), "")
    assert digest(run, part) == before


def test_an_unreachable_ray_address_is_one_line_within_seconds(cli, small, tmp_path):
    import time

    start = time.monotonic()
    args = ("--backend", "ray", "--ray-address", "127.0.0.1:1", "--out", tmp_path / "r")
    assert_one_line_error(cli("train", small[1], *args), "--ray-address 127.0.0.1:1")
    assert time.monotonic() - start < 15
