"""Finding run dirs, their settings, grouping over seeds, mean and std."""

import json

import numpy as np
import pytest
from conftest import write_run

from flcli.errors import FLError
from flcli.runs import (
    default_metric,
    find_runs,
    group_runs,
    lower_is_better,
    mean_std,
    parse_keys,
    seed_table,
    settings_of,
    spread,
)


def test_runs_are_found_recursively_once_each(tmp_path):
    write_run(tmp_path / "sweep" / "a", [0.1, 0.5])
    write_run(tmp_path / "sweep" / "deeper" / "b", [0.1, 0.6])
    (tmp_path / "sweep" / "not-a-run").mkdir()
    runs = find_runs([tmp_path / "sweep", tmp_path / "sweep" / "a"])
    assert sorted(run.path.name for run in runs) == ["a", "b"]


def test_a_run_without_rounds_csv_is_listed_not_a_crash(tmp_path):
    write_run(tmp_path / "new", [0.1], status="running", with_rounds=False)
    (run,) = find_runs([tmp_path])
    assert run.rounds is None and run.status == "running"


def test_an_empty_match_names_the_paths_searched(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    with pytest.raises(FLError, match="no runs.*empty.*other"):
        find_runs([tmp_path / "empty", tmp_path / "other"])
    with pytest.raises(FLError, match="missing does not exist"):
        find_runs([tmp_path / "missing"])


def test_unreadable_files_are_one_line_errors_naming_them(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "run.json").write_text("{not json")
    with pytest.raises(FLError, match=r"bad/run\.json is not readable JSON"):
        find_runs([bad])
    text = write_run(tmp_path / "text", [0.1, 0.2])
    (text / "rounds.csv").write_text("round,test_accuracy\n0,0.1\n1,high\n")
    with pytest.raises(FLError, match=r"text/rounds\.csv has non-numeric values.*test_accuracy"):
        find_runs([text])


def test_a_missing_column_names_the_file_and_the_column(tmp_path):
    (run,) = find_runs([write_run(tmp_path / "r", [0.1, 0.2], drop=["elapsed_s"])])
    with pytest.raises(FLError, match=r"r/rounds\.csv has no column 'elapsed_s'"):
        run.column("elapsed_s")


def test_settings_flatten_config_partition_and_algorithm_params():
    info = {
        "config": {"algo": "fedprox", "lr": 0.1, "seed": 3, "algo_args": {"mu": 0.01}},
        "partition_meta": {
            "dataset": "digits",
            "scheme": "dirichlet",
            "params": {"alpha": 0.1, "test_size": 0.2, "min_samples": 10, "test_split": "own"},
            "num_clients": 10,
            "seed": 7,
        },
    }
    flat = settings_of(info)
    assert flat["algo"] == "fedprox" and flat["lr"] == 0.1 and flat["seed"] == 3
    assert flat["alpha"] == 0.1 and flat["partition_seed"] == 7 and flat["num_clients"] == 10
    assert flat["partition"] == "dirichlet(α=0.1)"  # the split's own params are not in it
    assert flat["mu"] == flat["algo.mu"] == 0.01
    info["config"]["algo_args"] = {"alpha": 0.5}  # e.g. FedDyn's alpha
    flat = settings_of(info)
    assert flat["alpha"] == 0.1 and flat["algo.alpha"] == 0.5


def three_algorithms_two_partitions_three_seeds(root):
    for algo in ("scaffold", "fedavg", "fedprox"):
        for scheme, alpha in (("iid", None), ("dirichlet", 0.1)):
            for seed in range(3):
                write_run(
                    root / f"{algo}-{scheme}-{seed}",
                    [0.1, 0.5 + 0.01 * seed],
                    algo=algo,
                    scheme=scheme,
                    alpha=alpha,
                    seed=seed,
                    algo_args={"mu": 0.01} if algo == "fedprox" else {},
                )
    return find_runs([root])


def test_default_groups_are_every_setting_that_varies_except_seeds(tmp_path):
    runs = three_algorithms_two_partitions_three_seeds(tmp_path)
    groups = group_runs(runs)
    assert [g.label for g in groups] == [
        "fedavg, iid",
        "fedavg, dirichlet(α=0.1)",
        "fedprox, iid",
        "fedprox, dirichlet(α=0.1)",
        "scaffold, iid",
        "scaffold, dirichlet(α=0.1)",
    ]
    assert all(len(g.runs) == 3 and not g.mixed for g in groups)
    assert {run.settings["seed"] for run in groups[0].runs} == {0, 1, 2}


def test_explicit_keys_pool_the_rest_and_say_so(tmp_path):
    runs = three_algorithms_two_partitions_three_seeds(tmp_path)
    groups = group_runs(runs, ["algo"])
    assert [(g.label, len(g.runs)) for g in groups] == [
        ("fedavg", 6),
        ("fedprox", 6),
        ("scaffold", 6),
    ]
    assert groups[0].mixed == ("partition",)
    by_alpha = group_runs(runs, parse_keys("algo, alpha", "--group-by"))
    assert by_alpha[0].values == {"algo": "fedavg", "alpha": None}  # iid has no alpha
    assert len(by_alpha) == 6


def test_within_a_facet_the_facet_key_is_not_a_group_key(tmp_path):
    runs = three_algorithms_two_partitions_three_seeds(tmp_path)
    iid = [run for run in runs if run.settings["scheme"] == "iid"]
    assert [g.label for g in group_runs(iid, None, within="partition")] == [
        "fedavg",
        "fedprox",
        "scaffold",
    ]


def test_a_setting_that_follows_from_the_algorithm_is_not_a_group_key(tmp_path):
    write_run(tmp_path / "a", [0.1, 0.5], algo="fedavg")
    write_run(tmp_path / "b", [0.1, 0.5], algo="fedadam", algo_args={"server_lr": 0.1})
    assert [g.label for g in group_runs(find_runs([tmp_path]))] == ["fedavg", "fedadam"]
    write_run(tmp_path / "c", [0.1, 0.5], algo="fedadam", algo_args={"server_lr": 1.0})
    labels = [g.label for g in group_runs(find_runs([tmp_path]))]
    assert labels == ["fedavg", "fedadam, server_lr=0.1", "fedadam, server_lr=1"]


def test_an_unknown_key_lists_the_known_ones(tmp_path):
    runs = find_runs([write_run(tmp_path / "r", [0.1, 0.2])])
    with pytest.raises(FLError, match="--group-by 'colour' is not a setting.*algo.*alpha|lr"):
        group_runs(runs, ["colour"])
    with pytest.raises(FLError, match="--group-by"):
        parse_keys(" , ", "--group-by")


def test_numbers_sort_as_numbers(tmp_path):
    for lr in (10.0, 0.2, 0.05):
        write_run(tmp_path / f"lr{lr}", [0.1, 0.2], lr=lr)
    assert [g.values["lr"] for g in group_runs(find_runs([tmp_path]))] == [0.05, 0.2, 10.0]


def test_mean_and_sample_std_over_seeds_aligned_on_rounds(tmp_path):
    curves = [[0.1, 0.5, 0.9], [0.3, 0.7, 0.8], [0.2, 0.9]]  # the last seed stopped early
    runs = find_runs(
        [
            write_run(tmp_path / f"s{seed}", acc, seed=seed, rounds=2)
            for seed, acc in enumerate(curves)
        ]
    )
    (group,) = group_runs(runs)
    stats = mean_std(seed_table(group.logged, "test_accuracy"))
    assert list(stats.index) == [0, 1, 2]
    assert stats["mean"].tolist() == pytest.approx([0.2, 0.7, 0.85])
    assert stats["std"].tolist()[:2] == pytest.approx([0.1, 0.2])  # sqrt(sum sq dev / (3 - 1))
    assert stats["std"].iloc[2] == pytest.approx(np.sqrt(0.005))
    assert stats["n"].tolist() == [3, 3, 2]
    mean, std = spread([0.1, 0.3, 0.2])
    assert (mean, std) == pytest.approx((0.2, 0.1))
    assert np.isnan(spread([0.4])[1])


def test_smoothing_is_a_centred_moving_average_that_leaves_round_0(tmp_path):
    runs = find_runs([write_run(tmp_path / "r", [0.1, 0.0, 0.3, 0.6, 0.3, 0.0])])
    smooth = seed_table(tuple(runs), "test_accuracy", smooth=3)[0].tolist()
    assert smooth == pytest.approx([0.1, 0.15, 0.3, 0.4, 0.3, 0.15])


def test_regression_runs_default_to_r2_and_losses_are_lower_is_better(tmp_path):
    path = write_run(
        tmp_path / "reg", [0.0, 0.0], extra={"test_mse": [2.0, 1.0], "test_r2": [0.1, 0.5]}
    )
    path.joinpath("rounds.csv").write_text(
        "round,test_mse,test_r2,bytes_up,elapsed_s\n0,2.0,0.1,0,0\n1,1.0,0.5,10,1\n"
    )
    assert default_metric(find_runs([path])) == "test_r2"
    assert default_metric(find_runs([write_run(tmp_path / "clf", [0.1, 0.2])])) == "test_accuracy"
    assert lower_is_better("test_mse") and lower_is_better("train_loss")
    assert not lower_is_better("test_accuracy") and not lower_is_better("test_r2")
    assert json.loads((path / "run.json").read_text())["status"] == "completed"


def test_algorithms_are_listed_in_the_registrys_order_and_named_as_their_papers_spell_them(
    tmp_path,
):
    from flcli.runs import display_name

    assert display_name("qfedavg") == "q-FedAvg" and display_name("fedbuff") == "FedBuff"
    assert display_name("my_fl.py:fedx") == "my_fl.py:fedx"  # a plugin: as given
    for algo in ("zeta", "fedprox", "fedavg", "alpha"):
        write_run(tmp_path / algo, [0.1, 0.5], algo=algo)
    order = [group.values["algo"] for group in group_runs(find_runs([tmp_path]), ["algo"])]
    assert order == ["fedavg", "fedprox", "alpha", "zeta"]  # registered first, then by name
