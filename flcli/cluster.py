"""`fl sweep --backend ray`: each run of a sweep is one Ray task, scheduled over every node.

The driver (the machine running fl sweep) builds the missing partitions as a local sweep does,
puts each partition's files in Ray's object store once, and submits one task per run. flcli's own
code travels to the nodes in the task's runtime environment (the package the driver imports, as
`py_modules`), and so do the folders of a user's plugin files (as its `working_dir`); the nodes
need only Python with Ray and flcli's dependencies. A task writes its partition into a cache on its
node (once per node), trains the run there with the vectorized backend, and returns the run dir's
files; the driver writes them into results/<name>/<run-id>/ as one directory rename, so a run dir
is either absent, as it was, or complete. A task lost with its node is retried on another one
(Ray's max_retries). An interrupted sweep resumes: the runs already written are done, and an
unfinished run dir travels with its task, which continues it from its checkpoint.
"""

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from flcli import plugins
from flcli.config import TrainConfig
from flcli.data.store import building_dir, remove_orphaned_builds
from flcli.engine.raybackend import check_reachable, import_ray, init_ray, package_runtime_env
from flcli.errors import FLError
from flcli.fileio import UMASK, atomic_write_json, signals_held
from flcli.runjob import Outcome, train_run
from flcli.runlog import LOCK, is_leftover
from flcli.tracking import export_run

RETRIES = 3  # how often a task lost with its node (or its worker process) is run again
POLL_S = 1.0  # how often the progress line is refreshed while no run finishes


@dataclass(frozen=True)
class RunTask:
    """What a node needs to train one run: the run's config and the files it continues from."""

    run_id: str
    config: TrainConfig
    partition_hash: str
    resumed_files: dict[str, bytes]  # an unfinished run dir's files, else empty


@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: str  # completed | failed
    message: str
    files: dict[str, bytes]
    record: dict
    node: str  # the node that trained it: "<host name> <node id prefix>"


