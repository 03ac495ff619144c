"""--eval-every K and --eval-clients F: which rounds are evaluated, on which clients' rows
train_loss is computed, and every reader of rounds.csv at rounds that were not evaluated."""

import csv
import dataclasses
import json
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error, assert_resume_is_exact
from hypothesis import given, settings
from hypothesis import strategies as st
from test_golden import assert_same_rounds, partition_for

from flcli import api
from flcli.assemble import assemble
from flcli.config import TrainConfig
from flcli.data.store import load_partition
from flcli.engine.evalplan import evaluation_clients, sample_size
from flcli.engine.evaluate import client_rows, per_sample
from flcli.engine.health import learning_warnings
from flcli.errors import FLError
from flcli.runs import read_run, seed_table
from flcli.tracking import metrics_of

TIMING = ["elapsed_s"]
METRICS = ["test_accuracy", "test_loss", "train_loss", "client_accuracy_mean"]
# the columns of rounds that are not evaluated, too
EVERY_ROUND = (
    "round", "clients", "bytes_up", "bytes_down", "sim_time_s", "clusters", "epsilon",
    "staleness_mean", "staleness_max",
)  # fmt: skip


@pytest.fixture(scope="module")
def new_clients_dir(tmp_path_factory):
    """Clients with local test splits, and clients held out of training."""
    out = tmp_path_factory.mktemp("parts") / "personal"
    api.partition(
        out,
        dataset="digits",
        clients=8,
        scheme="dirichlet",
        alpha=0.5,
        seed=2,
        client_test_fraction=0.2,
        new_clients=0.25,
    )
    return out


def train(cli, part, out, *flags):
    result = cli("train", part, "--seed", 1, "--out", out, *flags)
    assert result.code == 0, result.err
    return pd.read_csv(out / "rounds.csv")


def frame(part, **options) -> pd.DataFrame:
    config = TrainConfig(seed=1, **options)
    rows = [result.record for result in api.simulate(part, config)]
    return pd.DataFrame(rows).drop(columns=TIMING)


def test_rounds_not_evaluated_are_marked_and_empty_and_the_last_round_is(cli, iid_dir, tmp_path):
    every = train(cli, iid_dir, tmp_path / "k1", "--rounds", 7, "--log-clients")
    some = train(cli, iid_dir, tmp_path / "k3", "--rounds", 7, "--eval-every", 3, "--log-clients")
    assert some["evaluated"].tolist() == [1, 0, 0, 1, 0, 0, 1, 1]
    skipped = some["evaluated"] == 0
    assert some.loc[skipped, METRICS].isna().all().all()
    assert some.loc[~skipped, METRICS].notna().all().all()
    with (tmp_path / "k3" / "rounds.csv").open() as file:
        cells = [row["test_accuracy"] for row in csv.DictReader(file)]
    assert [cell == "" for cell in cells] == skipped.tolist()  # empty cells, not "nan"
    # evaluating changes no training: the counters of every round and the metrics of the
    # evaluated ones are the K = 1 run's
    counters = ["round", "clients", "bytes_up", "bytes_down", "sim_time_s"]
    pd.testing.assert_frame_equal(some[counters], every[counters])
    evaluated = some[~skipped].drop(columns=["evaluated", *TIMING]).reset_index(drop=True)
    wanted = every[~skipped].drop(columns=TIMING).reset_index(drop=True)
    pd.testing.assert_frame_equal(evaluated, wanted)
    clients = pd.read_csv(tmp_path / "k3" / "clients.csv")
    assert sorted(set(clients["round"])) == [0, 3, 6, 7]


def test_k_beyond_the_rounds_evaluates_round_0_and_the_last(cli, iid_dir, tmp_path):
    rounds = train(cli, iid_dir, tmp_path / "r", "--rounds", 3, "--eval-every", 50)
    assert rounds["evaluated"].tolist() == [1, 0, 0, 1]
    again = ["--rounds", 3, "--eval-every", 50, "--seed", 1, "--out", tmp_path / "r"]
    result = cli("train", iid_dir, *again)
    assert result.code == 0 and "nothing to do" in result.out


