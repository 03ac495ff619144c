"""fl plot --kind distribution: the per-client distribution of a metric in the last round of each
run, one empirical CDF per group of runs (by default per algorithm), from clients.csv (written by
fl train --log-clients). The last round's rows are those of the clients evaluated in it: the
round's cohort (every client when all take part)."""

from pathlib import Path

import numpy as np
import pandas as pd

from flcli.errors import FLError
from flcli.plot import STYLE, PlotSummary, algorithm_color, figure_path, name_of, save_figure
from flcli.runs import Group, Run, group_runs

# the metric as fl plot names it -> its column of clients.csv
COLUMNS = {
    "client_accuracy": "accuracy",
    "client_loss": "loss",
    "personal_accuracy": "personal_accuracy",
}
LABELS = {
    "client_accuracy": "Client accuracy (global model)",
    "client_loss": "Client loss (global model)",
    "personal_accuracy": "Client personalized accuracy",
}


def last_round_values(run: Run, metric: str) -> np.ndarray:
    """The metric of every client in the last round of run's clients.csv."""
    path = run.path / "clients.csv"
    if not path.is_file():
        raise FLError(
            f"{run.path} has no clients.csv; --kind distribution needs runs trained with "
            "fl train ... --log-clients"
        )
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise FLError(f"{path} is unreadable ({e}); re-run with --log-clients") from None
    column = COLUMNS[metric]
    if column not in table.columns or "round" not in table.columns or table.empty:
        raise FLError(f"{path} has no {column} column; choose another --metric")
    last = table[table["round"] == table["round"].max()]
    return last[column].dropna().to_numpy(dtype=float)


def plot_distribution(
    runs: list[Run], out: Path, metric: str, group_by: list[str] | None, labels: dict
) -> PlotSummary:
    """Draw one ECDF per group of the last round's per-client metric (the runs of a group, e.g.
    its seeds, pooled); write it to out."""
    out = figure_path(out)
    if metric not in COLUMNS:
        raise FLError(
            f"--kind distribution plots {', '.join(COLUMNS)} (from clients.csv); got --metric "
            f"{metric}"
        )
    if not runs:
        raise FLError("no runs to plot; give run dirs")
    groups = group_runs(runs, group_by or ["algo"])
    values = [np.concatenate([last_round_values(r, metric) for r in g.runs]) for g in groups]
    save_figure(draw(groups, values, metric, labels), out)
    return PlotSummary(len(runs), len(groups), 1, [])


def draw(groups: list[Group], values: list[np.ndarray], metric: str, labels: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
        for i, (group, data) in enumerate(zip(groups, values, strict=True)):
            algo = group.values.get("algo")
            color = algorithm_color(algo) if isinstance(algo, str) else f"C{i}"
            x = np.sort(data)
            y = np.arange(1, len(x) + 1) / max(len(x), 1)
            label = f"{name_of(group, labels)} ({len(x)} clients)"
            ax.step(x, y, where="post", color=color, label=label)
        ax.set_xlabel(LABELS[metric] + ", last round")
        ax.set_ylabel("Fraction of clients ≤ x")
        ax.set_ylim(0, 1.02)
        ax.legend(loc="upper left", frameon=False)
    return fig
