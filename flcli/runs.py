"""Finding run dirs and grouping them over seeds: what `fl plot` and `fl report` share.

Reads run.json and rounds.csv only, never the models. A run's *settings* are its config, its
algorithm's parameters and its partition's description, flattened into one dict, so that any of
them can name a group (`--group-by algo,alpha`) or a panel (`--facet partition`).
"""

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flcli.config import NOT_IN_DIGEST
from flcli.engine.evalplan import EVALUATED
from flcli.errors import FLError

RUN_FILE = "run.json"
ROUNDS_FILE = "rounds.csv"
# Settings in which the repeats of one experiment differ (their seeds, how each was computed,
# saved and tracked): never a default group key.
REPEAT_KEYS = ("seed", "partition_seed", *NOT_IN_DIGEST)
# Partition params about the split rather than the scheme's shape: not part of `partition`.
SPLIT_PARAMS = (
    "test_size",
    "test_split",
    "min_samples",
    "min_samples_default",
    "client_test_fraction",
    "client_test_split",
)
# Metrics whose smaller values are better (the others: larger is better).
LOWER_IS_BETTER = re.compile(r"loss|mse|mae|rmse|error|epsilon")


@functools.cache
def algorithm_order() -> tuple[str, ...]:
    """The order algorithms are listed in: the registry's (baselines first); other names follow
    alphabetically."""
    from flcli.algorithms.registry import ALGORITHMS

    return tuple(ALGORITHMS)


def display_name(algo: str) -> str:
    """How an algorithm is named in a figure or table: its spec's display name (its paper's
    spelling), else as given."""
    from flcli.algorithms.registry import ALGORITHMS

    spec = ALGORITHMS.get(str(algo))
    return spec.display if spec is not None else str(algo)


@dataclass(frozen=True)
class Run:
    """One run dir: run.json's content and its rounds.csv (None when none was written yet)."""

    path: Path
    info: dict
    rounds: pd.DataFrame | None

    @property
    def status(self) -> str:
        return str(self.info.get("status", "unknown"))

    @property
    def settings(self) -> dict[str, Any]:
        return settings_of(self.info)

    def column(self, name: str) -> pd.Series:
        """A rounds.csv column; a one-line FLError naming the file and the column if absent."""
        if self.rounds is None:
            raise FLError(f"{self.path} has no {ROUNDS_FILE} yet (status {self.status})")
        if name not in self.rounds.columns:
            raise FLError(
                f"{self.path / ROUNDS_FILE} has no column {name!r}; "
                f"its columns: {', '.join(self.rounds.columns)}"
            )
        return self.rounds[name]

    @property
    def evaluated(self) -> pd.DataFrame:
        """rounds.csv's rows of the rounds whose metrics were measured: all of them, unless the
        run evaluated every K rounds (--eval-every), which marks its rows in `evaluated`."""
        self.column("round")
        if EVALUATED not in self.rounds.columns:
            return self.rounds
        return self.rounds[self.rounds[EVALUATED] == 1]

    def measured(self, name: str) -> pd.Series:
        """A rounds.csv column at the evaluated rounds only (see `evaluated`)."""
        self.column(name)
        return self.evaluated[name]


