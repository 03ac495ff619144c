"""The run dir: run.json (config, status, versions), rounds.csv (one row per round), clients.csv
(with --log-clients: one row per client per round) and checkpoint.npz (the server state of the last
completed round). Every write is atomic."""

import csv
import errno
import hashlib
import io
import json
import os
import platform
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from flcli import __version__
from flcli.algorithms.base import ServerState
from flcli.config import DIGEST_IF_SET, NOT_IN_DIGEST, TrainConfig
from flcli.engine.evalplan import EVALUATED, is_evaluated
from flcli.errors import FLError
from flcli.fileio import atomic_write, atomic_write_json, atomic_write_text, signals_held
from flcli.runcheck import read_rows, read_run_json

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, runs are not locked there
    fcntl = None

COLUMNS = [
    "round",
    EVALUATED,  # with --eval-every K > 1: 1 for the evaluated rounds, 0 for the others
    "test_accuracy",  # classification
    "test_mse",  # regression
    "test_r2",  # regression
    "test_loss",
    "train_loss",
    "clients",
    "bytes_up",
    "bytes_down",
    "elapsed_s",
    "sim_time_s",
]
CLIENT_COLUMNS = ["round", "client", "n", "loss", "accuracy"]
LOCK = ".lock"
ROUNDS, CLIENTS = "rounds.csv", "clients.csv"
INTEGER_COLUMNS = (
    "round",
    EVALUATED,
    "clients",
    "bytes_up",
    "bytes_down",
    "dropped",
    "dense_bytes",
    "client",
    "n",
    "staleness_max",
    "clusters",
    "cluster",
)


def versions() -> dict[str, str]:
    from importlib.metadata import version  # importing sklearn for its version costs a second

    return {
        "flcli": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": version("scikit-learn"),
        "dp-accounting": version("dp-accounting"),  # what computed the epsilon column
    }


