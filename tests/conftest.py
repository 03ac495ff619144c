import os
import signal
import subprocess
import sys

import numpy as np
import pytest

# a bug must fail the test that finds it, not hide behind fl's last-line-of-defence handler
os.environ["FL_RAISE_INTERNAL_ERRORS"] = "1"

from flcli import api
from flcli.cli import main


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def cli(capsys):
    """Run `fl ARGS...` in-process; returns the exit code and what it printed."""

    def run(*args) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """flcli's cache (records of verified partitions, crash logs) in the tests' own tmp dir."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def iid_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("parts") / "iid"
    api.partition(out, dataset="digits", clients=10, scheme="iid", seed=0)
    return out


@pytest.fixture(scope="session")
def dirichlet_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("parts") / "dirichlet"
    api.partition(out, dataset="digits", clients=8, scheme="dirichlet", alpha=0.3, seed=1)
    return out


def assert_resume_is_exact(partition_dir, config, tmp_path, files=("rounds.csv",)):
    """A run stopped after round 2 (as Ctrl-C would) and resumed writes the uninterrupted run's
    files, timing aside."""
    import pandas as pd

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    api.prepare_training(partition_dir, config, whole).frame()
    rounds = api.prepare_training(partition_dir, config, cut).rounds()
    for record in rounds:
        if record["round"] == 2:
            break
    rounds.close()
    api.prepare_training(partition_dir, config, cut, resume=True).frame()
    for name in files:
        a = pd.read_csv(whole / name).drop(columns=["elapsed_s"], errors="ignore")
        b = pd.read_csv(cut / name).drop(columns=["elapsed_s"], errors="ignore")
        pd.testing.assert_frame_equal(a, b)


def ctrl_c_as_in_a_terminal() -> None:
    """preexec_fn of the fl processes a test interrupts: Ctrl-C handled as in a terminal, even
    when the test run itself started with it ignored (a shell's background job, nohup)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_fl_group(*args) -> subprocess.Popen:
    """`fl ARGS` in a process group of its own (so that killpg reaches it and its workers), with
    a terminal's Ctrl-C."""
    return subprocess.Popen(
        [sys.executable, "-m", "flcli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )


def assert_one_line_error(result, *fragments):
    assert result.code == 2, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def same_numbers(a, b, atol=0.0):
    return np.allclose(a, b, rtol=0, atol=atol)


def write_regression_partition(out, num_clients=5, seed=0, noise=10.0):
    """A regression partition dir from generated data (make_regression), IID clients."""
    from sklearn.datasets import make_regression

    from flcli.data.store import partition_from_arrays, write_partition

    x, y = make_regression(n_samples=600, n_features=6, noise=noise, bias=30.0, random_state=seed)
    sizes = np.diff(np.linspace(0, 500, num_clients + 1).astype(np.int64))
    partition = partition_from_arrays(
        x[:500],
        y[:500],
        sizes,
        x[500:],
        y[500:],
        dataset="make_regression",
        scheme="iid",
        seed=seed,
    )
    write_partition(partition, out)
    return out


@pytest.fixture(scope="session")
def regression_dir(tmp_path_factory):
    return write_regression_partition(tmp_path_factory.mktemp("parts") / "regression")


@pytest.fixture(scope="session")
def personal_dir(tmp_path_factory):
    """Dirichlet(0.1) digits with a local test split on every client."""
    out = tmp_path_factory.mktemp("parts") / "personal"
    api.partition(
        out,
        dataset="digits",
        clients=10,
        scheme="dirichlet",
        alpha=0.1,
        seed=0,
        client_test_fraction=0.2,
    )
    return out


def write_run(
    path,
    accuracy,
    *,
    algo="fedavg",
    seed=0,
    scheme="iid",
    alpha=None,
    lr=0.5,
    status="completed",
    algo_args=None,
    extra=None,
    drop=(),
    with_rounds=True,
    rounds=None,
):
    """A small fake run dir: run.json and a rounds.csv whose test_accuracy is `accuracy`
    (round r sent 1000 * r bytes up after 0.5 * r seconds); `extra` adds columns, `drop` removes
    them; with_rounds=False writes no rounds.csv. Returns the path."""
    import json
    from pathlib import Path

    import pandas as pd

    path = Path(path)
    path.mkdir(parents=True)
    params = {"test_size": 0.2, "min_samples": 10}
    if alpha is not None:
        params["alpha"] = alpha
    info = {
        "status": status,
        "config": {
            "algo": algo,
            "model": "softmax",
            "rounds": rounds or len(accuracy) - 1,
            "lr": lr,
            "seed": seed,
            "backend": "vectorized",
            "algo_args": algo_args or {},
        },
        "partition_meta": {
            "dataset": "digits",
            "scheme": scheme,
            "params": params,
            "num_clients": 10,
            "seed": seed,
        },
    }
    (path / "run.json").write_text(json.dumps(info))
    n = len(accuracy)
    columns = {
        "round": range(n),
        "test_accuracy": accuracy,
        "test_loss": [1.0] * n,
        "train_loss": [1.0] * n,
        "clients": [10] * n,
        "bytes_up": [1000 * r for r in range(n)],
        "bytes_down": [1000 * r for r in range(n)],
        "elapsed_s": [0.5 * r for r in range(n)],
        **(extra or {}),
    }
    frame = pd.DataFrame(columns).drop(columns=list(drop))
    if with_rounds:
        frame.to_csv(path / "rounds.csv", index=False)
    return path


def write_generated_partition(out, x_train, y_train, sizes, x_test, y_test, num_classes):
    """A partition dir from arrays (rows already grouped by client), without a dataset loader."""
    from flcli.data.store import partition_from_arrays, write_partition

    partition = partition_from_arrays(
        x_train, y_train, sizes, x_test, y_test, dataset="generated", num_classes=num_classes
    )
    write_partition(partition, out)
    return out


def install_entry_points(site, entry_points: str):
    """A distribution in the folder `site` whose entry_points.txt is `entry_points`, as an
    installed package registers plugins (put `site` on sys.path to install it)."""
    info = site / "fl_test_plugins-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fl-test-plugins\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    return site