@dataclass(frozen=True)
class Group:
    """Runs that differ only in their seed (or in settings the user chose to pool)."""

    values: dict[str, Any]  # group key -> value
    runs: tuple[Run, ...]
    mixed: tuple[str, ...] = ()  # settings that differ inside the group besides the seed

    @property
    def label(self) -> str:
        return describe(self.values) or "all runs"

    @property
    def n(self) -> int:
        """How many runs (distinct config and seed: see merge_copies) its statistics average."""
        return len(self.logged)

    @property
    def logged(self) -> tuple[Run, ...]:
        """The runs that have a rounds.csv."""
        return tuple(run for run in self.runs if run.rounds is not None)

    @property
    def status(self) -> str:
        """ "completed" when all runs are, else counts: "2 completed; 1 running, no rounds.csv"."""
        counts: dict[str, int] = {}
        for run in self.runs:
            state = run.status if run.rounds is not None else f"{run.status}, no rounds.csv"
            counts[state] = counts.get(state, 0) + 1
        if len(counts) == 1:
            return next(iter(counts))
        return "; ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def unfinished(runs: list[Run]) -> str:
    """The status of the runs that are not completed, e.g. "1 running"; empty if all are."""
    counts: dict[str, int] = {}
    for run in runs:
        if run.status != "completed":
            counts[run.status] = counts.get(run.status, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def pooling_notes(groups: list[Group], remedy: str) -> list[str]:
    """A note for each group that averages runs differing in more than their seed."""
    return [
        f"group {g.label!r} pools runs that differ in {', '.join(g.mixed)}; "
        f"add them to {remedy} to separate them"
        for g in groups
        if g.mixed
    ]


def settings_of(info: dict) -> dict[str, Any]:
    """Flatten run.json into name -> value: config keys, partition keys (dataset, scheme,
    num_clients, partition_seed, and the scheme's params such as alpha), `partition` (the
    scheme with the params that shape it, e.g. "dirichlet(α=0.1)"), then the algorithm's
    hyperparameters (also as algo.NAME; a bare name the partition took, such as alpha, means the
    partition's) and the model's arguments (also as model.NAME)."""
    config = dict(info.get("config") or {})
    algo_args = config.pop("algo_args", None) or {}
    model_args = config.pop("model_args", None) or {}
    part = dict(info.get("partition_meta") or {})
    params = part.pop("params", None) or {}
    if "seed" in part:
        part["partition_seed"] = part.pop("seed")
    flat = {**config, **part, **params}
    if "scheme" in part:
        flat["partition"] = describe_partition(part["scheme"], params)
    for prefix, values in (("algo", algo_args), ("model", model_args)):
        for name, value in values.items():
            flat.setdefault(name, value)
            flat[f"{prefix}.{name}"] = value
    return flat


def describe_partition(scheme: str, params: dict) -> str:
    shape = {k: v for k, v in sorted(params.items()) if k not in SPLIT_PARAMS and v is not None}
    inside = ", ".join(describe_value(k, v) for k, v in shape.items())
    return f"{scheme}({inside})" if inside else str(scheme)


GREEK = {"alpha": "α", "beta": "β", "mu": "μ", "sigma": "σ", "epsilon": "ε", "delta": "δ"}
BARE = ("algo", "partition", "dataset", "model", "scheme")  # shown as the value alone


def describe_value(key: str, value: Any) -> str:
    if key in BARE:
        return str(value)
    if key == "num_clients":
        return f"{value} clients"
    if isinstance(value, float):
        value = f"{value:g}"
    return f"{GREEK.get(key, key)}={value}"


def describe(values: dict[str, Any]) -> str:
    """A short label for a group or panel: "fedprox, μ=0.01, dirichlet(α=0.1)"."""
    return ", ".join(describe_value(k, v) for k, v in values.items() if v is not None)


def identity(run: Run) -> str:
    """What a run is, as text: its settings (seed included) and its partition's hash, leaving
    out how it was computed. Two run dirs with one identity are copies of one run."""
    settings = {k: v for k, v in run.settings.items() if k not in NOT_IN_DIGEST}
    settings["partition_hash"] = run.info.get("partition_hash")
    return json.dumps(settings, sort_keys=True, default=str)


def merge_copies(runs: list[Run]) -> tuple[list[Run], list[str]]:
    """One run per identity, so that a copy (fl train --config RUN/run.json into another dir, a
    run trained twice) never counts as a second seed; keeps the completed run with the most
    rounds. Returns the runs kept, in their order, and a note per merged copy."""
    copies: dict[str, list[Run]] = {}
    for run in runs:
        copies.setdefault(identity(run), []).append(run)
    kept, notes = [], []
    for same in copies.values():
        best = max(same, key=lambda r: (r.status == "completed", rounds_logged(r)))
        kept.append(best)
        for other in same:
            if other is not best:
                notes.append(
                    f"{other.path} is a copy of {best.path} (same config and seed); counted once"
                )
    order = {id(run): i for i, run in enumerate(runs)}
    return sorted(kept, key=lambda run: order[id(run)]), notes


def rounds_logged(run: Run) -> int:
    return 0 if run.rounds is None else len(run.rounds)


def find_runs(paths: list[Path]) -> list[Run]:
    """Every run dir (a dir holding run.json) at or under the given paths, each read once."""
    found: dict[Path, None] = {}
    for path in map(Path, paths):
        if not path.exists():
            raise FLError(f"{path} does not exist; give run dirs or folders that contain them")
        for file in sorted(path.rglob(RUN_FILE)) if path.is_dir() else []:
            found[file.parent.resolve()] = None
    if not found:
        searched = ", ".join(str(p) for p in paths)
        raise FLError(f"no runs ({RUN_FILE}) found under {searched}; run fl train first")
    return [read_run(run_dir) for run_dir in found]


def read_run(run_dir: Path) -> Run:
    try:
        info = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError) as bad:
        raise FLError(
            f"{run_dir / RUN_FILE} is not readable JSON ({bad}); delete the run"
        ) from None
    if not isinstance(info, dict):
        raise FLError(f"{run_dir / RUN_FILE} does not hold a run description; delete the run")
    check_info_types(run_dir / RUN_FILE, info)
    file = run_dir / ROUNDS_FILE
    if not file.is_file():
        return Run(run_dir, info, None)
    try:
        rounds = pd.read_csv(file)
    except pd.errors.EmptyDataError:
        return Run(run_dir, info, None)
    except (OSError, ValueError) as bad:
        raise FLError(f"{file} is not a readable CSV ({bad})") from None
    if "round" not in rounds.columns:
        raise FLError(f"{file} has no column 'round'; is it a flcli rounds.csv?")
    numeric = rounds.select_dtypes("number").columns
    wrong = [c for c in rounds.columns if c not in numeric]
    if wrong:
        raise FLError(f"{file} has non-numeric values in column {wrong[0]!r}")
    return Run(run_dir, info, rounds.sort_values("round", ignore_index=True))


