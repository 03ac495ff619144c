"""The privacy, robustness and fault options end to end: through fl train on digits."""

import csv

import dp_accounting
import numpy as np
import pytest
from dp_accounting import rdp

from flcli.algorithms.registry import make_algorithm
from flcli.config import TrainConfig
from flcli.data.store import load_partition
from flcli.engine.loop import run_rounds
from flcli.errors import FLError
from flcli.models.linear import SoftmaxRegression
from tests.conftest import assert_one_line_error


def rows(run_dir):
    with open(run_dir / "rounds.csv") as file:
        return list(csv.DictReader(file))


def train(cli, partition, out, *flags):
    result = cli("train", partition, "--out", out, *flags)
    assert result.code == 0, result.err
    return rows(out)


def test_the_logged_epsilon_is_dp_accountings(cli, iid_dir, tmp_path):
    logged = train(
        cli, iid_dir, tmp_path / "dp", "--rounds", "3", "--fraction", "0.5",
        "--dp-clip", "0.5", "--dp-noise", "1.3", "--dp-delta", "1e-3",
    )  # fmt: skip
    for row in logged[1:]:
        event = dp_accounting.PoissonSampledDpEvent(0.5, dp_accounting.GaussianDpEvent(1.3))
        ledger = rdp.RdpAccountant()
        ledger.compose(event, int(row["round"]))
        assert float(row["epsilon"]) == pytest.approx(ledger.get_epsilon(1e-3), rel=1e-9)
    assert float(logged[0]["epsilon"]) == 0.0


def test_dp_epsilon_calibrates_the_noise_to_spend_the_budget(cli, iid_dir, tmp_path):
    logged = train(
        cli, iid_dir, tmp_path / "eps", "--rounds", "4", "--fraction", "0.5",
        "--dp-clip", "1.0", "--dp-epsilon", "8",
    )  # fmt: skip
    assert 7.99 < float(logged[-1]["epsilon"]) <= 8.0


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


def test_a_round_where_nobody_returns_keeps_the_model(iid_dir):
    partition = load_partition(iid_dir)
    model = SoftmaxRegression(partition.num_features, partition.num_classes)
    config = TrainConfig(rounds=6, dropout=0.85, seed=2)
    results = list(run_rounds(partition, model, make_algorithm("fedavg"), config))
    empty = [r for r in results[1:] if r.record["clients"] == 0]
    assert empty, "expected a round where every sampled client fails"
    for r in empty:
        before = results[r.record["round"] - 1]
        assert np.array_equal(r.state.params, before.state.params)
        assert r.record["dropped"] == 10


def test_secure_aggregation_below_threshold_keeps_the_model_and_logs_it(cli, iid_dir, tmp_path):
    logged = train(
        cli, iid_dir, tmp_path / "abort", "--rounds", "3", "--secure-agg",
        "--secagg-threshold", "10", "--dropout", "0.3", "--seed", "1",
    )  # fmt: skip
    aborted = [row for row in logged[1:] if row["clients"] == "0"]
    assert aborted and all(row["dropped"] == "10" for row in aborted)


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
        (["--dropout", "1.0"], ["--dropout 1.0"]),
        (["--dp-clip", "adaptive", "--dp-noise", "1.0"], ["adaptive", "z=1", "more clients"]),
    ],
)
def test_bad_combinations_are_one_line_errors(cli, iid_dir, tmp_path, flags, fragments):
    result = cli("train", iid_dir, "--out", tmp_path / "bad", *flags)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "bad").exists()


def test_options_are_checked_when_the_config_is_built():
    with pytest.raises(FLError, match="--secagg-threshold needs --secure-agg"):
        TrainConfig(secagg_threshold=3)
    assert TrainConfig(dp_clip="2", dp_noise=1.0).dp_clip == 2.0
