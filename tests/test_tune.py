"""fl tune: the file's checks, the objective's maths, and studies run through the CLI on a tiny
partition (digits, 4 clients, a few rounds)."""

import json
import math
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import assert_one_line_error, start_fl_group
from hypothesis import given
from hypothesis import strategies as st

from flcli.errors import FLError
from flcli.tunefile import Choice, FloatRange, IntRange, Objective, combine, parse_param, run_value

optuna = pytest.importorskip("optuna")

TUNE = """
name = "tiny"
trials = 3
startup_trials = 2
[base]
dataset = "digits"
clients = 4
rounds = 3
algo = "fedprox"
seed = 0
[space]
lr = { low = 0.05, high = 0.5, log = true }
mu = { low = 0.001, high = 0.1, log = true }
local_epochs = { low = 1, high = 2 }
[pruner]
kind = "none"
"""


def write(path, text):
    path.write_text(text)
    return path


def load_study(storage: str):
    return optuna.load_study(study_name="tiny", storage=storage)


def sqlite(out) -> str:
    return f"sqlite:///{out / 'study.db'}"


def status_of(run_dir) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def test_a_study_runs_trials_as_run_dirs_and_continues_to_the_new_total(cli, tmp_path):
    file, out = write(tmp_path / "t.toml", TUNE), tmp_path / "out"
    first = cli("tune", file, "--out", out, "--confirm-seeds", 2)
    assert first.code == 0, first.err
    study = load_study(sqlite(out))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    for trial in study.trials:
        run_dir = out / "trials" / str(trial.number)
        assert len(pd.read_csv(run_dir / "rounds.csv")) == 4  # round 0 and 3 rounds
        assert status_of(run_dir)["status"] == "completed"
    assert "best config" in first.out and "fresh seeds 1, 2" in first.out
    best = study.best_trial
    for seed in (1, 2):
        assert status_of(out / "best" / str(best.number) / f"seed={seed}")["config"]["seed"] == seed
    assert cli("report", out / "trials").code == 0
    before = [(t.params, t.value) for t in study.trials]

    again = cli("tune", file, "--out", out, "--trials", 5, "--confirm-seeds", 0)
    assert again.code == 0, again.err
    after = load_study(sqlite(out)).trials
    assert len(after) == 5 and [(t.params, t.value) for t in after[:3]] == before
    assert len({json.dumps(t.params, sort_keys=True) for t in after}) == 5  # no draw replayed


def test_a_median_pruner_prunes_a_hopeless_trial_and_marks_its_run(cli, tmp_path):
    text = TUNE.replace("trials = 3", 'trials = 6\nsampler = "random"')
    text = text.replace("lr = { low = 0.05, high = 0.5, log = true }", "lr = [0.5, 0.00001]")
    text = text.replace('kind = "none"', 'kind = "median"\nwarmup_rounds = 0\nstartup_trials = 1')
    file, storage = write(tmp_path / "t.toml", text), f"sqlite:///{tmp_path / 'elsewhere.db'}"
    result = cli("tune", file, "--out", tmp_path / "out", "--storage", storage, "--confirm-seeds=0")
    assert result.code == 0, result.err
    assert not (tmp_path / "out" / "study.db").exists()
    pruned = load_study(storage).get_trials(states=(optuna.trial.TrialState.PRUNED,))
    assert pruned and all(t.params["lr"] == 0.00001 for t in pruned)
    for trial in pruned:
        info = status_of(tmp_path / "out" / "trials" / str(trial.number))
        assert info["status"] == "pruned" and info["pruned_at_round"] < 3
    assert "pruned" in cli("report", tmp_path / "out" / "trials").out


def test_several_seeds_give_one_run_each_and_mean_minus_k_std(cli, tmp_path):
    text = TUNE.replace("trials = 3", "trials = 2") + "[objective]\nseeds = [0, 1]\nk = 0.5\n"
    file, out = write(tmp_path / "t.toml", text), tmp_path / "out"
    assert cli("tune", file, "--out", out, "--confirm-seeds", 1).code == 0
    study = load_study(sqlite(out))
    for trial in study.trials:
        finals = [
            pd.read_csv(
                out / "trials" / str(trial.number) / f"seed={s}" / "rounds.csv"
            ).test_accuracy.iloc[-1]
            for s in (0, 1)
        ]
        assert trial.value == pytest.approx(combine(finals, 0.5, minimize=False))
    fresh = out / "best" / str(study.best_trial.number) / "seed=2"  # after the study's seeds
    assert status_of(fresh)["status"] == "completed"