@contextmanager
def session(address: str | None, cpus: int | None, configs: list[TrainConfig]) -> Iterator:
    """Ray, joined to the cluster at address (or a local Ray of `cpus` CPUs started here), with
    the runs' runtime environment; shut down on the way out if started here, with Ctrl-C held
    (left to Ray's exit hook, a shutdown after Ctrl-C reached its processes can crash the
    interpreter: exit code 139). A Ray the caller already started is used as it is: its own
    runtime environment must carry flcli and the plugins to the nodes."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    env = runtime_env(configs)
    try:
        init_ray(ray, address, cpus, env)
    finally:  # ray.init uploaded it
        if "working_dir" in env:
            shutil.rmtree(env["working_dir"], ignore_errors=True)
    try:
        yield ray
    finally:
        with signals_held():
            ray.shutdown()


def runtime_env(configs: list[TrainConfig]) -> dict:
    """flcli's package folder, and the folders of the runs' plugin files (`--algo FILE.py:NAME`,
    `--model FILE.py:NAME`): what every task's worker imports, so that nothing is installed by
    hand on the nodes."""
    env = package_runtime_env()
    folders = plugin_folders(configs)
    if folders:
        env["working_dir"] = str(plugin_tree(folders))
    return env


def check_cluster_sweep(configs: list[TrainConfig]) -> None:
    """One line now, before any partition is built: Ray is missing, the runs name more than one
    cluster or one where nothing answers, or a plugin file lies where the nodes' working
    directory cannot hold it."""
    import_ray()
    addresses = sorted({str(config.ray_address) for config in configs})
    if len(addresses) > 1:
        raise FLError(
            f"the Ray runs name {len(addresses)} clusters ({', '.join(addresses)}); a sweep runs "
            "on one: give ray_address once, in [base] or as --ray-address"
        )
    if configs[0].ray_address is not None:
        check_reachable(configs[0].ray_address)
    plugin_folders(configs)


def plugin_folders(configs: list[TrainConfig]) -> list[Path]:
    """The folders of the runs' plugin files, relative to the working directory (where a node's
    worker looks for `FILE.py:NAME`)."""
    here = Path.cwd().resolve()
    models = (plugins.model_reference(config.model)[1] for config in configs)
    names = {*(config.algo for config in configs), *models}
    modules = [name.rpartition(":")[0] for name in names if plugins.is_reference(name)]
    folders = []
    for folder in sorted({Path(m).resolve().parent for m in modules if m.endswith(".py")}):
        if folder != here and here not in folder.parents:
            raise FLError(
                f"plugin folder {folder} is outside the working directory {here}; a Ray sweep "
                "ships plugin files by their path under it: run fl sweep from a folder above it"
            )
        folders.append(folder.relative_to(here))
    return folders


def plugin_tree(folders: list[Path]) -> Path:
    """A temporary folder holding the .py files of each plugin folder at its relative path."""
    tree = Path(tempfile.mkdtemp(prefix="flcli-plugins-"))
    for folder in folders:
        (tree / folder).mkdir(parents=True, exist_ok=True)
        for file in folder.glob("*.py"):
            shutil.copy2(file, tree / folder / file.name)
    return tree


def read_files(folder: Path) -> dict[str, bytes]:
    """The regular files of a run or partition dir by name (not its lock or half-written files)."""
    return {
        path.name: path.read_bytes()
        for path in sorted(Path(folder).iterdir())
        if path.is_file() and path.name != LOCK and not is_leftover(path)
    }


def node_cache() -> Path:
    return Path(tempfile.gettempdir()) / f"flcli-cluster-{os.getuid()}"


def materialize_partition(files: dict[str, bytes], partition_hash: str) -> Path:
    """The partition's dir in this node's cache, written once per node (a rename makes it appear
    whole; a concurrent task that wrote it first wins)."""
    folder = node_cache() / "partitions" / partition_hash
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_builds(folder.parent)
    tmp = building_dir(folder)
    for name, content in files.items():
        (tmp / name).write_bytes(content)
    try:
        os.rename(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not folder.is_dir():
            raise
    return folder


def node_name() -> str:
    """This Ray node as the sweep's table shows it: "<host name> <node id prefix>"."""
    import ray

    return f"{socket.gethostname()} {ray.get_runtime_context().get_node_id()[:8]}"


def on_node(config: TrainConfig) -> TrainConfig:
    """A run's config as a node trains it: vectorized in the task's own CPU, untracked (the driver
    tracks the run dir it writes: track_on_driver)."""
    return replace(
        config, backend="vectorized", jobs=None, ray_address=None, track=None, track_uri=None
    )


@contextmanager
def scratch_run_dir(resumed_files: dict[str, bytes]) -> Iterator[Path]:
    """A run dir in this node's cache holding an unfinished run's files (or none), deleted after."""
    node_cache().mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=node_cache(), prefix="run-"))
    try:
        for name, content in resumed_files.items():
            (scratch / name).write_bytes(content)
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def train_on_node(task: RunTask, partition_files: dict[str, bytes]) -> RunResult:
    """A Ray task: train one run in a scratch dir of this node and return its files."""
    partition_dir = materialize_partition(partition_files, task.partition_hash)
    with scratch_run_dir(task.resumed_files) as scratch:
        outcome = train_run(partition_dir, on_node(task.config), scratch, task.run_id)
        files = read_files(scratch)  # a failed run's too: its run dir says so, as locally
    return RunResult(
        task.run_id, outcome.status, outcome.message, files, outcome.record, node_name()
    )