def test_k_1_and_f_1_write_the_recorded_rounds_csv_and_keep_the_digest(cli, tmp_path):
    """The golden fedavg case with both options given at their defaults."""
    from test_golden import CASES, GOLDEN, ROUNDS

    part = partition_for("fedavg", tmp_path)
    flags = [*CASES["fedavg"], *ROUNDS, "--eval-every", 1, "--eval-clients", 1.0]
    result = cli("train", part, *flags, "--out", tmp_path / "given")
    assert result.code == 0, result.err
    written = pd.read_csv(tmp_path / "given" / "rounds.csv")
    assert "evaluated" not in written.columns
    assert_same_rounds(written.drop(columns=TIMING), pd.read_csv(GOLDEN / "fedavg.csv"))
    assert cli("train", part, *CASES["fedavg"], *ROUNDS, "--out", tmp_path / "plain").code == 0
    texts = [
        pd.read_csv(tmp_path / name / "rounds.csv").drop(columns=TIMING).to_csv()
        for name in ("given", "plain")
    ]
    assert texts[0] == texts[1]
    digests = [
        json.loads((tmp_path / name / "run.json").read_text())["config_digest"]
        for name in ("given", "plain")
    ]
    assert digests[0] == digests[1]
    chosen = TrainConfig(eval_every=2).digest(), TrainConfig(eval_clients=0.5).digest()
    assert TrainConfig().digest() not in chosen and chosen[0] != chosen[1]
    # what flcli wrote in run.json for these configs before the options existed
    older = TrainConfig(algo="fedprox", rounds=7, dtype="float32", eval_every=1, eval_clients=1.0)
    assert (TrainConfig().digest(), older.digest()) == ("849df04c74bce20c", "c199ca404cc7a9d7")


@given(
    fraction=st.floats(min_value=1e-6, max_value=1.0, exclude_min=True),
    clients=st.integers(min_value=1, max_value=5000),
    round=st.integers(min_value=0, max_value=10**6),
)
@settings(max_examples=60, deadline=None)
def test_the_evaluation_sample_is_ceil_f_n_distinct_clients_drawn_alike(fraction, clients, round):
    ids = evaluation_clients(7, round, clients, fraction)
    assert len(ids) == max(1, math.ceil(Fraction(repr(fraction)) * clients))
    assert np.array_equal(ids, np.unique(ids)) and ids[0] >= 0 and ids[-1] < clients
    assert np.array_equal(ids, evaluation_clients(7, round, clients, fraction))


def test_the_sample_size_reads_f_as_written_and_changes_with_the_round():
    assert sample_size(0.7, 10) == 7 and sample_size(0.1, 10_000) == 1000
    assert sample_size(0.01, 10) == 1 and sample_size(1.0, 13) == 13
    draws = {tuple(evaluation_clients(0, r, 1000, 0.1)) for r in range(5)}
    assert len(draws) == 5
    assert not np.array_equal(
        evaluation_clients(0, 1, 1000, 0.1), evaluation_clients(1, 1, 1000, 0.1)
    )


def test_train_loss_is_the_mean_loss_over_the_sampled_clients_rows(dirichlet_dir):
    config = TrainConfig(rounds=2, eval_clients=0.3, seed=4)
    data = load_partition(dirichlet_dir)
    model = assemble(config, data).model
    results = list(api.simulate(dirichlet_dir, config))
    full = list(api.simulate(dirichlet_dir, dataclasses.replace(config, eval_clients=1.0)))
    for result, whole in zip(results, full, strict=True):
        round = result.record["round"]
        ids = evaluation_clients(4, round, data.num_clients, 0.3)
        assert len(ids) == 3  # ceil(0.3 x 8)
        starts, sizes = data.offsets[ids], np.diff(data.offsets)[ids]
        rows = client_rows(starts, sizes)
        losses, _ = per_sample(model, result.state.params, data.x_train[rows], data.y_train[rows])
        assert result.record["train_loss"] == pytest.approx(float(losses.mean()), rel=1e-12)
        test = [k for k in result.record if k.startswith(("test_", "client_accuracy_"))]
        assert {k: result.record[k] for k in test} == {k: whole.record[k] for k in test}
        assert np.array_equal(result.state.params, whole.state.params)


