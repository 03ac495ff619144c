"""Tables from run dirs: per group of runs, final and best metric (mean ± std over seeds), rounds,
bytes and seconds to a target, fairness and privacy columns when logged, and the speed-up in
rounds to target against a baseline. Reads run.json and rounds.csv only (through flcli.runs)."""

import csv
import functools
import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flcli.errors import FLError
from flcli.runs import Group, Run, lower_is_better, pooling_notes, require_columns, spread

FORMATS = ("table", "markdown", "csv")
FAIRNESS = "client_accuracy_p10"
PERSONAL = "personal_accuracy"
PRIVACY = "epsilon"
DENSE = "dense_bytes"  # rounds.csv of a compressed run: each round's updates' size uncompressed
OPTIONAL = {  # rounds.csv columns reported (their final value) when some run has them
    FAIRNESS: "p10 client accuracy",
    PERSONAL: "personal accuracy",
    PRIVACY: "ε",
}


@dataclass
class Report:
    metric: str
    keys: list[str]  # the group keys, one column each
    target: float | None
    baseline: str | None  # the baseline group's value, e.g. "fedavg"; None: no speed-up column
    rows: list[dict[str, Any]]  # raw numbers, one dict per group (see summarize_group)
    notes: list[str] = field(default_factory=list)

    @property
    def show_status(self) -> bool:
        """A status column only when some run is not completed (or has no rounds.csv)."""
        return any(row["status"] != "completed" for row in self.rows)

    @property
    def optional(self) -> list[str]:
        """The optional columns some group has: fairness, personalization, privacy."""
        return [c for c in OPTIONAL if any(f"{c}_mean" in row for row in self.rows)]

    @property
    def compressed(self) -> bool:
        """A compression-ratio column only when some run compressed its updates."""
        return any("compression_mean" in row for row in self.rows)


@dataclass(frozen=True)
class Reached:
    """Where one run first reached the target: the round, bytes sent up, seconds, simulated
    seconds (NaN for runs logged before the clock)."""

    round: float
    bytes_up: float
    seconds: float
    sim_seconds: float


def reached(run: Run, metric: str, target: float) -> Reached | None:
    """The first logged round at which `metric` reaches `target` (at least it; at most it for a
    loss-like metric), or None when it never does."""
    values = run.column(metric).to_numpy()
    hits = values <= target if lower_is_better(metric) else values >= target
    if not hits.any():
        return None
    i = int(np.argmax(hits))
    return Reached(
        float(run.column("round").iloc[i]),
        float(run.column("bytes_up").iloc[i]),
        float(run.column("elapsed_s").iloc[i]),
        float(run.rounds["sim_time_s"].iloc[i]) if "sim_time_s" in run.rounds else math.nan,
    )


def summarize_group(group: Group, metric: str, target: float | None) -> dict[str, Any]:
    runs = group.logged
    row: dict[str, Any] = {**group.values, "seeds": len(runs), "status": group.status}
    if not runs:
        return row
    pick_best = np.nanmin if lower_is_better(metric) else np.nanmax
    row["rounds_min"] = int(min(run.column("round").iloc[-1] for run in runs))
    row["rounds_max"] = int(max(run.column("round").iloc[-1] for run in runs))
    row["final_mean"], row["final_std"] = spread([run.column(metric).iloc[-1] for run in runs])
    row["best_mean"], row["best_std"] = spread([pick_best(run.column(metric)) for run in runs])
    for column in OPTIONAL:
        having = [run for run in runs if column in run.rounds.columns]
        if having:
            finals = [run.column(column).dropna().iloc[-1] for run in having]
            row[f"{column}_mean"], row[f"{column}_std"] = spread(finals)
    compressed = [run for run in runs if DENSE in run.rounds.columns]
    if compressed:
        ratios = [compression_ratio(run) for run in compressed]
        row["compression_mean"], row["compression_std"] = spread(ratios)
    if target is not None:
        hits = [hit for hit in (reached(run, metric, target) for run in runs) if hit]
        row["reached"] = len(hits)
        for name in ("round", "bytes_up", "seconds", "sim_seconds"):
            mean, std = spread([getattr(hit, name) for hit in hits])
            row[f"{name}_to_target_mean"], row[f"{name}_to_target_std"] = mean, std
    return row


def compression_ratio(run: Run) -> float:
    """Bytes the run's updates would have taken dense / the bytes it sent up (over all rounds)."""
    sent = float(run.column("bytes_up").iloc[-1])
    return float(run.column(DENSE).sum()) / sent if sent else math.nan


