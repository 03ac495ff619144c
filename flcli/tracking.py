"""Experiment tracking: a run's config and its rounds.csv rows, logged to MLflow or TensorBoard.

One path for both uses: `fl train --track` logs each round as it is trained (api.Training.rounds),
and `fl export` replays a run dir's run.json and rounds.csv through the same tracker.

- MLflow (pip install 'flcli[mlflow]'): params are the resolved config and the partition's
  description, flattened (algo_args.mu, partition.params.alpha); each numeric rounds.csv column is
  a metric at step = round. Experiment: the name of the folder holding the run dir (a sweep's
  name); run name: the run dir's name. Default store: sqlite:///mlflow.db in the current folder,
  MLflow's own default since 3.7, so `mlflow ui` started there shows the runs.
- TensorBoard (pip install 'flcli[tensorboard]', no TensorFlow): one scalar per numeric column at
  step = round, in RUN/tb (so `tensorboard --logdir results` shows every run), or in
  FOLDER/EXPERIMENT/RUN for --track-uri FOLDER.

A run is continued, never duplicated: MLflow's run is found by its tag flcli.run_key (a hash of
the run dir's absolute path, config digest and partition hash), TensorBoard's by its folder. The
rounds it already holds (MLflow: the tag flcli.rounds_logged; TensorBoard: the last step in the
folder's event files) are skipped, so a resumed run goes on in the same tracked run and exporting
a run twice adds nothing. The libraries are imported only when a run is tracked.
"""

import hashlib
import logging
import math
import os
import re
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from flcli.databases import DRIVERS, check_sqlite_file
from flcli.engine.evalplan import EVALUATED
from flcli.errors import FLError, first_line

DEFAULT_MLFLOW_URI = "sqlite:///mlflow.db"
TENSORBOARD_FOLDER = "tb"
EXTRA = {"mlflow": "MLflow", "tensorboard": "TensorBoard"}
RUN_KEY, ROUNDS_LOGGED, RUN_DIR = "flcli.run_key", "flcli.rounds_logged", "flcli.run_dir"
# what flcli's run statuses are in MLflow; a run still running stays RUNNING
MLFLOW_STATUS = {
    "completed": "FINISHED",
    "failed": "FAILED",
    "interrupted": "KILLED",
    "running": "RUNNING",
}
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")  # SQLAlchemy dialects MLflow stores in
SERVERS = ("http", "https", "databricks", "databricks-uc")
MAX_METRICS, MAX_PARAMS = 1000, 100  # per MLflow log_batch call
CONNECT_TIMEOUT_S = 5.0
EXTRA_MODULES = ("sqlalchemy", "alembic")  # what flcli[mlflow] brings for a SQL store


@dataclass(frozen=True)
class Flags:
    """How the command at hand spells the backend and the URI, for its error messages."""

    backend: str = "--track"
    uri: str = "--track-uri"


TRAIN, EXPORT = Flags(), Flags("--to", "--uri")


def require(backend: str, uri: str | None, flags: Flags = TRAIN) -> None:
    """Check that the backend's library is installed and its URI usable, before anything is
    written: one FLError line otherwise. Opens an MLflow store once (creating a new SQLite
    database), so that parallel runs later find it made."""
    import_backend(backend, flags.backend)
    if backend == "mlflow":
        open_mlflow(mlflow_uri(uri, flags.uri), flags.uri)
    else:
        tensorboard_folder(uri, flags.uri)


def import_backend(backend: str, flag: str) -> None:
    install = f"install it with: pip install 'flcli[{backend}]'"
    try:
        if backend == "mlflow":
            import mlflow  # noqa: F401
        else:
            import tensorboard  # noqa: F401
    except ImportError:
        raise FLError(
            f"{flag} {backend} needs {EXTRA[backend]}, which is not installed; {install}"
        ) from None