def test_the_sample_is_the_same_on_the_serial_backend(cli, dirichlet_dir, tmp_path):
    flags = ["--rounds", 2, "--eval-clients", 0.5, "--fraction", 0.5]
    vectorized = train(cli, dirichlet_dir, tmp_path / "v", *flags)
    serial = train(cli, dirichlet_dir, tmp_path / "s", *flags, "--backend", "serial")
    assert np.allclose(vectorized["train_loss"], serial["train_loss"], rtol=1e-9, atol=0)
    whole = train(cli, dirichlet_dir, tmp_path / "w", "--rounds", 2, "--fraction", 0.5)
    assert not np.allclose(vectorized["train_loss"][1:], whole["train_loss"][1:])


@pytest.mark.parametrize(
    "options",
    [
        {"algo": "ditto"},  # personal models on the clients' local test splits, new clients
        {"algo": "fedbuff"},  # asynchronous: a row per server update
        {"algo": "cfl", "model": "mlp", "hidden": (8,)},  # the clusters column
        {"dp_clip": 1.0, "dp_noise": 0.5, "clients_per_round": 4},  # epsilon
    ],
    ids=["ditto", "fedbuff", "cfl", "dp"],
)
def test_every_kind_of_round_skips_only_its_metrics(new_clients_dir, options):
    every = frame(new_clients_dir, rounds=4, **options)
    some = frame(new_clients_dir, rounds=4, eval_every=3, **options)
    skipped = (some["evaluated"] == 0).to_numpy()
    assert skipped.tolist() == [False, True, True, False, False]
    kept = [c for c in EVERY_ROUND if c in every]
    pd.testing.assert_frame_equal(some[kept], every[kept])
    measured = [c for c in every.columns if c not in kept]
    assert "test_accuracy" in measured and "train_loss" in measured
    assert some.loc[skipped, measured].isna().all().all(), measured
    evaluated = some[~skipped].drop(columns="evaluated").reset_index(drop=True)
    pd.testing.assert_frame_equal(evaluated, every[~skipped].reset_index(drop=True))


def test_resume_is_exact_from_a_round_that_was_not_evaluated(dirichlet_dir, tmp_path):
    config = TrainConfig(rounds=7, eval_every=3, eval_clients=0.5, log_clients=True, seed=2)
    assert_resume_is_exact(dirichlet_dir, config, tmp_path, files=("rounds.csv", "clients.csv"))


def test_plot_and_report_read_the_evaluated_rounds(cli, iid_dir, tmp_path):
    run = tmp_path / "runs" / "k3"
    rounds = train(cli, iid_dir, run, "--rounds", 8, "--eval-every", 3)
    assert seed_table((read_run(run),), "test_accuracy").index.tolist() == [0, 3, 6, 8]
    plotted = cli("plot", tmp_path / "runs", "--x", "bytes", "--out", tmp_path / "k3.png")
    assert plotted.code == 0, plotted.err
    assert (tmp_path / "k3.png").stat().st_size > 10_000
    evaluated = rounds[rounds["evaluated"] == 1]
    target = float(evaluated["test_accuracy"].iloc[2])  # round 6's accuracy: reached by then
    report = cli("report", tmp_path / "runs", "--target-accuracy", target, "--format", "csv")
    assert report.code == 0, report.err
    [row] = list(csv.DictReader(report.out.splitlines()))
    reached = evaluated[evaluated["test_accuracy"] >= target].iloc[0]
    assert float(row["round_to_target_mean"]) == reached["round"]
    assert float(row["bytes_up_to_target_mean"]) == reached["bytes_up"]
    assert float(row["final_mean"]) == evaluated["test_accuracy"].iloc[-1]
    assert float(row["best_mean"]) == evaluated["test_accuracy"].max()
    assert float(row["client_accuracy_p10_mean"]) == evaluated["client_accuracy_p10"].iloc[-1]