def baseline_groups(groups: list[Group], baseline: str, explicit: bool) -> list[Group | None]:
    """For each group, its baseline: the group whose value of some group key equals `baseline`
    (e.g. algo = fedavg; "key=value" names the key) and whose other keys match this group's, or
    are unset in the baseline (so fedprox, μ=0.01 at α=0.1 is compared with fedavg at α=0.1).
    None where there is none."""
    keys = list(groups[0].values) if groups else []
    if "=" in baseline:
        key, wanted = baseline.split("=", 1)
        candidates = [key] if key in keys else []
    else:
        wanted = baseline
        candidates = [k for k in keys if any(str(g.values[k]) == wanted for g in groups)]
    if not candidates:
        if explicit:
            labels = "; ".join(g.label for g in groups)
            raise FLError(f"--baseline {baseline!r} names no group; the groups: {labels}")
        return [None] * len(groups)
    key = candidates[0]
    matches = [g for g in groups if str(g.values[key]) == wanted]
    if not matches and explicit:
        values = ", ".join(sorted({str(g.values[key]) for g in groups}))
        raise FLError(
            f"--baseline {baseline!r}: no group has {key} = {wanted!r}; its values: {values}"
        )
    found: list[Group | None] = []
    for group in groups:
        others = [k for k in keys if k != key]
        fits = [b for b in matches if all(b.values[k] in (group.values[k], None) for k in others)]
        fits.sort(key=lambda b: -sum(b.values[k] == group.values[k] for k in others))
        found.append(fits[0] if fits else None)
    return found


def summarize(
    groups: list[Group],
    metric: str,
    target: float | None = None,
    baseline: str | None = None,
) -> Report:
    """One row of raw numbers per group. `baseline` None means fedavg when there is such a
    group; the speed-up is the baseline's mean rounds to target over the group's."""
    if target is not None and metric.endswith("accuracy") and not 0 < target <= 1:
        raise FLError(f"--target-accuracy {target} must be a fraction in (0, 1], e.g. 0.9")
    if baseline is not None and target is None:
        raise FLError("--baseline compares rounds to reach a target; give --target-accuracy T")
    needed = [metric] if target is None else [metric, "bytes_up", "elapsed_s"]
    require_columns([run for group in groups for run in group.logged], needed)
    rows = [summarize_group(group, metric, target) for group in groups]
    keys = list(groups[0].values) if groups else []
    matched = None
    if target is not None:
        bases = baseline_groups(groups, baseline or "fedavg", explicit=baseline is not None)
        if any(bases):
            matched = baseline or "fedavg"
            for row, base in zip(rows, bases, strict=True):
                base_row = rows[groups.index(base)] if base else None
                row["speedup"] = speedup(base_row, row)
                row["speedup_above"] = speedup_bound(base_row, row)
    return Report(metric, keys, target, matched, rows, pooling_notes(groups, "--group-by"))


def speedup(base: dict | None, row: dict) -> float:
    """Baseline's mean rounds to target / this group's; NaN unless every seed of both reached."""
    if base is None or not all_reached(base) or not all_reached(row):
        return math.nan
    return base["round_to_target_mean"] / max(row["round_to_target_mean"], 1e-12)


def speedup_bound(base: dict | None, row: dict) -> float:
    """When no seed of the baseline reached the target and every seed of this group did: the
    speed-up is above the baseline's shortest run (in rounds) / the group's mean rounds to target.
    NaN otherwise."""
    if base is None or not base.get("seeds") or base.get("reached") or not all_reached(row):
        return math.nan
    return base["rounds_min"] / max(row["round_to_target_mean"], 1e-12)


def all_reached(row: dict) -> bool:
    return row.get("seeds", 0) > 0 and row.get("reached") == row["seeds"]


# --- text -----------------------------------------------------------------------------------


def number(value: float, like: float | None = None) -> str:
    """Three decimals, or none from 1,000 up; `like` gives the magnitude that decides (a std is
    written as precisely as its mean)."""
    if abs(value if like is None else like) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3f}"


def plus_minus(mean: float, std: float, fmt=None, unit: str = "") -> str:
    if math.isnan(mean):
        return "–"
    if fmt is None:
        fmt = functools.partial(number, like=mean)
    if math.isnan(std):
        return f"{fmt(mean)}{unit}"
    return f"{fmt(mean)} ± {fmt(std)}{unit}"


def byte_unit(value: float) -> tuple[str, float]:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= scale:
            return unit, scale
    return "B", 1.0


def to_target(row: dict, name: str, fmt, unit: str = "") -> str:
    if row.get("reached", 0) == 0:
        return "not reached" if row.get("seeds") else "–"
    mean, std = row[f"{name}_to_target_mean"], row[f"{name}_to_target_std"]
    if name == "bytes_up":  # one unit for mean and std
        unit, scale = byte_unit(mean)
        mean, std, unit = mean / scale, std / scale, f" {unit}"
    text = plus_minus(mean, std, fmt, unit)
    if row["reached"] < row["seeds"]:
        text += f" ({row['reached']}/{row['seeds']})"
    return text


