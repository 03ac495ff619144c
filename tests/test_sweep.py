"""fl sweep: grid expansion, shared partitions, skipping done runs, failures listed at the end."""

import json

import pandas as pd
import pytest
from conftest import assert_one_line_error, start_fl_group

from flcli.sweep import known_keys, load_sweep, partition_keys

SWEEP = """
name = "tiny"
[base]
dataset = "digits"
clients = 6
rounds = 2
local_epochs = 1
seed = 3
[grid]
partition = [{ scheme = "iid" }, { scheme = "dirichlet", alpha = 0.5 }]
lr = [0.1, 0.5]
"""


def write(path, text):
    path.write_text(text)
    return path


def test_keys_come_from_fl_partition_and_train_config():
    assert {"dataset", "clients", "scheme", "alpha", "test_size", "seed"} <= set(partition_keys())
    assert {"algo", "lr", "rounds", "backend", "seed", "partition_seed"} <= set(known_keys())


def test_grid_is_the_cartesian_product_and_names_runs_by_grid_values(tmp_path):
    plan = load_sweep(write(tmp_path / "s.toml", SWEEP), tmp_path / "out")
    assert [run.run_id for run in plan.runs] == [
        "scheme=iid,lr=0.1",
        "scheme=iid,lr=0.5",
        "scheme=dirichlet,alpha=0.5,lr=0.1",
        "scheme=dirichlet,alpha=0.5,lr=0.5",
    ]
    assert plan.num_partitions == 2
    first = plan.runs[2]
    assert first.partition_options == {
        "dataset": "digits",
        "clients": 6,
        "seed": 3,
        "scheme": "dirichlet",
        "alpha": 0.5,
    }
    assert first.config.lr == 0.1 and first.config.seed == 3 and first.config.rounds == 2
    assert first.out == tmp_path / "out" / "scheme=dirichlet,alpha=0.5,lr=0.1"


def test_sweep_shares_partitions_and_a_second_invocation_does_no_work(cli, tmp_path):
    sweep, out = write(tmp_path / "s.toml", SWEEP), tmp_path / "out"
    result = cli("sweep", sweep, "--jobs", 2, "--out", out)
    assert result.code == 0, result.err
    assert "4 trained" in result.out
    partitions = sorted(p.name for p in (out / "partitions").iterdir())
    assert len(partitions) == 2 and partitions[0].startswith("scheme=dirichlet,alpha=0.5,hash=")
    for run in load_sweep(sweep, out).runs:
        info = json.loads((run.out / "run.json").read_text())
        assert info["status"] == "completed"
        assert info["partition"] == str(run.partition_dir.resolve())
        assert info["config"]["lr"] == run.config.lr
    # a run of the sweep is the same as that run by hand
    by_hand = tmp_path / "by-hand"
    part = load_sweep(sweep, out).runs[1].partition_dir
    args = ["--rounds", 2, "--local-epochs", 1, "--seed", 3, "--lr", 0.5, "--out", by_hand]
    assert cli("train", part, *args).code == 0
    swept = pd.read_csv(out / "scheme=iid,lr=0.5" / "rounds.csv").drop(columns="elapsed_s")
    pd.testing.assert_frame_equal(
        swept, pd.read_csv(by_hand / "rounds.csv").drop(columns="elapsed_s"), check_exact=True
    )

    written = {f: f.stat().st_mtime_ns for f in out.rglob("*") if f.is_file()}
    again = cli("sweep", sweep, "--jobs", 2, "--out", out)
    assert again.code == 0 and "0 trained, 4 already done" in again.out
    assert {f: f.stat().st_mtime_ns for f in out.rglob("*") if f.is_file()} == written


