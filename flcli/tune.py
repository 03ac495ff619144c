"""`fl tune`: a hyperparameter search over fl train's options with Optuna (the extra flcli[tune],
imported only here). The file's format and the objective's maths are in flcli/tunefile.py.

- The study lives in `sqlite:///results/<name>/study.db` (or --storage URL), named after the
  file's name; running the same command again resumes it. `trials` is the study's total: trials
  already complete, pruned or failed count towards it. A study whose stored [base], [space] and
  [objective] differ from the file's is refused rather than mixed.
- Each trial is an ordinary run dir, results/<name>/trials/<number>/ (one seed) or
  .../<number>/seed=S/ (several), trained by `train_prunable`, which knows nothing of Optuna.
- Pruning: each round's metric is reported at step seed_index * (rounds + 1) + round, so the
  pruner compares a trial with others at the same seed and round. A pruned trial's run dir is
  marked `pruned`; a run that fails at run time (diverges) ends its trial PRUNED too, so that the
  sampler learns to avoid it (its run dir stays `failed`).
- Ctrl-C (or SIGTERM) leaves the trial's run dir interrupted, marks the trial FAIL and enqueues its
  params again with the same run dir: the next session retries it first and the run continues from
  its checkpoint (on a Ray cluster, from round 0: a cancelled task sends nothing back). A trial
  left RUNNING by a killed process is treated the same way by the next session on the same host
  (its host and pid are user attrs); trials running elsewhere are left be.
- The sampler is seeded from (seed, trials in the study), so a study is reproducible given the
  same sessions, and a resumed session never replays the first session's draws.
- Trials run one at a time: flcli's vectorized backend already keeps the cores busy with one run
  (the README's Tuning paragraph has the measurement). With backend ray (fl tune --backend ray
  [--ray-address ADDR]) each trial is one Ray task and as many run at once as the cluster has
  CPUs: a StudyKeeper actor on this node holds the study (so the default SQLite file needs no
  shared file system), the nodes train in scratch dirs and report each round to it, and this
  process writes each trial's run dirs as it ends (flcli/cluster.py's machinery, as a Ray sweep).
"""

import functools
import json
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flcli import api
from flcli.config import TrainConfig
from flcli.databases import DRIVERS, check_sqlite_file
from flcli.engine.evalplan import is_evaluated
from flcli.errors import FLError, RunFailed, first_line
from flcli.fileio import alive
from flcli.tunefile import Choice, IntRange, Param, TunePlan, combine, run_value

