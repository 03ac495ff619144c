"""The privacy, robustness and fault options end to end: through fl train on digits."""

import csv
import json

import dp_accounting
import numpy as np
import pytest
from dp_accounting import pld, rdp

from flcli.api import simulate
from flcli.config import TrainConfig
from flcli.configfile import train_config
from flcli.data.store import load_partition
from flcli.errors import FLError
from tests.conftest import assert_one_line_error


def rows(run_dir):
    with open(run_dir / "rounds.csv") as file:
        return list(csv.DictReader(file))


def train(cli, partition, out, *flags):
    result = cli("train", partition, "--out", out, *flags)
    assert result.code == 0, result.err
    return rows(out)


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_the_logged_epsilon_is_dp_accountings(cli, iid_dir, tmp_path, accountant):
    logged = train(
        cli, iid_dir, tmp_path / "dp", "--rounds", "3", "--fraction", "0.5",
        "--dp-clip", "0.5", "--dp-noise", "1.3", "--dp-delta", "1e-3",
        "--dp-accountant", accountant,
    )  # fmt: skip
    for row in logged[1:]:
        event = dp_accounting.PoissonSampledDpEvent(0.5, dp_accounting.GaussianDpEvent(1.3))
        ledger = rdp.RdpAccountant() if accountant == "rdp" else pld.PLDAccountant()
        ledger.compose(event, int(row["round"]))
        assert float(row["epsilon"]) == ledger.get_epsilon(1e-3)  # to the last bit
    assert float(logged[0]["epsilon"]) == 0.0


def test_dp_epsilon_calibrates_the_noise_to_spend_the_budget(cli, iid_dir, tmp_path):
    logged = train(
        cli, iid_dir, tmp_path / "eps", "--rounds", "4", "--fraction", "0.5",
        "--dp-clip", "1.0", "--dp-epsilon", "8",
    )  # fmt: skip
    assert 7.99 < float(logged[-1]["epsilon"]) <= 8.0
    dp = json.loads((tmp_path / "eps" / "run.json").read_text())["dp"]
    # the defaults: delta well below 1 / clients (min(1e-5, 10^-1.1)), q = the fraction
    assert (dp["delta"], dp["sampling_rate"], dp["accountant"]) == (1e-5, 0.5, "rdp")
    event = dp_accounting.PoissonSampledDpEvent(
        0.5, dp_accounting.GaussianDpEvent(dp["noise_multiplier"])
    )
    ledger = rdp.RdpAccountant()
    ledger.compose(event, 4)
    assert ledger.get_epsilon(1e-5) == pytest.approx(float(logged[-1]["epsilon"]), rel=1e-9)


def test_signflip_attackers_break_the_mean_but_not_median_or_krum(cli, iid_dir, tmp_path):
    accuracy = {}
    for aggregator in ("mean", "median", "krum"):
        out = tmp_path / aggregator
        attack = ("--attack", "signflip", "--malicious", "0.2", "--aggregator", aggregator)
        accuracy[aggregator] = float(
            train(cli, iid_dir, out, "--rounds", "10", *attack)[-1]["test_accuracy"]
        )
    assert accuracy["mean"] < 0.5
    assert accuracy["median"] > 0.85 and accuracy["krum"] > 0.85


def test_secure_aggregation_gives_the_plain_runs_curve(cli, iid_dir, tmp_path):
    plain = train(cli, iid_dir, tmp_path / "plain", "--rounds", "4")
    secure = train(cli, iid_dir, tmp_path / "secure", "--rounds", "4", "--secure-agg")
    for a, b in zip(plain, secure, strict=True):
        assert abs(float(a["test_accuracy"]) - float(b["test_accuracy"])) <= 1e-3
        assert abs(float(a["train_loss"]) - float(b["train_loss"])) <= 1e-6
    assert int(secure[-1]["bytes_up"]) > int(plain[-1]["bytes_up"])  # keys, shares, words


def run(partition_dir, **settings):
    partition = load_partition(partition_dir)
    return list(simulate(partition, train_config(**settings)))


