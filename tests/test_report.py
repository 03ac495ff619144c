"""fl report's numbers: final/best over seeds, rounds/bytes/seconds to target, speed-up."""

import io
import math

import numpy as np
import pandas as pd
import pytest
from conftest import write_run

from flcli.errors import FLError
from flcli.report import (
    caption,
    plus_minus,
    reached,
    summarize,
    text_cells,
    to_csv,
    to_markdown,
)
from flcli.runs import find_runs, group_runs

CURVES = {
    "fedavg": [[0.1, 0.5, 0.8, 0.9], [0.1, 0.4, 0.7, 0.85]],  # reach 0.8 at rounds 2 and 3
    "fedprox": [[0.1, 0.85, 0.9, 0.9], [0.1, 0.9, 0.9, 0.95]],  # at rounds 1 and 1
    "scaffold": [[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.5]],  # never
    "fednova": [[0.1, 0.8, 0.8, 0.8], [0.1, 0.2, 0.3, 0.4]],  # one seed of two, at round 1
}


def make_runs(root, curves=CURVES, **options):
    for algo, seeds in curves.items():
        for seed, accuracy in enumerate(seeds):
            write_run(root / f"{algo}-{seed}", accuracy, algo=algo, seed=seed, **options)
    return find_runs([root])


def rows_by_algo(report):
    return {row["algo"]: row for row in report.rows}


def test_rounds_bytes_seconds_to_target_and_not_reached(tmp_path):
    report = summarize(group_runs(make_runs(tmp_path)), "test_accuracy", target=0.8)
    rows = rows_by_algo(report)
    fedavg = rows["fedavg"]
    assert fedavg["reached"] == 2
    assert fedavg["round_to_target_mean"] == 2.5
    assert fedavg["round_to_target_std"] == pytest.approx(np.std([2, 3], ddof=1))
    assert fedavg["bytes_up_to_target_mean"] == 2500
    assert fedavg["seconds_to_target_mean"] == 1.25
    assert rows["scaffold"]["reached"] == 0
    _, cells = text_cells(report)
    by_name = {row[0]: row for row in cells}
    assert by_name["scaffold"][5:8] == ["not reached"] * 3
    assert by_name["fednova"][5] == "1.0 (1/2)"  # one seed reached it; no std of one value
    assert by_name["fedavg"][5] == "2.5 ± 0.7"


def test_reached_is_the_first_round_at_or_past_the_target(tmp_path):
    (run,) = find_runs([write_run(tmp_path / "r", [0.1, 0.8, 0.7, 0.9])])
    assert reached(run, "test_accuracy", 0.8).round == 1
    assert reached(run, "test_accuracy", 0.85).round == 3
    assert reached(run, "test_accuracy", 0.95) is None


def test_final_and_best_are_mean_and_sample_std_over_seeds(tmp_path):
    rows = rows_by_algo(summarize(group_runs(make_runs(tmp_path)), "test_accuracy"))
    assert rows["fedavg"]["final_mean"] == pytest.approx(0.875)
    assert rows["fedavg"]["final_std"] == pytest.approx(np.std([0.9, 0.85], ddof=1))
    assert rows["fedprox"]["best_mean"] == pytest.approx(0.925)
    assert rows["fednova"]["best_mean"] == pytest.approx(0.6)
    assert rows["fednova"]["final_mean"] == pytest.approx(0.6)


def test_speedup_in_rounds_to_target_against_the_baseline(tmp_path):
    report = summarize(group_runs(make_runs(tmp_path)), "test_accuracy", target=0.8)
    rows = rows_by_algo(report)
    assert report.baseline == "fedavg"  # the default, since there is a fedavg group
    assert rows["fedavg"]["speedup"] == 1.0
    assert rows["fedprox"]["speedup"] == pytest.approx(2.5)  # 2.5 rounds / 1 round
    assert math.isnan(rows["scaffold"]["speedup"])  # never reached
    assert math.isnan(rows["fednova"]["speedup"])  # not every seed reached it
    header, cells = text_cells(report)
    assert header[-1] == "speed-up vs fedavg"
    assert [row[-1] for row in cells] == ["1.00×", "2.50×", "–", "–"]
    other = summarize(group_runs(find_runs([tmp_path])), "test_accuracy", 0.8, "algo=fedprox")
    assert rows_by_algo(other)["fedavg"]["speedup"] == pytest.approx(0.4)


