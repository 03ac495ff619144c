"""No temporary dir survives: a partition killed mid-write leaves its hidden build dir, which the
next fl partition into the same parent removes."""

import os
import signal
import time
from pathlib import Path

import pytest
from test_crash import start_fl

from flcli.data.store import remove_orphaned_builds

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