# what flcli writes in run.json under these keys (each may be absent or null)
INFO_TABLES = ("config", "given", "partition_meta", "versions")
INFO_TEXTS = ("status", "partition", "config_digest", "partition_hash")
NESTED_TABLES = (("config", "algo_args"), ("config", "model_args"), ("partition_meta", "params"))


def check_info_types(file: Path, info: dict) -> None:
    """A run.json edited by hand is one line naming the key, not a crash further on."""
    wrong = [(key, "a table") for key in INFO_TABLES if not isinstance(info.get(key) or {}, dict)]
    wrong += [(key, "a string") for key in INFO_TEXTS if not isinstance(info.get(key) or "", str)]
    for outer, key in NESTED_TABLES:
        inner = info.get(outer) or {}
        if isinstance(inner, dict) and not isinstance(inner.get(key) or {}, dict):
            wrong.append((f"{outer}.{key}", "a table"))
    if wrong:
        key, kind = wrong[0]
        raise FLError(
            f"{file}: {key!r} should be {kind}, as flcli wrote it; restore the file or delete "
            "the run"
        )


def require_columns(runs: list[Run], columns: list[str]) -> None:
    """Fail early, naming the first file and column missing, before anything is drawn."""
    for run in runs:
        for column in columns:
            run.column(column)


def check_keys(runs: list[Run], keys: list[str], flag: str) -> None:
    """Each key must be a setting of some run (runs without it get None, e.g. fedavg's mu)."""
    known: list[str] = []
    for run in runs:
        known += [k for k in run.settings if k not in known and not k.startswith("algo.")]
    for key in keys:
        if not any(key in run.settings for run in runs):
            where = runs[0].path / RUN_FILE if len(runs) == 1 else f"any of the {len(runs)} runs"
            raise FLError(f"{flag} {key!r} is not a setting of {where}; known: {', '.join(known)}")


def split_by(runs: list[Run], key: str) -> list[tuple[Any, list[Run]]]:
    """(value, runs) for each value of the setting `key`, values in natural order."""
    check_keys(runs, [key], "--facet")
    parts: dict[str, tuple[Any, list[Run]]] = {}
    for run in runs:
        value = run.settings.get(key)
        parts.setdefault(json.dumps(value, sort_keys=True, default=str), (value, []))[1].append(run)
    return sorted(parts.values(), key=lambda part: sort_key(key, part[0]))


