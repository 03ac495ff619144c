"""Figures from run dirs: a mean line and a ±1 std band over seeds per group, one panel per
facet value. Reads run.json and rounds.csv only (through flcli.runs), never the models."""

import json
import math
import textwrap
import zlib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from flcli.errors import FLError
from flcli.fileio import atomic_save_figure
from flcli.runs import (
    GREEK,
    Group,
    Run,
    default_keys,
    describe,
    display_name,
    final_value,
    group_runs,
    mean_std,
    metric_range,
    parse_final,
    pooling_notes,
    require_columns,
    seed_table,
    sort_key,
    split_by,
    spread,
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
    "client_accuracy_p90": "90th-percentile client accuracy",
    "client_accuracy_jain": "Jain's index of client accuracy",
    "client_accuracy_gini": "Gini coefficient of client accuracy",
    "personal_accuracy": "Personalized accuracy",
    "personal_accuracy_mean": "Mean personal accuracy",
    "personal_accuracy_p10": "10th-percentile personal accuracy",
    "personal_accuracy_p90": "90th-percentile personal accuracy",
    "personal_accuracy_jain": "Jain's index of personal accuracy",
    "personal_accuracy_gini": "Gini coefficient of personal accuracy",
    "epsilon": "Privacy spent ε",
}
FORMATS = (".png", ".svg", ".pdf")
# One colour per registered algorithm (flcli.algorithms.registry), the same in every figure:
# Okabe-Ito's colour-blind-safe set first, then Paul Tol's. Algorithms of one family get hues
# far apart: FedAvg's variants (fedavg blue, fedsgd olive, fedavgm orange, fednova black,
# fedavglu grey) and the adaptive server optimizers (fedadam pink, fedyogi wine, fedadagrad
# indigo) are never shades of one colour.
ALGORITHM_COLORS = {
    "fedavg": "#0072B2",
    "fedprox": "#D55E00",
    "scaffold": "#009E73",
    "fedsgd": "#999933",
    "fedavgm": "#E69F00",
    "fedadam": "#CC79A7",
    "fedavglu": "#888888",
    "feddyn": "#8C564B",
    "fednova": "#000000",
    "fedyogi": "#882255",
    "fedadagrad": "#332288",
    "feddist": "#DDCC77",
    "qfedavg": "#8877FF",
    "ditto": "#AA4499",
    "fedbag": "#AABB99",
    "fedbuff": "#6B8E23",
    "fedasync": "#B8860B",
    "fedper": "#44AA99",
    "lg-fedavg": "#117733",
    "fedrep": "#EE7733",
    "fedbabu": "#0077BB",
    "ifca": "#CC3311",
    "cfl": "#33BBEE",
    "pfedme": "#BBBB00",
    "per-fedavg": "#EE3377",
    "apfl": "#009988",
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
    "pdf.fonttype": 42,  # TrueType, not Type 3: what IEEE PDF eXpress and ACM accept
    "ps.fonttype": 42,
    "svg.fonttype": "none",  # text stays text
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
    """What a group or panel is when its settings are all None (fedavg has no mu): "μ not set";
    "no DP" when they are all DP settings."""
    if all(key.startswith("dp_") for key in keys):
        return "no DP"
    if set(keys) <= {"compress", "compress_down", "error_feedback"}:
        return "no compression"
    return f"{', '.join(GREEK.get(key, key) for key in keys)} not set"


def shown_value(key: str, value: Any, labels: dict[str, str]) -> str:
    """One setting in a legend or panel title: the user's --label for it, else the algorithm's
    display name or "μ=0.01"."""
    text = describe({key: value})
    for name in (text, str(value)):
        if name in labels:
            return labels[name]
    if key == "algo":
        return display_name(value)
    return text


def name_of(group: Group, labels: dict[str, str] | None = None) -> str:
    """The group's legend entry: the user's label for the whole group, else its settings that
    are set ("FedProx, μ=0.01"), else what is unset ("μ not set")."""
    labels = labels or {}
    if group.label in labels:
        return labels[group.label]
    parts = [shown_value(k, v, labels) for k, v in group.values.items() if v is not None]
    if group.values and not parts:
        return unset(list(group.values))
    return ", ".join(parts) or group.label


TITLE_KEYS = ("dataset", "num_clients", "partition", "model", "clients_per_round", "fraction")
THREAT_KEYS = ("attack", "malicious", "aggregator", "dp_epsilon", "dp_clip", "dp_noise")


def title_of(runs: list[Run], facet: str | None, groups: list[Group], smooth: int | None) -> str:
    """What was run, from the settings all runs share: dataset, clients, partition, model,
    clients per round, and the attack and the privacy budget when they apply."""
    first = runs[0].settings
    shared = [
        key
        for key in ("algo", *TITLE_KEYS, *THREAT_KEYS)
        if key != facet and all(run.settings.get(key) == first.get(key) for run in runs)
    ]
    parts = [describe_value_for_title(key, first.get(key)) for key in shared]
    seeds = sorted({g.n for g in groups})
    how = []
    if seeds[-1] > 1:
        count = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
        how.append(f"mean ± 1 std over n = {count} seeds")
    else:
        how.append("n = 1 seed per line")
    if smooth and smooth > 1:
        how.append(f"moving average over {smooth} rounds")
    line = " · ".join(p for p in parts if p)
    return line + (f"\n{', '.join(how)}" if how else "")


def describe_value_for_title(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key == "algo":
        return display_name(value)
    if key == "model":
        return f"{value} model"
    if key == "clients_per_round":
        return f"{value} clients per round"
    if key == "fraction":
        return "all clients every round" if value == 1 else f"{value:.0%} of clients per round"
    if key == "attack":
        return f"attack: {value}"
    if key == "malicious":
        return f"{value:g} malicious"
    if key == "dp_epsilon":
        return f"DP ε={value:g}"
    if key == "aggregator":
        return "" if value == "mean" else f"{value} aggregation"
    return describe({key: value})


def panels_of(runs: list[Run], facet: str | None) -> list[tuple[Any, list[Run]]]:
    return [(None, runs)] if facet is None else split_by(runs, facet)


LEGENDS = ("below", "right", "none")


@dataclass(frozen=True)
class Layout:
    """How a figure is laid out and named, apart from what it shows."""

    labels: dict[str, str] = field(default_factory=dict)  # a value or a group label -> text
    title: str | None = None  # None: from the runs; "none": no title
    figsize: tuple[float, float] | None = None  # inches; None: from the panels
    ylim: tuple[float | None, float | None] | None = None
    legend: str = "below"
    font_size: float | None = None
    logx: bool = False  # a logarithmic x axis (bytes of compressed and dense runs side by side)

    def check(self) -> None:
        if self.legend not in LEGENDS:
            raise FLError(f"--legend {self.legend!r} is not one of: {', '.join(LEGENDS)}")
        if self.figsize is not None and min(self.figsize) <= 0:
            raise FLError(f"--figsize {self.figsize} must be two positive inches, e.g. 6.4x4")
        if self.font_size is not None and self.font_size <= 0:
            raise FLError(f"--font-size {self.font_size} must be positive points, e.g. 9")


@dataclass(frozen=True)
class Figure:
    """Everything render() needs: what goes in which panel, and how it looks."""

    panels: list[tuple[Any, list[Group]]]  # (facet value, its groups)
    styles: dict[str, Look]  # group label -> how its line is drawn
    legend: dict[str, str]  # group label -> legend entry (with unfinished runs noted)
    facet: str | None
    metric: str
    x_column: str  # a rounds.csv column, or the setting on the x axis (see `against`)
    x_label: str
    title: str
    smooth: int | None
    logy: bool
    notes: list[str]  # runs skipped, groups pooling settings, curves that coincide
    against: bool = False  # x is a setting: the final metric per value, with error bars
    final: tuple[str, int] = ("last", 1)
    layout: Layout = field(default_factory=Layout)
    # (panel value, group label) -> its look in that panel alone: markers where it coincides
    marked: dict[tuple[Any, str], Look] = field(default_factory=dict)

    def look(self, panel: Any, label: str) -> Look:
        return self.marked.get((panel, label), self.styles[label])


def plan_figure(
    runs: list[Run],
    metric: str = "test_accuracy",
    x: str = "round",
    group_by: list[str] | None = None,
    facet: str | None = None,
    smooth: int | None = None,
    logy: bool = False,
    final: str = "last",
    layout: Layout | None = None,
) -> Figure:
    """Check the options against the runs, split them into panels and groups, pick styles."""
    layout = layout or Layout()
    layout.check()
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
    against = x not in X_AXES
    if against and not any(x in run.settings for run in logged):
        raise FLError(
            f"--x {x!r} is not one of: {', '.join(X_AXES)}, nor a setting of the runs "
            f"(e.g. {', '.join(k for k in logged[0].settings if '.' not in k)})"
        )
    if against and facet == x:
        raise FLError(f"--x {x} and --facet {x} name one setting; facet by another")
    x_column, x_label = (x, axis_name(x)) if against else X_AXES[x]
    require_columns(logged, [metric] if against else [metric, x_column])
    keys = default_keys(logged, facet) if group_by is None else group_by
    keys = [k for k in keys if k != x]
    panels = [(value, group_runs(members, keys)) for value, members in panels_of(logged, facet)]
    every_group = [g for _, groups in panels for g in groups]
    styles = line_styles(every_group)
    legend = legend_entries(every_group, layout.labels)
    marked: dict[tuple[Any, str], Look] = {}
    if not against:
        notes += coinciding(panels, styles, legend, metric, smooth, marked)
    title = title_of(logged, facet, every_group, smooth)
    pooling = every_group
    if against:  # a point's n is its group's runs at one value of x
        pooling = [replace(g, mixed=tuple(k for k in g.mixed if k != x)) for g in every_group]
        title = against_title(title, every_group, x, final)
    return Figure(
        panels, styles, legend, facet, metric, x_column, x_label, title, smooth, logy,
        notes + pooling_notes(pooling, "--group-by or --facet"), against,
        parse_final(final), layout, marked,
    )  # fmt: skip


def against_title(title: str, groups: list[Group], x: str, final: str) -> str:
    """The title of a final-metric-against-x figure: n counted per point."""
    counts = [
        Counter(json.dumps(run.settings.get(x), default=str) for run in g.logged) for g in groups
    ]
    ns = sorted({n for count in counts for n in count.values()})
    first = title.split("\n")[0]
    count = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    return f"{first}\n{final_text(parse_final(final))}: mean ± 1 std over n = {count} seeds"


def axis_name(key: str) -> str:
    names = {"dp_epsilon": "Privacy budget ε", "malicious": "Fraction of malicious clients"}
    return names.get(key, GREEK.get(key, key.replace("_", " ")))


def final_text(final: tuple[str, int]) -> str:
    kind, count = final
    return {"last": "final value", "best": "best value"}.get(kind, f"mean of last {count} rounds")


def legend_entries(groups: list[Group], labels: dict[str, str]) -> dict[str, str]:
    """Group label -> legend entry: its name, unfinished runs, and n when groups differ in it."""
    ns = {g.n for g in groups}
    legend = {}
    for group in groups:
        same = [run for g in groups if g.label == group.label for run in g.runs]
        extra = [unfinished(same)] if unfinished(same) else []
        if len(ns) > 1:
            mine = sorted({g.n for g in groups if g.label == group.label})
            extra.append(f"n={mine[0]}" if len(mine) == 1 else f"n={mine[0]}–{mine[-1]}")
        name = name_of(group, labels)
        legend[group.label] = f"{name} ({'; '.join(extra)})" if extra else name
    return legend


COINCIDE = 0.005  # of the metric's range over the panel: closer curves look like one


def coinciding(panels, styles: dict[str, Look], legend, metric, smooth, marked) -> list[str]:
    """Curves of one panel that lie on each other: a note each, and a marker on the later one
    (placed between the earlier one's) so that both show, in that panel only (put in `marked`,
    by panel value and group label)."""
    notes = []
    for panel, groups in panels:
        means = {g.label: seed_table(g.logged, metric, smooth).mean(axis=1) for g in groups}
        values = pd.concat(list(means.values()))
        scale = max(float(values.max() - values.min()), 1e-12)
        for i, a in enumerate(groups):
            for b in groups[i + 1 :]:
                gap = (means[a.label] - means[b.label]).abs().max()
                if gap <= COINCIDE * scale:
                    look = marked.get((panel, b.label), styles[b.label])
                    taken = {*styles.values(), *(v for (p, _), v in marked.items() if p == panel)}
                    free = [m for m in MARKERS if Look(look.color, look.linestyle, m) not in taken]
                    if look.marker is None and free:
                        marked[(panel, b.label)] = Look(look.color, look.linestyle, free[0])
                    where = f" in panel {panel}" if panel is not None else ""
                    notes.append(
                        f"{legend[a.label]!r} and {legend[b.label]!r} coincide{where} (largest gap "
                        f"{gap:.2g}); the second is drawn with markers"
                    )
    return notes


def figure_path(out: Path | str) -> Path:
    """out as a Path, refused unless it ends in a format a figure is written in."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise FLError(f"--out {out}: give a file ending in {', '.join(FORMATS)}")
    return out


def save_figure(fig, out: Path) -> None:
    """Write fig to out in the house style, whole or not at all, and close it."""
    import matplotlib.pyplot as plt

    with plt.rc_context(STYLE):
        atomic_save_figure(out, fig, dpi=200)
    plt.close(fig)


def plot_runs(runs: list[Run], out: Path, **options: Any) -> PlotSummary:
    """Draw the options' metric for each group of runs (a mean line and a ±1 std band over
    seeds, or with a setting as x the final metric per value with error bars), one panel per
    facet value with shared axes; write it to `out`."""
    out = figure_path(out)
    figure = plan_figure(runs, **options)
    save_figure(render(figure), out)
    runs_drawn = sum(len(g.runs) for _, groups in figure.panels for g in groups)
    return PlotSummary(runs_drawn, len(figure.styles), len(figure.panels), figure.notes)


def render(figure: Figure):
    """The matplotlib figure (the caller saves and closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layout = figure.layout
    count = len(figure.panels)
    ncols = min(count, 3)
    nrows = -(-count // ncols)
    width = 6.4 if count == 1 else 3.6 * ncols + 0.6
    height = 4.0 if count == 1 else 3.0 * nrows + 0.4
    if layout.figsize is not None:
        width, height = layout.figsize
    title = figure.title if layout.title is None else layout.title
    title = "" if title == "none" else title
    title = "\n".join(  # wrapped to the figure's width (about 11 characters an inch)
        textwrap.fill(line, width=int(width * 11), break_on_hyphens=False)
        for line in title.split("\n")
    )
    if layout.figsize is None:
        height += 0.3 * title.count("\n")
    style = dict(STYLE)
    if layout.font_size is not None:
        size = layout.font_size
        style.update({"font.size": size, "axes.titlesize": size, "axes.labelsize": size})
        style.update({"legend.fontsize": size * 0.95, "xtick.labelsize": size * 0.9})
        style["ytick.labelsize"] = size * 0.9
    with plt.rc_context(style):
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
        plain: set[str] = set()  # legend entries whose handle has the line's look in every panel
        for ax, (value, groups) in zip(axes.flat, figure.panels, strict=False):
            for group in groups:
                draw = draw_points if figure.against else draw_group
                look = figure.look(value, group.label)
                line = draw(ax, group, figure, look)
                entry = figure.legend[group.label]
                if entry not in plain:  # a panel's markers go in the legend only if all have them
                    handles[entry] = handles[entry] if entry in handles and look.marker else line
                if look == figure.styles[group.label]:
                    plain.add(entry)
            if figure.facet is not None:
                shown = shown_value(figure.facet, value, layout.labels) if value is not None else ""
                ax.set_title(shown or unset([figure.facet]))
            style_axes(ax, figure)
        label_axes(axes, count, ncols, nrows, figure)
        if title:
            fig.suptitle(title)
        wanted = len(handles) > 1 or any(figure.legend[k] != k for k in figure.legend)
        if wanted and layout.legend != "none":
            add_legend(fig, handles, layout.legend)
    return fig


def label_axes(axes, count: int, ncols: int, nrows: int, figure: Figure) -> None:
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


def add_legend(fig, handles: dict[str, Any], where: str = "below") -> None:
    """Below the panels, in as many columns (up to 4) as fit the figure's width, or right of
    them in one column; entries too long for the canvas are wrapped, so that the legend never
    leaves it. The figure grows by the legend so that the panels keep their size."""
    renderer = fig.canvas.get_renderer()
    width, height = fig.get_size_inches()
    limit = 0.97 * fig.bbox.width if where == "below" else 0.45 * fig.bbox.width
    names = list(handles)
    widest = 1 if where == "right" else min(len(handles), 4)
    attempts = [(w, n) for w in (None, 60, 45, 32, 24, 18, 12) for n in range(widest, 0, -1)]
    for i, (wrap, ncols) in enumerate(attempts):
        legend = fig.legend(
            handles.values(),
            names if wrap is None else [textwrap.fill(name, wrap) for name in names],
            loc="outside lower center" if where == "below" else "outside right upper",
            ncols=ncols,
            frameon=False,
        )
        extent = legend.get_window_extent(renderer)
        if extent.width <= limit or i == len(attempts) - 1:
            break
        legend.remove()
    if where == "right":
        fig.set_size_inches(width + extent.width / fig.dpi + 0.2, height)
    else:
        fig.set_size_inches(width, height + 0.2 + extent.height / fig.dpi)


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
    if figure.layout.logx:
        ax.set_xscale("log", nonpositive="mask")  # round 0, at x = 0, is left out
    if figure.logy:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    if figure.layout.ylim is not None:
        ax.set_ylim(*figure.layout.ylim)


def draw_group(ax, group: Group, figure: Figure, look: Look):
    """The mean over seeds as a line, ±1 sample std as a band (where 2+ seeds have the round),
    the band clipped to the values the metric can take."""
    runs = group.logged
    stats = mean_std(seed_table(runs, figure.metric, figure.smooth))
    xs = seed_table(runs, figure.x_column).mean(axis=1).reindex(stats.index)
    (line,) = ax.plot(
        xs,
        stats["mean"],
        color=look.color,
        linestyle=look.linestyle,
        marker=look.marker,
        markevery=(MARK_EVERY / 2, MARK_EVERY) if look.marker else MARK_EVERY,
        markersize=5,
        linewidth=1.8,
    )
    if (stats["n"] > 1).any():
        low, high = metric_range(figure.metric)
        ax.fill_between(
            xs,
            (stats["mean"] - stats["std"]).clip(low, high),
            (stats["mean"] + stats["std"]).clip(low, high),
            color=look.color,
            alpha=0.2,
            linewidth=0,
        )
    return line


def draw_points(ax, group: Group, figure: Figure, look: Look):
    """The final metric against the setting figure.x_column: the mean over seeds per value with
    ±1 std error bars (clipped to the metric's range); runs without the setting (no DP, say) as
    a dashed horizontal line at their mean."""
    finals: dict[Any, list[float]] = {}
    for run in group.logged:
        value = run.settings.get(figure.x_column)
        finals.setdefault(value, []).append(final_value(run, figure.metric, figure.final))
    reference = finals.pop(None, None)
    low, high = metric_range(figure.metric)
    values = sorted(finals, key=lambda v: sort_key(figure.x_column, v))
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    xs = values if numeric else [str(v) for v in values]
    means, errors = [], [[], []]
    for value in values:
        mean, std = spread(finals[value])
        means.append(mean)
        std = 0.0 if math.isnan(std) else std
        errors[0].append(mean - max(mean - std, low))
        errors[1].append(min(mean + std, high) - mean)
    line = ax.errorbar(
        xs, means, yerr=errors, color=look.color, linestyle=look.linestyle,
        marker=look.marker or "o", markersize=5, linewidth=1.8, capsize=3,
    )  # fmt: skip
    if numeric and len(values) > 1 and min(values) > 0 and max(values) / min(values) >= 10:
        ax.set_xscale("log")
    if reference:
        ax.axhline(spread(reference)[0], color=look.color, linestyle="--", linewidth=1.2)
        unset_name = f"{axis_name(figure.x_column)} not set"
        ax.annotate(unset_name, (0.01, spread(reference)[0]), xycoords=("axes fraction", "data"),
                    fontsize="small", color=look.color, va="bottom")  # fmt: skip
    return line
