"""fl sweep --backend ray on a real two-node Ray cluster on this machine (ray.cluster_utils):
each run is one Ray task, the run dirs equal a local sweep's, a node lost mid-sweep costs nothing,
an interrupted sweep continues, and a user's plugin file travels to the nodes."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error

from flcli import api
from flcli.sweep import load_sweep, run_sweep

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'flcli[ray]'")
from ray.cluster_utils import Cluster  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SIXTEEN = """
name = "sixteen"
[base]
dataset = "digits"
clients = 8
rounds = {rounds}
[grid]
algo = ["fedavg", "fedprox", "scaffold", "fedadam"]
seed = [0, 1]
partition = [{{ scheme = "iid" }}, {{ scheme = "dirichlet", alpha = 0.3 }}]
"""


@pytest.fixture
def cluster():
    """A head node and a worker node, one CPU each, on this machine."""
    started = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = started.add_node(num_cpus=1)
    started.wait_for_nodes()
    yield started, worker
    ray.shutdown()
    started.shutdown()


def sweep_file(folder: Path, rounds: int = 3) -> Path:
    path = folder / "sixteen.toml"
    path.write_text(SIXTEEN.format(rounds=rounds))
    return path


def rounds_without_timing(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "rounds.csv").drop(columns=["elapsed_s"])


def assert_same_runs(ours: Path, theirs: Path, run_ids: list[str]) -> None:
    for run_id in run_ids:
        expected = rounds_without_timing(theirs / run_id)
        pd.testing.assert_frame_equal(rounds_without_timing(ours / run_id), expected)
        info = json.loads((ours / run_id / "run.json").read_text())
        assert info["status"] == "completed"
        assert info["partition"] == str(
            (ours / "partitions").resolve() / Path(info["partition"]).name
        )


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """The same sixteen runs by `fl sweep --jobs 2`, without Ray."""
    folder = tmp_path_factory.mktemp("local")
    plan = load_sweep(sweep_file(folder), folder / "out")
    outcomes = [o for o in run_sweep(plan, jobs=2) if o.kind == "run"]
    assert {o.status for o in outcomes} == {"completed"}
    return folder / "out", [run.run_id for run in plan.runs]


def test_sixteen_runs_on_two_nodes_equal_a_local_sweep(cli, cluster, tmp_path, local_sweep):
    head, _ = cluster
    out = tmp_path / "ray"
    result = cli(
        "sweep", sweep_file(tmp_path), "--backend", "ray", "--ray-address", head.address,
        "--out", out,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "16 trained, 0 already done, 0 failed" in result.out
    assert "runs trained per Ray node (2 nodes)" in result.out  # tasks ran on both nodes
    assert_same_runs(out, *local_sweep)
    assert not list(out.glob(".*")), "no temporary dir left beside the runs"


def test_a_node_killed_mid_sweep_costs_no_run(cluster, tmp_path, local_sweep):
    head, worker = cluster
    overrides = {"backend": "ray", "ray_address": head.address}
    plan = load_sweep(sweep_file(tmp_path), tmp_path / "ray", overrides)
    outcomes, killed_after = [], None
    for outcome in run_sweep(plan, jobs=2):
        if outcome.kind != "run":
            continue
        outcomes.append(outcome)
        if killed_after is None and outcome.node.endswith(worker.node_id[:8]):
            # the worker took its next queued task as it returned this one: it goes mid-task
            head.remove_node(worker, allow_graceful=False)
            killed_after = len(outcomes)
    assert killed_after is not None and killed_after < 16
    assert [o.status for o in outcomes] == ["completed"] * 16, [o.message for o in outcomes]
    after = {o.node for o in outcomes[killed_after:]}
    assert not any(node.endswith(worker.node_id[:8]) for node in after)
    assert_same_runs(tmp_path / "ray", *local_sweep)


def test_an_interrupted_cluster_sweep_continues_where_it_stopped(cluster, tmp_path, local_sweep):
    head, _ = cluster
    overrides = {"backend": "ray", "ray_address": head.address}
    plan = load_sweep(sweep_file(tmp_path), tmp_path / "ray", overrides)
    unfinished = plan.runs[-1]  # a run Ctrl-C stopped after one round, trained here
    api.partition(unfinished.partition_dir, **unfinished.partition_options)
    training = api.prepare_training(unfinished.partition_dir, unfinished.config, unfinished.out)
    rounds = training.rounds()
    next(rounds), next(rounds)
    rounds.close()
    assert json.loads((unfinished.out / "run.json").read_text())["status"] == "interrupted"

    first = run_sweep(plan, jobs=2)
    done = []
    for outcome in first:
        if outcome.kind == "run":
            done.append(outcome.id)
        if len(done) == 5:
            first.close()  # what Ctrl-C does to the generator: the tasks in flight are cancelled
    ray.shutdown()
    again = [o for o in run_sweep(plan, jobs=2) if o.kind == "run"]
    skipped = {o.id for o in again if o.status == "skipped"}
    assert set(done) <= skipped
    assert {o.status for o in again} <= {"skipped", "completed"}
    assert_same_runs(tmp_path / "ray", *local_sweep)


def test_a_plugin_file_travels_to_the_nodes(cli, cluster, tmp_path, monkeypatch):
    head, _ = cluster
    plugins = tmp_path / "my_code"
    plugins.mkdir()
    shutil.copy(EXAMPLES / "fedavg_decay.py", plugins / "cluster_decay.py")
    (tmp_path / "decay.toml").write_text(
        'name = "decay"\n[base]\ndataset = "digits"\nclients = 6\nrounds = 3\n'
        'algo = "my_code/cluster_decay.py:fedavg_decay"\n[grid]\ndecay = [0.5, 1.0]\n'
    )
    monkeypatch.chdir(tmp_path)  # references are relative to the working directory
    result = cli("sweep", "decay.toml", "--backend", "ray", "--ray-address", head.address)
    assert result.code == 0, result.err
    local = cli("sweep", "decay.toml", "--jobs", 1, "--out", tmp_path / "local")
    assert local.code == 0, local.err
    for run_id in ("decay=0.5", "decay=1.0"):
        ours = tmp_path / "results" / "decay" / run_id
        pd.testing.assert_frame_equal(
            rounds_without_timing(ours), rounds_without_timing(tmp_path / "local" / run_id)
        )
        source = json.loads((ours / "run.json").read_text())["sources"]["algo"]
        assert source["file"] == str((plugins / "cluster_decay.py").resolve())


def test_a_ray_sweep_without_ray_is_one_line_before_any_partition(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    result = cli("sweep", sweep_file(tmp_path), "--backend", "ray", "--out", tmp_path / "out")
    assert_one_line_error(result, "pip install 'flcli[ray]'")
    assert not (tmp_path / "out").exists()


def test_a_plugin_outside_the_working_directory_is_refused_in_one_line(cli, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(EXAMPLES / "fedavg_decay.py", elsewhere / "far_decay.py")
    here = tmp_path / "here"
    here.mkdir()
    (here / "far.toml").write_text(
        'name = "far"\n[base]\ndataset = "digits"\nclients = 4\nrounds = 1\n'
        f'algo = "{elsewhere / "far_decay.py"}:fedavg_decay"\n'
    )
    monkeypatch.chdir(here)
    try:
        result = cli("sweep", "far.toml", "--backend", "ray", "--jobs", 1)
    finally:
        ray.shutdown()
    assert_one_line_error(result, str(elsewhere), "outside the working directory")


def test_a_tracked_cluster_sweep_is_tracked_by_the_driver(cli, cluster, tmp_path):
    from test_tracking import assert_scalars_are_rounds_csv

    head, _ = cluster
    (tmp_path / "tracked.toml").write_text(
        'name = "tracked"\n[base]\ndataset = "digits"\nclients = 6\nrounds = 3\n'
        'track = "tensorboard"\n[grid]\nseed = [0, 1]\n'
    )
    out = tmp_path / "out"
    sweep = tmp_path / "tracked.toml"
    result = cli("sweep", sweep, "--backend", "ray", "--ray-address", head.address, "--out", out)
    assert result.code == 0, result.err
    for run_id in ("seed=0", "seed=1"):
        assert_scalars_are_rounds_csv(out / run_id / "tb", out / run_id)


TUNE = """
name = "clustered"
trials = 6
startup_trials = 2
[base]
dataset = "digits"
clients = 6
rounds = 6
algo = "fedprox"
[space]
lr = { low = 0.01, high = 3.0, log = true }
mu = { low = 0.001, high = 1.0, log = true }
[objective]
seeds = [0, 1]
[pruner]
kind = "median"
warmup_rounds = 1
startup_trials = 2
"""


def test_tune_trials_train_on_the_cluster_and_report_to_the_study(cli, cluster, tmp_path):
    optuna = pytest.importorskip("optuna")
    head, _ = cluster
    (tmp_path / "tune.toml").write_text(TUNE)
    out = tmp_path / "out"
    result = cli(
        "tune", tmp_path / "tune.toml", "--backend", "ray", "--ray-address", head.address,
        "--out", out, "--confirm-seeds", 0,
    )  # fmt: skip
    assert result.code == 0, result.err
    study = optuna.load_study(study_name="clustered", storage=f"sqlite:///{out / 'study.db'}")
    states = [trial.state.name for trial in study.trials]
    assert len(states) == 6 and "PRUNED" in states and "COMPLETE" in states, states
    for trial in study.trials:
        runs = [Path(trial.user_attrs["run_dir"]) / f"seed={seed}" for seed in (0, 1)]
        statuses = [
            json.loads((run / "run.json").read_text())["status"] for run in runs if run.is_dir()
        ]
        if trial.state.name == "COMPLETE":  # its value: mean - sample std of the finals
            finals = [pd.read_csv(run / "rounds.csv")["test_accuracy"].iloc[-1] for run in runs]
            assert statuses == ["completed", "completed"]
            assert trial.value == pytest.approx(np.mean(finals) - np.std(finals, ddof=1))
        else:
            assert "pruned" in statuses


def test_ctrl_c_on_a_ray_sweep_says_the_runs_in_flight_start_over(cli, tmp_path, monkeypatch):
    def interrupted(runs, jobs, address):
        raise KeyboardInterrupt  # as Ctrl-C lands while the driver waits on the tasks
        yield

    monkeypatch.setattr("flcli.cluster.run_on_cluster", interrupted)
    result = cli("sweep", sweep_file(tmp_path), "--backend", "ray", "--out", tmp_path / "s")
    assert result.code == 1, result.err
    last = result.err.strip().splitlines()[-1]
    assert "interrupted with 0 of 16 runs done" in last
    assert "runs in flight on the Ray cluster were cancelled and start over" in last
    assert "keep what they trained" not in last