def test_ctrl_c_keeps_the_study_and_the_same_command_retries_the_trial_in_its_run_dir(
    cli, tmp_path
):
    import os
    import signal

    text = TUNE.replace("trials = 3", "trials = 1").replace("rounds = 3", "rounds = 150")
    text = text.replace("[space]", "checkpoint_every = 1\n[space]")  # rounds.csv from round 1
    file, out = write(tmp_path / "t.toml", text), tmp_path / "out"
    process = start_fl_group("tune", file, "--out", out)
    rounds, deadline = out / "trials" / "0" / "rounds.csv", time.monotonic() + 60
    while not (rounds.is_file() and rounds.read_text().count("\n") > 3):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert "interrupted" in last and "fl tune" in last and "Traceback" not in err
    assert status_of(out / "trials" / "0")["status"] == "interrupted"
    [stopped] = load_study(sqlite(out)).trials[:1]
    assert stopped.state == optuna.trial.TrialState.FAIL

    again = cli("tune", file, "--out", out, "--confirm-seeds", 0)
    assert again.code == 0, again.err
    trials = load_study(sqlite(out)).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[1].params == stopped.params and trials[1].user_attrs["retry_of"] == 0
    assert status_of(out / "trials" / "0")["status"] == "completed"
    assert len(pd.read_csv(out / "trials" / "0" / "rounds.csv")) == 151


def test_a_trial_left_running_by_a_killed_process_is_retried(cli, tmp_path):
    file, out = write(tmp_path / "t.toml", TUNE.replace("trials = 3", "trials = 1")), tmp_path / "o"
    assert cli("tune", file, "--out", out, "--confirm-seeds", 0).code == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study = load_study(sqlite(out))
    orphan = study.ask({"lr": optuna.distributions.FloatDistribution(0.05, 0.5, log=True)})
    orphan.set_user_attr("host", socket.gethostname())
    orphan.set_user_attr("pid", dead.pid)
    assert cli("tune", file, "--out", out, "--trials", 2, "--confirm-seeds", 0).code == 0
    trials = load_study(sqlite(out)).trials
    assert trials[orphan.number].state == optuna.trial.TrialState.FAIL
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == orphan.number)
    assert retry.state == optuna.trial.TrialState.COMPLETE
    assert retry.params["lr"] == orphan.params["lr"]


def test_a_stored_study_of_another_space_is_refused(cli, tmp_path):
    out = tmp_path / "out"
    file = write(tmp_path / "t.toml", TUNE.replace("trials = 3", "trials = 1"))
    assert cli("tune", file, "--out", out, "--confirm-seeds", 0).code == 0
    write(file, file.read_text().replace("high = 0.5", "high = 0.9"))
    assert_one_line_error(cli("tune", file, "--out", out), "another", "[space]")


def test_without_optuna_fl_tune_says_how_to_install_it(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    file = write(tmp_path / "t.toml", TUNE)
    assert cli("tune", file, "--out", tmp_path / "o", "--dry-run").code == 0
    assert_one_line_error(cli("tune", file, "--out", tmp_path / "o"), "pip install 'flcli[tune]'")


@pytest.mark.parametrize(
    "old, new, fragments",
    [
        ('name = "tiny"', "", ["name"]),
        ("trials = 3", "", ["budget", "trials"]),
        ("trials = 3", 'timeout = "soon"', ["timeout", "'soon'", "30m"]),
        ("high = 0.5", "high = 0.01", ["lr", "low must be below high"]),
        ("low = 0.05, high = 0.5", "low = 0, high = 0.5", ["lr", "log range needs low > 0"]),
        ("lr = { low = 0.05, high = 0.5, log = true }", "lr = []", ["lr", "empty"]),
        ("lr = {", "lrr = {", ["[space] lrr = { low = 0.05, high = 0.5, log = true }", "lr?"]),
        ("lr = {", "alpha = [0.1, 0.5]\nlr = {", ["alpha", "partition option", "[base]"]),
        ("lr = {", "seed = [0, 1]\nlr = {", ["seed", "[objective] seeds"]),
        ("low = 0.05, high = 0.5, log = true", "low = -1.0, high = 0.5", ["lr = -1.0", "lr"]),
        ('kind = "none"', 'kind = "sometimes"', ["kind", "'sometimes'", "median"]),
        ("[pruner]", '[objective]\nmode = "rounds_to"\n[pruner]', ["'rounds_to' needs a target"]),
        (
            "[pruner]",
            "[objective]\ntarget = 0.9\n[pruner]",
            ["target = 0.9 is for modes rounds_to"],
        ),
        ("seed = 0", "seed = 0\nlr = 0.1", ["lr is both in [base] and [space]; keep it in one"]),
        ("[pruner]", '[objective]\nmetric = ""\n[pruner]', ["metric", "column"]),
        ('kind = "none"', 'kind = "none"\nevery = 0', ["every = 0", "integer >= 1"]),
    ],
)
def test_bad_tune_file_is_one_line(cli, tmp_path, old, new, fragments):
    assert old in TUNE
    file = write(tmp_path / "t.toml", TUNE.replace(old, new, 1))
    result = cli("tune", file, "--out", tmp_path / "o")
    assert_one_line_error(result, *fragments)
    assert len(result.err) < 300  # the fix, not a list of every option
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--trials", "-1"], ["--trials -1 must be an integer >= 1"]),
        (["--timeout", "-1"], ["--timeout -1 is not a duration"]),
        (["--out", "{tmp}/t.toml"], ["--out {tmp}/t.toml is a file; give a folder"]),
        (["--out", "{tmp}/t.toml/o"], ["--out {tmp}/t.toml/o: {tmp}/t.toml is a file"]),
    ],
)
def test_bad_tune_flags_are_one_line_naming_the_flag(cli, tmp_path, flags, fragments):
    file = write(tmp_path / "t.toml", TUNE)
    flags = [flag.format(tmp=tmp_path) for flag in flags]
    fragments = [fragment.format(tmp=tmp_path) for fragment in fragments]
    result = cli("tune", file, *(["--out", tmp_path / "o"] if "--out" not in flags else []), *flags)
    assert_one_line_error(result, *fragments)
    assert "t.toml:" not in result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.toml"]


