"""A user's own algorithm and model from their own files (examples/), through the real CLI: every
backend gives the same rounds.csv, a killed run resumes exactly, run.json records the code, and
every broken plugin is one line, exit 2."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error, install_entry_points
from test_crash import (
    assert_sigkill_then_resume_is_uninterrupted,
    rounds_of,
)

from flcli.algorithms.base import ClientUpdates, Context
from flcli.algorithms.registry import algorithm_spec, build
from flcli.config import TrainConfig
from flcli.errors import FLError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FEDEXP = f"{EXAMPLES / 'fedexp.py'}:SPEC"
RIDGE = f"{EXAMPLES / 'ridge_softmax.py'}:RidgeSoftmax"
PLUGINS = [
    "--algo",
    FEDEXP,
    "--algo-arg",
    "epsilon=0.01",
    "--model",
    RIDGE,
    "--model-arg",
    "l2=0.01",
]
ARGS = [*PLUGINS, "--rounds", 4, "--fraction", 0.5, "--seed", 5]


def train(cli, partition, out, *args):
    result = cli("train", partition, *args, "--out", out)
    assert result.code == 0, result.err
    return rounds_of(out)


@pytest.mark.parametrize("backend", ["process", "ray"])
def test_example_plugins_give_the_same_rounds_csv_on_every_backend(
    cli, dirichlet_dir, tmp_path, backend
):
    vectorized = train(cli, dirichlet_dir, tmp_path / "v", *ARGS)
    other = train(cli, dirichlet_dir, tmp_path / backend, *ARGS, "--backend", backend, "--jobs", 2)
    pd.testing.assert_frame_equal(vectorized, other, check_exact=True)
    assert vectorized["test_accuracy"].iloc[-1] > 0.5  # it learns


def test_run_json_records_the_reference_and_the_files_sha256_and_config_repeats_it(
    cli, dirichlet_dir, tmp_path
):
    import hashlib

    first = train(cli, dirichlet_dir, tmp_path / "first", *ARGS)
    info = json.loads((tmp_path / "first" / "run.json").read_text())
    source = info["sources"]["algo"]
    assert source["reference"] == FEDEXP
    assert source["sha256"] == hashlib.sha256((EXAMPLES / "fedexp.py").read_bytes()).hexdigest()
    assert info["sources"]["model"]["reference"] == RIDGE
    assert info["config"]["algo_args"] == {"epsilon": 0.01}
    assert info["config"]["model_args"] == {"l2": 0.01}
    again = cli("train", "--config", tmp_path / "first" / "run.json", "--out", tmp_path / "again")
    assert again.code == 0, again.err
    pd.testing.assert_frame_equal(first, rounds_of(tmp_path / "again"), check_exact=True)


def test_a_plugin_run_killed_with_sigkill_resumes_to_the_uninterrupted_rounds_csv(
    cli, iid_dir, tmp_path
):
    args = [*PLUGINS, "--rounds", 40, "--fraction", 0.5, "--seed", 4, "--checkpoint-every", 1]
    assert_sigkill_then_resume_is_uninterrupted(cli, iid_dir, args, tmp_path)


def test_fedexp_with_equal_updates_is_fedavg_and_extrapolates_when_they_cancel():
    """eta_g = max(1, sum ||d_i||^2 / (2 M (||mean||^2 + eps))): 1 when the clients agree; with
    d and e - d the mean is e / 2 and the step (||d||^2 + ||e - d||^2) / (4 (||e/2||^2 + eps))."""
    spec = algorithm_spec(FEDEXP)
    fedexp = build(spec, {"epsilon": 1e-3}, Context(None, 2, 0.1), parametric=True)
    state = fedexp.server_init(np.zeros(2), 2)

    def updates(deltas):
        deltas = np.array(deltas, dtype=float)
        return ClientUpdates(np.arange(2), deltas, np.array([5, 50]), np.array([1, 1]))

    same = fedexp.server_update(state, updates([[1.0, 2.0], [1.0, 2.0]]))
    np.testing.assert_array_equal(same.params, [1.0, 2.0])
    d, e = np.array([3.0, 0.0]), np.array([0.0, 1.0])
    moved = fedexp.server_update(state, updates([d, e - d]))
    mean = e / 2
    step = (d @ d + (e - d) @ (e - d)) / (2 * 2 * (mean @ mean + 1e-3))
    np.testing.assert_allclose(moved.params, step * mean, rtol=1e-12)


def test_ridge_softmax_gradient_matches_finite_differences():
    from flcli.models.registry import make_model

    model = make_model(RIDGE, 4, 3, model_args={"l2": 0.3})
    rng = np.random.default_rng(0)
    W = rng.normal(size=(2, model.num_params))
    X, y = rng.normal(size=(2, 5, 4)), rng.integers(0, 3, size=(2, 5))
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=float)
    loss, grad = model.loss_grad(W, X, y, mask)
    step = 1e-6
    for j in range(model.num_params):
        bump = np.zeros_like(W)
        bump[:, j] = step
        up, _ = model.loss_grad(W + bump, X, y, mask)
        down, _ = model.loss_grad(W - bump, X, y, mask)
        np.testing.assert_allclose(grad[:, j], (up - down) / (2 * step), rtol=1e-5, atol=1e-8)


BROKEN_MODEL = """
class NoGradient:
    task = "classification"
    num_params = 3
    def __init__(self, num_features, num_classes, dtype="float64"):
        pass
    def init(self, rng):
        return None