def test_a_failed_run_does_not_stop_the_sweep_and_is_listed(cli, tmp_path):
    text = SWEEP.replace("lr = [0.1, 0.5]", "clients_per_round = [3, 50]")  # 50 > 6 clients
    text = text.replace('{ scheme = "iid" }', '{ scheme = "dirichlet", alpha = -1 }')
    result = cli("sweep", write(tmp_path / "s.toml", text), "--jobs", 1, "--out", tmp_path / "o")
    assert result.code == 1
    assert "1 trained" in result.out
    failed = [line for line in result.err.splitlines() if line.startswith("failed:")]
    assert len(failed) == 4  # the partition with alpha -1, its two runs, and the 50-client run
    assert any(
        "partition scheme=dirichlet,alpha=-1" in line and "--alpha" in line for line in failed
    )
    assert any("alpha=0.5,clients_per_round=50" in line and "at most 6" in line for line in failed)
    assert result.err.strip().splitlines()[-1].startswith("error: 3 of 4 runs failed")
    assert (
        tmp_path / "o" / "scheme=dirichlet,alpha=0.5,clients_per_round=3" / "rounds.csv"
    ).exists()


def test_resumes_an_interrupted_run_of_the_sweep(cli, tmp_path):
    from flcli import api

    sweep, out = write(tmp_path / "s.toml", SWEEP), tmp_path / "out"
    assert cli("sweep", sweep, "--jobs", 1, "--out", out).code == 0
    run = load_sweep(sweep, out).runs[0]
    whole = pd.read_csv(run.out / "rounds.csv").drop(columns="elapsed_s")
    # cut that run short after round 1, as a killed sweep would leave it
    for path in run.out.iterdir():
        path.unlink()
    run.out.rmdir()
    training = api.prepare_training(run.partition_dir, run.config, run.out)
    rounds = training.rounds()
    next(rounds), next(rounds)
    rounds.close()
    again = cli("sweep", sweep, "--jobs", 1, "--out", out)
    assert again.code == 0 and "1 trained, 3 already done" in again.out
    resumed = pd.read_csv(run.out / "rounds.csv").drop(columns="elapsed_s")
    pd.testing.assert_frame_equal(whole, resumed, check_exact=True)


def test_a_partition_seed_makes_the_runs_seeds_share_one_partition(tmp_path):
    text = SWEEP.replace("seed = 3", "partition_seed = 0").replace(
        "lr = [0.1, 0.5]", "seed = [0, 1]"
    )
    plan = load_sweep(write(tmp_path / "s.toml", text), tmp_path / "out")
    assert plan.num_partitions == 2  # iid and dirichlet, each shared by both seeds
    assert [run.config.seed for run in plan.runs] == [0, 1, 0, 1]
    for run in plan.runs:
        assert run.partition_options["seed"] == 0
        assert "seed=" not in run.partition_id.split(",hash=")[0]


@pytest.mark.parametrize(
    "text, fragments",
    [
        (SWEEP.replace("lr = [", "learning_rate = ["), ["learning_rate", "known keys", "alpha"]),
        (SWEEP.replace("lr = [0.1, 0.5]", "lr = 0.1"), ["lr = 0.1", "list"]),
        (SWEEP.replace('name = "tiny"', ""), ["name"]),
        (SWEEP.replace("lr = [0.1, 0.5]", "lr = [0.1, -1]"), ["lr=-1", "--lr -1"]),
        (SWEEP.replace("lr = [0.1, 0.5]", "lr = [0.1, 0.1]"), ["twice"]),
        ('name = "b"\ngrid = 3\n', ["grid = 3", "table", "[grid]"]),
        ('name = "b"\nbase = "digits"\n', ["base = 'digits'", "table", "[base]"]),
    ],
)
def test_bad_sweep_file_is_one_line(cli, tmp_path, text, fragments):
    result = cli("sweep", write(tmp_path / "s.toml", text), "--out", tmp_path / "o")
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "name, runs, partitions",
    [("noniid.toml", 45, 9), ("fedprox-synthetic.toml", 18, 3)],
)
def test_shipped_sweeps_are_valid(name, runs, partitions):
    from pathlib import Path

    missing = {"mu", "stragglers"} - set(known_keys())
    if missing:
        pytest.skip(f"TrainConfig lacks {', '.join(sorted(missing))} (the algorithms' options)")
    plan = load_sweep(Path(__file__).parent.parent / "experiments" / name)
    assert len(plan.runs) == runs and plan.num_partitions == partitions


