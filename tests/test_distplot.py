"""fl plot --kind distribution: the last round's per-client accuracy, one ECDF per algorithm."""

import subprocess
import sys

import pandas as pd
import pytest
from conftest import write_run

from flcli import api
from flcli.errors import FLError


def with_clients(path, accuracies):
    """A fake run with a clients.csv: round 0 all zeros, round 1 the given accuracies."""
    run = write_run(path, [0.1, 0.5], algo=path.name.split("-")[0])
    n = len(accuracies)
    rows = {"round": [0] * n + [1] * n, "client": list(range(n)) * 2, "n": [10] * (2 * n)}
    rows["accuracy"] = [0.0] * n + list(accuracies)
    pd.DataFrame(rows).to_csv(run / "clients.csv", index=False)
    return run


def test_distribution_figure_is_written(tmp_path):
    with_clients(tmp_path / "runs" / "fedavg-0", [0.2, 0.5, 0.9])
    with_clients(tmp_path / "runs" / "fedprox-0", [0.4, 0.6, 0.7, 0.8])
    out = tmp_path / "dist.png"
    summary = api.plot([tmp_path / "runs"], out, "client_accuracy", kind="distribution")
    assert out.is_file() and out.stat().st_size > 0
    assert summary.groups == 2


def test_runs_without_clients_csv_are_one_line_exit_2(tmp_path):
    write_run(tmp_path / "plain", [0.1, 0.5])
    with pytest.raises(FLError, match="no clients.csv.*--log-clients"):
        api.plot([tmp_path / "plain"], tmp_path / "x.png", "client_accuracy", kind="distribution")
    out = tmp_path / "y.png"
    command = [sys.executable, "-m", "flcli", "plot", str(tmp_path / "plain")]
    command += ["--kind", "distribution", "--metric", "client_accuracy", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 2
    assert "--log-clients" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_an_unknown_metric_is_refused(tmp_path):
    run = with_clients(tmp_path / "fedavg-0", [0.5])
    with pytest.raises(FLError, match="--kind distribution plots"):
        api.plot([run], tmp_path / "z.png", "test_accuracy", kind="distribution")