"""
RAISING_FACTORY = """
def fedbroken(ctx, rate=0.1):
    raise RuntimeError("not today")

def notalgo(ctx):
    return 42
"""
SYNTAX_ERROR = "def fedx(ctx:\n"


@pytest.fixture(scope="module")
def broken_plugins(tmp_path_factory):
    """One folder of broken plugin files for the module (a module name is imported once)."""
    folder = tmp_path_factory.mktemp("broken")
    (folder / "broken_algos.py").write_text(RAISING_FACTORY)
    (folder / "broken_models.py").write_text(BROKEN_MODEL)
    (folder / "broken_syntax.py").write_text(SYNTAX_ERROR)
    return folder


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--algo", "{tmp}/missing.py:fedx"], ["--algo", "missing.py does not exist"]),
        (["--algo", "{tmp}/broken_algos.py:fedother"], ["has no 'fedother'", "fedbroken"]),
        (
            ["--algo", "{tmp}/broken_algos.py:fedbroken"],
            ["fedbroken raised RuntimeError", "not today"],
        ),
        (["--algo", "{tmp}/broken_algos.py:notalgo"], ["returned a int", "Algorithm"]),
        (["--algo", "{tmp}/broken_syntax.py:fedx"], ["importing it failed", "SyntaxError"]),
        (["--algo", "no_such_package.mod:fedx"], ["no module 'no_such_package.mod'"]),
        (
            ["--algo", "{tmp}/broken_algos.py:fedbroken", "--algo-arg", "speed=2"],
            ["takes no hyperparameter speed", "rate"],
        ),
        (["--algo", f"{FEDEXP}", "--algo-arg", "epsilon=-1"], ["--epsilon -1", "> 0"]),
        (["--algo", "fedavg", "--algo-arg", "oops"], ["--algo-arg 'oops'", "key=value"]),
        (["--model", "{tmp}/broken_models.py:NoGradient"], ["lacks loss_grad", "predict_proba"]),
        (["--model", "{tmp}/broken_models.py:Missing"], ["has no 'Missing'", "NoGradient"]),
        (["--model", f"{RIDGE}", "--model-arg", "l2=-1"], ["RidgeSoftmax raised ValueError"]),
        (["--model", f"{RIDGE}", "--model-arg", "alpha=1"], ["--model", "alpha"]),
        (["--algo", f"{FEDEXP}", "--dp-clip", "1", "--dp-noise", "1"], ["--dp-clip", "reads"]),
    ],
)
def test_a_broken_plugin_is_one_line_and_exit_2(
    cli, iid_dir, tmp_path, broken_plugins, flags, fragments
):
    filled = [flag.replace("{tmp}", str(broken_plugins)) for flag in flags]
    result = cli("train", iid_dir, *filled, "--rounds", 1, "--out", tmp_path / "run")
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_replace_on_a_config_is_the_config_with_that_value_nothing_more():
    given = TrainConfig(algo="fedprox", model="softmax")
    assert given.lr is None and given.algo_args == {}  # nothing filled at construction
    other = dataclasses.replace(given, algo="fedavg")
    assert other.algo == "fedavg" and other.algo_args == {}
    mlp = dataclasses.replace(given, model="mlp")
    assert mlp.lr is None  # not softmax's 0.5: resolve gives mlp's own
    with pytest.raises(FLError, match="--rounds 0"):
        dataclasses.replace(given, rounds=0)


def test_resolve_fills_the_defaults_of_the_model_and_the_algorithm(iid_dir):
    from flcli.assemble import resolve
    from flcli.data.store import load_partition

    partition = load_partition(iid_dir)
    resolved = resolve(TrainConfig(algo="fedprox", model="mlp"), partition)[0]
    assert resolved.lr == 0.2 and resolved.hidden == (128, 64)
    assert resolved.algo_args == {"mu": 0.01} and resolved.drop_stragglers is False
    resolved = resolve(TrainConfig(algo="ditto", local_epochs=3), partition)[0]
    assert resolved.algo_args == {"lam": 0.1, "personal_epochs": 3}  # = --local-epochs


def test_dp_noise_is_calibrated_once_per_run(iid_dir, tmp_path, monkeypatch):
    from flcli import api
    from flcli.privacy import dp

    calls = []
    calibrate = dp.noise_for_epsilon.__wrapped__

    def counted(*args):
        calls.append(args)
        return calibrate(*args)

    monkeypatch.setattr(dp, "noise_for_epsilon", counted)
    config = TrainConfig(rounds=2, clients_per_round=5, dp_clip=1.0, dp_epsilon=5.0)
    training = api.prepare_training(iid_dir, config, tmp_path / "run")
    for _ in training.rounds():
        pass
    assert len(calls) == 1
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "completed" and info["dp"]["noise_multiplier"] > 0


def test_fedavg_decay_at_decay_1_is_fedavg_and_its_step_shrinks(cli, dirichlet_dir, tmp_path):
    decay = f"{EXAMPLES / 'fedavg_decay.py'}:fedavg_decay"
    args = ["--rounds", 3, "--seed", 1]
    fedavg = train(cli, dirichlet_dir, tmp_path / "fedavg", *args, "--keep-stragglers")
    same = train(
        cli, dirichlet_dir, tmp_path / "same", *args, "--algo", decay, "--algo-arg", "decay=1.0"
    )
    pd.testing.assert_frame_equal(fedavg, same, check_exact=True)
    slower = train(
        cli, dirichlet_dir, tmp_path / "slow", *args, "--algo", decay, "--algo-arg", "decay=0.1"
    )
    assert not slower.equals(fedavg)


def test_a_sweep_of_a_plugin_algorithm_with_its_own_hyperparameter_as_a_grid_key(cli, tmp_path):
    sweep = tmp_path / "decay.toml"
    sweep.write_text(
        'name = "decay"\n[base]\ndataset = "digits"\nclients = 6\nrounds = 2\n'
        f'algo = "{EXAMPLES / "fedavg_decay.py"}:fedavg_decay"\n'
        "[grid]\ndecay = [0.5, 1.0]\nseed = [0, 1]\n"
    )
    result = cli("sweep", sweep, "--out", tmp_path / "out", "--jobs", 2)
    assert result.code == 0, result.err
    runs = sorted(p.parent for p in (tmp_path / "out").glob("decay=*/run.json"))
    assert len(runs) == 4
    args = [json.loads((run / "run.json").read_text())["config"]["algo_args"] for run in runs]
    assert [a["decay"] for a in args] == [0.5, 0.5, 1.0, 1.0]
    again = cli("sweep", sweep, "--out", tmp_path / "out")
    assert "4 already done" in again.out
    typo = tmp_path / "typo.toml"
    typo.write_text(sweep.read_text().replace("decay = [", "decai = ["))
    assert_one_line_error(cli("sweep", typo), "unknown key(s) decai", "hyperparameters: server_lr")


@pytest.mark.parametrize(
    "uplink",
    [
        ["--dp-clip", "1.0", "--dp-noise", "0.5"],
        ["--secure-agg", "--dropout", "0.2"],
        ["--aggregator", "median", "--attack", "signflip", "--malicious", "0.2"],
    ],
)
def test_a_plugin_algorithm_takes_dp_secure_aggregation_and_robust_rules_like_a_built_in(
    cli, iid_dir, tmp_path, uplink
):
    """fedavg_decay at decay 1 is FedAvg: through the same uplink it gives FedAvg's rounds.csv."""
    decay = f"{EXAMPLES / 'fedavg_decay.py'}:fedavg_decay"
    args = ["--rounds", 3, "--clients-per-round", 8, "--keep-stragglers", *uplink]
    fedavg = train(cli, iid_dir, tmp_path / "fedavg", *args)
    mine = train(cli, iid_dir, tmp_path / "mine", *args, "--algo", decay, "--algo-arg", "decay=1.0")
    pd.testing.assert_frame_equal(fedavg, mine, check_exact=True)


