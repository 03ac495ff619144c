"""What a run dir must hold to be resumed: run.json an object with its config and status,
rounds.csv numbers in every column, and a checkpoint whose arrays have the shapes and dtypes of
this run's state. Every failure is one FLError naming the file and the fix."""

import csv
import json
import math
from pathlib import Path

import numpy as np

from flcli.algorithms.base import ServerState
from flcli.engine.evalplan import EVALUATED
from flcli.errors import FLError

STATUSES = ("running", "completed", "failed", "interrupted", "pruned")  # pruned: by fl tune


def read_run_json(out: Path) -> dict:
    """run.json of an existing --out; FLError when it is not a run's."""
    file = out / "run.json"
    try:
        info = json.loads(file.read_text())
    except (OSError, ValueError):
        raise FLError(
            f"--out {out} already exists and is not a flcli run; choose a new --out"
        ) from None
    if (
        not isinstance(info, dict)
        or not isinstance(info.get("config"), dict)
        or info.get("status") not in STATUSES
    ):
        raise FLError(
            f"{file} lacks a config or a status ({', '.join(STATUSES)}); it is not a run fl can "
            "resume: choose a new --out or delete it"
        )
    return info


def read_rows(file: Path, integer_columns: tuple[str, ...]) -> list[dict]:
    """The rows of rounds.csv or clients.csv, numbers checked; [] when there is no file."""
    if not file.is_file():
        return []
    rows = []
    with file.open(newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            unmeasured = row.get(EVALUATED) == "0"
            cells = {key: (row[key], unmeasured) for key in row}
            rows.append({key: cell(file, line, key, *cells[key], integer_columns) for key in row})
    rounds = [row.get("round") for row in rows]
    if rows and (None in rounds or rounds != sorted(rounds) or rounds[0] < 0):
        raise FLError(f"{file}: its round column is missing or out of order; {START_OVER}")
    return rows


START_OVER = "drop --resume and train into a new --out"


def cell(file: Path, line: int, key, text, unmeasured: bool, integer_columns) -> int | float:
    """A cell's number; a metric left empty in the row of a round not evaluated is NaN."""
    if unmeasured and text == "" and key not in integer_columns:
        return math.nan
    return number(file, line, key, text, integer_columns)


def number(file: Path, line: int, key, text, integer_columns) -> int | float:
    try:
        value = int(text) if key in integer_columns else float(text)
    except (TypeError, ValueError):
        value = None
    if key is None or value is None or (key in integer_columns and value < 0):
        raise FLError(f"{file} line {line}: {key} = {text!r} is not a number; {START_OVER}")
    if isinstance(value, float) and math.isinf(value):
        raise FLError(f"{file} line {line}: {key} = {text!r} is infinite; {START_OVER}")
    return value


def check_checkpoint(file: Path, round: int, state: ServerState, fresh: ServerState, rounds: int):
    """The saved state must be shaped as this run's initial state and its round within --rounds."""
    if not 0 <= round <= rounds:
        raise FLError(f"{file} is of round {round}, outside 0..{rounds}; {START_OVER}")
    parts = [("params", state.params, fresh.params)]
    for prefix, saved, made in (
        ("extra_", state.extra, fresh.extra),
        ("uplink_", state.uplink, fresh.uplink),
    ):
        if set(saved) != set(made):
            raise FLError(f"{file} holds other {prefix}* arrays than this run keeps; {START_OVER}")
        parts += [(prefix + key, saved[key], made[key]) for key in made]
    for name, saved, made in parts:
        saved, made = np.asarray(saved), np.asarray(made)
        if saved.shape != made.shape or saved.dtype.kind != made.dtype.kind:
            raise FLError(
                f"{file}: {name} is {saved.dtype}{list(saved.shape)}, this run needs "
                f"{made.dtype}{list(made.shape)}; {START_OVER}"
            )
    if not np.isfinite(state.params).all():
        raise FLError(f"{file}: params hold NaN or infinite values; {START_OVER}")