def test_a_baseline_that_never_reaches_the_target_gives_a_lower_bound(tmp_path):
    """scaffold never reaches 0.8 in its 3 rounds; fedprox reaches it at round 1 in both seeds:
    fedprox is more than 3x faster."""
    report = summarize(
        group_runs(make_runs(tmp_path)), "test_accuracy", target=0.8, baseline="scaffold"
    )
    rows = rows_by_algo(report)
    assert math.isnan(rows["fedprox"]["speedup"])
    assert rows["fedprox"]["speedup_above"] == pytest.approx(3.0)
    assert math.isnan(rows["fednova"]["speedup_above"])  # one seed of two reached it
    header, cells = text_cells(report)
    column = header.index("speed-up vs scaffold")
    by_algo = {row[0]: row[column] for row in cells}
    assert by_algo["fedprox"] == ">3.00×" and by_algo["fednova"] == "–"


def test_each_group_is_compared_with_the_baseline_of_its_own_partition(tmp_path):
    curves = {"fedavg": [[0.1, 0.5, 0.9]], "fedprox": [[0.1, 0.9, 0.9]]}
    make_runs(tmp_path / "iid", curves)
    slow = {"fedavg": [[0.1, 0.2, 0.3, 0.9]], "fedprox": [[0.1, 0.2, 0.9, 0.9]]}
    make_runs(tmp_path / "dir", slow, scheme="dirichlet", alpha=0.1)
    runs = find_runs([tmp_path])
    # the partitions differ in length too; group by algo and partition only
    report = summarize(group_runs(runs, ["algo", "partition"]), "test_accuracy", 0.8)
    speedups = {(r["algo"], r["partition"]): r["speedup"] for r in report.rows}
    assert speedups[("fedprox", "iid")] == pytest.approx(2.0)  # 2 rounds / 1
    assert speedups[("fedprox", "dirichlet(α=0.1)")] == pytest.approx(1.5)  # 3 rounds / 2


def test_fedprox_mu_does_not_stop_the_match_with_fedavg(tmp_path):
    write_run(tmp_path / "a", [0.1, 0.5, 0.9], algo="fedavg")
    write_run(tmp_path / "p", [0.1, 0.9, 0.9], algo="fedprox", algo_args={"mu": 0.01})
    write_run(tmp_path / "q", [0.1, 0.5, 0.9], algo="fedprox", algo_args={"mu": 1.0})
    report = summarize(group_runs(find_runs([tmp_path])), "test_accuracy", 0.8)
    assert report.keys == ["algo", "mu"]
    speedups = {(row["algo"], row["mu"]): row["speedup"] for row in report.rows}
    assert speedups[("fedprox", 0.01)] == pytest.approx(2.0)
    assert speedups[("fedprox", 1.0)] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "target, baseline, message",
    [
        (0.8, "fedmagic", "--baseline 'fedmagic' names no group.*fedavg"),
        (0.8, "algo=fedavgg", "--baseline 'algo=fedavgg': no group has algo = 'fedavgg'.*fedavg"),
        (0.8, "algo=", "--baseline 'algo=': no group has algo = ''"),
        (None, "fedavg", "--baseline .* give --target-accuracy"),
        (90, None, "--target-accuracy 90 must be a fraction"),
    ],
)
def test_bad_report_options_are_errors_that_say_the_fix(tmp_path, target, baseline, message):
    with pytest.raises(FLError, match=message):
        summarize(group_runs(make_runs(tmp_path)), "test_accuracy", target, baseline)


def test_a_run_missing_a_needed_column_is_named(tmp_path):
    make_runs(tmp_path, {"fedavg": [[0.1, 0.9]]})
    write_run(tmp_path / "old", [0.1, 0.9], algo="fedprox", drop=["bytes_up"])
    groups = group_runs(find_runs([tmp_path]))
    summarize(groups, "test_accuracy")  # no target: bytes are not needed
    with pytest.raises(FLError, match=r"old/rounds\.csv has no column 'bytes_up'"):
        summarize(groups, "test_accuracy", target=0.5)