def write_run_dir(out: Path, files: dict[str, bytes], partition_dir: Path) -> None:
    """Put a run's files at out in one rename (a run dir already there, unfinished, is replaced);
    run.json names the driver's partition dir and plugin files, as a local run's does."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_builds(out.parent)
    tmp = building_dir(out)
    try:
        for name, content in files.items():
            if name != "run.json":
                (tmp / name).write_bytes(content)
        info = json.loads(files["run.json"])
        info["partition"] = str(partition_dir.resolve())
        if "sources" in info:
            info["sources"] = driver_sources(info["sources"])
        atomic_write_json(tmp / "run.json", info)
        os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp makes it private; a plain mkdir would not
        if out.exists():
            old = building_dir(out)
            os.rename(out, old / "replaced")
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def store_run(out: Path, files: dict[str, bytes], partition_dir: Path, config: TrainConfig):
    """Write a run dir a node sent back (none when the run failed before it had one) and track it
    as --track asks."""
    if "run.json" in files:
        write_run_dir(out, files, partition_dir)
        track_on_driver(out, config)


def driver_sources(sources: dict[str, dict]) -> dict[str, dict]:
    """run.json's plugin records with the driver's file paths (the node ran a copy of the same
    bytes, in its runtime environment's folder)."""
    mapped = {}
    for key, source in sources.items():
        here = plugins.source_of(source["reference"]) if "entry_point" not in source else {}
        same = here.get("sha256") is not None and here.get("sha256") == source.get("sha256")
        mapped[key] = here if same else source
    return mapped


def track_on_driver(out: Path, config: TrainConfig) -> None:
    """--track of a run trained on a node: the driver logs the run dir it wrote, as fl export
    would (the node's tracker, were it on, would write to the node's own store)."""
    if config.track is None:
        return
    import pandas as pd

    rows = pd.read_csv(out / "rounds.csv").to_dict("records")
    info = json.loads((out / "run.json").read_text())
    export_run(out, info, rows, config.track, config.track_uri)


def resumable_files(out: Path) -> dict[str, bytes]:
    """An unfinished run dir's files, for its task to continue from (none for a fresh run)."""
    return read_files(out) if (out / "run.json").is_file() else {}


def run_on_cluster(runs: list, jobs: int | None, address: str | None) -> Iterator[Outcome]:
    """Train each planned run (sweep.PlannedRun) as one Ray task; one Outcome per run as it
    finishes, and an Outcome of kind "cluster" with the runs in flight every POLL_S seconds.
    Their partitions must already be built."""
    with session(address, jobs, [run.config for run in runs]) as ray:
        train = ray.remote(num_cpus=1, max_retries=RETRIES)(train_on_node)
        shared = {}
        for run in runs:
            if run.partition_id not in shared:
                files = read_files(run.partition_dir)
                shared[run.partition_id] = (partition_hash(files), ray.put(files))
        pending = {}
        for run in runs:
            hashed, files_ref = shared[run.partition_id]
            task = RunTask(run.run_id, run.config, hashed, resumable_files(run.out))
            pending[train.remote(task, files_ref)] = run
        try:
            yield from follow_tasks(ray, pending)
        finally:
            cancel(ray, pending)


def cancel(ray, pending: dict) -> None:
    """Cancel the tasks still in flight (Ctrl-C, or the caller stopped early)."""
    for ref in pending if ray.is_initialized() else ():
        ray.cancel(ref, force=True)


def follow_tasks(ray, pending: dict) -> Iterator[Outcome]:
    """Write each finished task's run dir and yield its Outcome; `pending` shrinks as they do."""
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
        if not done:
            yield in_flight(ray, len(pending))
            continue
        run = pending.pop(done[0])
        try:
            result = ray.get(done[0])
        except ray.exceptions.RayError as lost:  # retried RETRIES times, lost every time
            yield Outcome("run", run.run_id, "failed", f"{type(lost).__name__}: {lost}")
            continue
        try:
            store_run(run.out, result.files, run.partition_dir, run.config)
        except (OSError, FLError) as failure:  # a full disk, a tracker gone: this run only
            yield Outcome("run", run.run_id, "failed", f"{type(failure).__name__}: {failure}")
            continue
        yield Outcome("run", run.run_id, result.status, result.message, result.record, result.node)


def in_flight(ray, count: int) -> Outcome:
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    cpus = int(sum(node.get("Resources", {}).get("CPU", 0) for node in nodes))
    running = min(count, cpus)
    note = f"{running} running, {count - running} queued on {len(nodes)} nodes"
    return Outcome("cluster", "", "running", note)


def partition_hash(files: dict[str, bytes]) -> str:
    return str(json.loads(files["partition.json"])["hash"])
