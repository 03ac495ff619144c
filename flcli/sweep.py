"""`fl sweep`: a grid of partitions x training runs from one TOML file, run in parallel.

The file:

    name = "noniid"                 # results go to results/noniid/
    [base]                          # fl partition and fl train options shared by every run
    dataset = "digits"
    clients = 20
    rounds = 50
    [grid]                          # lists; every combination is one run
    algo = ["fedavg", "fedprox"]
    seed = [0, 1, 2]
    partition = [{ scheme = "iid" }, { scheme = "dirichlet", alpha = 0.1 }]

A grid list of tables sets several options together (its key is only a label), for options that
only make sense together (alpha with the Dirichlet scheme, mu with FedProx). Which option is a
partition option and which a training option follows from PartitionConfig's and TrainConfig's
fields; `seed` seeds both, `partition_seed` only the partition.

Layout: results/<name>/partitions/<partition-id>/ (each distinct partition built once and shared)
and results/<name>/<run-id>/ named from the run's grid values (algo=fedprox,alpha=0.1,seed=2). A
run whose dir already holds a completed run of the same config and partition is skipped, so running
a sweep again does no work and an interrupted sweep continues where it stopped.
"""

import dataclasses
import hashlib
import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flcli import api
from flcli.assemble import check_alone
from flcli.config import TrainConfig
from flcli.configfile import hyperparameter_aliases, read_toml, train_keys, with_algo_args
from flcli.data.config import PartitionConfig
from flcli.errors import FLError
from flcli.names import check_name
from flcli.options import normalize_keys
from flcli.runjob import Outcome, train_run
from flcli.runlog import same_config
from flcli.tracking import require

# A partition id's hash is of the options as named before PartitionConfig, so that the partition
# dirs of an existing sweep keep their ids (and its done runs stay done).
HASHED_AS = {"clients": "num_clients"}
PARTITION_SEED = "partition_seed"
SHARED_KEYS = ("seed",)  # options that are both a partition and a training option


def partition_keys() -> list[str]:
    """The options of fl partition: PartitionConfig's fields."""
    return [item.name for item in dataclasses.fields(PartitionConfig)]


def known_keys() -> list[str]:
    """Partition options, training options and the algorithms' hyperparameters (mu, lambda)."""
    aliases = sorted(hyperparameter_aliases())
    return list(dict.fromkeys([*partition_keys(), PARTITION_SEED, *train_keys(), *aliases]))


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    out: Path
    partition_id: str
    partition_dir: Path
    partition_options: dict[str, Any]  # PartitionConfig's fields given: api.partition's options
    config: TrainConfig
    resolved: TrainConfig  # with the defaults that need no data filled: what its run.json holds


@dataclass(frozen=True)
class Sweep:
    name: str
    root: Path
    runs: list[PlannedRun]
    labels: dict[str, str] = field(default_factory=dict)  # [labels]: fl plot's legend names

    @property
    def num_partitions(self) -> int:
        return len({run.partition_id for run in self.runs})


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value)
    return "".join("_" if c in "/\\" or c.isspace() or not c.isprintable() else c for c in text)


def describe(items: list[tuple[str, Any]]) -> str:
    return ",".join(f"{key}={format_value(value)}" for key, value in items)


def _grid_axes(grid: dict[str, Any], where: str) -> list[list[list[tuple[str, Any]]]]:
    """Each grid key as a list of choices; a choice is the (key, value) pairs it sets."""
    axes = []
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise FLError(
                f"{where}: [grid] {key} = {values!r} must be a non-empty list, e.g. {key} = [0, 1]"
            )
        if all(isinstance(v, dict) for v in values):
            axes.append([list(dashes_to_underscores(v).items()) for v in values])
        elif any(isinstance(v, dict) for v in values):
            raise FLError(f"{where}: [grid] {key} mixes tables and values; use one or the other")
        else:
            axes.append([[(key.replace("-", "_"), value)] for value in values])
    return axes


MAX_RUNS = 100_000


def check_grid_size(axes: list[list], where: str) -> None:
    """A grid of more runs than MAX_RUNS is refused before any of them is planned."""
    count = math.prod(len(axis) for axis in axes)
    if count > MAX_RUNS:
        sizes = " x ".join(str(len(axis)) for axis in axes)
        raise FLError(
            f"{where}: the grid plans {count:,} runs ({sizes}), more than {MAX_RUNS:,}; "
            "shorten its lists or split it into several sweep files"
        )


def dashes_to_underscores(values: dict[str, Any]) -> dict[str, Any]:
    return {str(key).replace("-", "_"): value for key, value in values.items()}