def varying_keys(runs: list[Run]) -> list[str]:
    """Settings whose values differ between runs, apart from seeds and how a run was computed.
    `partition` stands for scheme and its params; `algo.NAME` duplicates are left out."""
    all_settings = [run.settings for run in runs]
    keys: list[str] = []
    for settings in all_settings:
        keys += [k for k in settings if k not in keys]
    partition_parts = {"scheme"} | {
        k
        for run in runs
        for k in (run.info.get("partition_meta") or {}).get("params") or {}
        if k not in SPLIT_PARAMS
    }
    varying = []
    for key in keys:
        if key in REPEAT_KEYS or key.startswith("algo.") or key in partition_parts:
            continue
        if len({json.dumps(s.get(key), sort_keys=True) for s in all_settings}) > 1:
            varying.append(key)
    if "algo" in varying:  # an algorithm's own defaults (its server_lr, say) say nothing new
        varying = ["algo"] + [k for k in varying if k != "algo" and not set_by_algo(runs, k)]
    return varying


def set_by_algo(runs: list[Run], key: str) -> bool:
    """Whether the setting `key` takes one value among the runs of each algorithm."""
    seen: dict[Any, str] = {}
    for run in runs:
        value = json.dumps(run.settings.get(key), sort_keys=True)
        if seen.setdefault(run.settings.get("algo"), value) != value:
            return False
    return True


def group_runs(
    runs: list[Run], keys: list[str] | None = None, within: str | None = None
) -> list[Group]:
    """Group runs by the values of `keys` (default: every setting that varies, seeds aside,
    within each value of the setting `within` — the facet — which is not itself a key).
    Groups come sorted: algorithms in the registry's order, then values in natural order."""
    if keys is None:
        keys = default_keys(runs, within)
    check_keys(runs, keys, "--group-by")
    buckets: dict[str, list[Run]] = {}
    values_of: dict[str, dict[str, Any]] = {}
    for run in runs:
        values = {key: run.settings.get(key) for key in keys}
        token = json.dumps(values, sort_keys=True, default=str)
        buckets.setdefault(token, []).append(run)
        values_of[token] = values
    groups = [
        Group(values_of[token], tuple(members), tuple(varying_keys(members)))
        for token, members in buckets.items()
    ]
    return sorted(groups, key=lambda g: [sort_key(k, v) for k, v in g.values.items()])


def default_keys(runs: list[Run], within: str | None) -> list[str]:
    if within is None:
        return varying_keys(runs)
    keys: list[str] = []
    for _, members in split_by(runs, within):
        keys += [k for k in varying_keys(members) if k not in keys and k != within]
    return keys


def sort_key(key: str, value: Any) -> tuple:
    if key == "algo" and value in algorithm_order():
        return (0, algorithm_order().index(value), "")
    if key in ("partition", "scheme") and value == "iid":  # the reference comes first
        return (0, 0.0, "")
    if key == "partition" and isinstance(value, str):  # dirichlet(α=0.1) before dirichlet(α=1)
        scheme, _, inside = value.partition("(")
        numbers = re.findall(r"=(-?[\d.]+(?:e-?\d+)?)", inside)
        if numbers:
            return (3, 0.0, scheme, *map(float, numbers))
    if value is None:
        return (1, -math.inf, "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (2, float(value), "")
    return (3, 0.0, str(value))


def parse_keys(text: str | None, flag: str) -> list[str] | None:
    """ "algo,alpha" -> ["algo", "alpha"]; None stays None (the default grouping)."""
    if text is None:
        return None
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise FLError(f"{flag} {text!r} names no setting; e.g. {flag} algo,alpha")
    return keys


def default_metric(runs: list[Run]) -> str:
    """test_accuracy for classification runs; for regression runs (no test_accuracy column),
    test_r2, else test_mse."""
    columns = {c for run in runs if run.rounds is not None for c in run.rounds.columns}
    for metric in ("test_accuracy", "test_r2", "test_mse"):
        if metric in columns:
            return metric
    return "test_accuracy"


def lower_is_better(metric: str) -> bool:
    return bool(LOWER_IS_BETTER.search(metric))


def seed_table(runs: tuple[Run, ...], column: str, smooth: int | None = None) -> pd.DataFrame:
    """One row per evaluated round, one column per run: `column` of each run's rounds.csv at
    its evaluated rounds (optionally a centred moving average over `smooth` of them, narrower at
    the ends; round 0, the initial model, is kept as it is and not averaged into round 1),
    aligned on the round number."""
    series = []
    for i, run in enumerate(runs):
        values = run.measured(column).set_axis(run.measured("round").to_numpy())
        if smooth and smooth > 1:
            trained = values.index > 0
            smoothed = values[trained].rolling(smooth, center=True, min_periods=1).mean()
            values = pd.concat([values[~trained], smoothed])
        series.append(values.rename(i))
    return pd.concat(series, axis=1).sort_index()


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1) over seeds; the std is NaN for one seed."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        return math.nan, math.nan
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else math.nan