def test_example_scheme_and_dataset_partition_train_and_plot(cli, tmp_path):
    blobs, bands = f"{EXAMPLES / 'blobs.py'}:blobs", f"{EXAMPLES / 'label_bands.py'}:label_bands"
    made = cli(
        "partition", blobs, "--dataset-arg", "classes=4", "--scheme", bands,
        "--scheme-arg", "bands=2", "--clients", 8, "--seed", 3, "--out", tmp_path / "p",
    )  # fmt: skip
    assert made.code == 0, made.err
    meta = json.loads((tmp_path / "p" / "partition.json").read_text())
    counts = np.array(meta["label_counts"])
    assert (counts[:4, 2:] == 0).all() and (counts[4:, :2] == 0).all()  # two bands of labels
    assert meta["dataset_source"]["sha256"] and meta["params"]["scheme_args"] == {"bands": 2}
    trained = train(cli, tmp_path / "p", tmp_path / "run", "--rounds", 3)
    assert trained["test_accuracy"].iloc[-1] > 0.8
    plotted = cli("plot", tmp_path / "run", "--out", tmp_path / "acc.png")
    assert plotted.code == 0 and (tmp_path / "acc.png").stat().st_size > 0


def test_installed_entry_points_add_algorithm_and_model_names(cli, iid_dir, tmp_path, monkeypatch):
    site = install_entry_points(
        tmp_path / "site",
        "[flcli.algorithms]\nfedexp = fedexp:SPEC\n\n"
        "[flcli.models]\nridge = ridge_softmax:RidgeSoftmax\n",
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(EXAMPLES))
    listed = cli("list", "algorithms").out
    assert "fedexp" in listed and "Jhunjhunwala" in listed
    assert "ridge_softmax:RidgeSoftmax" in cli("list", "models").out
    by_name = train(
        cli, iid_dir, tmp_path / "named", "--algo", "fedexp", "--model", "ridge", "--rounds", 2
    )
    by_file = train(
        cli, iid_dir, tmp_path / "file", "--algo", FEDEXP, "--model", RIDGE, "--rounds", 2
    )
    pd.testing.assert_frame_equal(by_name, by_file, check_exact=True)


