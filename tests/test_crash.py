"""Crash safety: SIGKILL then --resume, Ctrl-C, and a diverged run (real `fl` subprocesses)."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error, ctrl_c_as_in_a_terminal, write_generated_partition

from flcli.engine.process import remove_orphaned_shares

ARGS = ["--rounds", 60, "--fraction", 0.5, "--seed", 4, "--checkpoint-every", 1]
# runs a Ctrl-C must land in: long enough that a loaded machine cannot finish them first
LONG = ["--rounds", 400, *ARGS[2:]]


def rounds_of(run_dir):
    return pd.read_csv(run_dir / "rounds.csv").drop(columns=["elapsed_s"])


def start_fl(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "flcli", *map(str, args)],
        stdin=subprocess.DEVNULL,  # as in a script or under nohup (orphaned workers showed there)
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )


def wait_for_rounds(run_dir, process: subprocess.Popen, rounds: int, timeout: float = 60.0):
    """Wait until rounds.csv holds at least `rounds` rounds after round 0."""
    deadline = time.monotonic() + timeout
    csv = run_dir / "rounds.csv"
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if csv.is_file() and csv.read_text().count("\n") >= rounds + 2:
            return
        time.sleep(0.01)
    raise AssertionError(f"{csv} did not reach {rounds} rounds in {timeout} s")


def assert_sigkill_then_resume_is_uninterrupted(cli, partition, args, tmp_path, after=3):
    """`fl train ARGS` killed with SIGKILL after `after` saved rounds, then resumed with the same
    command plus --resume, ends with the rounds.csv of an uninterrupted run (timing aside)."""
    killed = tmp_path / "killed"
    process = start_fl("train", partition, *args, "--out", killed)
    wait_for_rounds(killed, process, after)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert json.loads((killed / "run.json").read_text())["status"] == "running"  # cut short
    resumed = cli("train", partition, *args, "--out", killed, "--resume")
    assert resumed.code == 0, resumed.err
    whole = cli("train", partition, *args, "--out", tmp_path / "whole")
    assert whole.code == 0, whole.err
    pd.testing.assert_frame_equal(
        rounds_of(tmp_path / "whole"), rounds_of(killed), check_exact=True
    )
    return killed


def test_sigkill_then_resume_gives_the_uninterrupted_rounds_csv(cli, iid_dir, tmp_path):
    killed = tmp_path / "killed"
    process = start_fl("train", iid_dir, *ARGS, "--out", killed)
    wait_for_rounds(killed, process, 3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    left = json.loads((killed / "run.json").read_text())
    assert left["status"] == "running"  # really cut short, not finished
    assert len(pd.read_csv(killed / "rounds.csv")) < 61
    assert_one_line_error(cli("train", iid_dir, *ARGS, "--out", killed), "--resume")
    resumed = cli("train", iid_dir, *ARGS, "--out", killed, "--resume")
    assert resumed.code == 0, resumed.err
    whole = tmp_path / "whole"
    assert cli("train", iid_dir, *ARGS, "--out", whole).code == 0
    pd.testing.assert_frame_equal(rounds_of(whole), rounds_of(killed), check_exact=True)
    assert json.loads((killed / "run.json").read_text())["status"] == "completed"
    assert not [f for f in os.listdir(killed) if f.endswith(".tmp")]  # no torn temporary files


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])  # Ctrl-C, kill
def test_ctrl_c_marks_the_run_interrupted_and_says_how_to_resume(cli, iid_dir, tmp_path, stop):
    run = tmp_path / "run"
    process = start_fl("train", iid_dir, *LONG, "--out", run)
    wait_for_rounds(run, process, 2)
    process.send_signal(stop)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "interrupted after round" in last and "--resume" in last and str(run) in last
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    saved = pd.read_csv(run / "rounds.csv")
    assert 3 <= len(saved) < 401
    resumed = cli("train", iid_dir, *LONG, "--out", run, "--resume")
    assert resumed.code == 0, resumed.err
    assert list(pd.read_csv(run / "rounds.csv")["round"]) == list(range(401))


@pytest.mark.parametrize("backend", ["vectorized", "process"])  # process: workers get it too
def test_a_second_ctrl_c_does_not_cut_the_save_short(iid_dir, tmp_path, backend):
    run = tmp_path / "run"
    process = start_fl("train", iid_dir, *LONG, "--backend", backend, "--out", run)
    wait_for_rounds(run, process, 2)
    process.send_signal(signal.SIGINT)
    time.sleep(0.001)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert "Traceback" not in err
    said = int(err.split("interrupted after round ")[1].split(",")[0])
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert pd.read_csv(run / "rounds.csv")["round"].iloc[-1] == said


def state_and_parent(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process from /proc/PID/stat; None once it is gone."""
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    found = state_and_parent(pid)
    return found is not None and found[0] != "Z"