RUN_DIR = "run_dir"  # user attr: where the trial's runs are
RETRY_OF = "retry_of"  # user attr of an enqueued retry: the interrupted trial's number
STOPPED = "stopped"  # user attr of a pruned trial: why
SEED_VALUES = "seed_values"  # user attr of a complete trial: each seed's value


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise FLError(
            "fl tune needs Optuna, an optional extra: pip install 'flcli[tune]'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@dataclass(frozen=True)
class PrunableRun:
    status: str  # completed | pruned | failed (at run time: diverged)
    rows: list[dict]
    message: str = ""


def train_prunable(
    partition_dir: Path, config: TrainConfig, out: Path, on_round: Callable[[dict], bool]
) -> PrunableRun:
    """Train one run into `out`, continuing the run left there if any. on_round gets every
    round's record from round 0 (those logged before too); when it returns True the run stops
    and its run.json says `pruned`. Knows nothing of Optuna, so it can run elsewhere."""
    import numpy as np

    training = api.prepare_training(partition_dir, config, out, resume=True)
    rounds = training.rounds()
    try:
        for record in list(training.run.rows):
            if on_round(record):
                return mark_pruned(training, record["round"])
        with np.errstate(all="ignore"):  # overflow shows up as a NaN loss, which fails the run
            for record in rounds:
                if on_round(record):
                    rounds.close()  # saves what was done
                    return mark_pruned(training, record["round"])
    except RunFailed as failure:
        return PrunableRun("failed", training.run.rows, str(failure))
    finally:
        rounds.close()
        training.run.release()
    return PrunableRun("completed", training.run.rows)


def mark_pruned(training, round: int) -> PrunableRun:
    training.run.set_status("pruned", pruned_at_round=round)
    return PrunableRun("pruned", training.run.rows, f"pruned at round {round}")


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    state: str  # complete | pruned | failed (a trial task lost on the cluster)
    value: float | None
    params: dict[str, Any]
    run_dir: Path
    message: str = ""


def check_runnable(plan: TunePlan) -> None:
    """One line before the study is opened or anything written: Ray missing or its address not
    answering (a Ray study), a tracker not installed or its URI unusable."""
    from flcli.tracking import require

    base = plan.config({}, plan.objective.seeds[0])
    if base.backend == "ray":
        from flcli.cluster import check_cluster_sweep
        from flcli.engine.raybackend import check_reachable

        check_cluster_sweep([base])
        if base.ray_address is not None:
            check_reachable(base.ray_address)
    if base.track is not None:
        require(base.track, base.track_uri)


def storage_url(plan: TunePlan, storage: str | None) -> str:
    return storage or f"sqlite:///{(plan.root / 'study.db').resolve()}"


def open_study(plan: TunePlan, storage: str | None):
    """The plan's study in the storage, created or loaded; refused when it is another study."""
    optuna = require_optuna()
    url = storage_url(plan, storage)
    where = f"--storage {storage}" if storage is not None else f"the study of {plan.name}"
    check_storage(url, where, made_here=storage is None)
    if storage is None:
        plan.root.mkdir(parents=True, exist_ok=True)
    try:
        study = optuna.create_study(
            storage=url,
            study_name=plan.name,
            direction="minimize" if plan.objective.minimize else "maximize",
            pruner=make_pruner(optuna, plan),
            load_if_exists=True,
        )
    except ImportError as missing:  # Optuna's own, raised from the driver's
        module = getattr(missing.__cause__, "name", None) or missing.name or "the driver"
        raise FLError(
            f"{where} needs the database driver {module}, which is not installed; install it "
            f"with: pip install {DRIVERS.get(module, module)}"
        ) from None
    except Exception as failure:  # Optuna and SQLAlchemy's many errors: no server, a bad login
        raise FLError(f"{where}: {type(failure).__name__}: {first_line(failure)}") from None
    definition = json.loads(json.dumps(plan.definition))
    stored = study.user_attrs.get("definition")
    if stored is None:
        study.set_user_attr("definition", definition)
    elif stored != definition:
        raise FLError(
            f"{url} holds a study {plan.name} of another [base], [space] or [objective]; "
            "choose another name or --storage, or delete the study"
        )
    waiting = optuna.trial.TrialState.WAITING  # enqueued retries: not drawn by the sampler
    drawn = [t for t in study.get_trials(deepcopy=False) if t.state != waiting]
    study.sampler = make_sampler(optuna, plan, len(drawn))
    return study


def check_storage(url: str, where: str, made_here: bool) -> None:
    """A storage URL Optuna can open: a database URL, and a SQLite file that is whole in a folder
    that exists (made_here: the default file, whose folder fl tune makes)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise FLError(
            f"{where} is not a database URL; give a database URL, e.g. sqlite:///study.db or "
            "postgresql://user@host/db"
        ) from None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    file = Path(parsed.database)
    damaged = "restore it, or move it aside to start a new study"
    check_sqlite_file(file, where, "study.db", damaged)
    if not made_here and not file.parent.is_dir():
        raise FLError(
            f"{where}: the folder {file.parent} does not exist; create it or give another path"
        )


def make_sampler(optuna, plan: TunePlan, trials_so_far: int):
    import numpy as np

    seed = int(np.random.SeedSequence([plan.seed, trials_so_far]).generate_state(1)[0])
    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=plan.startup_trials)


def make_pruner(optuna, plan: TunePlan):
    pruner = plan.pruner
    if pruner.kind == "none":
        return optuna.pruners.NopPruner()
    if pruner.kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=pruner.min_rounds, reduction_factor=pruner.reduction_factor
        )
    return optuna.pruners.MedianPruner(
        n_startup_trials=pruner.startup_trials, n_warmup_steps=pruner.warmup_rounds
    )


def distribution(optuna, param: Param):
    kinds = optuna.distributions
    if isinstance(param, Choice):
        return kinds.CategoricalDistribution(list(param.values))
    if isinstance(param, IntRange):
        return kinds.IntDistribution(param.low, param.high, log=param.log)
    return kinds.FloatDistribution(param.low, param.high, log=param.log)


def tally(study) -> dict[str, int]:
    """The study's trials by state; a FAIL trial that was retried counts as interrupted."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {trial.user_attrs.get(RETRY_OF) for trial in trials}
    counts = {"complete": 0, "pruned": 0, "failed": 0, "interrupted": 0, "running": 0}
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            counts["complete"] += 1
        elif trial.state == TrialState.PRUNED:
            counts["pruned"] += 1
        elif trial.state == TrialState.FAIL:
            counts["interrupted" if trial.number in retried else "failed"] += 1
        elif trial.state == TrialState.RUNNING:
            counts["running"] += 1
    return counts


def finished(counts: dict[str, int]) -> int:
    """The trials that count towards the budget."""
    return counts["complete"] + counts["pruned"] + counts["failed"]


def ensure_partition(plan: TunePlan) -> None:
    if not plan.partition_dir.is_dir():
        api.partition(plan.partition_dir, **plan.partition_options)


def run_study(plan: TunePlan, study, storage: str | None = None) -> Iterator[TrialOutcome]:
    """Run trials until the budget is spent (trials already in the study count); one
    TrialOutcome per trial. One at a time here; with backend ray in [base] (or fl tune --backend
    ray), as many at once as the cluster has CPUs, each trial one Ray task (see run_on_cluster).
    A trial whose run raises FLError (a metric that is no column) is marked FAIL and the error
    raised; Ctrl-C marks it for a retry (see the module's doc)."""
    ensure_partition(plan)
    retry_stale(study)
    if plan.config({}, plan.objective.seeds[0]).backend == "ray":
        yield from run_on_cluster(plan, storage)
        return
    keeper = StudyKeeper(plan, study=study)
    while keeper.wants_more(0):
        number, run_dir = keeper.ask()
        try:
            results = train_trial(plan, keeper.params(number), run_dir, number, keeper.report)
        except KeyboardInterrupt:
            keeper.interrupt(number)
            raise
        except BaseException:
            keeper.fail(number)
            raise
        yield keeper.conclude(number, results)


def train_trial(
    plan: TunePlan, params: dict, run_dir: Path, number: int, report: Callable
) -> list[PrunableRun]:
    """Train a trial's run of each seed into run_dir (or run_dir/seed=S), stopping at the first
    that does not complete; report(number, seed_index, record) -> True prunes."""
    seeds, results = plan.objective.seeds, []
    for index, seed in enumerate(seeds):
        out = run_dir / f"seed={seed}" if len(seeds) > 1 else run_dir
        on_round = functools.partial(report, number, index)
        results.append(train_prunable(plan.partition_dir, plan.config(params, seed), out, on_round))
        if results[-1].status != "completed":
            break
    return results


class StudyKeeper:
    """The study's side of the trials: asks for params, takes each round's report, concludes a
    trial from its runs. In the fl tune process, or as a Ray actor on its node when trials train
    on a cluster (then it is the one process that reports to the study)."""

    def __init__(self, plan: TunePlan, storage: str | None = None, study=None, pid: int = 0):
        self.plan = plan
        self.study = study if study is not None else open_study(plan, storage)
        self.started = time.monotonic()
        self.pid = pid or os.getpid()
        optuna = require_optuna()
        self.distributions = {p.key: distribution(optuna, p) for p in plan.space}
        self.trials: dict[int, Any] = {}

    def wants_more(self, in_flight: int) -> bool:
        """Whether the budget leaves room for one more trial beside those in flight."""
        plan = self.plan
        if plan.timeout is not None and time.monotonic() - self.started >= plan.timeout:
            return False
        return plan.trials is None or finished(tally(self.study)) + in_flight < plan.trials

    def ask(self) -> tuple[int, Path]:
        """A new trial (a retry first, when one is enqueued): its number and run dir."""
        trial = self.study.ask(self.distributions)
        run_dir = Path(
            trial.user_attrs.get(RUN_DIR) or self.plan.root / "trials" / str(trial.number)
        )
        for key, value in (
            (RUN_DIR, str(run_dir)),
            ("host", socket.gethostname()),
            ("pid", self.pid),
        ):
            trial.set_user_attr(key, value)
        self.trials[trial.number] = trial
        return trial.number, run_dir

    def params(self, number: int) -> dict[str, Any]:
        return dict(self.trials[number].params)

    def report(self, number: int, seed_index: int, record: dict) -> bool:
        return report_to(self.plan, self.trials[number], seed_index)(record)

    def conclude(self, number: int, results: list[PrunableRun]) -> TrialOutcome:
        """Tell the study the trial's value (pruned when a run did not complete, or its value is
        NaN)."""
        from optuna.trial import TrialState

        trial, plan = self.trials.pop(number), self.plan
        params, run_dir = dict(trial.params), Path(trial.user_attrs[RUN_DIR])
        stopped = next((r.message for r in results if r.status != "completed"), None)
        if stopped is None:
            values = [run_value(r.rows, plan.objective, plan.rounds) for r in results]
            value = combine(values, plan.objective.k, plan.objective.minimize)
            if not math.isnan(value):
                trial.set_user_attr(SEED_VALUES, values)
                self.study.tell(trial, value)
                return TrialOutcome(trial.number, "complete", value, params, run_dir)
            stopped = f"its {plan.objective.metric} is NaN"
        trial.set_user_attr(STOPPED, stopped)
        self.study.tell(trial, state=TrialState.PRUNED)
        return TrialOutcome(trial.number, "pruned", None, params, run_dir, stopped)

    def fail(self, number: int) -> None:
        """The trial raised (its metric is no column of rounds.csv): FAIL, not retried."""
        from optuna.trial import TrialState

        self.study.tell(self.trials.pop(number), state=TrialState.FAIL, skip_if_finished=True)

    def interrupt(self, number: int) -> None:
        """The trial stopped midway (Ctrl-C, an error): FAIL, and its params enqueued again with
        the same run dir, which the retry continues from its checkpoint."""
        from optuna.trial import TrialState

        trial = self.trials.pop(number)
        attrs = {RUN_DIR: trial.user_attrs[RUN_DIR], RETRY_OF: trial.number}
        self.study.enqueue_trial(trial.params, user_attrs=attrs)
        self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


@dataclass(frozen=True)
class TrialTask:
    """What a node needs to train one trial: a config and a run dir (relative to the trial's) per
    seed, and the files of those runs an interrupted session left."""

    number: int
    params: dict[str, Any]
    configs: list[TrainConfig]
    subdirs: list[str]  # "" for one seed, "seed=S" for several
    partition_hash: str
    resumed: dict[str, dict[str, bytes]]


def trial_task(plan: TunePlan, number: int, params: dict, run_dir: Path, hashed: str) -> TrialTask:
    from flcli.cluster import resumable_files

    seeds = plan.objective.seeds
    subdirs = [f"seed={seed}" if len(seeds) > 1 else "" for seed in seeds]
    resumed = {sub: resumable_files(run_dir / sub) for sub in subdirs if (run_dir / sub).is_dir()}
    configs = [plan.config(params, seed) for seed in seeds]
    return TrialTask(number, params, configs, subdirs, hashed, resumed)


def train_trial_on_node(task: TrialTask, partition_files: dict[str, bytes], keeper):
    """A Ray task: the trial's runs, each in a scratch dir of this node, reporting every round to
    the StudyKeeper actor (which may prune it); [(PrunableRun, the run dir's files)]."""
    import ray

    from flcli import cluster

    partition_dir = cluster.materialize_partition(partition_files, task.partition_hash)
    trained = []
    for index, (config, sub) in enumerate(zip(task.configs, task.subdirs, strict=True)):
        with cluster.scratch_run_dir(task.resumed.get(sub, {})) as scratch:

            def on_round(record: dict, index: int = index) -> bool:
                return ray.get(keeper.report.remote(task.number, index, record))

            result = train_prunable(partition_dir, cluster.on_node(config), scratch, on_round)
            trained.append((result, cluster.read_files(scratch)))
        if result.status != "completed":
            break
    return trained


def run_on_cluster(plan: TunePlan, storage: str | None) -> Iterator[TrialOutcome]:
    """Trials as Ray tasks, as many at once as the cluster has CPUs. The study stays with a
    StudyKeeper actor on this node (so a SQLite study needs no shared file system); the nodes
    train and report each round to it; this process writes each trial's run dirs as it ends."""
    from flcli import cluster

    base = plan.config({}, plan.objective.seeds[0])
    with cluster.session(base.ray_address, base.jobs, [base]) as ray:
        yield from trials_on_cluster(ray, plan, storage)


def trials_on_cluster(ray, plan: TunePlan, storage: str | None) -> Iterator[TrialOutcome]:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from flcli import cluster

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    plan = replace(plan, root=plan.root.resolve(), partition_dir=plan.partition_dir.resolve())
    keeper = (
        ray.remote(StudyKeeper)
        .options(num_cpus=0, scheduling_strategy=here)
        .remote(plan, storage_url(plan, storage), pid=os.getpid())
    )
    files = cluster.read_files(plan.partition_dir)
    shared, hashed = ray.put(files), cluster.partition_hash(files)
    train = ray.remote(num_cpus=1, max_retries=cluster.RETRIES)(train_trial_on_node)
    capacity = max(1, int(ray.cluster_resources().get("CPU", 1)))
    pending: dict = {}
    try:
        while True:
            while len(pending) < capacity and ray.get(keeper.wants_more.remote(len(pending))):
                number, run_dir = ray.get(keeper.ask.remote())
                params = ray.get(keeper.params.remote(number))
                task = trial_task(plan, number, params, run_dir, hashed)
                pending[train.remote(task, shared, keeper)] = (task, run_dir)
            if not pending:
                return
            done, _ = ray.wait(list(pending), num_returns=1)
            task, run_dir = pending.pop(done[0])
            yield conclude_on_driver(ray, keeper, plan, task, run_dir, done[0])
    except KeyboardInterrupt:
        for task, _ in pending.values():
            ray.get(keeper.interrupt.remote(task.number))
        raise
    finally:
        cluster.cancel(ray, pending)


def conclude_on_driver(ray, keeper, plan: TunePlan, task: TrialTask, run_dir: Path, ref):
    """Write a finished trial task's run dirs and conclude it with the keeper; a task that raised
    FLError (its metric is no column) fails the trial and stops the study, as locally."""
    from flcli import cluster

    try:
        trained = ray.get(ref)
    except ray.exceptions.RayError as failure:  # raised in the task, or lost RETRIES times
        ray.get(keeper.fail.remote(task.number))
        if isinstance(getattr(failure, "cause", None), FLError):
            raise FLError(str(failure.cause)) from None
        message = f"{type(failure).__name__}: {failure}"
        return TrialOutcome(task.number, "failed", None, task.params, run_dir, message)
    for (_, files), sub, config in zip(trained, task.subdirs, task.configs, strict=False):
        cluster.store_run(run_dir / sub, files, plan.partition_dir, config)
    return ray.get(keeper.conclude.remote(task.number, [result for result, _ in trained]))


def report_to(plan: TunePlan, trial, seed_index: int) -> Callable[[dict], bool]:
    """on_round for train_prunable: reports the round's metric to the trial; True to prune it."""
    metric = plan.objective.metric

    def on_round(record: dict) -> bool:
        if metric not in record:
            raise FLError(
                f"[objective] metric = {metric!r} is not a column of rounds.csv; its columns: "
                f"{', '.join(record)}"
            )
        round = int(record["round"])
        if not is_evaluated(record) or (round % plan.pruner.every and round != plan.rounds):
            return False
        step = seed_index * (plan.rounds + 1) + round
        trial.report(plan.objective.signed(float(record[metric])), step)
        return trial.should_prune()

    return on_round


def retry_stale(study) -> None:
    """Trials left RUNNING by a killed process on this host: FAIL, and enqueued again."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get("pid")
        if trial.user_attrs.get("host") != host or not isinstance(pid, int) or alive(pid):
            continue
        attrs = {RUN_DIR: trial.user_attrs.get(RUN_DIR), RETRY_OF: trial.number}
        study.enqueue_trial(trial.params, user_attrs={k: v for k, v in attrs.items() if v})
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)


@dataclass(frozen=True)
class BestTrial:
    number: int
    value: float
    params: dict[str, Any]
    run_dir: Path
    seed_values: list[float]


def best_trials(study, count: int) -> list[BestTrial]:
    """The `count` best complete trials, best first."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    descending = study.direction == StudyDirection.MAXIMIZE
    ranked = sorted(complete, key=lambda t: (-t.value if descending else t.value, t.number))
    return [
        BestTrial(
            t.number,
            float(t.value),
            dict(t.params),
            Path(t.user_attrs.get(RUN_DIR, "")),
            list(t.user_attrs.get(SEED_VALUES, [])),
        )
        for t in ranked[:count]
    ]


def confirm_seeds(plan: TunePlan, count: int) -> list[int]:
    """Seeds the study never trained with."""
    first = max(plan.objective.seeds) + 1
    return list(range(first, first + count))


def confirm(plan: TunePlan, best: BestTrial, seeds: list[int]) -> Iterator[tuple[int, float]]:
    """Train the best trial's config over fresh seeds into results/<name>/best/<trial>/seed=S
    (a done run is read, not trained again); each seed's value in the objective's mode."""
    for seed in seeds:
        out = plan.root / "best" / str(best.number) / f"seed={seed}"
        result = train_prunable(plan.partition_dir, plan.config(best.params, seed), out, never)
        if result.status != "completed":
            raise RunFailed(f"the best config's re-run with seed {seed} failed: {result.message}")
        yield seed, run_value(result.rows, plan.objective, plan.rounds)


def never(record: dict) -> bool:
    return False


def best_toml(params: dict[str, Any]) -> str:
    """The params as TOML lines to paste into [base]."""
    return "\n".join(f"{key} = {json.dumps(value)}" for key, value in params.items())