def with_plugin_hyperparameters(options: dict[str, Any]) -> dict[str, Any]:
    """The run's options, with keys that are none of flcli's but are hyperparameters of the run's
    algorithm (a user's: `decay = [0.8, 0.9]` for --algo my_fl.py:fedavg_decay) moved into
    algo_args; any other key is one line listing the known ones."""
    from flcli.algorithms.registry import algorithm_spec

    known = known_keys()
    extra = [key for key in options if key not in known]
    if not extra:
        return options
    algo = options.get("algo", "fedavg")
    takes = list(algorithm_spec(algo).hyperparameters)
    unknown = sorted(set(extra) - set(takes))
    if unknown:
        raise FLError(
            f"unknown key(s) {', '.join(unknown)}; known keys: {', '.join(known)}, and "
            f"--algo {algo}'s hyperparameters: {', '.join(takes) or 'none'}"
        )
    table = options.get("algo_args", {})
    moved = {key: options[key] for key in extra}
    rest = {key: value for key, value in options.items() if key not in extra}
    return {**rest, "algo_args": {**moved, **(table if isinstance(table, dict) else {})}}


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(api.partition options, TrainConfig values) of one run's options."""
    partition_names, training = set(partition_keys()), set(train_keys())
    part = {k: v for k, v in options.items() if k in partition_names}
    aliases = hyperparameter_aliases()
    train = {k: v for k, v in options.items() if k in training or k in aliases}
    train = with_algo_args(train, "options")
    if PARTITION_SEED in options:
        part["seed"] = options[PARTITION_SEED]
    return part, train


def partition_id_of(items: list[tuple[str, Any]], options: dict[str, Any], seeded: bool) -> str:
    """Readable from the run's grid values that shape the partition, plus a hash of all of them
    (so that editing [base] never reuses a stale partition). seeded: a partition_seed is set, so
    the run's seed does not shape its partition."""
    shaping = (set(partition_keys()) - ({"seed"} if seeded else set())) | {PARTITION_SEED}
    readable = describe([(k, v) for k, v in items if k in shaping])
    hashed = {HASHED_AS.get(k, k): v for k, v in options.items()}
    text = json.dumps(hashed, sort_keys=True, default=str)
    digest = f"hash={hashlib.sha256(text.encode()).hexdigest()[:8]}"
    return f"{readable},{digest}" if readable else digest


def load_sweep(
    path: Path, out: Path | None = None, overrides: dict[str, Any] | None = None
) -> Sweep:
    """Read and check a sweep file; every run's config is validated before anything runs."""
    path = Path(path)
    where = str(path)
    data = read_toml(path)
    unknown = sorted(set(data) - {"name", "base", "grid", "labels"})
    if unknown:
        raise FLError(
            f"{where}: unknown top-level key(s) {', '.join(unknown)}; "
            "known: name, base, grid, labels"
        )
    labels = data.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise FLError(
            f"{where}: [labels] maps a value or a group to its legend name, "
            'e.g. fedprox = "FedProx"'
        )
    if "name" not in data:
        raise FLError(f'{where}: needs a top-level name = "...", e.g. name = "noniid"')
    name = check_name(data["name"], f"{where}: name", 'name = "noniid"')
    for table in ("base", "grid"):
        if not isinstance(data.get(table, {}), dict):
            raise FLError(
                f"{where}: {table} = {data[table]!r} must be a table: a [{table}] section, e.g. "
                + ('[base] dataset = "digits"' if table == "base" else "[grid] seed = [0, 1]")
            )
    base = dashes_to_underscores(data.get("base", {}))
    overrides = normalize_keys(overrides or {}, "options", known_keys())
    root = Path(out) if out is not None else Path("results") / name
    runs, seen = [], set()
    axes = _grid_axes(data.get("grid", {}), f"{where} [grid]")
    check_grid_size(axes, where)
    for combination in itertools.product(*axes):
        items = [pair for choice in combination for pair in choice]
        run_id = describe(items) or "run"
        if run_id in seen:
            raise FLError(f"{where}: the grid gives run {run_id} twice; make its values distinct")
        seen.add(run_id)
        options = {**base, **dict(items), **overrides}
        try:
            part, train = split_options(with_plugin_hyperparameters(options))
            config = TrainConfig.from_dict(train)
            resolved = check_alone(config)[0]
        except FLError as bad:
            raise FLError(f"{where}: run {run_id}: {bad}") from None
        partition_id = partition_id_of(items, part, seeded=PARTITION_SEED in options)
        runs.append(
            PlannedRun(
                run_id=run_id,
                out=root / run_id,
                partition_id=partition_id,
                partition_dir=root / "partitions" / partition_id,
                partition_options=part,
                config=config,
                resolved=resolved,
            )
        )
    return Sweep(name=name, root=root, runs=runs, labels=labels)


def is_done(run: PlannedRun) -> bool:
    """Whether run.out holds a completed run of this config on this partition (reads JSON only)."""
    return state(run) == "done"


def state(run: PlannedRun) -> str:
    """done, to run, resumes (an unfinished run of this config), or blocked (run.out holds a
    run of another config, which fl sweep will not overwrite). Reads JSON only; a run is its
    resolved config (so a plugin whose default changed is another run)."""
    try:
        info = json.loads((run.out / "run.json").read_text())
    except (OSError, ValueError):
        return "to run"
    try:
        partition = json.loads((run.partition_dir / "partition.json").read_text())
    except (OSError, ValueError):
        partition = {}  # not built yet: this run.json cannot be of it
    if not same_config(info, run.resolved) or (
        partition and info.get("partition_hash") != partition.get("hash")
    ):
        return f"blocked: {run.out} holds another run; delete it"
    if not partition:
        return "to run"
    return "done" if info.get("status") == "completed" else f"resumes ({info.get('status')})"