def mean_std(table: pd.DataFrame) -> pd.DataFrame:
    """spread() of each row over the seeds (columns) that have a value, and their number n."""
    return pd.DataFrame(
        {
            "mean": table.mean(axis=1),
            "std": table.std(axis=1, ddof=1),
            "n": table.notna().sum(axis=1),
        }
    )


FINAL_KINDS = "last, last-k:K (the mean of the last K rounds) or best"


def parse_final(text: str) -> tuple[str, int]:
    """--final last | last-k:K | best -> (kind, K); K is 1 unless last-k."""
    if text in ("last", "best"):
        return text, 1
    kind, _, count = text.partition(":")
    if kind == "last-k" and count.isdigit() and int(count) >= 1:
        return "last-k", int(count)
    raise FLError(f"--final {text!r} is not one of: {FINAL_KINDS}; e.g. --final last-k:5")


def final_value(run: Run, metric: str, final: tuple[str, int] = ("last", 1)) -> float:
    """The run's final metric: its last logged value, the mean of its last K evaluated rounds'
    values, or its best (lowest for a loss-like metric) over the evaluated rounds."""
    values = run.measured(metric).dropna()
    if values.empty:
        return math.nan
    kind, count = final
    if kind == "best":
        return float(values.min() if lower_is_better(metric) else values.max())
    return float(values.iloc[-count:].mean())


def num_classes_of(run: Run) -> int | None:
    """The run's number of classes: run.json's (flcli records it), else its partition's
    partition.json if that is still there; None for regression or when unknown."""
    recorded = run.info.get("num_classes")
    if recorded is not None:
        return int(recorded)
    where = run.info.get("partition")
    try:
        meta = json.loads((Path(where) / "partition.json").read_text()) if where else {}
    except (OSError, ValueError):
        return None
    found = meta.get("num_classes") if meta.get("task") != "regression" else None
    return int(found) if isinstance(found, int) else None


def chance_notes(groups: list[Group]) -> list[str]:
    """A note for each group whose final test accuracy (mean over its runs) is at or below
    chance, 1 / classes: such a group learnt nothing."""
    notes = []
    for group in groups:
        runs = [run for run in group.logged if "test_accuracy" in run.rounds.columns]
        classes = {num_classes_of(run) for run in runs}
        if len(classes) != 1 or None in classes:
            continue
        (num_classes,) = classes
        final = float(np.mean([final_value(run, "test_accuracy") for run in runs]))
        if final <= 1 / num_classes:
            notes.append(
                f"group {group.label!r} ends at test accuracy {final:.3g}, at or below chance "
                f"(1/{num_classes} = {1 / num_classes:.3g}): it learnt nothing; see the warnings "
                "in its run.json, and try a smaller --lr"
            )
    return notes


def metric_range(metric: str) -> tuple[float, float]:
    """The values a metric can take, for clipping a ±std band: [0, 1] for accuracies, (-inf, 1]
    for R², [0, inf) for losses, errors and ε."""
    if "accuracy" in metric and not metric.endswith("_std"):
        return 0.0, 1.0
    if metric.endswith("r2"):
        return -math.inf, 1.0
    if lower_is_better(metric) or metric.endswith("_std"):
        return 0.0, math.inf
    return -math.inf, math.inf
