"""Figures from run dirs: a mean line and a ±1 std band over seeds per group, one panel per
facet value. Reads run.json and rounds.csv only (through flcli.runs), never the models."""

import textwrap
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from flcli.errors import FLError
from flcli.fileio import atomic_save_figure
from flcli.runs import (
    GREEK,
    Group,
    Run,
    default_keys,
    describe,
    group_runs,
    mean_std,
    pooling_notes,
    require_columns,
    seed_table,
    split_by,
    unfinished,
)

X_AXES = {
    "round": ("round", "Communication round"),
    "bytes": ("bytes_up", "Bytes sent by clients (cumulative)"),
    "time": ("elapsed_s", "Training time (s)"),
    "simtime": ("sim_time_s", "Simulated time (s)"),
}
METRIC_LABELS = {
    "test_accuracy": "Test accuracy",
    "test_loss": "Test loss",
    "train_loss": "Training loss (global model)",
    "test_mse": "Test MSE",
    "test_r2": "Test R²",
    "client_accuracy_mean": "Mean client accuracy",
    "client_accuracy_std": "Std of client accuracy",
    "client_accuracy_p10": "10th-percentile client accuracy",
    "personal_accuracy": "Personalized accuracy",
    "epsilon": "Privacy spent ε",
}
FORMATS = (".png", ".svg", ".pdf")
# One colour per registered algorithm (flcli.algorithms.registry), the same in every figure:
# Okabe-Ito first, then colours chosen to stay apart from them and from each other (CIEDE2000
# of 10 or more between any two, also under simulated protanopia, deuteranopia, tritanopia).
ALGORITHM_COLORS = {
    "fedavg": "#0072B2",
    "fedprox": "#D55E00",
    "scaffold": "#009E73",
    "fedsgd": "#CC79A7",
    "fedavgm": "#E69F00",
    "fedadam": "#56B4E9",
    "fedavglu": "#000000",
    "feddyn": "#8C564B",
    "fednova": "#222288",
    "fedyogi": "#333300",
    "fedadagrad": "#005577",
    "feddist": "#880044",
    "qfedavg": "#8877FF",
    "ditto": "#0000FF",
    "fedbag": "#AABB99",
    "fedbuff": "#6B8E23",
    "fedasync": "#B8860B",
}
# Names no longer or not yet registered hash to these, which no registered algorithm uses.
UNREGISTERED_COLORS = ("#776677", "#CC11BB", "#555500", "#8844FF")
PALETTE = list(ALGORITHM_COLORS.values())  # for groups that do not differ in algorithm
LINESTYLES = ("-", "--", ":", "-.")
# Once the line styles run out, variants also get a marker (every MARK_EVERY of the axes'
# diagonal, so that long runs are not covered in them).
MARKERS = ("o", "s", "^", "D", "v", "X", "P", "*")
MARK_EVERY = 0.1
STYLE = {
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "legend.fontsize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def algorithm_color(name: str) -> str:
    """A fixed colour for a named algorithm; unknown names hash to a colour that no registered
    algorithm has."""
    if name in ALGORITHM_COLORS:
        return ALGORITHM_COLORS[name]
    return UNREGISTERED_COLORS[zlib.crc32(name.encode()) % len(UNREGISTERED_COLORS)]


class Look(NamedTuple):
    """How a group's line is drawn."""

    color: str
    linestyle: str
    marker: str | None = None


def variant_look(color: str, index: int) -> Look:
    """The index-th variant in a colour: the line styles alone, then each with a marker, so that
    4 * (1 + len(MARKERS)) variants look different."""
    linestyle = LINESTYLES[index % len(LINESTYLES)]
    rank = index // len(LINESTYLES)
    marker = MARKERS[(rank - 1) % len(MARKERS)] if rank else None
    return Look(color, linestyle, marker)


@dataclass
class PlotSummary:
    runs: int
    groups: int
    panels: int
    notes: list[str] = field(default_factory=list)  # runs skipped, groups pooling settings


def line_styles(groups: list[Group]) -> dict[str, Look]:
    """Group label -> its Look. When groups differ in algorithm, colour means the algorithm
    (fixed per name) and line style, then marker, tells its variants apart; otherwise groups
    take palette colours in their sorted order."""
    algos = {g.values.get("algo") for g in groups}
    if len(algos) > 1 and None not in algos:

        def variant(group: Group) -> str:
            return describe({k: v for k, v in group.values.items() if k != "algo"})

        variants: dict[str, list[str]] = {}
        for group in groups:
            seen = variants.setdefault(group.values["algo"], [])
            if variant(group) not in seen:
                seen.append(variant(group))
        return {
            g.label: variant_look(
                algorithm_color(g.values["algo"]),
                variants[g.values["algo"]].index(variant(g)),
            )
            for g in groups
        }
    labels = list(dict.fromkeys(g.label for g in groups))
    return {
        label: variant_look(PALETTE[rank % len(PALETTE)], rank // len(PALETTE))
        for rank, label in enumerate(labels)
    }


def unset(keys: list[str]) -> str:
    """What a group or panel is when its settings are all None (fedavg has no mu): "μ not set"."""
    return f"{', '.join(GREEK.get(key, key) for key in keys)} not set"


def name_of(group: Group) -> str:
    """The group's legend entry: its label, but "μ not set" rather than "all runs" for a group
    whose only settings are unset."""
    if group.values and not describe(group.values):
        return unset(list(group.values))
    return group.label


def title_of(runs: list[Run], facet: str | None, groups: list[Group], smooth: int | None) -> str:
    """What was run, from the settings all runs share: dataset, clients, partition, model."""
    first = runs[0].settings
    shared = [
        key
        for key in ("algo", "dataset", "num_clients", "partition", "model")
        if key != facet and all(run.settings.get(key) == first.get(key) for run in runs)
    ]
    parts = [describe_value_for_title(key, first.get(key)) for key in shared]
    seeds = sorted({len(g.logged) for g in groups})
    how = []
    if seeds[-1] > 1:
        count = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
        how.append(f"mean ± 1 std over {count} seeds")
    if smooth and smooth > 1:
        how.append(f"moving average over {smooth} rounds")
    line = " · ".join(p for p in parts if p)
    return line + (f"\n{', '.join(how)}" if how else "")


def describe_value_for_title(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key == "model":
        return f"{value} model"
    return describe({key: value})


def panels_of(runs: list[Run], facet: str | None) -> list[tuple[Any, list[Run]]]:
    return [(None, runs)] if facet is None else split_by(runs, facet)


@dataclass(frozen=True)
class Figure:
    """Everything render() needs: what goes in which panel, and how it looks."""

    panels: list[tuple[Any, list[Group]]]  # (facet value, its groups)
    styles: dict[str, Look]  # group label -> how its line is drawn
    legend: dict[str, str]  # group label -> legend entry (with unfinished runs noted)
    facet: str | None
    metric: str
    x_column: str
    x_label: str
    title: str
    smooth: int | None
    logy: bool
    notes: list[str]  # runs skipped, groups pooling settings


def plan_figure(
    runs: list[Run],
    metric: str = "test_accuracy",
    x: str = "round",
    group_by: list[str] | None = None,
    facet: str | None = None,
    smooth: int | None = None,
    logy: bool = False,
) -> Figure:
    """Check the options against the runs, split them into panels and groups, pick styles."""
    if x not in X_AXES:
        raise FLError(f"--x {x!r} is not one of: {', '.join(X_AXES)}")
    if smooth is not None and smooth < 1:
        raise FLError(f"--smooth {smooth} must be a window of at least 1 round")
    logged = [run for run in runs if run.rounds is not None]
    notes = [
        f"{run.path}: no rounds.csv yet (status {run.status}); skipped"
        for run in runs
        if run.rounds is None
    ]
    if not logged:
        raise FLError(f"none of the {len(runs)} runs found has a rounds.csv yet; train them first")
    x_column, x_label = X_AXES[x]
    require_columns(logged, [metric, x_column])
    keys = default_keys(logged, facet) if group_by is None else group_by
    panels = [(value, group_runs(members, keys)) for value, members in panels_of(logged, facet)]
    every_group = [g for _, groups in panels for g in groups]
    styles = line_styles(every_group)
    names = {g.label: name_of(g) for g in every_group}
    legend = {}
    for label, name in names.items():
        status = unfinished([run for g in every_group if g.label == label for run in g.runs])
        legend[label] = f"{name} ({status})" if status else name
    return Figure(
        panels, styles, legend, facet, metric, x_column, x_label,
        title_of(logged, facet, every_group, smooth), smooth, logy,
        notes + pooling_notes(every_group, "--group-by or --facet"),
    )  # fmt: skip


def plot_runs(runs: list[Run], out: Path, **options: Any) -> PlotSummary:
    """Draw the options' metric for each group of runs (a mean line and a ±1 std band over
    seeds), one panel per facet value with shared axes, the legend below; write it to `out`."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise FLError(f"--out {out}: give a file ending in {', '.join(FORMATS)}")
    figure = plan_figure(runs, **options)
    drawn = render(figure)
    import matplotlib.pyplot as plt

    atomic_save_figure(out, drawn, dpi=200)
    plt.close(drawn)
    runs_drawn = sum(len(g.runs) for _, groups in figure.panels for g in groups)
    return PlotSummary(runs_drawn, len(figure.styles), len(figure.panels), figure.notes)


def render(figure: Figure):
    """The matplotlib figure (the caller saves and closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(figure.panels)
    ncols = min(count, 3)
    nrows = -(-count // ncols)
    width = 6.4 if count == 1 else 3.6 * ncols + 0.6
    height = 4.0 if count == 1 else 3.0 * nrows + 0.4
    title = "\n".join(  # wrapped to the figure's width (about 11 characters an inch)
        textwrap.fill(line, width=int(width * 11), break_on_hyphens=False)
        for line in figure.title.split("\n")
    )
    height += 0.3 * title.count("\n")
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            nrows,
            ncols,
            figsize=(width, height),
            sharex=True,
            sharey=True,
            squeeze=False,
            layout="constrained",
        )
        handles: dict[str, Any] = {}
        for ax, (value, groups) in zip(axes.flat, figure.panels, strict=False):
            for group in groups:
                line = draw_group(ax, group, figure, figure.styles[group.label])
                handles.setdefault(figure.legend[group.label], line)
            if figure.facet is not None:
                ax.set_title(describe({figure.facet: value}) or unset([figure.facet]))
            style_axes(ax, figure)
        for i, ax in enumerate(axes.flat):
            row, col = divmod(i, ncols)
            if i >= count:  # an empty slot of the last row: the panel above shows the x axis
                ax.set_visible(False)
                axes[row - 1, col].xaxis.set_tick_params(labelbottom=True)
                axes[row - 1, col].set_xlabel(figure.x_label)
                continue
            if col == 0:
                ax.set_ylabel(METRIC_LABELS.get(figure.metric, figure.metric.replace("_", " ")))
            if row == nrows - 1:
                ax.set_xlabel(figure.x_label)
        fig.suptitle(title)
        if len(handles) > 1 or any(figure.legend[k] != k for k in figure.legend):
            add_legend(fig, handles)
    return fig


def add_legend(fig, handles: dict[str, Any]) -> None:
    """Below the panels, in as many columns (up to 4) as fit the figure's width; the figure
    grows by the legend's rows so that the panels keep their size."""
    renderer = fig.canvas.get_renderer()
    for ncols in range(min(len(handles), 4), 0, -1):
        legend = fig.legend(
            handles.values(),
            handles.keys(),
            loc="outside lower center",
            ncols=ncols,
            frameon=False,
        )
        if ncols == 1 or legend.get_window_extent(renderer).width <= 0.97 * fig.bbox.width:
            break
        legend.remove()
    rows = -(-len(handles) // ncols)
    width, height = fig.get_size_inches()
    fig.set_size_inches(width, height + 0.3 + 0.22 * rows)


def style_axes(ax, figure: Figure) -> None:
    from matplotlib.ticker import (
        EngFormatter,
        FuncFormatter,
        LogLocator,
        MaxNLocator,
        NullFormatter,
    )

    ax.grid(True, alpha=0.3, linewidth=0.6)
    if figure.x_column == "round":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    elif figure.x_column == "bytes_up":
        ax.xaxis.set_major_formatter(EngFormatter(unit="B"))
    if figure.logy:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())


def draw_group(ax, group: Group, figure: Figure, look: Look):
    """The mean over seeds as a line, ±1 sample std as a band (where 2+ seeds have the round)."""
    runs = group.logged
    stats = mean_std(seed_table(runs, figure.metric, figure.smooth))
    xs = seed_table(runs, figure.x_column).mean(axis=1).reindex(stats.index)
    (line,) = ax.plot(
        xs,
        stats["mean"],
        color=look.color,
        linestyle=look.linestyle,
        marker=look.marker,
        markevery=MARK_EVERY,
        markersize=5,
        linewidth=1.8,
    )
    if (stats["n"] > 1).any():
        ax.fill_between(
            xs,
            stats["mean"] - stats["std"],
            stats["mean"] + stats["std"],
            color=look.color,
            alpha=0.2,
            linewidth=0,
        )
    return line
