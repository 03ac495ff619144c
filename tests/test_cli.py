"""End-to-end: the real `fl` command line, from partition to plot, and its errors."""

import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import assert_one_line_error

from flcli import fileio

TIMING = ["elapsed_s"]


def rounds_of(run_dir):
    return pd.read_csv(run_dir / "rounds.csv").drop(columns=TIMING)


def test_partition_train_plot_end_to_end(cli, tmp_path):
    part = tmp_path / "part"
    result = cli(
        "partition",
        "digits",
        "--clients",
        10,
        "--scheme",
        "dirichlet",
        "--alpha",
        0.1,
        "--seed",
        0,
        "--out",
        part,
    )
    assert result.code == 0, result.err
    assert "JS divergence" in result.out
    meta = json.loads((part / "partition.json").read_text())
    for key in (
        "dataset",
        "scheme",
        "params",
        "seed",
        "num_clients",
        "num_classes",
        "client_sizes",
        "label_counts",
        "heterogeneity",
        "hash",
    ):
        assert key in meta
    assert sum(meta["client_sizes"]) == meta["num_train"]
    assert (part / "partition.png").stat().st_size > 10_000

    run = tmp_path / "run"
    result = cli("train", part, "--rounds", 3, "--out", run)
    assert result.code == 0, result.err
    rounds = pd.read_csv(run / "rounds.csv")
    assert list(rounds["round"]) == [0, 1, 2, 3]
    for column in (
        "test_accuracy",
        "test_loss",
        "train_loss",
        "clients",
        "bytes_up",
        "bytes_down",
        "elapsed_s",
    ):
        assert column in rounds.columns
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["partition_hash"] == meta["hash"]

    figure = tmp_path / "acc.png"
    result = cli("plot", run, "--out", figure)
    assert result.code == 0, result.err
    assert figure.stat().st_size > 10_000


def test_default_fedavg_on_iid_digits_reaches_092(cli, iid_dir, tmp_path):
    result = cli(
        "train", iid_dir, "--algo", "fedavg", "--model", "softmax", "--out", tmp_path / "run"
    )
    assert result.code == 0, result.err
    rounds = pd.read_csv(tmp_path / "run" / "rounds.csv")
    assert len(rounds) == 21
    assert rounds["test_accuracy"].iloc[-1] >= 0.92


def test_same_seed_same_rounds_csv_and_backends_agree(cli, dirichlet_dir, tmp_path):
    args = ["--rounds", 4, "--fraction", 0.5, "--seed", 3]
    cli("train", dirichlet_dir, *args, "--out", tmp_path / "a")
    cli("train", dirichlet_dir, *args, "--out", tmp_path / "b")
    cli("train", dirichlet_dir, *args, "--backend", "serial", "--out", tmp_path / "c")
    cli(
        "train",
        dirichlet_dir,
        "--rounds",
        4,
        "--fraction",
        0.5,
        "--seed",
        4,
        "--out",
        tmp_path / "d",
    )
    a, b, c, d = (rounds_of(tmp_path / name) for name in "abcd")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    pd.testing.assert_frame_equal(a, c, check_exact=False, rtol=0, atol=1e-9)
    assert not a.equals(d)


def test_rerun_of_a_completed_run_does_nothing_and_resume_continues(cli, iid_dir, tmp_path):
    from flcli import api
    from flcli.config import TrainConfig

    config = TrainConfig(rounds=5, fraction=0.5, seed=2)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert (
        cli("train", iid_dir, "--rounds", 5, "--fraction", 0.5, "--seed", 2, "--out", whole).code
        == 0
    )
    again = cli("train", iid_dir, "--rounds", 5, "--fraction", 0.5, "--seed", 2, "--out", whole)
    assert again.code == 0 and "nothing to do" in again.out

    training = api.prepare_training(iid_dir, config, cut)
    rounds = training.rounds()
    for record in rounds:
        if record["round"] == 2:
            break
    rounds.close()  # as if interrupted after round 2
    assert json.loads((cut / "run.json").read_text())["status"] == "interrupted"
    refused = cli("train", iid_dir, "--rounds", 5, "--fraction", 0.5, "--seed", 2, "--out", cut)
    assert_one_line_error(refused, "--resume")
    resumed = cli(
        "train", iid_dir, "--rounds", 5, "--fraction", 0.5, "--seed", 2, "--out", cut, "--resume"
    )
    assert resumed.code == 0, resumed.err
    pd.testing.assert_frame_equal(rounds_of(whole), rounds_of(cut), check_exact=True)
    assert json.loads((cut / "run.json").read_text())["status"] == "completed"