def test_health_checks_and_tracking_skip_rounds_not_evaluated():
    losses = [2.0, 2.1, 2.2, 2.3, 2.4, 2.5]
    evaluated = [
        {"round": 2 * i, "train_loss": loss, "test_accuracy": 0.05} for i, loss in enumerate(losses)
    ]
    mixed = []
    for row in evaluated:
        mixed.append({**row, "evaluated": 1, "bytes_up": 10})
        blank = {"train_loss": math.nan, "test_accuracy": math.nan, "bytes_up": 10}
        mixed.append({"round": row["round"] + 1, **blank, "evaluated": 0})
    assert learning_warnings(mixed, 10, 0.1) == learning_warnings(evaluated, 10, 0.1)
    assert len(learning_warnings(evaluated, 10, 0.1)) == 2
    assert metrics_of(mixed[1]) == {"bytes_up": 10.0}


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--eval-every", "0"], ["--eval-every 0", "[1,"]),
        (["--eval-every", "-3"], ["--eval-every -3", "e.g. 5"]),
        (["--eval-every", "2.5"], ["--eval-every", "valid int"]),
        (["--eval-every", "often"], ["--eval-every", "valid int"]),
        (["--eval-clients", "0"], ["--eval-clients 0.0", "(0, 1]"]),
        (["--eval-clients", "1.5"], ["--eval-clients 1.5", "(0, 1]"]),
        (["--eval-clients", "-0.1"], ["--eval-clients -0.1", "e.g. 0.1"]),
        (["--eval-clients", "nan"], ["--eval-clients nan", "finite"]),
        (["--eval-clients", "some"], ["--eval-clients", "valid"]),
    ],
)
def test_bad_values_are_one_line_and_write_nothing(cli, iid_dir, tmp_path, flags, fragments):
    result = cli("train", iid_dir, *flags, "--out", tmp_path / "r")
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "line, fragment",
    [("eval_every = 0", "--eval-every 0"), ('eval_clients = "half"', "eval_clients = 'half'")],
)
def test_bad_values_in_a_config_file_are_one_line(cli, iid_dir, tmp_path, line, fragment):
    config = tmp_path / "train.toml"
    config.write_text(line + "\n")
    result = cli("train", iid_dir, "--config", config, "--out", tmp_path / "r")
    assert_one_line_error(result, fragment)


@given(st.floats(allow_nan=False))
def test_eval_clients_is_accepted_exactly_in_the_half_open_unit_interval(fraction):
    inside = 0 < fraction <= 1 and math.isfinite(fraction)
    if inside:
        assert TrainConfig(eval_clients=fraction).eval_clients == fraction
    else:
        with pytest.raises(FLError, match="--eval-clients"):
            TrainConfig(eval_clients=fraction)


def test_a_study_with_eval_every_reports_the_evaluated_rounds_to_its_pruner(cli, tmp_path):
    pytest.importorskip("optuna")
    import optuna

    tune = tmp_path / "t.toml"
    tune.write_text(
        'name = "evaluated"\ntrials = 2\nstartup_trials = 1\n[base]\ndataset = "digits"\n'
        "clients = 4\nrounds = 5\nseed = 0\neval_every = 2\n[space]\n"
        "lr = { low = 0.05, high = 0.5, log = true }\n"
        '[pruner]\nkind = "median"\nwarmup_rounds = 0\nstartup_trials = 5\n'
    )
    result = cli("tune", tune, "--out", tmp_path / "study", "--confirm-seeds", 0)
    assert result.code == 0, result.err
    study = optuna.load_study(
        study_name="evaluated", storage=f"sqlite:///{tmp_path}/study/study.db"
    )
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert sorted(trial.intermediate_values) == [0, 2, 4, 5]  # the evaluated rounds
        rounds = pd.read_csv(tmp_path / "study" / "trials" / str(trial.number) / "rounds.csv")
        assert trial.value == rounds["test_accuracy"].iloc[-1]
        assert rounds["test_accuracy"].isna().sum() == 2