def running_children(pid: int) -> list[int]:
    """The running processes whose parent is pid."""
    found = {
        int(path.name): state_and_parent(int(path.name)) for path in Path("/proc").glob("[0-9]*")
    }
    return [child for child, seen in found.items() if seen and seen[0] != "Z" and seen[1] == pid]


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads processes from /proc")
def test_kill_9_of_a_process_backend_run_leaves_no_workers_and_its_files_go_next_run(
    iid_dir, tmp_path
):
    run = tmp_path / "run"
    process = start_fl("train", iid_dir, *ARGS, "--backend", "process", "--jobs", 2, "--out", run)
    wait_for_rounds(run, process, 2)
    workers = running_children(process.pid)
    shares = list(Path(tempfile.gettempdir()).glob(f"flcli-{process.pid}-*"))
    assert workers and shares
    process.kill()
    process.wait()  # not communicate(): workers left behind would hold its pipes open
    process.stdout.close()
    process.stderr.close()
    deadline = time.monotonic() + 20
    while any(map(running, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(running, workers)), "workers outlived their killed run"
    remove_orphaned_shares()  # what the next process-backend run does first
    assert not any(share.exists() for share in shares)


ORPHAN_PARENT = """
import subprocess, sys, time
child = subprocess.Popen(
    [sys.executable, "-c", "import os, time; from flcli.engine.process import start_worker; "
     "start_worker(os.getppid()); print('ready', flush=True); time.sleep(60)"],
    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
)
child.stdout.readline()
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads processes from /proc")
def test_a_worker_exits_soon_after_its_parent_is_killed():
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_PARENT], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
    )
    worker = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 10
    while running(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(worker)


class InterruptedWhileRead(dict):
    """Clients' columns that raise Ctrl-C as they are read, as a signal might mid-append."""

    def __iter__(self):
        raise KeyboardInterrupt


@pytest.mark.parametrize("earlier_flushed", [False, True])
def test_a_ctrl_c_inside_append_leaves_that_round_out_of_the_save(tmp_path, earlier_flushed):
    from flcli.algorithms.base import ServerState
    from flcli.runlog import RunDir

    run = RunDir(tmp_path, {"status": "running"}, [])
    clients = {"round": [0, 0], "client": [0, 1], "n": [5, 5], "loss": [1.0, 2.0]}
    run.append({"round": 0, "train_loss": 1.0}, ServerState(np.zeros(3)), clients)
    if earlier_flushed:
        run.flush()
    with pytest.raises(KeyboardInterrupt):
        run.append({"round": 1, "train_loss": 0.5}, ServerState(np.ones(3)), InterruptedWhileRead())
    run.flush()  # what Training.rounds does on the way out
    with np.load(tmp_path / "checkpoint.npz") as saved:
        assert int(saved["round"]) == 0 and np.array_equal(saved["params"], np.zeros(3))
    assert list(pd.read_csv(tmp_path / "rounds.csv")["round"]) == [0]
    assert list(pd.read_csv(tmp_path / "clients.csv")["round"]) == [0, 0]
    assert run.saved_round == 0


def test_diverged_run_stops_marked_failed_and_suggests_a_smaller_lr(cli, tmp_path):
    # Features of magnitude 1e300: one SGD step with --lr 1e6 overflows the weights to inf, and the
    # loss of the next model is NaN. (On digits, softmax regression's loss stays finite even with
    # a huge --lr: its gradient is bounded.)
    x = np.full((40, 2), 1e300)
    x[::2] *= -1
    y = np.tile([0, 1], 20)
    part = write_generated_partition(tmp_path / "part", x, y, [20, 20], x[:4], y[:4], 2)
    run = tmp_path / "run"
    result = cli("train", part, "--lr", 1e6, "--rounds", 5, "--out", run)
    assert result.code == 1
    last = result.err.strip().splitlines()[-1]  # after the progress bar
    assert "Traceback" not in result.err and "Warning" not in result.err, result.err
    assert last.startswith("error:") and "diverged" in last and "smaller --lr" in last
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and "diverged" in info["error"]
    assert list(pd.read_csv(run / "rounds.csv")["round"]) == [0]  # stopped at round 1