@dataclass
class RunDir:
    path: Path
    info: dict  # the content of run.json
    rows: list[dict]
    client_rows: list[dict] = field(default_factory=list)  # clients.csv, when clients are logged
    # the last fully appended round and its state, not yet on disk
    pending: tuple[int, ServerState] | None = None
    saved_round: int | None = None  # the round of the checkpoint on disk
    lock: IO | None = None  # held while this process works on the run (see lock_run)

    def release(self) -> None:
        """Let another process open the run (the OS also does when this process ends)."""
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    @property
    def status(self) -> str:
        return self.info["status"]

    def set_status(self, status: str, **extra) -> None:
        self.info.update(status=status, **extra)
        atomic_write_json(self.path / "run.json", self.info)

    def append(self, record: dict, state: ServerState, clients: dict | None = None) -> None:
        """Keep one round's record and state (and its clients' rows, by column, for clients.csv);
        they reach the disk at the next flush(). The round counts once `pending` is set, in one
        step, last: a Ctrl-C inside append leaves the half-appended round out of flush()."""
        self.rows.append(record)
        if clients is not None:
            names = list(clients)
            self.client_rows.extend(
                {name: value.item() for name, value in zip(names, values, strict=True)}
                for values in zip(*(np.asarray(clients[n]) for n in names), strict=True)
            )
        self.pending = (record["round"], state)

    def flush(self) -> None:
        """Write rounds.csv, then the checkpoint it can be resumed from (both atomically)."""
        if self.pending is None:
            return
        round, state = self.pending
        client_rows = [row for row in self.client_rows if row["round"] <= round]
        rows = [row for row in self.rows if row["round"] <= round]
        arrays = {"round": np.array(round), "params": state.params}
        arrays.update({f"extra_{k}": v for k, v in state.extra.items()})
        arrays.update({f"uplink_{k}": v for k, v in state.uplink.items()})
        with signals_held():
            if client_rows:  # first, so that clients.csv never lags the checkpoint
                atomic_write_text(self.path / "clients.csv", csv_text(client_rows, CLIENT_COLUMNS))
            atomic_write_text(self.path / "rounds.csv", csv_text(rows, COLUMNS))
            atomic_write(self.path / "checkpoint.npz", lambda f: np.savez(f, **arrays))
            self.pending, self.saved_round = None, round

    def checkpoint(self) -> tuple[dict, ServerState] | None:
        """The last round's record and server state, or None when no round was logged."""
        file = self.path / "checkpoint.npz"
        if not file.is_file():  # killed before the first checkpoint: start from round 0
            self.rows, self.client_rows = [], []
            return None
        try:
            with np.load(file, allow_pickle=False) as npz:
                round = int(npz["round"])
                extra, uplink = (
                    {k[len(prefix) :]: npz[k] for k in npz.files if k.startswith(prefix)}
                    for prefix in ("extra_", "uplink_")
                )
                state = ServerState(params=npz["params"], extra=extra, uplink=uplink)
        except (OSError, ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise FLError(
                f"{file} is damaged ({e}); delete it to start this run over from round 0"
            ) from None
        self.rows = [row for row in self.rows if row["round"] <= round]
        self.client_rows = [row for row in self.client_rows if row["round"] <= round]
        if not self.rows or self.rows[-1]["round"] != round:
            raise FLError(f"{self.path} has a checkpoint without its rounds.csv row; start anew")
        self.saved_round = round
        return self.rows[-1], state


def csv_text(rows: list[dict], first_columns: list[str]) -> str:
    last = rows[-1]
    columns = [k for k in first_columns if k in last] + [k for k in last if k not in first_columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(row if is_evaluated(row) else blank_metrics(row) for row in rows)
    return buffer.getvalue()


def blank_metrics(row: dict) -> dict:
    """A round that was not evaluated as rounds.csv writes it: its metrics (NaN) empty cells."""
    return {key: "" if value != value else value for key, value in row.items()}  # NaN != NaN


# TrainConfig's fields before the algorithms owned their hyperparameters (flcli 0.1 up to the open
# architecture): each algorithm's hyperparameters were fields of their own
LEGACY_HYPERPARAMETERS = (
    "server_lr", "server_momentum", "mu", "beta1", "beta2", "tau", "alpha_dyn", "q", "lam",
    "temperature", "distill_steps", "proxy_fraction", "personal_epochs",
)  # fmt: skip


def legacy_digest(config: TrainConfig) -> str | None:
    """The digest a run of this resolved config had in run.json before algo_args existed, so that
    such a run still resumes and a sweep still finds it done; None for a config no such run can
    have had (a new option set, or a hyperparameter of a new algorithm)."""
    values = config.to_dict()
    newer = {key: values.pop(key) for key in DIGEST_IF_SET}
    if newer != DIGEST_IF_SET or not set(values["algo_args"]) <= set(LEGACY_HYPERPARAMETERS):
        return None
    values.update(dict.fromkeys(LEGACY_HYPERPARAMETERS), **values.pop("algo_args"))
    kept = {k: v for k, v in values.items() if k not in NOT_IN_DIGEST}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def same_config(info: dict, config: TrainConfig) -> bool:
    """Whether a run.json is of this resolved config (by its digest, or an older flcli's)."""
    digests = {config.digest()} if "given" in info else {config.digest(), legacy_digest(config)}
    return info.get("config_digest") in digests


def same_run(info: dict, config: TrainConfig, partition_hash: str) -> bool:
    """Whether a run.json is of this resolved config on this partition."""
    return info.get("partition_hash") == partition_hash and same_config(info, config)


def differences(info: dict, config: TrainConfig, identity: dict) -> str:
    """What differs between a run dir's run.json and this run: the settings, or the partition."""
    if info.get("partition_hash") != identity["partition_hash"]:
        return "partition"
    theirs = info.get("config", {})
    ours = config.to_dict()
    changed = [key for key in ours if key not in NOT_IN_DIGEST and theirs.get(key) != ours[key]]
    shown = ", ".join(f"{key} {theirs.get(key)!r} (now {ours[key]!r})" for key in changed)
    return f"config: {shown}" if changed else "config"


def is_leftover(path: Path) -> bool:
    """A temporary file of an atomic write that a killed process never renamed."""
    return path.is_file() and path.name.startswith(".") and path.name.endswith(".tmp")


def remove_leftovers(out: Path) -> None:
    for leftover in filter(is_leftover, out.iterdir()):
        leftover.unlink(missing_ok=True)


class RunBusy(FLError):
    """The run dir is locked by another fl process (fl sweep waits for it instead)."""


def wait_for_run(out: Path) -> None:
    """Block until no other fl process holds out/.lock (at once where there are no locks)."""
    if fcntl is None:
        return
    fd = os.open(Path(out) / LOCK, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o666)
    with os.fdopen(fd, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released as the file closes


def lock_run(out: Path) -> IO | None:
    """An exclusive lock on out/.lock, so that a second fl train or sweep on the same run dir is
    refused instead of writing beside the first. The OS drops it when the process ends, however it
    ends. (None where fcntl does not exist: Windows.)"""
    if fcntl is None:
        return None
    lock = out / LOCK
    try:  # O_NOFOLLOW: a .lock symlinked elsewhere must not make fl create or touch that file
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o666)
    except OSError as failure:
        if failure.errno != errno.ELOOP:
            raise
        raise FLError(
            f"{lock} is a symbolic link; fl will not follow it out of --out: delete it"
        ) from None
    handle = os.fdopen(fd, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RunBusy(
            f"--out {out} is in use by another fl process; wait for it to end or choose a new --out"
        ) from None
    return handle


def classes_of(partition_meta: dict) -> dict:
    """{"num_classes": N} of a classification partition (what chance accuracy is), else {}."""
    if partition_meta.get("task") == "regression" or not partition_meta.get("num_classes"):
        return {}
    return {"num_classes": int(partition_meta["num_classes"])}


def open_run(
    out: Path,
    config: TrainConfig,
    partition_dir: Path,
    partition_meta: dict,
    given: TrainConfig | None = None,
) -> RunDir:
    """Create the run dir, or reopen it when it holds a run of this same config.

    config is the resolved config (every default filled: what ran), given what the user gave;
    run.json keeps both. An --out that holds anything else is refused rather than overwritten.
    """
    out = Path(out)
    identity = {"config_digest": config.digest(), "partition_hash": partition_meta["hash"]}
    if out.is_dir() and all(is_leftover(path) or path.name == LOCK for path in out.iterdir()):
        # empty, or made by a run killed before its first run.json landed: nothing to keep
        held = lock_run(out)
        remove_leftovers(out)
    elif out.exists():
        info = read_run_json(out)
        if not same_run(info, config, identity["partition_hash"]):
            raise FLError(
                f"--out {out} holds a run of a different {differences(info, config, identity)}; "
                "choose a new --out or delete it"
            )
        held = lock_run(out)  # before touching anything: another process may be writing
        remove_leftovers(out)  # writes cut short by a kill
        resolved = config.to_dict()  # how this session computes and saves may differ
        info["config"].update({key: resolved[key] for key in NOT_IN_DIGEST})
        rows = read_rows(out / ROUNDS, INTEGER_COLUMNS), read_rows(out / CLIENTS, INTEGER_COLUMNS)
        return RunDir(out, info, *rows, lock=held)
    else:
        out.mkdir(parents=True)
        held = lock_run(out)
    info = {
        "status": "running",
        "config": config.to_dict(),
        "given": (given or config).given(),
        "partition": str(Path(partition_dir).resolve()),  # so --config run.json works anywhere
        "partition_meta": {
            key: partition_meta[key]
            for key in ("dataset", "scheme", "params", "num_clients", "seed")
        },
        **identity,
        "versions": versions(),
        **classes_of(partition_meta),
        "wall_time_s": None,
    }
    run = RunDir(out, info, [], lock=held)
    run.set_status("running")
    return run