def test_resuming_with_a_changed_plugin_file_is_refused(cli, iid_dir, tmp_path):
    from flcli import api, plugins
    from flcli.configfile import train_config

    plugin = tmp_path / "changing_algo.py"
    plugin.write_text((EXAMPLES / "fedavg_decay.py").read_text())
    reference = f"{plugin}:fedavg_decay"
    training = api.prepare_training(iid_dir, train_config(algo=reference, rounds=3), tmp_path / "r")
    rounds = training.rounds()
    next(rounds), next(rounds)
    rounds.close()  # interrupted after round 1
    plugin.write_text(plugin.read_text() + "# edited after the run started\n")
    plugins.SOURCES.clear()  # as a new process, which hashes the file anew
    args = ["--algo", reference, "--rounds", 3, "--out", tmp_path / "r", "--resume"]
    assert_one_line_error(
        cli("train", iid_dir, *args), "changed since the run", "put the file back"
    )


RUNTIME_FAULTS = """
import numpy as np

from flcli.algorithms.base import Algorithm, AlgorithmSpec, ServerState, plain_init


def fedraises(ctx):
    def server_update(state, updates):
        return {"k": 1}["missing"]

    return Algorithm("fedraises", server_init=plain_init, server_update=server_update)


def fedwrong(ctx):
    return Algorithm("fedwrong", server_init=plain_init, server_update=lambda state, u: 42)


NOTHING = AlgorithmSpec("nothing", None)


class BadInit:
    task = "classification"
    default_lr = 0.1

    def __init__(self, num_features, num_classes, dtype="float64"):
        self.num_params = num_features * num_classes + num_classes

    def init(self, rng):
        return np.zeros(3)

    def loss_grad(self, W, X, y, mask, out=None, scale=1.0, workspace=None):
        raise AssertionError

    def predict_proba(self, w, X):
        raise AssertionError

    def predict(self, w, X):
        raise AssertionError


class BadRate(BadInit):
    default_lr = "fast"
"""


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--algo", "R:fedraises"], ["fedraises's server_update raised KeyError", "missing"]),
        (["--algo", "R:fedwrong"], ["fedwrong's server_update returned a int", "ServerState"]),
        (["--algo", "R:NOTHING"], ["AlgorithmSpec needs a factory"]),
        (["--model", "R:BadInit"], ["init returned ndarray of shape (3,)", "num_params = 650"]),
        (["--model", "R:BadRate"], ["default_lr 'fast'", "> 0"]),
    ],
)
def test_a_plugin_that_fails_while_running_is_one_line_and_a_failed_run(
    cli, iid_dir, tmp_path, runtime_faults, flags, fragments
):
    filled = [flag.replace("R:", f"{runtime_faults}:") for flag in flags]
    result = cli("train", iid_dir, *filled, "--rounds", 2, "--out", tmp_path / "run")
    assert result.code == 2 and "Traceback" not in result.err, result.err
    last = result.err.strip().splitlines()[-1]  # after the progress bar, when it got that far
    assert last.startswith("error: ") and all(f in last for f in fragments), last
    info = tmp_path / "run" / "run.json"
    assert not info.exists() or json.loads(info.read_text())["status"] == "failed"


@pytest.fixture(scope="module")
def runtime_faults(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "runtime_faults.py"
    path.write_text(RUNTIME_FAULTS)
    return path
