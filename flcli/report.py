"""Tables from run dirs: per group of runs, final and best metric (mean ± std over seeds), rounds,
bytes and seconds to a target, fairness and privacy columns when logged, and the speed-up in
rounds to target against a baseline. Reads run.json and rounds.csv only (through flcli.runs)."""

import csv
import functools
import io
import math
import textwrap
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flcli.errors import FLError
from flcli.runs import (
    Group,
    Run,
    chance_notes,
    describe,
    display_name,
    final_value,
    lower_is_better,
    parse_final,
    pooling_notes,
    require_columns,
    spread,
)

FORMATS = ("table", "markdown", "csv", "latex")
FAIRNESS = "client_accuracy_p10"
PERSONAL = "personal_accuracy"
PRIVACY = "epsilon"
DENSE = "dense_bytes"  # rounds.csv of a compressed run: each round's updates' size uncompressed
SPREAD = {"mean": "mean", "std": "std", "p10": "p10", "p90": "p90", "jain": "Jain", "gini": "Gini"}
OPTIONAL = {  # rounds.csv columns reported (their final value) when some run has them
    **{f"client_accuracy_{k}": f"{label} client accuracy" for k, label in SPREAD.items()},
    PERSONAL: "personal accuracy",
    **{
        f"{PERSONAL}_{k}": f"{label} personal accuracy"
        for k, label in SPREAD.items()
        if k != "mean"
    },
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
    final: tuple[str, int] = ("last", 1)
    ci: float | None = None  # percent: the final column's ± is this t-interval, not the std
    pivot: tuple[str, str] | None = None  # (row key, column key)
    # the paired tests of --compare A B: one, or one per value of the other keys (a partition)
    comparisons: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label_columns(self) -> int:
        """How many leading columns of text_cells are labels rather than numbers."""
        return 1 if self.pivot else max(len(self.keys), 1)

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
    """The first evaluated round at which `metric` reaches `target` (at least it; at most it for
    a loss-like metric), or None when it never does."""
    values = run.measured(metric).to_numpy()
    hits = values <= target if lower_is_better(metric) else values >= target
    if not hits.any():
        return None
    i = int(np.argmax(hits))
    rows = run.evaluated
    return Reached(
        float(run.measured("round").iloc[i]),
        float(run.measured("bytes_up").iloc[i]),
        float(run.measured("elapsed_s").iloc[i]),
        float(rows["sim_time_s"].iloc[i]) if "sim_time_s" in rows else math.nan,
    )


def t_interval(values: list[float], level: float) -> float:
    """Half-width of the two-sided `level`% t confidence interval of the mean (n - 1 degrees of
    freedom); NaN for fewer than two values."""
    from scipy import stats

    if len(values) < 2:
        return math.nan
    sem = stats.sem(values)
    return float(sem * stats.t.ppf(0.5 + level / 200, len(values) - 1))


def summarize_group(
    group: Group,
    metric: str,
    target: float | None,
    final: tuple[str, int] = ("last", 1),
    ci: float | None = None,
) -> dict[str, Any]:
    runs = group.logged
    row: dict[str, Any] = {**group.values, "seeds": len(runs), "status": group.status}
    if not runs:
        return row
    row["rounds_min"] = int(min(run.column("round").iloc[-1] for run in runs))
    row["rounds_max"] = int(max(run.column("round").iloc[-1] for run in runs))
    finals = [final_value(run, metric, final) for run in runs]
    row["final_mean"], row["final_std"] = spread(finals)
    if ci is not None:
        row["final_ci"] = t_interval(finals, ci)
    best = [final_value(run, metric, ("best", 1)) for run in runs]
    row["best_mean"], row["best_std"] = spread(best)
    for column in OPTIONAL:
        having = [run for run in runs if column in run.rounds.columns]
        if having:
            finals = [run.measured(column).dropna().iloc[-1] for run in having]
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
    final: str = "last",
    ci: float | None = None,
    pivot: tuple[str, str] | None = None,
    compare: tuple[str, str] | None = None,
) -> Report:
    """One row of raw numbers per group. `baseline` None means fedavg when there is such a
    group; the speed-up is the baseline's mean rounds to target over the group's. `final`:
    last, last-k:K or best; `ci`: a t-interval at that percent for the final metric; `pivot`:
    (row key, column key), the groups' keys; `compare`: two groups for a paired test."""
    if ci is not None and not 0 < ci < 100:
        raise FLError(f"--ci {ci:g} must be a confidence level in percent, e.g. --ci 95")
    kind = parse_final(final)
    if target is not None and metric.endswith("accuracy") and not 0 < target <= 1:
        raise FLError(f"--target-accuracy {target} must be a fraction in (0, 1], e.g. 0.9")
    if baseline is not None and target is None:
        raise FLError("--baseline compares rounds to reach a target; give --target-accuracy T")
    needed = [metric] if target is None else [metric, "bytes_up", "elapsed_s"]
    require_columns([run for group in groups for run in group.logged], needed)
    rows = [summarize_group(group, metric, target, kind, ci) for group in groups]
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
    comparisons = [
        paired_test(pair, metric, kind, compare) for pair in compared_pairs(groups, compare or ())
    ]
    notes = pooling_notes(groups, "--group-by") + chance_notes(groups)
    return Report(
        metric, keys, target, matched, rows, notes, kind, ci,
        pivot, comparisons,
    )  # fmt: skip