def metric_name(metric: str) -> str:
    return {"test_accuracy": "accuracy", "test_r2": "R²", "test_mse": "MSE"}.get(metric, metric)


def header_of(report: Report) -> list[str]:
    name = metric_name(report.metric)
    header = [k if k != "algo" else "algorithm" for k in report.keys] or ["runs"]
    header += ["seeds", "status"] if report.show_status else ["seeds"]
    header += ["last round", f"final {name}", f"best {name}"]
    if report.target is not None:
        goal = f"{report.target:g}"
        header += [f"rounds to {goal}", f"bytes up to {goal}", f"seconds to {goal}"]
        header.append(f"simulated s to {goal}")
    header += [OPTIONAL[c] for c in report.optional]
    if report.compressed:
        header.append("compression")
    if report.baseline is not None:
        header.append(f"speed-up vs {report.baseline}")
    return header


def caption(report: Report) -> str:
    """What the numbers are, in one paragraph."""
    parts = [
        f"{report.metric}: mean ± sample std over seeds; final = last logged round, "
        f"best = {'lowest' if lower_is_better(report.metric) else 'highest'} over rounds."
    ]
    if report.target is not None:
        parts.append(
            f"To {report.target:g}: first round (and cumulative bytes sent up, seconds) at which "
            "a seed reached it, averaged over the seeds that did; (k/n): only k of n seeds did."
        )
    if report.baseline is not None:
        parts.append(
            f"Speed-up: {report.baseline}'s mean rounds to target / the group's (when every seed "
            f"of both reached it); >x: {report.baseline} never reached it, x = its shortest run's "
            "rounds / the group's mean."
        )
    if report.compressed:
        parts.append(
            "Compression: the bytes the updates would have taken as dense vectors / the bytes "
            "sent up (--compress counts each message's exact bits); – for a dense run."
        )
    if FAIRNESS in report.optional:
        parts.append(
            "p10 client accuracy: the 10th percentile, over the clients sampled in the last "
            "round, of the global model's accuracy on each one's own training rows."
        )
    return " ".join(parts)


def text_cells(report: Report) -> tuple[list[str], list[list[str]]]:
    """The report as a header and rows of strings (the terminal table and markdown share it)."""
    return header_of(report), [cells_of(report, row) for row in report.rows]


def to_markdown(report: Report) -> str:
    header, rows = text_cells(report)
    width = len(report.keys) or 1
    align = ["---"] * width + ["---:"] * (len(header) - width)
    if report.show_status:
        align[width + 1] = "---"  # status is text
    lines = [header, align, *rows]
    table = "\n".join(
        "| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines
    )
    return f"{table}\n\n{caption(report)}\n"


def to_csv(report: Report) -> str:
    """Raw numbers, one row per group, for further analysis."""
    columns: list[str] = []
    for row in report.rows:
        columns += [c for c in row if c not in columns]
    columns = ["metric", "target", *columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        values = {"metric": report.metric, "target": report.target, **row}
        writer.writerow(
            {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}
        )
    return buffer.getvalue()


def cells_of(report: Report, row: dict) -> list[str]:
    cells = [str(row[k]) if row[k] is not None else "–" for k in report.keys]
    cells = cells or ["all runs"]
    cells += [str(row["seeds"]), row["status"]] if report.show_status else [str(row["seeds"])]
    if "final_mean" not in row:
        return cells + ["–"] * (len(header_of(report)) - len(cells))
    low, high = row["rounds_min"], row["rounds_max"]
    cells.append(str(high) if low == high else f"{low}–{high}")
    cells.append(plus_minus(row["final_mean"], row["final_std"]))
    cells.append(plus_minus(row["best_mean"], row["best_std"]))
    if report.target is not None:
        cells.append(to_target(row, "round", lambda v: f"{v:.1f}"))
        cells.append(to_target(row, "bytes_up", lambda v: f"{v:.1f}"))
        cells.append(to_target(row, "seconds", lambda v: f"{v:.2f}"))
        cells.append(to_target(row, "sim_seconds", lambda v: f"{v:.2f}"))
    for column in report.optional:
        cells.append(
            plus_minus(row.get(f"{column}_mean", math.nan), row.get(f"{column}_std", math.nan))
        )
    if report.compressed:
        mean, std = row.get("compression_mean", math.nan), row.get("compression_std", math.nan)
        cells.append(plus_minus(mean, std, lambda v: f"{v:.1f}", "×"))
    if report.baseline is not None:
        value, above = row.get("speedup", math.nan), row.get("speedup_above", math.nan)
        if not math.isnan(value):
            cells.append(f"{value:.2f}×")
        else:
            cells.append("–" if math.isnan(above) else f">{above:.2f}×")
    return cells