def mlflow_uri(uri: str | None, flag: str) -> str:
    """The tracking URI to use, checked: a database, a server, or a folder (MLflow's file store,
    which MLflow 3.7+ writes only with MLFLOW_ALLOW_FILE_STORE=true)."""
    if uri is None:
        return DEFAULT_MLFLOW_URI
    try:
        scheme = urlparse(uri).scheme.split("+")[0]
    except ValueError as bad:  # e.g. Invalid IPv6 URL: http://[::1
        raise FLError(f"{flag} {uri} is not a URI ({bad}); e.g. sqlite:///mlflow.db") from None
    if scheme in ("", "file"):
        if Path(urlparse(uri).path if scheme == "file" else uri).is_file():
            raise FLError(
                f"{flag} {uri} is a file, not a tracking URI; for a SQLite database give "
                f"sqlite:///{uri.removeprefix('file://')}"
            )
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("true", "1"):
            raise FLError(
                f"{flag} {uri} is a folder, MLflow's file store, which MLflow keeps for old "
                "data only; give sqlite:///mlflow.db, or set MLFLOW_ALLOW_FILE_STORE=true to "
                "write to the folder"
            )
        return uri
    if scheme == "sqlite":
        prefix = re.match(r"sqlite(\+\w+)?:///", uri)  # sqlite+pysqlite:/// too
        if prefix is None or uri == prefix.group(0):
            raise FLError(
                f"{flag} {uri}: a SQLite URI is sqlite:///FILE.db (three slashes, then the "
                "file's path), e.g. sqlite:///mlflow.db"
            )
        check_sqlite_path(Path(uri[prefix.end() :]), uri, flag)
        return uri
    if scheme in ("http", "https"):
        check_reachable(uri, flag)
        return uri
    if scheme in DATABASES or scheme in SERVERS:
        return uri
    raise FLError(
        f"{flag} {uri}: MLflow tracks to sqlite:///FILE.db, a server http://HOST:PORT, a "
        f"database ({', '.join(DATABASES[1:])}) or databricks; give one of them"
    )


def check_sqlite_path(file: Path, uri: str, flag: str) -> None:
    """The database file of a sqlite:/// URI: new (its folder made), empty, or a SQLite
    database; a folder or another file is one line now, not minutes of MLflow's retries or
    SQLAlchemy's traceback."""
    check_sqlite_file(file, f"{flag} {uri}", "mlflow.db", "restore it, or give a new file")
    file.parent.mkdir(parents=True, exist_ok=True)


