"""`fl train --config FILE`: train options from a TOML file, or from a run's run.json.

A TOML file holds TrainConfig's fields as top-level keys (`lr = 0.1`, `local_epochs = 5`; dashes
are accepted too: `local-epochs = 5`), the algorithm's hyperparameters in an `[algo_args]` table
(or as top-level keys named like their flags: `mu = 0.1`, `lambda = 0.5`), and optionally
`partition = "DIR"`, the partition dir to train on. A run.json (written by every fl train) holds
what that run was given (`given`) and the partition it trained on, so `fl train --config
RUN/run.json --out NEW` repeats the run exactly. Flags given on the command line override the
file.
"""

import dataclasses
import functools
import json
import tomllib
from pathlib import Path
from typing import Any

from flcli.config import TrainConfig
from flcli.errors import FLError
from flcli.options import normalize_keys
from flcli.plugins import model_reference

PARTITION_KEY = "partition"
EXCLUSIVE = [
    ("clients_per_round", "fraction"),
    ("fraction", "clients_per_round"),
    ("dp_noise", "dp_epsilon"),
    ("dp_epsilon", "dp_noise"),
]
FOR_THE_MODEL = ("lr", "hidden", "model_args")  # a file's values chosen for its own model


def train_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


@functools.cache  # a sweep asks once per planned run; the built-in algorithms never change
def hyperparameter_aliases() -> dict[str, str]:
    """A key or flag name of a built-in hyperparameter -> its name (lambda -> lam, mu -> mu);
    read-only."""
    from flcli.algorithms.registry import ALGORITHMS

    aliases = {}
    for spec in ALGORITHMS.values():
        for name, hyper in spec.hyperparameters.items():
            aliases[name] = name
            aliases[hyper.flag.removeprefix("--").replace("-", "_")] = name
    return aliases


def with_algo_args(values: dict[str, Any], where: str) -> dict[str, Any]:
    """Top-level hyperparameter keys (mu = 0.1, as flags and older files spell them) moved into
    algo_args, whose own keys may be spelled as the flags are too (lambda for lam); a key null (an
    older run.json's hyperparameters of other algorithms) is not given; a value given twice, or
    any other unknown key, is one line."""
    aliases = hyperparameter_aliases()
    settings = train_keys()
    values = normalize_keys(values, where, [*settings, PARTITION_KEY, *sorted(set(aliases))])
    moved = {}
    for key in [k for k in values if k in aliases and k not in settings]:
        value = values.pop(key)
        if value is not None:
            moved[aliases[key]] = value
    table = values.get("algo_args", {})
    if not isinstance(table, dict):
        raise FLError(f"{where}: algo_args = {table!r} must be a table of key = value")
    table = {aliases.get(str(k).replace("-", "_"), k): v for k, v in table.items()}
    twice = [k for k in moved if k in table and table[k] != moved[k]]
    if twice:
        raise FLError(
            f"{where}: {twice[0]} is given twice ({moved[twice[0]]!r} and {table[twice[0]]!r} in "
            "algo_args); give it once"
        )
    if moved or table:
        values["algo_args"] = {**moved, **table}
    return values


def read_toml(path: Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise FLError(f"config file {path} does not exist; give the path of a .toml file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise FLError(f"config file {path} is not valid TOML ({e}); fix it") from None


def load_train_config(path: Path) -> tuple[dict[str, Any], Path | None]:
    """(train options, partition dir or None) from a TOML config file or a run.json."""
    path = Path(path)
    if path.suffix == ".json":
        return _from_run_json(path)
    values = with_algo_args(read_toml(path), str(path))
    partition = values.pop(PARTITION_KEY, None)
    if partition is not None and not isinstance(partition, str):
        raise FLError(f"config key partition = {partition!r} must be a string (a partition dir)")
    if partition is not None:
        partition = Path(partition)
        if not partition.is_absolute():  # relative to the config file, like most tools do
            partition = path.parent / partition
    return values, partition


def _from_run_json(path: Path) -> tuple[dict[str, Any], Path | None]:
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise FLError(f"config file {path} does not exist; give a run's run.json") from None
    except (OSError, ValueError) as e:
        raise FLError(f"{path} is not readable JSON ({e}); give a run's run.json") from None
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise FLError(f"{path} has no 'config'; give the run.json of a run written by fl train")
    given = info.get("given")
    values = with_algo_args(given if isinstance(given, dict) else info["config"], str(path))
    values.update(plugin_files(values, info.get("sources")))
    partition = info.get(PARTITION_KEY)
    if partition is not None and not isinstance(partition, str):
        raise FLError(f"{path}: partition = {partition!r} is not a path; give a run's run.json")
    return values, Path(partition) if partition else None


def plugin_files(values: dict[str, Any], sources: Any) -> dict[str, str]:
    """A run's plugin files named by the absolute paths run.json recorded, for those its
    references (relative to where it was started) no longer reach from here."""
    found = {}
    for key, source in (sources or {}).items() if isinstance(sources, dict) else ():
        name = values.get(key)
        file = source.get("file") if isinstance(source, dict) else None
        if not isinstance(name, str) or not file or ".py:" not in name:
            continue
        prefix, reference, _ = model_reference(name)
        module, _, attribute = reference.rpartition(":")
        if not Path(module).is_file() and Path(file).is_file():
            found[key] = f"{prefix}{file}:{attribute}"
    return found


def merge(values: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The file's values, then the flags given. A flag replaces the file's choice of the other
    way (--fraction over clients_per_round); another --algo or --model drops what the file chose
    for its own algorithm or model; --model-arg and --algo-arg add to the file's."""
    values = dict(values)
    for one, other in EXCLUSIVE:
        if one in given:
            values.pop(other, None)
    if given.get("algo", values.get("algo")) != values.get("algo"):
        values.pop("algo_args", None)
        values.pop("drop_stragglers", None)
    if given.get("model", values.get("model")) != values.get("model"):
        for key in FOR_THE_MODEL:
            values.pop(key, None)
    for table in ("model_args", "algo_args"):
        if table in given and isinstance(values.get(table), dict):
            given = {**given, table: {**values[table], **given[table]}}
    return {**values, **given}


def resolve_train_config(
    flags: dict[str, Any], config_file: Path | None, partition_dir: Path | None
) -> tuple[TrainConfig, Path]:
    """TrainConfig's defaults, then the config file, then the flags given. Flags of algorithm
    hyperparameters (--mu) go into algo_args."""
    values, file_partition = load_train_config(config_file) if config_file else ({}, None)
    given = with_algo_args(flags, "options") if flags else {}
    partition = partition_dir or file_partition
    if partition is None:
        raise FLError(
            "no partition dir: give PARTITION_DIR (e.g. fl train results/digits-iid --out ...) "
            'or a --config file with partition = "DIR"'
        )
    return TrainConfig.from_dict(merge(values, given), str(config_file or "options")), Path(
        partition
    )


def train_config(**values) -> TrainConfig:
    """A TrainConfig from keyword values, hyperparameters spelled as flags are (mu=0.1, or
    lam=0.5) going into algo_args: TrainConfig(algo="fedprox", algo_args={"mu": 0.1}) by hand."""
    return TrainConfig.from_dict(with_algo_args(values, "options"))
