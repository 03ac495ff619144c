"""The `fl tune` file, read and checked before anything runs, and the objective's maths. No Optuna
here (flcli/tune.py runs the study), so that `fl tune --dry-run` and these checks need none.

The file:

    name = "tune-fedprox"       # results go to results/tune-fedprox/
    trials = 30                 # the study's total (trials already in it count), or/and
    timeout = "30m"             # no new trial after this long (seconds, or "90s", "30m", "2h")
    sampler = "tpe"             # or "random"; seeded from `seed`
    seed = 0
    startup_trials = 10         # TPE's random trials before it models the space
    [base]                      # fl partition and fl train options, as a sweep's [base]
    dataset = "digits"
    algo = "fedprox"
    [space]                     # what the study chooses, per trial
    lr = { low = 0.01, high = 1.0, log = true }   # a float range (log scale)
    local_epochs = { low = 1, high = 5 }          # an int range: both bounds are ints
    batch_size = [16, 32]                         # a categorical choice
    [objective]
    metric = "test_accuracy"    # a rounds.csv column; its name says its direction
    mode = "final"              # final | best | rounds_to | time_to (these two take `target`)
    seeds = [0]                 # training seeds of every trial; the value is mean - k*std
    k = 1.0
    [pruner]
    kind = "median"             # median | halving | none
    warmup_rounds = 5
    every = 1                   # report to the pruner every this many rounds (and the last)

The [space] keys are training options and algorithm hyperparameters (mu, lambda, or a plugin
algorithm's); partition options belong in [base]: one partition serves the whole study.
"""

import difflib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flcli.assemble import check_alone
from flcli.config import NOT_IN_DIGEST, TrainConfig
from flcli.configfile import read_toml, train_keys
from flcli.errors import FLError
from flcli.names import check_name
from flcli.sweep import (
    PARTITION_SEED,
    dashes_to_underscores,
    known_keys,
    partition_id_of,
    partition_keys,
    split_options,
    with_plugin_hyperparameters,
)

TOP_KEYS = (
    "name",
    "trials",
    "timeout",
    "sampler",
    "seed",
    "startup_trials",
    "base",
    "space",
    "objective",
    "pruner",
)
SAMPLERS = ("tpe", "random")
MODES = ("final", "best", "rounds_to", "time_to")
PRUNERS = ("median", "halving", "none")
DURATION = re.compile(r"(\d+(?:\.\d+)?)([smh]?)")
UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class FloatRange:
    key: str
    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class IntRange:
    key: str
    low: int
    high: int
    log: bool = False


@dataclass(frozen=True)
class Choice:
    key: str
    values: tuple


Param = FloatRange | IntRange | Choice


@dataclass(frozen=True)
class Objective:
    metric: str = "test_accuracy"
    mode: str = "final"
    target: float | None = None
    seeds: tuple[int, ...] = (0,)
    k: float = 1.0

    @property
    def minimize(self) -> bool:
        """Rounds or time to a target, and loss-like metrics, are minimized."""
        from flcli.runs import lower_is_better

        return self.mode in ("rounds_to", "time_to") or lower_is_better(self.metric)

    def signed(self, value: float) -> float:
        """A round's metric as the pruner compares it: negated when the metric's direction is
        not the study's (an accuracy while minimizing the rounds to reach a target)."""
        from flcli.runs import lower_is_better

        return -value if lower_is_better(self.metric) != self.minimize else value


@dataclass(frozen=True)
class Pruner:
    kind: str = "median"
    warmup_rounds: int | None = None  # median: rounds before a trial may be pruned
    startup_trials: int = 5  # median: finished trials before any is pruned
    min_rounds: int | None = None  # halving: the first rung
    reduction_factor: int = 3  # halving
    every: int = 1  # report (and maybe prune) every this many rounds: each report is a write


@dataclass(frozen=True)
class TunePlan:
    name: str
    root: Path
    trials: int | None
    timeout: float | None
    sampler: str
    seed: int
    startup_trials: int
    options: dict[str, Any]  # [base]: its training options are every trial's
    space: tuple[Param, ...]
    objective: Objective
    pruner: Pruner
    partition_options: dict[str, Any]
    partition_dir: Path
    rounds: int
    definition: dict = field(default_factory=dict)  # what makes a stored study this one

    def config(self, params: dict[str, Any], seed: int) -> TrainConfig:
        """The TrainConfig of one run of a trial: [base], the trial's params, the seed."""
        options = with_plugin_hyperparameters({**self.options, **params, "seed": seed})
        return TrainConfig.from_dict(split_options(options)[1])