def test_list_names_what_is_available(cli):
    assert "digits" in cli("list", "datasets").out
    assert "dirichlet" in cli("list", "schemes").out
    assert "McMahan" in cli("list", "algorithms").out
    assert "softmax" in cli("list", "models").out
    assert_one_line_error(cli("list", "things"), "'things'", "datasets")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["partition", "mnist-xl", "--out", "{tmp}/p"], ["'mnist-xl'", "digits"]),
        (["partition", "--scheme", "zipf", "--out", "{tmp}/p"], ["'zipf'", "dirichlet"]),
        (
            ["partition", "--scheme", "dirichlet", "--alpha", "0", "--out", "{tmp}/p"],
            ["--alpha 0", "> 0"],
        ),
        (["partition", "--clients", "5000", "--out", "{tmp}/p"], ["--clients 5000", "at most"]),
        (["partition", "--test-size", "1.5", "--out", "{tmp}/p"], ["--test-size 1.5"]),
        (["train", "{tmp}/nope", "--out", "{tmp}/r"], ["nope", "fl partition"]),
        (["train", "{tmp}", "--out", "{tmp}/r"], ["not a partition dir"]),
        (
            ["train", "{iid}/partition.json", "--out", "{tmp}/r"],
            ["partition.json is a file", "give the partition dir"],
        ),
        (["train", "{iid}", "--algo", "fedmagic", "--out", "{tmp}/r"], ["'fedmagic'", "fedavg"]),
        (["train", "{iid}", "--model", "gpt", "--out", "{tmp}/r"], ["'gpt'", "softmax"]),
        (["train", "{iid}", "--rounds", "0", "--out", "{tmp}/r"], ["--rounds 0"]),
        (["train", "{iid}", "--lr", "-1", "--out", "{tmp}/r"], ["--lr -1"]),
        (["train", "{iid}", "--batch-size", "0", "--out", "{tmp}/r"], ["--batch-size 0"]),
        (["train", "{iid}", "--backend", "gpu", "--out", "{tmp}/r"], ["'gpu'"]),
        (["train", "{iid}", "--clients-per-round", "11", "--out", "{tmp}/r"], ["at most 10"]),
        (["train", "{iid}", "--rounds", "abc", "--out", "{tmp}/r"], ["--rounds", "valid int"]),
        (["train", "{iid}"], ["--out"]),
        (["train", "{iid}", "--mu", "0.1", "--out", "{tmp}/r"], ["--mu", "fedavg", "fedprox"]),
        (
            ["train", "{iid}", "--algo", "fedprox", "--mu", "-1", "--out", "{tmp}/r"],
            ["--mu -1", ">= 0"],
        ),
        (
            ["train", "{iid}", "--algo", "fedadam", "--beta1", "1", "--out", "{tmp}/r"],
            ["--beta1 1", "[0, 1)"],
        ),
        (
            ["train", "{iid}", "--algo", "fedyogi", "--beta2", "-0.1", "--out", "{tmp}/r"],
            ["--beta2 -0.1", "[0, 1)"],
        ),
        (
            ["train", "{iid}", "--algo", "fedadagrad", "--beta2", "0.9", "--out", "{tmp}/r"],
            ["--beta2", "fedadagrad", "fedadam"],
        ),
        (
            ["train", "{iid}", "--algo", "fedprox", "--lambda", "0.1", "--out", "{tmp}/r"],
            ["--lambda", "fedprox", "ditto"],
        ),
        (["train", "{iid}", "--stragglers", "1.5", "--out", "{tmp}/r"], ["--stragglers 1.5"]),
        (
            ["train", "{iid}", "--algo", "fedavgm", "--server-momentum", "1", "--out", "{tmp}/r"],
            ["--server-momentum 1"],
        ),
        (
            ["train", "{iid}", "--algo", "ditto", "--out", "{tmp}/r"],
            ["local test splits", "--client-test-fraction"],
        ),
        (
            [
                "train",
                "{regression}",
                "--algo",
                "fedavglu",
                "--model",
                "linear",
                "--out",
                "{tmp}/r",
            ],
            ["--algo fedavglu", "classification"],
        ),
        (
            ["partition", "--client-test-fraction", "1", "--out", "{tmp}/p"],
            ["--client-test-fraction 1"],
        ),
        (["partition", "--seed", "-1", "--out", "{tmp}/p"], ["--seed -1", ">= 0"]),
        (
            ["partition", "synthetic", "--scheme", "natural", "--clients", "0", "--out", "{tmp}/p"],
            ["--clients 0", "at least 1"],
        ),
        (["train", "{iid}", "--seed", "-1", "--out", "{tmp}/r"], ["--seed -1", ">= 0"]),
        (["train", "{iid}", "--lr", "inf", "--out", "{tmp}/r"], ["--lr inf", "finite"]),
        (
            ["train", "{iid}", "--algo", "fedprox", "--mu", "inf", "--out", "{tmp}/r"],
            ["--mu inf", "finite"],
        ),
        (
            ["partition", "--scheme", "noise", "--noise-std", "nan", "--out", "{tmp}/p"],
            ["--noise-std nan", "finite"],
        ),
        (
            ["partition", "--scheme", "dirichlet", "--alpha", "inf", "--out", "{tmp}/p"],
            ["--alpha inf", "finite"],
        ),
        (["train", "{iid}", "--algo", ":fire:", "--out", "{tmp}/r"], ["':fire:'"]),  # no emoji
        (["partition", "--alpha", "0.1", "--out", "{tmp}/p"], ["--alpha", "iid", "dirichlet"]),
        (
            [
                "partition",
                "--scheme",
                "quantity",
                "--sizes",
                "linear",
                "--alpha",
                "1",
                "--out",
                "{tmp}/p",
            ],
            ["--alpha", "--sizes dirichlet"],
        ),
        (["trian", "{iid}"], ["see: fl --help"]),
        (["train", "{iid}", "--attack-strength", "3", "--out", "{tmp}/r"], ["--attack-strength 3"]),
        (
            ["train", "{iid}", "--attack", "labelflip", "--malicious", "0.2"]
            + ["--attack-strength", "3", "--out", "{tmp}/r"],
            ["--attack-strength 3", "signflip"],
        ),
        (
            ["train", "{iid}", "--attack", "signflip", "--malicious", "0.2"]
            + ["--attack-strength", "-4", "--out", "{tmp}/r"],
            ["--attack-strength -4.0", "> 0"],
        ),
        (["train", "{iid}", "--byzantine", "0.2", "--out", "{tmp}/r"], ["--byzantine 0.2"]),
        (["train", "{iid}", "--jobs", "2", "--out", "{tmp}/r"], ["--jobs 2", "process or ray"]),
        (["train", "{iid}", "--ray-address", "auto", "--out", "{tmp}/r"], ["--backend ray"]),
        (["train", "{iid}", "--model", "mlp", "--hidden", "", "--out", "{tmp}/r"], ["--hidden ''"]),
        (
            ["train", "{iid}", "--secure-agg", "--clients-per-round", "1", "--out", "{tmp}/r"],
            ["--secure-agg", "at least 2"],
        ),
        (
            ["train", "{iid}", "--algo", "fedsgd", "--model", "sklearn:SGDClassifier"]
            + ["--out", "{tmp}/r"],
            ["--algo fedsgd", "full-batch gradient", "--model softmax"],
        ),
        (
            ["train", "{regression}", "--model", "linear", "--attack", "labelflip"]
            + ["--malicious", "0.2", "--out", "{tmp}/r"],
            ["--attack labelflip", "regression"],
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    cli, iid_dir, regression_dir, tmp_path, args, fragments
):
    filled = [a.format(tmp=tmp_path, iid=iid_dir, regression=regression_dir) for a in args]
    assert_one_line_error(cli(*filled), *fragments)
    assert not (tmp_path / "r").exists()