@pytest.mark.parametrize("algo", ["fedavg", "fedadam", "fednova"])
def test_a_round_where_nobody_returns_keeps_the_model(iid_dir, algo):
    results = run(iid_dir, algo=algo, rounds=6, dropout=0.85, seed=2)
    empty = [r for r in results[1:] if r.record["dropped"] == 10]
    assert empty, "expected a round where every sampled client fails"
    for r in empty:
        before = results[r.record["round"] - 1]
        assert np.array_equal(r.state.params, before.state.params)
        assert r.record["clients"] == 10
    assert not np.array_equal(results[-1].state.params, results[0].state.params)


def test_secure_aggregation_below_threshold_keeps_the_model_and_logs_it(cli, iid_dir, tmp_path):
    logged = train(
        cli, iid_dir, tmp_path / "abort", "--rounds", "3", "--secure-agg",
        "--secagg-threshold", "10", "--dropout", "0.3", "--seed", "1",
    )  # fmt: skip
    aborted = [row for row in logged[1:] if row["dropped"] == "10"]
    assert aborted and all(row["clients"] == "10" for row in aborted)


def test_secure_aggregation_under_dp_needs_a_majority_of_each_rounds_random_cohort(
    cli, iid_dir, tmp_path
):
    dp = (
        "--rounds",
        "8",
        "--fraction",
        "0.4",
        "--dp-clip",
        "1",
        "--dp-noise",
        "0.5",
        "--seed",
        "2",
        "--dp-publish-uncovered",  # reads the exact cohort sizes
    )
    plain = train(cli, iid_dir, tmp_path / "dp", *dp)
    secure = train(cli, iid_dir, tmp_path / "dp-secure", *dp, "--secure-agg")
    assert (
        min(int(row["clients"]) for row in secure[1:]) <= 2
    )  # below the majority (3) of the expected 4
    assert all(row["dropped"] == "0" for row in secure)
    for a, b in zip(plain, secure, strict=True):
        assert abs(float(a["train_loss"]) - float(b["train_loss"])) <= 1e-6


def test_labelflip_and_gaussian_attacks_run(cli, iid_dir, tmp_path):
    for attack in ("labelflip", "gaussian", "scale"):
        train(
            cli, iid_dir, tmp_path / attack, "--rounds", "2",
            "--attack", attack, "--malicious", "0.3", "--aggregator", "geomed",
        )  # fmt: skip


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--aggregator", "krum", "--attack", "signflip", "--malicious", "0.5"], ["0.5", "krum"]),
        (["--secure-agg", "--secagg-threshold", "11"], ["--secagg-threshold 11", "10 clients"]),
        (["--dp-noise", "1.0"], ["--dp-noise", "--dp-clip"]),
        (["--dp-clip", "1.0"], ["--dp-noise"]),
        (["--dp-clip", "big", "--dp-noise", "1"], ["--dp-clip 'big'"]),
        (["--dp-clip", "1.0", "--dp-noise", "1", "--aggregator", "median"], ["median", "DP"]),
        (["--secure-agg", "--aggregator", "krum"], ["--secure-agg"]),
        (["--aggregator", "bulyan", "--byzantine", "0.2"], ["bulyan", "needs"]),
        (["--attack", "signflip"], ["--malicious"]),
        (["--attack", "signflip", "--malicious", "0.04"], ["--malicious 0.04", "no attacker"]),
        (["--dropout", "1.0"], ["--dropout 1.0"]),
        (["--dp-clip", "adaptive", "--dp-noise", "1.0"], ["adaptive", "z=1", "more clients"]),
    ],
)
def test_bad_combinations_are_one_line_errors(cli, iid_dir, tmp_path, flags, fragments):
    result = cli("train", iid_dir, "--out", tmp_path / "bad", *flags)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "bad").exists()


def test_options_are_checked_before_the_run_is_built():
    from flcli.engine.uplink import check_uplink_options
    from flcli.privacy.options import parse_clip

    with pytest.raises(FLError, match="--secagg-threshold needs --secure-agg"):
        check_uplink_options(TrainConfig(secagg_threshold=3))
    assert parse_clip("2") == 2.0


