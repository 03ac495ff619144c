"""Figures from run dirs: read run.json and rounds.csv only, never the models."""

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from flcli.errors import FLError
from flcli.fileio import atomic_save_figure

X_AXES = {
    "round": ("round", "Round"),
    "bytes": ("bytes_up", "Bytes sent by clients"),
    "time": ("elapsed_s", "Seconds"),
}


@dataclass(frozen=True)
class Run:
    path: Path
    info: dict
    rounds: pd.DataFrame

    @property
    def label(self) -> str:
        part = self.info.get("partition_meta", {})
        params = part.get("params", {})
        scheme = part.get("scheme", "?")
        if "alpha" in params:
            scheme = f"{scheme}(α={params['alpha']})"
        return f"{self.info['config']['algo']} · {scheme}"


def find_runs(paths: list[Path]) -> list[Run]:
    """Every run dir at or under the given paths (a run dir holds run.json)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise FLError(f"{path} does not exist; give run dirs or folders that contain them")
        found += [f.parent for f in sorted(path.rglob("run.json"))]
    if not found:
        searched = ", ".join(str(p) for p in paths)
        raise FLError(f"no runs (run.json) found under {searched}; run fl train first")
    runs = []
    for run_dir in found:
        csv_file = run_dir / "rounds.csv"
        if not csv_file.is_file():
            continue
        runs.append(
            Run(run_dir, json.loads((run_dir / "run.json").read_text()), pd.read_csv(csv_file))
        )
    return runs


def plot_runs(runs: list[Run], out: Path, metric: str = "test_accuracy", x: str = "round") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if x not in X_AXES:
        raise FLError(f"--x {x!r} is not one of: {', '.join(X_AXES)}")
    x_column, x_label = X_AXES[x]
    for run in runs:
        if metric not in run.rounds.columns:
            raise FLError(
                f"{run.path / 'rounds.csv'} has no column {metric!r}; "
                f"choose --metric from: {', '.join(run.rounds.columns)}"
            )
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7.5, 4.5), constrained_layout=True)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for run in sorted(runs, key=lambda r: r.label):
        ax.plot(run.rounds[x_column], run.rounds[metric], label=run.label, linewidth=1.8)
    part = runs[0].info.get("partition_meta", {})
    ax.set_title(f"{part.get('dataset', '')} · {part.get('num_clients', '?')} clients")
    ax.set_xlabel(x_label)
    ax.set_ylabel(metric.replace("_", " ").capitalize())
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False, loc="best")
    atomic_save_figure(out, fig, dpi=150)
    plt.close(fig)