def matching(groups: list[Group], name: str) -> list[Group]:
    """The groups that --compare's A or B names: by label, else by one of their values."""
    return [g for g in groups if g.label == name] or [
        g for g in groups if name in {str(v) for v in g.values.values()}
    ]


def compared_pairs(groups: list[Group], names) -> list[tuple[Group, Group]]:
    """The pairs of groups --compare A B tests: the one group each names, or, when A and B each
    name several (fedavg and fedprox on several partitions), the pairs that agree on every other
    key, one per value of those keys."""
    if not names:
        return []
    found = [matching(groups, name) for name in names]
    labels = "; ".join(g.label for g in groups)
    for name, hits in zip(names, found, strict=True):
        if not hits:
            raise FLError(f"--compare {name!r} names no group; give one of the groups: {labels}")
    if len(found[0]) == 1 and len(found[1]) == 1:
        return [(found[0][0], found[1][0])]
    pairs = [(a, b) for a in found[0] for b in found[1] if a is not b and same_rest(a, b, names)]
    once = all(len({id(pair[k]) for pair in pairs}) == len(pairs) for k in (0, 1))
    if not pairs or not once:
        raise FLError(
            f"--compare {names[0]} {names[1]} names {len(found[0])} and {len(found[1])} groups "
            f"that do not pair up by their other settings; give two of the groups: {labels}"
        )
    return pairs


def same_rest(a: Group, b: Group, names) -> bool:
    """Whether two groups agree on every key but the ones --compare's names are values of."""
    named = {k for k in a.values if str(a.values[k]) == names[0] or str(b.values[k]) == names[1]}
    return all(a.values[k] == b.values[k] for k in a.values if k not in named)


def shared_values(a: Group, b: Group) -> dict[str, Any]:
    return {k: v for k, v in a.values.items() if b.values.get(k) == v}


