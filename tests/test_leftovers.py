"""No temporary dir survives: a partition killed mid-write leaves its hidden build dir, which the
next fl partition into the same parent removes."""

import os
import signal
import time
from pathlib import Path

import pytest
from test_crash import start_fl

from flcli.data.store import remove_orphaned_builds
from flcli.fileio import signals_held

BIG = "classification:n_samples=300000,n_features=50"


def hidden(parent: Path) -> list[Path]:
    return [path for path in parent.iterdir() if path.name.startswith(".")]


@pytest.mark.skipif(os.name != "posix", reason="probes processes with os.kill(pid, 0)")
def test_a_partition_killed_mid_write_leaves_nothing_after_the_next_partition(cli, tmp_path):
    out = tmp_path / "big"
    process = start_fl("partition", BIG, "--clients", 4, "--scheme", "iid", "--out", out)
    deadline = time.monotonic() + 120
    while not hidden(tmp_path) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stdout.close()
    process.stderr.close()
    assert not out.exists()
    assert hidden(tmp_path), "the kill came after the rename"
    again = cli("partition", "digits", "--clients", 4, "--scheme", "iid", "--out", tmp_path / "p")
    assert again.code == 0, again.err
    assert hidden(tmp_path) == []


def test_a_build_dir_of_a_live_process_is_kept(tmp_path):
    mine = tmp_path / f".p.building-{os.getpid()}-abc"
    mine.mkdir()
    (tmp_path / ".notours.123").mkdir()  # not named like a build dir: someone else's
    remove_orphaned_builds(tmp_path)
    assert mine.is_dir() and (tmp_path / ".notours.123").is_dir()


@pytest.mark.skipif(os.name != "posix", reason="symbolic links and advisory locks")
def test_a_symlinked_lock_is_refused_and_its_target_left_alone(cli, iid_dir, tmp_path):
    from conftest import assert_one_line_error

    run, target = tmp_path / "run", tmp_path / "elsewhere"
    run.mkdir()
    (run / ".lock").symlink_to(target)
    result = cli("train", iid_dir, "--rounds", 1, "--out", run)
    assert_one_line_error(result, ".lock", "symbolic link", "delete it")
    assert not target.exists()


def test_a_full_disk_names_the_file_exits_1_and_marks_the_run_failed(
    cli, iid_dir, tmp_path, monkeypatch
):
    import errno
    import json

    import flcli.runlog
    from flcli.fileio import atomic_write

    def full_disk(file):
        raise OSError(errno.ENOSPC, "No space left on device")

    def write_text(path, text):  # rounds.csv hits a full disk; the rest still fits
        if Path(path).name == "rounds.csv":
            atomic_write(path, full_disk)
        else:
            atomic_write(path, lambda f: f.write(text.encode()))

    monkeypatch.setattr(flcli.runlog, "atomic_write_text", write_text)
    run = tmp_path / "run"
    result = cli("train", iid_dir, "--rounds", 3, "--checkpoint-every", 1, "--out", run)
    assert result.code == 1, result.err
    last = result.err.strip().splitlines()[-1]
    assert "Traceback" not in result.err
    assert str(run / "rounds.csv") in last and "no space left" in last and "--resume" in last
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and "no space left" in info["error"]
    assert not [f for f in os.listdir(run) if f.endswith(".tmp")]
    monkeypatch.undo()  # space freed: the same command with --resume finishes the run
    resumed = cli(
        "train", iid_dir, "--rounds", 3, "--checkpoint-every", 1, "--out", run, "--resume"
    )
    assert resumed.code == 0, resumed.err
    assert json.loads((run / "run.json").read_text())["status"] == "completed"


def test_a_ctrl_c_inside_a_held_block_lands_after_the_block_has_finished():
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, as at start
    finished = []
    with pytest.raises(KeyboardInterrupt), signals_held():
        os.kill(os.getpid(), signal.SIGINT)
        finished.append("the write")
    restored = signal.signal(signal.SIGINT, before)
    assert finished == ["the write"]
    assert restored is signal.default_int_handler