def _build(run: PlannedRun) -> Outcome:
    try:
        api.partition(run.partition_dir, **run.partition_options)
    except FLError as bad:
        return Outcome("partition", run.partition_id, "failed", str(bad))
    except Exception as bug:  # one broken partition must not take the sweep down
        return Outcome("partition", run.partition_id, "failed", f"{type(bug).__name__}: {bug}")
    return Outcome("partition", run.partition_id, "completed")


def _train(run: PlannedRun) -> Outcome:
    return train_run(run.partition_dir, run.config, run.out, run.run_id)


def _parallel(jobs: int):
    from joblib import Parallel

    return Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")


def check_runnable(sweep: Sweep) -> None:
    """FLError before anything is built when the sweep's runs cannot go where they are sent: a
    Ray sweep without Ray, or with a plugin file the nodes cannot be given; a tracker (track =
    "mlflow" in [base]) not installed or its URI unusable (checked once, and a new MLflow
    database is made before parallel runs would race to make it)."""
    configs = [run.config for run in sweep.runs if run.config.backend == "ray"]
    if configs:
        from flcli.cluster import check_cluster_sweep

        check_cluster_sweep(configs)
    for track, uri in dict.fromkeys((run.config.track, run.config.track_uri) for run in sweep.runs):
        if track is not None:
            require(track, uri)


def run_sweep(sweep: Sweep, jobs: int = 1) -> Iterator[Outcome]:
    """Build the missing partitions, then train the runs not yet done; one Outcome per partition
    built and per run, as they finish. Failures are reported, never raised.

    Runs are trained `jobs` at a time, except with the process backend, which spreads each run
    over the workers itself: its runs go one after another. With the ray backend each run is one
    Ray task on the cluster (flcli.cluster), `jobs` the CPUs of a local Ray started for it.
    """
    from joblib import delayed

    check_runnable(sweep)
    todo = []
    for run in sweep.runs:
        if is_done(run):
            yield Outcome("run", run.run_id, "skipped", record=_last_row(run.out))
        else:
            todo.append(run)
    needed = [run for run in _first_per_partition(todo) if not run.partition_dir.is_dir()]
    broken: set[str] = set()
    for outcome in _parallel(min(jobs, max(len(needed), 1)))(delayed(_build)(r) for r in needed):
        if outcome.status == "failed":
            broken.add(outcome.id)
        yield outcome
    ready = []
    for run in todo:
        if run.partition_id in broken:
            message = f"its partition {run.partition_id} failed (see above)"
            yield Outcome("run", run.run_id, "failed", message)
        else:
            ready.append(run)
    on_ray = [run for run in ready if run.config.backend == "ray"]
    here = [run for run in ready if run.config.backend != "ray"]
    if on_ray:
        from flcli.cluster import run_on_cluster

        yield from run_on_cluster(on_ray, jobs, on_ray[0].config.ray_address)
    if any(run.config.backend == "process" for run in here):
        for run in here:
            jobs_given = run.config.jobs is not None
            yield _train(run if jobs_given else replace(run, config=replace(run.config, jobs=jobs)))
    elif here:
        yield from _parallel(min(jobs, max(len(here), 1)))(delayed(_train)(r) for r in here)


def _first_per_partition(runs: list[PlannedRun]) -> list[PlannedRun]:
    first: dict[str, PlannedRun] = {}
    for run in runs:
        first.setdefault(run.partition_id, run)
    return list(first.values())


def _last_row(out: Path) -> dict:
    import pandas as pd

    try:
        return pd.read_csv(out / "rounds.csv").iloc[-1].to_dict()
    except (OSError, ValueError, IndexError):
        return {}


def _holds_planned(run: PlannedRun) -> bool:
    """Whether run.out holds a run of this planned config (any status); reads JSON only."""
    try:
        info = json.loads((run.out / "run.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and same_config(info, run.resolved)


def grid_runs(sweep: Sweep) -> list[Path]:
    """The run dirs of the sweep file's current grid that hold a run of their planned config:
    what `fl plot --sweep` and `fl report --sweep` read, and nothing else under its folder."""
    return [run.out for run in sweep.runs if _holds_planned(run)]


def stale_runs(sweep: Sweep) -> list[Path]:
    """Run dirs under the sweep's folder that its current grid does not plan (the grid changed,
    or a run of another config sits where a planned one goes): what `fl sweep --prune` lists."""
    planned = {run.out.resolve() for run in sweep.runs if _holds_planned(run)}
    partitions = (sweep.root / "partitions").resolve()
    if not sweep.root.is_dir():
        return []
    found = []
    for file in sorted(sweep.root.rglob("run.json")):
        run_dir = file.parent.resolve()
        if run_dir not in planned and partitions not in run_dir.parents:
            found.append(file.parent)
    return found