def paired_test(
    pair: tuple[Group, Group], metric: str, final: tuple[str, int], names: tuple[str, str]
) -> dict[str, Any]:
    """A paired t-test (scipy.stats.ttest_rel, two-sided) of the final metric of two groups over
    the seeds both have: the mean difference A - B, its t, p, the number of pairs and the
    settings both groups share (`within`)."""
    from scipy import stats

    a, b = pair
    by_seed = [
        {run.settings.get("seed"): final_value(run, metric, final) for run in g.logged}
        for g in (a, b)
    ]
    seeds = sorted(set(by_seed[0]) & set(by_seed[1]), key=str)
    if len(seeds) < 2:
        raise FLError(
            f"--compare {names[0]} {names[1]}: a paired test needs 2 or more seeds run by both; "
            f"they share {len(seeds)}: run more seeds"
        )
    x = [by_seed[0][s] for s in seeds]
    y = [by_seed[1][s] for s in seeds]
    result = stats.ttest_rel(x, y)
    return {
        "a": a.label,
        "b": b.label,
        "within": describe(shared_values(a, b)),
        "pairs": len(seeds),
        "difference": float(np.mean(np.subtract(x, y))),
        "t": float(result.statistic),
        "p": float(result.pvalue),
        "test": "paired t-test (two-sided) over matched seeds",
    }


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
    header += ["last round", f"{final_name(report)} {name}", f"best {name}"]
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


def final_name(report: Report) -> str:
    kind, count = report.final
    return {"last": "final", "best": "best"}.get(kind, f"last-{count} mean")


def caption(report: Report) -> str:
    """What the numbers are, in one paragraph."""
    kind, count = report.final
    final = {"last": "last logged round", "best": "best over rounds"}.get(
        kind, f"mean of the last {count} logged rounds"
    )
    ns = sorted({row["seeds"] for row in report.rows})
    n = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}–{ns[-1]} (column seeds)"
    best = f", best = {'lowest' if lower_is_better(report.metric) else 'highest'} over rounds"
    parts = [
        f"{report.metric}: mean ± sample std over seeds ({n} per group; copies of a run count "
        f"once); {final_name(report)} = {final}{'' if report.pivot else best}."
    ]
    if report.ci is not None:
        parts.append(
            f"The {final_name(report)} column's ± is the {report.ci:g}% confidence interval of "
            "the mean (Student's t, n − 1 degrees of freedom)."
        )
    parts.extend(comparison_text(result) for result in report.comparisons)
    if report.pivot:  # a pivot shows the final metric alone: nothing else to explain
        return " ".join(parts)
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
            "round, of the global model's accuracy on each one's own training rows (p90 the "
            "90th; Jain: (sum a)^2 / (n sum a^2), 1 when all clients score alike; Gini: the mean "
            "absolute difference between clients over twice the mean, 0 when alike)."
        )
    if f"{PERSONAL}_p10" in report.optional:
        parts.append(
            "Personal accuracy: each client's own model on its local test split, pooled over "
            "the clients of the last round; its std, p10, p90, Jain and Gini are over those "
            "clients' accuracies."
        )
    return " ".join(parts)


def text_cells(report: Report) -> tuple[list[str], list[list[str]]]:
    """The report as a header and rows of strings (the terminal table and markdown share it);
    with a pivot, the final metric as rows x columns."""
    if report.pivot:
        header, rows, _ = pivot_cells(report)
        return header, rows
    return header_of(report), [cells_of(report, row) for row in report.rows]


def to_markdown(report: Report) -> str:
    header, rows = text_cells(report)
    width = report.label_columns
    align = ["---"] * width + ["---:"] * (len(header) - width)
    if report.show_status and not report.pivot:
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
    cells.append(plus_minus(row["final_mean"], final_spread(report, row)))
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


def comparison_text(result: dict[str, Any]) -> str:
    within = result.get("within")
    return (
        (f"within {within}: " if within else "")
        + f"{result['a']} vs {result['b']}: mean difference {result['difference']:+.4f} over "
        f"{result['pairs']} matched seeds, t = {result['t']:.3f}, p = {result['p']:.4g} "
        f"({result['test']})."
    )


def final_spread(report: Report, row: dict) -> float:
    """The ± of the final column: the t-interval's half-width under --ci, else the std."""
    return row.get("final_ci", math.nan) if report.ci is not None else row["final_std"]


# --- pivot and LaTeX --------------------------------------------------------------------------