def test_dry_run_says_which_runs_are_done_to_run_or_blocked(cli, tmp_path):
    sweep, out = write(tmp_path / "s.toml", SWEEP), tmp_path / "out"
    assert cli("sweep", sweep, "--out", out).code == 0
    assert cli("sweep", sweep, "--out", out, "--dry-run").out.count("done") == 4
    longer = write(tmp_path / "longer.toml", SWEEP.replace("rounds = 2", "rounds = 3"))
    plan = cli("sweep", longer, "--out", out, "--dry-run").out
    assert plan.count("blocked") == 4 and "delete it" in plan  # fl sweep would fail all four
    fresh = cli("sweep", longer, "--out", tmp_path / "fresh", "--dry-run").out
    assert fresh.count("to run") == 4
    for run in load_sweep(longer, tmp_path / "fresh").runs:  # whole, though not on a terminal
        assert run.run_id in fresh and run.partition_id in fresh


def test_ctrl_c_stops_the_sweep_with_one_line_and_the_same_command_continues(cli, tmp_path):
    """Ctrl-C reaches the whole process group: the sweep and its worker processes."""
    import os
    import signal
    import time

    text = SWEEP.replace("rounds = 2", "rounds = 100")
    sweep, out = write(tmp_path / "s.toml", text), tmp_path / "out"
    process = start_fl_group("sweep", sweep, "--jobs", 2, "--out", out)
    deadline = time.monotonic() + 60
    while not any(
        csv.read_text().count("\n") > 3 for csv in out.glob("*/rounds.csv")
    ):  # some run is training
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "interrupted" in last and "fl sweep" in last
    again = cli("sweep", sweep, "--jobs", 2, "--out", out)
    assert again.code == 0, again.err
    for run in load_sweep(sweep, out).runs:
        assert json.loads((run.out / "run.json").read_text())["status"] == "completed"
        assert len(pd.read_csv(run.out / "rounds.csv")) == 101


def test_a_grid_of_more_than_100000_runs_is_refused_up_front(cli, tmp_path):
    values = ", ".join(str(v) for v in range(11))
    grid = "\n".join(f"{key} = [{values}]" for key in ("seed", "rounds", "lr", "mu", "clients"))
    sweep = write(tmp_path / "s.toml", f'name = "huge"\n[base]\ndataset = "digits"\n[grid]\n{grid}')
    result = cli("sweep", sweep, "--dry-run", "--out", tmp_path / "out")
    assert_one_line_error(result, "161,051 runs", "100,000", "split it")


def test_sweep_ray_address_is_probed_once_and_needs_the_ray_backend(cli, tmp_path):
    import socket

    with socket.socket() as free:  # a port nothing listens on once closed
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    sweep, out = write(tmp_path / "s.toml", SWEEP), tmp_path / "out"
    address = f"127.0.0.1:{port}"
    for given in (address, f"ray://{address}"):  # a Ray Client address too, before any wait
        result = cli("sweep", sweep, "--backend", "ray", "--ray-address", given, "--out", out)
        assert_one_line_error(result, f"--ray-address {given}", "nothing answers")
        assert not out.exists()
    alone = cli("sweep", sweep, "--ray-address", address, "--out", out)
    assert_one_line_error(alone, "--ray-address", "--backend ray")


def test_two_sweeps_on_one_file_at_once_both_succeed(tmp_path):
    from test_crash import start_fl

    longer = SWEEP.replace("rounds = 2", "rounds = 60")  # so that their runs overlap
    sweep, out = write(tmp_path / "s.toml", longer), tmp_path / "out"
    both = [start_fl("sweep", sweep, "--jobs", 1, "--out", out) for _ in range(2)]
    for process in both:
        output, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        assert "0 failed" in output and "Traceback" not in err
    for run in load_sweep(sweep, out).runs:
        assert json.loads((run.out / "run.json").read_text())["status"] == "completed"
    assert not [p for p in (out / "partitions").iterdir() if p.name.startswith(".")]