@pytest.mark.parametrize(
    "algo, flags",
    [
        ("scaffold", ["--dp-clip", "1.0", "--dp-noise", "1.0"]),
        ("qfedavg", ["--secure-agg"]),
        ("feddyn", ["--aggregator", "median"]),
        ("fednova", ["--aggregator", "krum"]),
        ("feddist", ["--dp-clip", "1.0", "--dp-noise", "1.0"]),
    ],
)
def test_algorithms_reading_single_clients_refuse_what_replaces_the_aggregate(
    cli, iid_dir, tmp_path, algo, flags
):
    result = cli("train", iid_dir, "--out", tmp_path / "bad", "--algo", algo, *flags)
    assert_one_line_error(result, flags[0], f"--algo {algo}", "fedavg")


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--algo", "fedbag", "--dp-clip", "1.0", "--dp-noise", "1.0"], ["--dp-clip", "fedbag"]),
        (["--algo", "fedbag", "--dropout", "0.1"], ["--dropout", "parameters to average"]),
        (["--algo", "feddist", "--attack", "signflip", "--malicious", "0.2"], ["--attack"]),
    ],
)
def test_models_without_parameters_to_average_refuse_the_uplink_options(
    cli, iid_dir, tmp_path, flags, fragments
):
    model = ("--model", "sklearn:KNeighborsClassifier")
    result = cli("train", iid_dir, "--out", tmp_path / "bad", *model, *flags)
    assert_one_line_error(result, *fragments)


@pytest.mark.parametrize("algo", ["fedprox", "fedadam"])
def test_a_robust_aggregator_protects_every_algorithm_that_averages(iid_dir, algo):
    attack = dict(attack="signflip", malicious=0.2, rounds=10)
    mean = run(iid_dir, algo=algo, **attack)[-1].record["test_accuracy"]
    median = run(iid_dir, algo=algo, aggregator="median", **attack)[-1].record["test_accuracy"]
    assert mean < 0.5 < 0.85 < median


@pytest.mark.parametrize("algo", ["ditto", "fedadam"])
def test_dp_rounds_that_sample_nobody_still_add_noise_on_both_backends(personal_dir, algo):
    settings = dict(algo=algo, rounds=6, clients_per_round=1, dp_clip="adaptive", dp_noise=0.02)
    vectorized = run(personal_dir, backend="vectorized", **settings)
    serial = run(personal_dir, backend="serial", **settings)
    for a, b in zip(vectorized, serial, strict=True):
        assert np.allclose(a.state.params, b.state.params, rtol=0, atol=1e-9)
        assert a.state.uplink["dp_clip"] == pytest.approx(b.state.uplink["dp_clip"], abs=1e-12)
    empty = [r for r in vectorized[1:] if r.record["clients"] == 0]
    assert empty, "expected a round that samples nobody at q = 0.1"
    for r in empty:
        assert np.isnan(r.record["client_accuracy_mean"])
        assert not np.array_equal(r.state.params, vectorized[r.record["round"] - 1].state.params)
    clips = {float(r.state.uplink["dp_clip"]) for r in vectorized}
    assert len(clips) > 1  # adaptive clipping moved the norm


@pytest.mark.parametrize(
    "options",
    [
        {"dp_clip": "adaptive", "dp_noise": 0.1},  # the clipping norm is state to carry over
        {"dp_clip": 1.0, "dp_noise": 1.0, "dp_accountant": "pld"},  # the accountant starts over
        {"dropout": 0.3},  # adds the integer column "dropped"
    ],
)
def test_resume_writes_the_uninterrupted_rounds_csv(cli, iid_dir, tmp_path, options):
    from flcli import api

    flags = ["--rounds", "4", "--fraction", "0.5"]
    for key, value in options.items():
        flags += ["--" + key.replace("_", "-"), str(value)]
    whole = train(cli, iid_dir, tmp_path / "whole", *flags)
    config = train_config(rounds=4, fraction=0.5, **options)
    rounds = api.prepare_training(iid_dir, config, tmp_path / "cut").rounds()
    for record in rounds:
        if record["round"] == 2:
            break
    rounds.close()  # as if interrupted after round 2
    resumed = train(cli, iid_dir, tmp_path / "cut", *flags, "--resume")
    for a, b in zip(whole, resumed, strict=True):
        assert {k: v for k, v in a.items() if k != "elapsed_s"} == {
            k: v for k, v in b.items() if k != "elapsed_s"
        }