def best_index(means: list[float], metric: str) -> int | None:
    """Which of the means is best for the metric (the lowest loss, the highest accuracy); None
    when every one is NaN."""
    if all(math.isnan(m) for m in means):
        return None
    pick = np.nanargmin if lower_is_better(metric) else np.nanargmax
    return int(pick(means))


def pivot_cells(report: Report) -> tuple[list[str], list[list[str]], set[tuple[int, int]]]:
    """The final metric as a table of the pivot's row key x column key: a header, rows of
    strings (a cell's n in brackets when it differs from the most common n) and the (row,
    column) of the best mean of each column."""
    row_key, col_key = report.pivot
    from flcli.runs import sort_key

    def values(key: str) -> list[Any]:
        found = {repr(row[key]): row[key] for row in report.rows}
        return sorted(found.values(), key=lambda v: sort_key(key, v))

    rows_of, cols_of = values(row_key), values(col_key)
    cell = {(repr(row[row_key]), repr(row[col_key])): row for row in report.rows}
    counts = [row["seeds"] for row in report.rows]
    usual = max(set(counts), key=counts.count)
    header = [label_of(row_key, None), *(label_of(col_key, v) for v in cols_of)]
    body, best = [], set()
    for j, col in enumerate(cols_of, start=1):
        means = [cell.get((repr(r), repr(col)), {}).get("final_mean", math.nan) for r in rows_of]
        row = best_index(means, report.metric)
        if row is not None:
            best.add((row, j))
    for r in rows_of:
        line = [label_of(row_key, r)]
        for col in cols_of:
            row = cell.get((repr(r), repr(col)))
            if row is None or "final_mean" not in row:
                line.append("–")
                continue
            text = plus_minus(row["final_mean"], final_spread(report, row))
            line.append(text if row["seeds"] == usual else f"{text} (n={row['seeds']})")
        body.append(line)
    return header, body, best


def label_of(key: str, value: Any) -> str:
    """A pivot's row or column label: the algorithm's display name, "dirichlet(α=0.1)"."""
    if value is None:
        return "algorithm" if key == "algo" else key
    if key == "algo":
        return display_name(value)
    return describe({key: value})


LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
LATEX_SYMBOLS = {"±": r"$\pm$", "–": "--", "×": r"$\times$", "≥": r"$\geq$", "²": r"$^2$"}
LATEX_GREEK = {"α": "alpha", "β": "beta", "μ": "mu", "σ": "sigma", "ε": "epsilon", "δ": "delta"}


def latex_text(text: str) -> str:
    out = []
    for char in text:
        if char in LATEX_SPECIALS:
            out.append(LATEX_SPECIALS[char])
        elif char in LATEX_SYMBOLS:
            out.append(LATEX_SYMBOLS[char])
        elif char in LATEX_GREEK:
            out.append(f"$\\{LATEX_GREEK[char]}$")
        else:
            out.append(char)
    return "".join(out)


def to_latex(report: Report) -> str:
    """A booktabs tabular (\\usepackage{booktabs}) with the best mean of each column of the final
    metric in bold, and the caption as a comment above it; \\input it inside a table."""
    if report.pivot:
        header, rows, best = pivot_cells(report)
    else:
        header, rows = text_cells(report)
        column = header.index(next(h for h in header if h.endswith(metric_name(report.metric))))
        means = [row.get("final_mean", math.nan) for row in report.rows]
        row = best_index(means, report.metric)
        best = set() if row is None else {(row, column)}
    labels = report.label_columns
    spec = "l" * labels + "r" * (len(header) - labels)
    lines = [f"% {line}" for line in textwrap.wrap(caption(report), 96)]
    lines += [f"\\begin{{tabular}}{{{spec}}}", "\\toprule"]
    lines.append(" & ".join(latex_text(h) for h in header) + r" \\")
    lines.append("\\midrule")
    for i, row in enumerate(rows):
        cells = [latex_text(c) for c in row]
        for r, c in best:
            if r == i:
                cells[c] = f"\\textbf{{{cells[c]}}}"
        lines.append(" & ".join(cells) + r" \\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"