def parse_duration(value: Any, named: str) -> float:
    """Seconds from a number of seconds or a string such as "90s", "30m", "2h", "1h30m"; named:
    the value as the user gave it (`t.toml: timeout = '-1'`, `--timeout -1`), for the error."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    text = value.replace(" ", "") if isinstance(value, str) else ""
    parts = DURATION.findall(text)
    if parts and "".join(n + u for n, u in parts) == text:
        seconds = sum(float(n) * UNIT_SECONDS[u] for n, u in parts)
        if seconds > 0:
            return seconds
    raise FLError(f'{named} is not a duration; give seconds or e.g. "30m", "2h"')


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_param(key: str, spec: Any, where: str) -> Param:
    """One [space] entry: { low, high, log } (ints when both bounds are) or a non-empty list."""
    at = f"{where}: [space] {key} = {spec!r}"
    if isinstance(spec, list):
        if not spec:
            raise FLError(f"{at} is empty; list the choices, e.g. {key} = [16, 32]")
        if not all(isinstance(v, str | int | float | bool) for v in spec):
            raise FLError(f"{at}: choices must be strings, numbers or booleans")
        if len({(type(v), v) for v in spec}) != len(spec):
            raise FLError(f"{at} lists a choice twice; list each once")
        return Choice(key, tuple(spec))
    if not isinstance(spec, dict):
        raise FLError(f"{at} must be a range {{ low = .., high = .. }} or a list of choices")
    unknown = sorted(set(spec) - {"low", "high", "log"})
    if unknown or "low" not in spec or "high" not in spec:
        raise FLError(f"{at} needs low and high (and optionally log), e.g. {{ low = 1, high = 5 }}")
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    if not (_number(low) and _number(high)):
        raise FLError(f"{at}: low and high must be finite numbers")
    if not isinstance(log, bool):
        raise FLError(f"{at}: log must be true or false")
    if not low < high:
        raise FLError(f"{at}: low must be below high; swap them or widen the range")
    if log and low <= 0:
        raise FLError(f"{at}: a log range needs low > 0; raise low or drop log")
    if isinstance(low, int) and isinstance(high, int):
        return IntRange(key, low, high, log)
    return FloatRange(key, float(low), float(high), log)


def corners(param: Param) -> list[Any]:
    """The values that bound what a trial may take: both ends of a range, every choice."""
    return list(param.values) if isinstance(param, Choice) else [param.low, param.high]


def parse_space(table: Any, base: dict[str, Any], where: str) -> tuple[Param, ...]:
    if not isinstance(table, dict) or not table:
        raise FLError(
            f"{where}: needs a [space] table, e.g. [space] lr = {{ low = 0.01, high = 1 }}"
        )
    params = []
    for key, spec in dashes_to_underscores(table).items():
        if key in ("seed", PARTITION_SEED):
            raise FLError(f"{where}: [space] {key}: seeds are not tuned; set [objective] seeds")
        if key in base:
            raise FLError(f"{where}: {key} is both in [base] and [space]; keep it in one")
        check_space_key(key, spec, base, where)
        if key in partition_keys() and key not in train_keys():
            raise FLError(
                f"{where}: [space] {key} is a partition option; one partition serves the study: "
                "set it in [base]"
            )
        params.append(parse_param(key, spec, where))
    for param in params:  # every key known, every end of every range a valid run
        for value in corners(param):
            try:
                options = with_plugin_hyperparameters({**base, param.key: value})
                check_alone(TrainConfig.from_dict(split_options(options)[1]))
            except FLError as bad:
                raise FLError(f"{where}: [space] {param.key} = {value!r}: {bad}") from None
    return tuple(params)


def check_space_key(key: str, spec: Any, base: dict[str, Any], where: str) -> None:
    """A [space] key that is no option of fl train nor a hyperparameter of [base]'s algorithm is
    one line suggesting the closest (the whole list is in fl train --help)."""
    from flcli.algorithms.registry import algorithm_spec

    known = [*known_keys(), *algorithm_spec(base.get("algo", "fedavg")).hyperparameters]
    if key in known:
        return
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise FLError(
        f"{where}: [space] {key} = {as_toml(spec)} is no option of fl train; {hint}"
        "(fl train --help lists them)"
    )


def as_toml(value: Any) -> str:
    """A value as a TOML file spells it: { low = 0.1, high = 1.0 }, [16, 32], "sgd", true."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {as_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(as_toml(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str | bool) else repr(value)