def check_reachable(uri: str, flag: str) -> None:
    """An MLflow server that nothing answers on is one line now, not minutes of retries."""
    parsed = urlparse(uri)
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError as bad:  # a port out of range, or not a number
        raise FLError(f"{flag} {uri}: {bad}; give http://HOST:PORT") from None
    if not parsed.hostname:
        raise FLError(f"{flag} {uri} names no host; give http://HOST:PORT")
    try:
        socket.create_connection((parsed.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, OverflowError, ValueError) as failure:  # ValueError: a host idna refuses
        said = getattr(failure, "strerror", None) or failure
        raise FLError(
            f"{flag} {uri}: nothing answers there ({said}); start "
            "the MLflow server (mlflow server --port PORT) or check the address"
        ) from None


def tensorboard_folder(uri: str | None, flag: str) -> Path | None:
    """The folder --track-uri names for TensorBoard (None: each run's own RUN/tb)."""
    if uri is None:
        return None
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise FLError(
            f"{flag} {uri}: TensorBoard's events go to a local folder; give one, e.g. "
            f"{flag} results/tensorboard"
        )
    folder = Path(parsed.path if parsed.scheme == "file" else uri)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        said = "is a file" if existing == folder else f"lies under the file {existing}"
        raise FLError(f"{flag} {uri} {said}; give a folder for TensorBoard's events")
    return folder


def open_mlflow(uri: str, flag: str):
    """An MlflowClient on the store at uri, the store made (tables of a new database) and read
    once; what MLflow raises there is one line."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):  # their notes on creating a database's tables
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except ImportError as missing:  # SQLAlchemy (mlflow-skinny alone), or a database's driver
        name = missing.name or "sqlalchemy"
        package = DRIVERS.get(name, "'flcli[mlflow]'" if name in EXTRA_MODULES else name)
        raise FLError(
            f"{flag} {uri} needs {name}, which is not installed; install it with: "
            f"pip install {package}"
        ) from None
    except (MlflowException, OSError) as failure:
        raise FLError(f"{flag} {uri}: {first_line(failure)}") from None
    return client


# --- what is logged ------------------------------------------------------------------------------


def params_of(info: dict) -> dict[str, str]:
    """run.json's resolved config and its partition's description, flattened to MLflow params:
    {"lr": "0.5", "algo_args.mu": "0.1", "partition.params.alpha": "0.1", ...}."""
    flat = flatten(info.get("config") or {}, "")
    flat.update(flatten(info.get("partition_meta") or {}, "partition."))
    for key in ("config_digest", "partition_hash"):
        if info.get(key) is not None:
            flat[key] = str(info[key])
    return flat


def flatten(values: dict, prefix: str) -> dict[str, str]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def metrics_of(row: dict) -> dict[str, float]:
    """A rounds.csv row's metrics: every numeric column but round and evaluated, NaN and missing
    values (a round not evaluated has no metrics) left out."""
    return {
        key: float(value)
        for key, value in row.items()
        if key not in ("round", EVALUATED)
        and isinstance(value, Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
    }


def run_key(run_dir: Path, info: dict) -> str:
    """What a tracked run is found again by: its run dir, config and partition."""
    text = f"{Path(run_dir).resolve()}|{info.get('config_digest')}|{info.get('partition_hash')}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def experiment_name(run_dir: Path) -> str:
    """The name of the folder holding the run dir: a sweep's name, results/runs' runs."""
    return Path(run_dir).resolve().parent.name or "flcli"


# --- the trackers --------------------------------------------------------------------------------


class MlflowTracker:
    """One MLflow run per run dir: found again by its run key, or made with the run's params."""

    def __init__(self, uri: str, flag: str, run_dir: Path, info: dict, live: bool):
        from mlflow.entities import Param

        self.client = open_mlflow(uri, flag)
        self.broken = False
        experiment = self.experiment_id(experiment_name(run_dir))
        key = run_key(run_dir, info)
        found = self.call(
            self.client.search_runs,
            [experiment],
            filter_string=f"tags.`{RUN_KEY}` = '{key}'",
            max_results=1,
        )
        if found:
            run = found[0]
            self.run_id, self.status = run.info.run_id, run.info.status
            self.logged = int(run.data.tags.get(ROUNDS_LOGGED, -1))
            if live and self.status != "RUNNING":
                self.call(self.client.update_run, self.run_id, status="RUNNING")
                self.status = "RUNNING"
        else:
            params = [Param(k, v) for k, v in params_of(info).items()]  # before the run is made
            tags = {RUN_KEY: key, RUN_DIR: str(Path(run_dir).resolve()), ROUNDS_LOGGED: "-1"}
            run = self.call(
                self.client.create_run, experiment, run_name=Path(run_dir).name, tags=tags
            )
            self.run_id, self.status, self.logged = run.info.run_id, "RUNNING", -1
            for chunk in batches(params, MAX_PARAMS):
                self.call(self.client.log_batch, self.run_id, params=chunk)
        self.where = f"mlflow run {self.run_id} (experiment {experiment_name(run_dir)}, {uri})"

    def call(self, method, *args, **kwargs) -> Any:
        """A call to MLflow; what it raises (a store or a server gone wrong) is one line, and
        the tracker is broken: finish() then leaves the run as it is."""
        from mlflow.exceptions import MlflowException

        try:
            return method(*args, **kwargs)
        except (MlflowException, OSError) as failure:
            self.broken = True
            raise FLError(f"MLflow: {first_line(failure)}") from None

    def experiment_id(self, name: str) -> str:
        """The experiment's id, made if new (by another run at the same time, too)."""
        from mlflow.exceptions import MlflowException

        experiment = self.call(self.client.get_experiment_by_name, name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException:  # a parallel run made it first
            return self.call(self.client.get_experiment_by_name, name).experiment_id

    def log(self, row: dict) -> bool:
        """Log one round's row, unless the run holds that round already."""
        from mlflow.entities import Metric

        round = int(row["round"])
        if round <= self.logged:
            return False
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, round) for k, v in metrics_of(row).items()]
        for chunk in batches(metrics, MAX_METRICS):
            self.call(self.client.log_batch, self.run_id, metrics=chunk)
        self.call(self.client.set_tag, self.run_id, ROUNDS_LOGGED, str(round))
        self.logged = round
        return True

    def finish(self, status: str) -> None:
        """Give the MLflow run the run dir's status (completed: FINISHED, ...)."""
        wanted = MLFLOW_STATUS.get(status, "RUNNING")
        if not self.broken and wanted not in (self.status, "RUNNING"):
            self.call(self.client.set_terminated, self.run_id, status=wanted)
            self.status = wanted