def test_an_out_file_that_cannot_be_written_is_named_as_given(cli, iid_dir, tmp_path):
    """Not the temporary file beside it that the atomic write uses."""
    from flcli.fileio import atomic_write_text

    run, folder = tmp_path / "run", tmp_path / "folder"
    assert cli("train", iid_dir, "--rounds", 1, "--out", run).code == 0
    folder.mkdir()
    for command in ("plot", "report"):
        result = cli(command, run, "--out", folder)
        assert_one_line_error(result, f"--out {folder} is a directory")
        assert result.out == ""  # refused before any work
    with pytest.raises(IsADirectoryError) as replacing:
        atomic_write_text(folder, "text")
    assert replacing.value.filename == str(folder)
    if Path("/proc/self").is_dir():  # no temporary file can be made in /proc
        with pytest.raises(OSError) as creating:
            atomic_write_text(Path("/proc/flcli-test.png"), "text")
        assert creating.value.filename == "/proc/flcli-test.png"
    assert not [p for p in folder.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_run_that_cannot_go_on_is_marked_failed_not_interrupted(
    cli, iid_dir, tmp_path, monkeypatch
):
    """A hidden layer no machine holds is refused up front; running out of memory midway fails
    the run (resuming would fail the same way)."""
    huge = cli("train", iid_dir, "--model", "mlp", "--hidden", "99999999999", "--out", tmp_path)
    assert_one_line_error(huge, "--hidden")
    import flcli.engine.rounds

    def out_of_memory(*args):
        raise MemoryError

    monkeypatch.setattr(flcli.engine.rounds, "check_finite", out_of_memory)
    result = cli("train", iid_dir, "--out", tmp_path / "run")
    assert result.code == 1 and "Traceback" not in result.err
    assert "not enough memory" in result.err.strip().splitlines()[-1]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"


def test_an_internal_error_is_one_line_and_a_log_and_fails_the_run(
    cli, iid_dir, tmp_path, monkeypatch
):
    import flcli.engine.rounds

    def bug(*args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(flcli.engine.rounds, "check_finite", bug)
    with pytest.raises(ZeroDivisionError):  # the suite sees bugs as they are
        cli("train", iid_dir, "--out", tmp_path / "seen")
    monkeypatch.delenv("FL_RAISE_INTERNAL_ERRORS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = cli("train", iid_dir, "--out", tmp_path / "run")
    assert result.code == 1 and "Traceback" not in result.err
    line = result.err.strip().splitlines()[-1]  # after the progress bar
    assert line.startswith("error: internal error: ZeroDivisionError: a bug; details in ")
    [log] = (tmp_path / "cache" / "flcli" / "errors").iterdir()
    assert "Traceback" in log.read_text() and str(log) in line
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"


def test_ctrl_c_before_anything_is_saved_says_to_start_again(cli, iid_dir, tmp_path, monkeypatch):
    import flcli.api

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(flcli.api, "prepare_training", ctrl_c)  # while checking the options
    early = cli("train", iid_dir, "--out", tmp_path / "a")
    assert early.code == 130 and "Traceback" not in early.err
    assert early.err.strip().splitlines() == [
        "error: interrupted; nothing was written: run the same command again"
    ]
    monkeypatch.undo()

    def no_round_yet(*args, **kwargs):  # during round 0, before its row is written
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(flcli.api, "run_rounds", no_round_yet)
    first = cli("train", iid_dir, "--out", tmp_path / "b")
    assert first.code == 1 and "Traceback" not in first.err
    last = first.err.strip().splitlines()[-1]
    assert "before the first round was saved" in last and "--resume" not in last


def test_out_holding_another_run_is_refused(cli, iid_dir, tmp_path):
    assert cli("train", iid_dir, "--rounds", 2, "--out", tmp_path / "r").code == 0
    before = (tmp_path / "r" / "rounds.csv").read_text()
    assert_one_line_error(
        cli("train", iid_dir, "--rounds", 3, "--out", tmp_path / "r"),
        "different config: rounds 2 (now 3)",
    )
    mlp = ["--model", "mlp", "--hidden", 8]
    assert cli("train", iid_dir, *mlp, "--rounds", 1, "--out", tmp_path / "mlp").code == 0
    refused = cli("train", iid_dir, *mlp, "--rounds", 2, "--out", tmp_path / "mlp")
    assert_one_line_error(refused, "different config: rounds 1 (now 2)")
    assert "hidden" not in refused.err  # (8,) here is [8] in run.json: the same
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert_one_line_error(cli("train", iid_dir, "--out", tmp_path / "other"), "not a flcli run")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "r" / "rounds.csv").read_text() == before


def test_out_left_empty_by_a_run_killed_before_its_run_json_is_used(cli, iid_dir, tmp_path):
    """A run killed between making its dir and renaming its first run.json into place leaves the
    dir empty or holding that temporary file; the same command must then start the run."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / ".run.json.k2j4x1.tmp").write_text("")
    (tmp_path / "cut" / ".lock").write_text("")
    for out in (tmp_path / "empty", tmp_path / "cut"):
        assert cli("train", iid_dir, "--rounds", 1, "--out", out).code == 0
        assert sorted(path.name for path in out.iterdir()) == [
            ".lock",
            "checkpoint.npz",
            "rounds.csv",
            "run.json",
        ]


def test_partition_out_holding_another_partition_is_refused(cli, iid_dir):
    assert_one_line_error(cli("partition", "--clients", 7, "--out", iid_dir), "already exists")


def test_console_script_runs_without_traceback(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flcli",
            "train",
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_a_wrong_model_arg_is_a_one_line_error_naming_the_parameter(cli, iid_dir, tmp_path):
    sgd = ("--model", "sklearn:SGDClassifier", "--out", tmp_path / "r")
    result = cli("train", iid_dir, *sgd, "--model-arg", "alpah=0.1")
    assert_one_line_error(result, "--model-arg alpah", "alpha")
    result = cli("train", iid_dir, *sgd, "--model-arg", "alpha=-1")
    assert_one_line_error(result, "alpha", "-1")
    result = cli("train", iid_dir, *sgd, "--model-arg", "penalty=l3")
    assert_one_line_error(result, "penalty", "l3")
    result = cli("train", iid_dir, *sgd, "--model-arg", "alpha")
    assert_one_line_error(result, "--model-arg 'alpha'", "key=value")
    result = cli("train", iid_dir, "--out", tmp_path / "r", "--model-arg", "alpha=1")
    assert_one_line_error(result, "--model-arg", "sklearn:NAME")
    assert not (tmp_path / "r").exists()


def test_model_options_are_checked(cli, iid_dir, regression_dir, tmp_path):
    out = ("--out", tmp_path / "r")
    assert_one_line_error(cli("train", iid_dir, "--hidden", "64,x", "--model", "mlp", *out), "64,x")
    assert_one_line_error(cli("train", iid_dir, "--hidden", "64", *out), "--hidden", "mlp")
    assert_one_line_error(cli("train", iid_dir, "--dtype", "float16", *out), "float16")
    assert_one_line_error(cli("train", regression_dir, *out), "regression", "--model linear")
    assert_one_line_error(cli("train", iid_dir, "--model", "linear", *out), "--model softmax")
    assert_one_line_error(cli("train", iid_dir, "--model", "svm", *out), "svm", "sklearn:")
    assert not (tmp_path / "r").exists()


def test_regression_run_logs_mse_and_r2(cli, regression_dir, tmp_path):
    result = cli(
        "train", regression_dir, "--model", "linear", "--rounds", "3", "--out", tmp_path / "r"
    )
    assert result.code == 0, result.err
    assert "test r2" in result.out
    header = (tmp_path / "r" / "rounds.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["round", "test_mse", "test_r2", "test_loss", "train_loss"]
    assert "test_accuracy" not in header


def test_mlp_run_records_its_resolved_options(cli, iid_dir, tmp_path):
    args = ("--model", "mlp", "--hidden", "32", "--dtype", "float32", "--rounds", "2")
    result = cli("train", iid_dir, *args, "--out", tmp_path / "r")
    assert result.code == 0, result.err
    config = json.loads((tmp_path / "r" / "run.json").read_text())["config"]
    assert config["hidden"] == [32] and config["dtype"] == "float32" and config["lr"] == 0.2
    again = cli("train", iid_dir, *args, "--out", tmp_path / "r")
    assert again.code == 0 and "nothing to do" in again.out


def test_list_models_names_each_model_and_the_algorithms(cli):
    result = cli("list", "models")
    assert result.code == 0
    for name in ("softmax", "logistic", "linear", "mlp", "sklearn:SGDClassifier", "sklearn:Ridge"):
        assert name in result.out
    assert "all but fedbag" in result.out  # fedbag votes fitted estimators only
    # an estimator's fit is no gradient step, nor a local SGD run on an event queue
    refused = "all but fedsgd, pfedme, per-fedavg, apfl, fedasync, fedbuff, fedbag"
    assert refused in " ".join(result.out.split())


def test_algorithm_flags_log_clients_and_resume_of_per_client_state(cli, tmp_path):
    part = tmp_path / "part"
    made = cli(
        "partition",
        "--clients",
        6,
        "--scheme",
        "dirichlet",
        "--alpha",
        0.3,
        "--client-test-fraction",
        0.2,
        "--out",
        part,
    )
    assert made.code == 0, made.err
    args = [
        "--algo",
        "ditto",
        "--lambda",
        0.5,
        "--rounds",
        4,
        "--fraction",
        0.5,
        "--stragglers",
        0.5,
        "--log-clients",
        "--seed",
        1,
    ]
    whole = cli("train", part, *args, "--out", tmp_path / "whole")
    assert whole.code == 0, whole.err
    rounds = rounds_of(tmp_path / "whole")
    for column in (
        "client_accuracy_mean",
        "client_accuracy_std",
        "client_accuracy_p10",
        "personal_accuracy",
    ):
        assert column in rounds.columns
    clients = pd.read_csv(tmp_path / "whole" / "clients.csv")
    assert list(clients.columns[:5]) == ["round", "client", "n", "loss", "accuracy"]
    assert len(clients) == 6 + 4 * 3  # round 0: every client; then 3 sampled per round
    means = clients.groupby("round")["accuracy"].mean()
    assert means.to_numpy() == pytest.approx(rounds["client_accuracy_mean"].to_numpy())
    info = json.loads((tmp_path / "whole" / "run.json").read_text())
    assert info["config"]["algo_args"] == {"lam": 0.5, "personal_epochs": 2}
    assert info["given"]["algo_args"] == {"lam": 0.5}  # what the user gave, apart

    from flcli import api
    from flcli.configfile import train_config

    config = train_config(
        algo="ditto", lam=0.5, rounds=4, fraction=0.5, stragglers=0.5, log_clients=True, seed=1
    )
    rounds_iter = api.prepare_training(part, config, tmp_path / "cut").rounds()
    for record in rounds_iter:
        if record["round"] == 2:
            break
    rounds_iter.close()
    resumed = cli("train", part, *args, "--out", tmp_path / "cut", "--resume")
    assert resumed.code == 0, resumed.err
    pd.testing.assert_frame_equal(rounds, rounds_of(tmp_path / "cut"), check_exact=True)
    pd.testing.assert_frame_equal(clients, pd.read_csv(tmp_path / "cut" / "clients.csv"))


def test_plot_and_report_from_real_training_runs(cli, iid_dir, tmp_path):
    runs = tmp_path / "runs"
    for lr in (0.1, 0.5):
        for seed in (0, 1):
            args = ["--rounds", 3, "--fraction", 0.5, "--lr", lr, "--seed", seed]
            result = cli("train", iid_dir, *args, "--out", runs / f"lr{lr}-s{seed}")
            assert result.code == 0, result.err

    figure = tmp_path / "by-lr.png"
    result = cli("plot", runs, "--group-by", "lr", "--smooth", 2, "--out", figure)
    assert result.code == 0, result.err
    assert "4 runs, 2 lines" in result.out and figure.stat().st_size > 10_000

    result = cli("report", runs, "--target-accuracy", 0.5, "--format", "markdown")
    assert result.code == 0, result.err
    lines = [line for line in result.out.splitlines() if line.startswith("| 0.5 ")]
    cells = [cell.strip() for cell in lines[0].strip("|").split("|")]
    finals = [
        pd.read_csv(runs / f"lr0.5-s{seed}" / "rounds.csv")["test_accuracy"].iloc[-1]
        for seed in (0, 1)
    ]
    assert cells[:3] == ["0.5", "2", "3"]  # lr, seeds, rounds
    assert cells[3] == f"{sum(finals) / 2:.3f} ± {abs(finals[0] - finals[1]) / 2**0.5:.3f}"

    table = cli("report", runs, "--target-accuracy", 0.5, "--out", tmp_path / "report.csv")
    assert table.code == 0, table.err
    frame = pd.read_csv(tmp_path / "report.csv")
    assert list(frame["lr"]) == [0.1, 0.5] and list(frame["seeds"]) == [2, 2]
    assert "final accuracy" in cli("report", runs).out


def test_plot_and_report_errors_are_one_line(cli, tmp_path):
    from conftest import write_run

    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("plot", tmp_path / "empty", "--out", tmp_path / "f.png"), "empty")
    assert_one_line_error(cli("report", tmp_path / "empty"), "no runs", "empty")
    run = write_run(tmp_path / "runs" / "r", [0.1, 0.5])
    assert_one_line_error(
        cli("plot", run, "--metric", "nope", "--out", tmp_path / "f.png"), "rounds.csv", "'nope'"
    )
    assert_one_line_error(cli("report", run, "--format", "xml"), "--format 'xml'")
    assert_one_line_error(cli("report", run, "--target-accuracy", 90), "--target-accuracy 90")
    assert not (tmp_path / "f.png").exists()


HEAVY = ("matplotlib", "pandas", "scipy", "sklearn", "ray", "numba")


def imported(statement: str, among=HEAVY) -> list[str]:
    code = f"import sys; {statement}; print(*sorted({{m.split('.')[0] for m in sys.modules}}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [name for name in done.stdout.split() if name in among]


def test_fl_help_does_not_import_numpy_or_heavier_libraries():
    assert imported("import flcli.cli", among=("numpy", *HEAVY)) == []


def test_fl_train_path_does_not_import_plotting_dataframes_or_sklearn():
    """What `fl train` imports (the api, the round loop, the NumPy models) stays light; only
    partitioning, plots, reports and sklearn: models bring pandas, matplotlib or scikit-learn."""
    assert imported("import flcli.api, flcli.engine.rounds, flcli.models.registry") == []


def test_damaged_files_are_one_line_errors_that_say_what_to_do(cli, iid_dir, tmp_path):
    from flcli import api
    from flcli.config import TrainConfig

    run = tmp_path / "run"
    rounds = api.prepare_training(iid_dir, TrainConfig(rounds=3), run).rounds()
    next(rounds), next(rounds)
    rounds.close()  # as if interrupted after round 1
    (run / "checkpoint.npz").write_bytes(b"not a zip file")
    resumed = cli("train", iid_dir, "--rounds", 3, "--out", run, "--resume")
    assert_one_line_error(resumed, "checkpoint.npz is damaged", "delete it")
    (run / "checkpoint.npz").unlink()
    assert cli("train", iid_dir, "--rounds", 3, "--out", run, "--resume").code == 0
    damaged = tmp_path / "partition"
    shutil.copytree(iid_dir, damaged)
    data = damaged / "data.npz"
    data.write_bytes(data.read_bytes()[:4000])
    assert_one_line_error(cli("train", damaged, "--out", tmp_path / "r"), "unreadable partition")


def test_outputs_go_where_asked_with_the_usual_permissions_or_fail_in_one_line(
    cli, iid_dir, tmp_path
):
    run = tmp_path / "run"
    assert cli("train", iid_dir, "--rounds", 1, "--out", run).code == 0
    usual = 0o666 & ~fileio.UMASK  # what open() makes; mkstemp alone would make 0o600
    assert stat.S_IMODE((run / "rounds.csv").stat().st_mode) == usual
    assert cli("plot", run, "--out", tmp_path / "new" / "dir" / "a.png").code == 0
    (tmp_path / "taken.png").mkdir()
    assert_one_line_error(cli("plot", run, "--out", tmp_path / "taken.png"), "taken.png")


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda meta: meta.pop("num_classes"), "num_classes is missing or of the wrong type"),
        (lambda meta: meta.update(num_clients="ten"), "num_clients is missing or of the wrong"),
        (lambda meta: meta.update(num_classes=5), "label_counts is not a clients x classes"),
        (lambda meta: meta.update(client_sizes=[1] * 10), "client_sizes disagree"),
        (lambda meta: meta.update(dataset="iris"), "was edited after fl partition wrote it"),
        (lambda meta: meta.update(scheme="dirichlet"), "was edited after fl partition wrote it"),
        (lambda meta: meta.update(seed=meta["seed"] + 1), "was edited after fl partition"),
    ],
)
def test_an_edited_partition_json_is_a_one_line_error(cli, iid_dir, tmp_path, edit, fragment):
    edited = tmp_path / "edited"
    shutil.copytree(iid_dir, edited)
    meta = json.loads((edited / "partition.json").read_text())
    edit(meta)
    (edited / "partition.json").write_text(json.dumps(meta))
    assert_one_line_error(cli("train", edited, "--out", tmp_path / "r"), fragment)
    if "wrong type" in fragment:
        assert_one_line_error(cli("inspect", edited), fragment)


def test_a_run_in_use_by_another_process_is_refused_until_it_ends(cli, iid_dir, tmp_path):
    """Two fl train on one run dir (a --resume while the run goes on) would write over each
    other's files: the second is refused while the first holds the run."""
    from flcli import api
    from flcli.config import TrainConfig

    run = tmp_path / "run"
    rounds = api.prepare_training(iid_dir, TrainConfig(rounds=3), run).rounds()
    next(rounds)  # the run is open and training
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "flcli",
            "train",
            str(iid_dir),
            "--rounds",
            "3",
            "--out",
            str(run),
            "--resume",
        ],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 2 and "in use by another fl process" in again.stderr
    assert "Traceback" not in again.stderr
    rounds.close()  # interrupted: the run is free again
    assert cli("train", iid_dir, "--rounds", 3, "--out", run, "--resume").code == 0