def test_fairness_personal_and_privacy_columns_only_when_logged(tmp_path):
    plain = summarize(group_runs(make_runs(tmp_path / "a")), "test_accuracy")
    assert plain.optional == []
    extra = {
        "client_accuracy_p10": [0.0, 0.2, 0.4, 0.6],
        "personal_accuracy": [0.1, 0.5, 0.7, 0.95],
        "epsilon": [0.0, 1.0, 2.0, 3.0],
    }
    private = summarize(
        group_runs(make_runs(tmp_path / "b", extra=extra)), "test_accuracy", target=0.8
    )
    assert private.optional == ["client_accuracy_p10", "personal_accuracy", "epsilon"]
    header, cells = text_cells(private)
    assert header[-4:] == ["p10 client accuracy", "personal accuracy", "ε", "speed-up vs fedavg"]
    assert cells[0][-4:-1] == ["0.600 ± 0.000", "0.950 ± 0.000", "3.000 ± 0.000"]
    assert "each one's own training rows" in caption(private)
    assert "p10" not in caption(plain)


def test_a_std_is_written_as_precisely_as_its_mean():
    assert plus_minus(2931.2, 6.088) == "2,931 ± 6"
    assert plus_minus(0.5, 1234.5) == "0.500 ± 1234.500"


def test_unfinished_failed_and_unlogged_runs_are_shown_not_crashed_on(tmp_path):
    write_run(tmp_path / "done", [0.1, 0.5, 0.9])
    write_run(tmp_path / "going", [0.1, 0.6], seed=1, rounds=2, status="running")
    write_run(tmp_path / "broke", [0.1, 0.3], seed=2, rounds=2, status="failed")
    write_run(tmp_path / "new", [0.1], seed=3, rounds=2, status="running", with_rounds=False)
    write_run(tmp_path / "other", [0.1], algo="fedprox", rounds=2, with_rounds=False)
    report = summarize(group_runs(find_runs([tmp_path])), "test_accuracy", target=0.8)
    header, cells = text_cells(report)
    assert "status" in header
    fedavg, fedprox = cells
    assert fedavg[header.index("status")] == (
        "1 completed; 1 failed; 1 running; 1 running, no rounds.csv"
    )
    assert fedavg[header.index("seeds")] == "3" and fedavg[header.index("last round")] == "1–2"
    assert fedprox[header.index("status")] == "completed, no rounds.csv"
    assert fedprox[header.index("final accuracy")] == "–"


def test_regression_metrics_reach_a_target_from_above(tmp_path):
    path = write_run(tmp_path / "reg", [0.0, 0.0, 0.0])
    path.joinpath("rounds.csv").write_text(
        "round,test_mse,test_r2,bytes_up,elapsed_s\n0,4.0,0.0,0,0\n1,2.0,0.5,10,1\n2,1.0,0.75,20,2\n"
    )
    (row,) = summarize(group_runs(find_runs([path])), "test_mse", target=2.0).rows
    assert row["round_to_target_mean"] == 1 and row["best_mean"] == 1.0


def test_one_markdown_cell_recomputed_from_the_csvs(tmp_path):
    runs = make_runs(tmp_path)
    markdown = to_markdown(summarize(group_runs(runs), "test_accuracy", target=0.8))
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    table = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    fedprox = next(row for row in table if row[0] == "fedprox")
    cell = fedprox[header.index("final accuracy")]

    finals = [
        pd.read_csv(tmp_path / f"fedprox-{seed}" / "rounds.csv")["test_accuracy"].iloc[-1]
        for seed in range(2)
    ]
    assert cell == f"{np.mean(finals):.3f} ± {np.std(finals, ddof=1):.3f}"
    assert fedprox[header.index("rounds to 0.8")] == "1.0 ± 0.0"


def test_csv_output_holds_the_raw_numbers(tmp_path):
    report = summarize(group_runs(make_runs(tmp_path)), "test_accuracy", target=0.8)
    frame = pd.read_csv(io.StringIO(to_csv(report)))
    assert list(frame["algo"]) == ["fedavg", "fedprox", "scaffold", "fednova"]
    assert frame.loc[0, "final_mean"] == pytest.approx(0.875)
    assert frame.loc[0, "metric"] == "test_accuracy" and frame.loc[0, "target"] == 0.8
    assert np.isnan(frame.loc[2, "round_to_target_mean"])