class TensorBoardTracker:
    """Scalars in one folder of event files per run dir (TensorBoard's 'run')."""

    KEY_FILE = "flcli_run_key"  # the run_key of the run whose events the folder holds

    def __init__(self, folder: Path, key: str, flag: str):
        self.folder, self.key = folder, key
        self.where = f"tensorboard folder {folder}"
        held = folder / self.KEY_FILE
        if held.is_file() and held.read_text().strip() != key:
            raise FLError(
                f"{flag}: {self.where} holds the events of another run (another run dir, config "
                "or partition of the same name); give another folder or delete that one"
            )
        self.logged = last_step(folder)
        self.writer = None  # made at the first new round: a run already there gets no new file

    def log(self, row: dict) -> bool:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        round = int(row["round"])
        if round <= self.logged:
            return False
        values = [Summary.Value(tag=k, simple_value=v) for k, v in metrics_of(row).items()]
        if self.writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / self.KEY_FILE).write_text(self.key + "\n")
            self.writer = EventFileWriter(str(self.folder))
        event = Event(wall_time=time.time(), step=round, summary=Summary(value=values))
        self.writer.add_event(event)
        self.writer.flush()
        self.logged = round
        return True

    def finish(self, status: str) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def last_step(folder: Path) -> int:
    """The last step of the scalars in the folder's event files (-1: none), read by
    TensorBoard's own reader."""
    if not folder.is_dir():
        return -1
    from tensorboard.backend.event_processing.event_accumulator import (
        SCALARS,
        EventAccumulator,
    )

    events = EventAccumulator(str(folder), size_guidance={SCALARS: 0})
    events.Reload()
    steps = [e.step for tag in events.Tags()[SCALARS] for e in events.Scalars(tag)]
    return max(steps, default=-1)


Tracker = MlflowTracker | TensorBoardTracker


def open_tracker(
    backend: str,
    uri: str | None,
    run_dir: Path,
    info: dict,
    live: bool = False,
    flags: Flags = TRAIN,
) -> Tracker:
    """The tracked run of this run dir, found again or started. live: the run is training now
    (an MLflow run found again is RUNNING again)."""
    if backend == "mlflow":
        return MlflowTracker(mlflow_uri(uri, flags.uri), flags.uri, run_dir, info, live)
    folder = tensorboard_folder(uri, flags.uri)
    run_dir = Path(run_dir)
    key = run_key(run_dir, info)
    if folder is None:
        return TensorBoardTracker(run_dir / TENSORBOARD_FOLDER, key, flags.uri)
    named = folder / experiment_name(run_dir) / run_dir.resolve().name
    return TensorBoardTracker(named, key, flags.uri)


def batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- fl export -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    """One run dir exported: where to, the rounds added and the rounds its rounds.csv has."""

    run_dir: Path
    where: str
    added: int
    rounds: int


def export_run(
    run_dir: Path, info: dict, rows: Iterable[dict], backend: str, uri: str | None
) -> Exported:
    """Replay a run dir's rows through the tracker, as --track would have logged them."""
    tracker = open_tracker(backend, uri, run_dir, info, flags=EXPORT)
    rows = list(rows)
    added = sum(tracker.log(row) for row in rows)
    tracker.finish(str(info.get("status", "running")))
    return Exported(Path(run_dir), tracker.where, added, len(rows))