def _table(data: dict, key: str, where: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise FLError(f"{where}: {key} = {value!r} must be a table: a [{key}] section")
    return dashes_to_underscores(value)


def _known(table: dict, known: tuple[str, ...], section: str, where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise FLError(
            f"{where}: unknown key(s) {', '.join(unknown)} in {section}; known: {', '.join(known)}"
        )


def _count(value: Any, at: str, example: str, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise FLError(f"{at} = {value!r} must be an integer >= {least}, e.g. {example}")
    return value


def parse_objective(table: dict, default_seed: int, where: str) -> Objective:
    _known(table, ("metric", "mode", "target", "seeds", "k"), "[objective]", where)
    metric = table.get("metric", "test_accuracy")
    if not isinstance(metric, str) or not metric:
        raise FLError(f"{where}: [objective] metric = {metric!r}: name a rounds.csv column")
    mode = table.get("mode", "final")
    if mode not in MODES:
        raise FLError(f"{where}: [objective] mode = {mode!r}: choose one of {', '.join(MODES)}")
    target = table.get("target")
    if target is None and mode in ("rounds_to", "time_to"):
        raise FLError(f"{where}: [objective] mode = {mode!r} needs a target, e.g. target = 0.9")
    if target is not None and mode not in ("rounds_to", "time_to"):
        raise FLError(
            f"{where}: [objective] target = {target!r} is for modes rounds_to and time_to only; "
            f'drop it, or set mode = "rounds_to" or "time_to"'
        )
    if target is not None and not _number(target):
        raise FLError(f"{where}: [objective] target = {target!r} must be a number, e.g. 0.9")
    seeds = table.get("seeds", [default_seed])
    if not isinstance(seeds, list) or not seeds or len(set(map(str, seeds))) != len(seeds):
        raise FLError(f"{where}: [objective] seeds = {seeds!r} must list distinct seeds, e.g. [0]")
    for seed in seeds:
        _count(seed, f"{where}: [objective] seeds: {seed!r}", "0", least=0)
    k = table.get("k", 1.0)
    if not _number(k) or k < 0:
        raise FLError(f"{where}: [objective] k = {k!r} must be a number >= 0, e.g. 1.0")
    return Objective(metric, mode, None if target is None else float(target), tuple(seeds), k)


def parse_pruner(table: dict, rounds: int, where: str) -> Pruner:
    keys = ("kind", "warmup_rounds", "startup_trials", "min_rounds", "reduction_factor", "every")
    _known(table, keys, "[pruner]", where)
    kind = table.get("kind", "median")
    if kind not in PRUNERS:
        raise FLError(f"{where}: [pruner] kind = {kind!r}: choose one of {', '.join(PRUNERS)}")
    at = f"{where}: [pruner]"
    warmup = table.get("warmup_rounds", max(1, rounds // 4))
    return Pruner(
        kind=kind,
        warmup_rounds=_count(warmup, f"{at} warmup_rounds", "5", least=0),
        startup_trials=_count(table.get("startup_trials", 5), f"{at} startup_trials", "5", 0),
        min_rounds=_count(table.get("min_rounds", max(1, rounds // 8)), f"{at} min_rounds", "2"),
        reduction_factor=_count(table.get("reduction_factor", 3), f"{at} reduction_factor", "3", 2),
        every=_count(table.get("every", 1), f"{at} every", "5"),
    )


def load_tune(
    path: Path,
    out: Path | None = None,
    overrides: dict | None = None,
    base_overrides: dict | None = None,
) -> TunePlan:
    """Read and check a tune file; overrides: trials and timeout from the command line;
    base_overrides: [base] options from it (backend, ray_address)."""
    where = str(path)
    data = {**read_toml(Path(path)), **(overrides or {})}
    if base_overrides:
        data["base"] = {**_table(data, "base", where), **base_overrides}
    _known(data, TOP_KEYS, "the file", where)
    if "name" not in data:
        raise FLError(f'{where}: needs a top-level name = "...", e.g. name = "tune-fedprox"')
    name = check_name(data["name"], f"{where}: name", 'name = "tune-fedprox"')
    trials, timeout = data.get("trials"), data.get("timeout")
    if trials is None and timeout is None:
        raise FLError(f'{where}: give a budget: trials = 30, or timeout = "30m", or both')
    if trials is not None:
        _count(trials, f"{where}: trials", "30")
    if timeout is not None:
        timeout = parse_duration(timeout, f"{where}: timeout = {timeout!r}")
    sampler = data.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise FLError(f"{where}: sampler = {sampler!r}: choose one of {', '.join(SAMPLERS)}")
    seed = _count(data.get("seed", 0), f"{where}: seed", "0", least=0)
    startup = _count(data.get("startup_trials", 10), f"{where}: startup_trials", "10", least=0)
    base = _table(data, "base", where)
    try:
        partition_options, train = split_options(with_plugin_hyperparameters(base))
        base_config = TrainConfig.from_dict(train)
        check_alone(base_config)
    except FLError as bad:
        raise FLError(f"{where}: [base]: {bad}") from None
    objective = parse_objective(_table(data, "objective", where), base_config.seed, where)
    space = parse_space(data.get("space"), base, where)
    pruner = parse_pruner(_table(data, "pruner", where), base_config.rounds, where)
    root = Path(out) if out is not None else Path("results") / name
    partition_id = partition_id_of([], partition_options, seeded=PARTITION_SEED in base)
    definition = {  # how runs are executed or logged does not make another study
        "base": {k: v for k, v in base.items() if k.replace("-", "_") not in NOT_IN_DIGEST},
        "space": [vars(param) for param in space],
        "objective": vars(objective),
    }
    return TunePlan(
        name=name,
        root=root,
        trials=trials,
        timeout=timeout,
        sampler=sampler,
        seed=seed,
        startup_trials=startup,
        options=base,
        space=space,
        objective=objective,
        pruner=pruner,
        partition_options=partition_options,
        partition_dir=root / "partitions" / partition_id,
        rounds=base_config.rounds,
        definition=definition,
    )


def run_value(rows: list[dict], objective: Objective, rounds: int) -> float:
    """One run's value: its last or best metric, or the round (simulated seconds) at which it
    first reached the target. A run that never reached it scores as if it would one round past
    its end: rounds + 1, or its simulated time x (rounds + 1) / rounds: finite, so that the
    sampler still ranks it, and worse than any run that reached it."""
    import pandas as pd

    from flcli.report import reached
    from flcli.runs import Run, final_value

    run = Run(Path("."), {}, pd.DataFrame(rows))
    if objective.mode in ("final", "best"):
        return final_value(
            run, objective.metric, ("last" if objective.mode == "final" else "best", 1)
        )
    hit = reached(run, objective.metric, objective.target)
    if objective.mode == "rounds_to":
        return float(rounds + 1) if hit is None else hit.round
    if hit is not None:
        return hit.sim_seconds
    return float(run.column("sim_time_s").iloc[-1]) * (rounds + 1) / rounds


def combine(values: list[float], k: float, minimize: bool) -> float:
    """mean - k*std over seeds (mean + k*std when minimizing: a spread is penalized either way);
    the sample std (n - 1), zero for one seed."""
    from flcli.runs import spread

    mean, std = spread(values)
    std = 0.0 if len(values) < 2 else std
    return mean + k * std if minimize else mean - k * std


def check_metric(plan: TunePlan) -> None:
    """The objective's metric is a column of the study's rounds.csv. Which columns a run writes
    depends on its dataset, algorithm and options, so the engine says: round 0 (the initial
    model's evaluation) of [base]'s config on its partition, built in memory, nothing written."""
    from flcli.api import simulate
    from flcli.data.build import build_partition
    from flcli.data.config import PartitionConfig
    from flcli.options import from_mapping

    config = from_mapping(PartitionConfig, plan.partition_options, "partition options")
    base = plan.config({}, plan.objective.seeds[0])
    record = next(iter(simulate(build_partition(config), base))).record
    if plan.objective.metric not in record:
        raise FLError(
            f"[objective] metric = {plan.objective.metric!r} is not a column of rounds.csv; "
            f"its columns: {', '.join(record)}"
        )
