"""`fl train --config FILE`: train options from a TOML file, or from a run's run.json.

A TOML file holds TrainConfig's fields as top-level keys (`lr = 0.1`, `local_epochs = 5`; dashes
are accepted too: `local-epochs = 5`) and optionally `partition = "DIR"`, the partition dir to train
on. A run.json (written by every fl train) holds the fully resolved config of that run and the
partition it trained on, so `fl train --config RUN/run.json --out NEW` repeats the run exactly.
Flags given on the command line override the file.
"""

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any

from flcli.config import HYPERPARAMETERS, TrainConfig
from flcli.errors import FLError

PARTITION_KEY = "partition"
EXCLUSIVE = [
    ("clients_per_round", "fraction"),
    ("fraction", "clients_per_round"),
    ("dp_noise", "dp_epsilon"),
    ("dp_epsilon", "dp_noise"),
]
# a run.json's values resolved for its algorithm (with its hyperparameters) and for its model
RESOLVED_FOR_ALGO = ("drop_stragglers",)
RESOLVED_FOR_MODEL = ("lr", "hidden", "model_args")


def train_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def normalize_keys(values: dict[str, Any], where: str, known: list[str]) -> dict[str, Any]:
    """Dashes to underscores; an unknown key is an FLError listing the known ones."""
    normalized = {key.replace("-", "_"): value for key, value in values.items()}
    unknown = sorted(set(normalized) - set(known))
    if unknown:
        raise FLError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(known)}"
        )
    return normalized


def read_toml(path: Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise FLError(f"config file {path} does not exist; give the path of a .toml file") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise FLError(f"config file {path} is not valid TOML ({e}); fix it") from None


def load_train_config(path: Path) -> tuple[dict[str, Any], Path | None]:
    """(train options, partition dir or None) from a TOML config file or a run.json."""
    path = Path(path)
    if path.suffix == ".json":
        return _from_run_json(path)
    values = read_toml(path)
    values = normalize_keys(values, str(path), [*train_keys(), PARTITION_KEY])
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
    values = normalize_keys(info["config"], str(path), train_keys())
    partition = info.get(PARTITION_KEY)
    return values, Path(partition) if partition else None


def drop_resolved(values: dict[str, Any], given: dict[str, Any]) -> None:
    """A run.json holds every value resolved, defaults included: with another --algo or --model
    given, the values resolved for the run's own algorithm or model give way to the new one's."""
    if given.get("algo", values.get("algo")) != values.get("algo"):
        for key in (*HYPERPARAMETERS, *RESOLVED_FOR_ALGO):
            values.pop(key, None)
    if given.get("model", values.get("model")) != values.get("model"):
        for key in RESOLVED_FOR_MODEL:
            values.pop(key, None)


def resolve_train_config(
    flags: dict[str, Any], config_file: Path | None, partition_dir: Path | None
) -> tuple[TrainConfig, Path]:
    """TrainConfig's defaults, then the config file, then the flags given (None = not given)."""
    values, file_partition = load_train_config(config_file) if config_file else ({}, None)
    given = {key: value for key, value in flags.items() if value is not None}
    for one, other in EXCLUSIVE:  # a flag replaces the file's choice of the other way
        if one in given:
            values.pop(other, None)
    if config_file is not None and Path(config_file).suffix == ".json":
        drop_resolved(values, given)
    if "model_args" in given and isinstance(values.get("model_args"), dict):
        given["model_args"] = {**values["model_args"], **given["model_args"]}  # adds to the file's
    values.update(given)
    partition = partition_dir or file_partition
    if partition is None:
        raise FLError(
            "no partition dir: give PARTITION_DIR (e.g. fl train results/digits-iid --out ...) "
            'or a --config file with partition = "DIR"'
        )
    return TrainConfig.from_dict(values), Path(partition)