def test_a_ray_study_without_ray_is_one_line_before_anything_is_written(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    file = write(tmp_path / "t.toml", TUNE.replace("[space]", 'backend = "ray"\n[space]'))
    assert_one_line_error(cli("tune", file, "--out", tmp_path / "o"), "needs Ray", "flcli[ray]")
    assert not (tmp_path / "o").exists()


def test_a_ray_address_nothing_answers_is_one_line_before_anything_is_written(cli, tmp_path):
    file = write(tmp_path / "t.toml", TUNE)
    flags = ["--backend", "ray", "--ray-address", "127.0.0.1:1"]
    result = cli("tune", file, "--out", tmp_path / "o", *flags)
    assert_one_line_error(result, "--ray-address 127.0.0.1:1", "nothing answers")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("metric", ["test_accuracyy", "personal_accuracy", "epsilon"])
def test_an_objective_metric_that_is_no_column_is_one_line_before_anything_is_written(
    cli, tmp_path, metric
):
    text = TUNE.replace("[pruner]", f'[objective]\nmetric = "{metric}"\n[pruner]')
    result = cli("tune", write(tmp_path / "t.toml", text), "--out", tmp_path / "o")
    assert_one_line_error(result, f"metric = {metric!r} is not a column", "test_accuracy")
    assert not (tmp_path / "o").exists()


def test_a_damaged_study_db_is_one_line_naming_the_fix(cli, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    optuna.create_study(storage=sqlite(out), study_name="other")
    whole = (out / "study.db").read_bytes()
    (out / "study.db").write_bytes(whole[:5000])  # a truncated copy
    file = write(tmp_path / "t.toml", TUNE)
    result = cli("tune", file, "--out", out)
    assert_one_line_error(result, "study.db is damaged", "move it aside to start a new study")
    assert sorted(p.name for p in out.iterdir()) == ["study.db"]


@pytest.mark.parametrize(
    "storage, fragments",
    [
        ("sqlite:///{tmp}/missing/x.db", ["missing does not exist"]),
        ("{tmp}/t.toml", ["is not a database URL", "sqlite:///study.db", "postgresql://"]),
        ("sqlite:///{tmp}/t.toml", ["t.toml is not a SQLite database", "sqlite:///study.db"]),
        ("sqlite:///{tmp}", ["is a folder", "study.db"]),
        ("postgresql://x@127.0.0.1:1/db", ["needs the database driver psycopg", "pip install"]),
    ],
)
def test_a_bad_storage_is_one_line_before_anything_is_written(
    cli, tmp_path, monkeypatch, storage, fragments
):
    for driver in ("psycopg", "psycopg2"):  # as if not installed
        monkeypatch.setitem(sys.modules, driver, None)
    file = write(tmp_path / "t.toml", TUNE)
    storage = storage.format(tmp=tmp_path)
    assert_one_line_error(
        cli("tune", file, "--out", tmp_path / "o", "--storage", storage), *fragments
    )
    assert not (tmp_path / "o").exists() and not (tmp_path / "missing").exists()


def test_the_shipped_tune_and_its_grid_share_partition_rounds_seed_and_budget():
    from pathlib import Path

    from flcli.sweep import load_sweep
    from flcli.tunefile import load_tune

    experiments = Path(__file__).parent.parent / "experiments"
    tune = load_tune(experiments / "tune-fedprox.toml")
    grid = load_sweep(experiments / "fedprox-grid.toml")
    assert tune.trials == len(grid.runs) == 30 and grid.num_partitions == 1
    assert tune.partition_options == grid.runs[0].partition_options
    assert {run.config.rounds for run in grid.runs} == {tune.rounds}
    assert {run.config.seed for run in grid.runs} == set(tune.objective.seeds)
    assert {p.key for p in tune.space} == {"lr", "mu", "local_epochs"}


def rows(accuracies, sim_step=2.0):
    return [
        {"round": r, "test_accuracy": a, "sim_time_s": r * sim_step, "bytes_up": 0, "elapsed_s": 0}
        for r, a in enumerate(accuracies)
    ]


def test_objective_values_of_one_run():
    run = rows([0.1, 0.5, 0.9, 0.8])
    assert run_value(run, Objective(mode="final"), 3) == 0.8
    assert run_value(run, Objective(mode="best"), 3) == 0.9
    assert run_value(run, Objective(mode="rounds_to", target=0.85), 3) == 2
    assert run_value(run, Objective(mode="time_to", target=0.85), 3) == 4.0
    assert run_value(run, Objective(mode="rounds_to", target=0.95), 3) == 4  # never: rounds + 1
    assert run_value(run, Objective(mode="time_to", target=0.95), 3) == 6.0 * 4 / 3
    loss = [{"round": r, "test_loss": v} for r, v in enumerate([2.0, 0.5, 0.7])]
    assert run_value(loss, Objective(metric="test_loss", mode="best"), 2) == 0.5


def test_objective_directions_and_mean_minus_k_std():
    assert not Objective().minimize and Objective(metric="test_loss").minimize
    assert Objective(mode="rounds_to", target=0.9).minimize
    assert Objective(mode="rounds_to", target=0.9).signed(0.7) == -0.7  # pruned as lower-better
    assert Objective(metric="test_loss").signed(0.7) == 0.7
    assert combine([0.8, 0.9, 1.0], 1.0, minimize=False) == pytest.approx(0.8)
    assert combine([0.8, 0.9, 1.0], 2.0, minimize=True) == pytest.approx(1.1)
    assert combine([0.7], 1.0, minimize=False) == 0.7  # one seed: no spread


finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(finite, st.floats(1e-3, 1e6), st.booleans())
def test_valid_float_ranges_round_trip_to_distributions(low, width, log):
    from flcli.tune import distribution

    low = abs(low) + 1e-3 if log else low
    spec = {"low": low, "high": low + width, "log": log}
    param = parse_param("lr", spec, "t.toml")
    assert param == FloatRange("lr", low, low + width, log)
    made = distribution(optuna, param)
    assert (made.low, made.high, made.log) == (low, low + width, log)


@given(st.integers(-1000, 1000), st.integers(1, 1000), st.booleans())
def test_valid_int_ranges_round_trip_to_distributions(low, width, log):
    from flcli.tune import distribution

    low = abs(low) + 1 if log else low
    param = parse_param("local_epochs", {"low": low, "high": low + width, "log": log}, "t.toml")
    assert param == IntRange("local_epochs", low, low + width, log)
    made = distribution(optuna, param)
    assert (made.low, made.high, made.log) == (low, low + width, log)


@given(st.lists(st.one_of(st.text(), st.integers()), min_size=1, max_size=5, unique=True))
def test_valid_choices_round_trip_to_distributions(values):
    from flcli.tune import distribution

    param = parse_param("batch_size", values, "t.toml")
    assert param == Choice("batch_size", tuple(values))
    assert distribution(optuna, param).choices == tuple(values)


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=3))
specs = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.sampled_from(["low", "high", "log", "step"]), scalars, max_size=4),
)


@given(specs)
def test_any_space_entry_is_a_param_or_one_flerror(spec):
    try:
        param = parse_param("x", spec, "t.toml")
    except FLError as error:
        assert "\n" not in str(error) and "[space] x" in str(error)
        return
    assert isinstance(param, FloatRange | IntRange | Choice)
    if not isinstance(param, Choice):
        assert param.low < param.high and (param.low > 0 or not param.log)
        assert math.isfinite(param.low) and math.isfinite(param.high)
