"""A run that does not learn: a warning (never a stop) on stderr and in run.json, from the records
alone; fl report notes a group that ends at or below chance."""

import json
import math

import pytest
from conftest import write_run

from flcli import api
from flcli.config import TrainConfig
from flcli.engine.health import learning_warnings
from flcli.report import summarize
from flcli.runs import find_runs, group_runs


def rows_of(losses, accuracies=None):
    accuracies = accuracies or [0.5] * len(losses)
    return [
        {"round": r, "train_loss": loss, "test_accuracy": acc}
        for r, (loss, acc) in enumerate(zip(losses, accuracies, strict=True))
    ]


def test_a_loss_that_climbs_above_its_start_warns_once_with_a_smaller_lr():
    losses = [2.3, 1.2, 1.4, 1.9, 2.4, 2.5, 2.6, 2.8, 3.0, 3.2]
    warnings = learning_warnings(rows_of(losses), 10, 0.5)
    assert len(warnings) == 1
    assert warnings[0].startswith("round 8:") and "e.g. 0.05" in warnings[0]


@pytest.mark.parametrize(
    "losses",
    [
        # FedProx on Synthetic(0,0) at lr 0.01 (measured): above log(10) at rounds 4-5, then learns
        [2.3026, 2.2188, 2.2927, 2.2931, 2.4502, 2.5173, 0.653, 1.6896, 0.78, 0.765, 0.666],
        # above the start for good, but not climbing: a dip every few rounds
        [2.3, 2.9, 3.0, 3.1, 3.05, 3.2, 3.3, 3.25, 3.4, 3.5, 3.45, 3.6],
        # climbing 5 rounds in a row, but below the start
        [2.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1],
    ],
)
def test_no_warning_when_the_loss_does_not_climb_above_its_start(losses):
    assert learning_warnings(rows_of(losses), 10, 0.01) == []


@pytest.mark.parametrize(
    "losses, accuracies",
    [
        # FedAvg, lr 0.01, Synthetic(1,1) (measured): the loss climbs 5 rounds above log(10) while
        # the accuracy rises, then the run learns (0.85 at round 30)
        (
            [2.3026, 2.5108, 2.8288, 2.963, 3.6026, 3.7531, 0.6577, 0.7499],
            [0.0072, 0.1174, 0.1197, 0.1764, 0.1813, 0.1859, 0.778, 0.7997],
        ),
        # the same with 90% stragglers dropped: below chance for 13 rounds, but gaining
        (
            [2.3026, 2.8015, 2.4951, 2.4774, 2.5275, 3.262, 3.1215, 3.4695, 2.7899, 2.9876,
             2.9537, 2.8049, 2.8627, 2.9129, 3.6627],
            [0.0072, 0.0084, 0.0209, 0.0319, 0.0209, 0.0258, 0.0361, 0.0464, 0.0574, 0.0566,
             0.0593, 0.0886, 0.087, 0.0886, 0.1448],
        ),
    ],
)  # fmt: skip
def test_no_warning_while_the_accuracy_gains(losses, accuracies):
    assert learning_warnings(rows_of(losses, accuracies), 10, 0.01) == []


def test_accuracy_at_chance_with_a_loss_not_below_its_start_warns():
    losses = [2.3, 2.4, 2.35, 2.5, 2.45, 2.6, 2.55]
    accuracies = [0.1, 0.1, 0.09, 0.1, 0.08, 0.1, 0.1]
    (warning,) = learning_warnings(rows_of(losses, accuracies), 10, 0.5)
    assert warning.startswith("round 5:") and "chance" in warning and "e.g. 0.05" in warning
    learning = [2.3, 2.2, 2.1, 2.0, 1.9, 1.8, 1.7]  # at chance but the loss goes down: slow, not
    assert learning_warnings(rows_of(learning, accuracies), 10, 0.5) == []


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("parts") / "synthetic"
    api.partition(out, dataset="synthetic:alpha=0,beta=0", scheme="natural", seed=2)
    return out


# the case: the loss climbs from round 2 on while the accuracy stays near 0.73
DIVERGING = TrainConfig(rounds=8, seed=2, lr=0.5, checkpoint_every=1)


def test_a_diverging_run_completes_with_the_warning_on_stderr_and_in_run_json(
    cli, synthetic_dir, tmp_path
):
    result = cli("train", synthetic_dir, "--rounds", 8, "--seed", 2, "--out", tmp_path / "run")
    assert result.code == 0, result.err
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "completed" and info["num_classes"] == 10
    (warning,) = info["warnings"]
    assert "--lr, e.g. 0.05" in warning
    assert f"warning: {warning}" in " ".join(result.err.split())


@pytest.mark.parametrize("stop_after", [3, 7])  # before the warning's round, and after it
def test_a_resumed_run_keeps_the_same_warnings(synthetic_dir, tmp_path, stop_after):
    whole = api.prepare_training(synthetic_dir, DIVERGING, tmp_path / "whole")
    whole.frame()
    part = tmp_path / "part"
    rounds = api.prepare_training(synthetic_dir, DIVERGING, part).rounds()
    for record in rounds:
        if record["round"] == stop_after:
            break
    rounds.close()
    resumed = api.prepare_training(synthetic_dir, DIVERGING, part, resume=True)
    resumed.frame()
    infos = [json.loads((d / "run.json").read_text()) for d in (tmp_path / "whole", part)]
    assert infos[1]["status"] == "completed"
    assert infos[0]["warnings"] and infos[0]["warnings"] == infos[1]["warnings"]
    assert resumed.warnings == whole.warnings


def test_report_notes_a_group_at_or_below_chance(tmp_path):
    for name, accuracy in (("stuck", [0.1, 0.09, 0.1]), ("learns", [0.1, 0.5, 0.8])):
        run = write_run(tmp_path / name, accuracy, algo=name)
        info = json.loads((run / "run.json").read_text())
        (run / "run.json").write_text(json.dumps({**info, "num_classes": 10}))
    report = summarize(group_runs(find_runs([tmp_path])), "test_accuracy")
    chance = [note for note in report.notes if "chance" in note]
    assert len(chance) == 1 and "stuck" in chance[0] and "learns" not in chance[0]
    assert math.isclose(report.rows[0]["final_mean"] + report.rows[1]["final_mean"], 0.9)


def test_dp_epsilon_says_the_noise_it_chose_and_warns_when_it_drowns_the_updates(
    cli, iid_dir, tmp_path
):
    dp = ("--dp-clip", 1.0, "--fraction", 0.5, "--rounds", 2, "--seed", 0)
    fine = cli("train", iid_dir, *dp, "--dp-epsilon", 20, "--out", tmp_path / "fine")
    assert fine.code == 0, fine.err
    text = " ".join(fine.err.split())
    assert "note: --dp-epsilon 20 over 2 rounds at q=0.5, delta=" in text
    assert "noise multiplier z = " in text and "above 10" not in text
    drowned = cli("train", iid_dir, *dp, "--dp-epsilon", 0.05, "--out", tmp_path / "drowned")
    assert drowned.code == 0, drowned.err
    text = " ".join(drowned.err.split())
    assert "warning: noise multiplier z = " in text and "larger --dp-epsilon than 0.05" in text
    noise = cli("train", iid_dir, *dp, "--dp-noise", 1.0, "--out", tmp_path / "noise")
    assert noise.code == 0 and "noise multiplier z" not in noise.err
