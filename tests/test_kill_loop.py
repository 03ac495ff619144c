"""The kill loop: `fl train` killed with SIGINT, SIGTERM or SIGKILL at seeded random moments, then
resumed with the command it printed, ends with the rounds.csv of an uninterrupted run."""

import json
import random
import shlex
import signal
import subprocess
import sys
import time

import pytest
from test_crash import start_fl

ROUNDS = 12
ARGS = ["--rounds", ROUNDS, "--fraction", 0.5, "--seed", 4, "--checkpoint-every", 1]
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
MOMENTS = ["start-up", "mid-round", "last checkpoint"]
TRIALS = 10


def without_timing(csv_text: str) -> list[str]:
    """rounds.csv's lines with the elapsed_s column (wall-clock time) cut out."""
    lines = csv_text.splitlines()
    drop = lines[0].split(",").index("elapsed_s")
    return [",".join(v for i, v in enumerate(line.split(",")) if i != drop) for line in lines]


def rounds_written(csv) -> int:
    try:
        return csv.read_text().count("\n") - 2  # header and round 0
    except OSError:
        return -1


def wait_for(process, ready, timeout: float = 60.0) -> None:
    """Poll until ready() or the process ended (a bounded wait, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)


def kill_at(process, run, moment: str, rng: random.Random) -> None:
    csv = run / "rounds.csv"
    if moment == "start-up":  # the run dir exists; the first round may or may not be saved
        wait_for(process, (run / "run.json").is_file)
        time.sleep(rng.uniform(0, 0.05))
    elif moment == "mid-round":
        after = rng.randrange(1, ROUNDS - 1)
        wait_for(process, lambda: rounds_written(csv) >= after)
    else:  # the last checkpoint is written and the run is about to complete
        wait_for(process, lambda: rounds_written(csv) >= ROUNDS)


def resume_command(signum, err: str, command: list[str]) -> list[str]:
    """What the run said to run next; a SIGKILL says nothing: the same command with --resume."""
    last = err.strip().splitlines()[-1] if err.strip() else ""
    if signum != signal.SIGKILL and " with: fl " in last:
        return shlex.split(last.split(" with: ", 1)[1])[1:]
    return [*command, "--resume"]


@pytest.fixture(scope="module")
def uninterrupted(iid_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("whole") / "run"
    process = start_fl("train", iid_dir, *ARGS, "--out", run)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return without_timing((run / "rounds.csv").read_text())


@pytest.mark.parametrize("trial", range(TRIALS))
def test_killed_then_resumed_gives_the_uninterrupted_rounds_csv(
    iid_dir, tmp_path, uninterrupted, trial
):
    rng = random.Random(trial)
    signum, moment = SIGNALS[trial % 3], MOMENTS[(trial // 3) % 3]
    run = tmp_path / "run"
    command = ["train", str(iid_dir), *map(str, ARGS), "--out", str(run)]
    process = start_fl(*command)
    kill_at(process, run, moment, rng)
    if process.poll() is None:
        process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert "Traceback" not in err, err
    if process.returncode != 0:  # else it completed before the signal came: nothing to resume
        again = subprocess.run(
            [sys.executable, "-m", "flcli", *resume_command(signum, err, command)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert again.returncode == 0, (signum, moment, err, again.stderr)
        assert "Traceback" not in again.stderr
    assert without_timing((run / "rounds.csv").read_text()) == uninterrupted, (signum, moment)
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
