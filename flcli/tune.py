"""`fl tune`: a hyperparameter search over fl train's options with Optuna (the extra flcli[tune],
imported only here). The file's format and the objective's maths are in flcli/tunefile.py.

- The study lives in `sqlite:///results/<name>/study.db` (or --storage URL), named after the
  file's name; running the same command again resumes it. `trials` is the study's total: trials
  already complete, pruned or failed count towards it. A study whose stored [base], [space] and
  [objective] differ from the file's is refused rather than mixed.
- Each trial is an ordinary run dir, results/<name>/trials/<number>/ (one seed) or
  .../<number>/seed=S/ (several), trained by `train_run`, which knows nothing of Optuna.
- Pruning: each round's metric is reported at step seed_index * (rounds + 1) + round, so the
  pruner compares a trial with others at the same seed and round. A pruned trial's run dir is
  marked `pruned`; a run that fails at run time (diverges) ends its trial PRUNED too, so that the
  sampler learns to avoid it (its run dir stays `failed`).
- Ctrl-C (or SIGTERM) leaves the trial's run dir interrupted, marks the trial FAIL and enqueues its
  params again with the same run dir: the next session retries it first and the run continues from
  its checkpoint. A trial left RUNNING by a killed process is treated the same way by the next
  session on the same host (its host and pid are user attrs); trials running elsewhere are left be.
- The sampler is seeded from (seed, trials in the study), so a study is reproducible given the
  same sessions, and a resumed session never replays the first session's draws.
- Trials run one at a time: flcli's vectorized backend already keeps the cores busy with one run
  (the README's Tuning paragraph has the measurement).
"""

import json
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flcli import api
from flcli.config import TrainConfig
from flcli.errors import FLError, RunFailed
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
class RunResult:
    status: str  # completed | pruned | failed (at run time: diverged)
    rows: list[dict]
    message: str = ""


def train_run(
    partition_dir: Path, config: TrainConfig, out: Path, on_round: Callable[[dict], bool]
) -> RunResult:
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
        return RunResult("failed", training.run.rows, str(failure))
    finally:
        rounds.close()
        training.run.release()
    return RunResult("completed", training.run.rows)


def mark_pruned(training, round: int) -> RunResult:
    training.run.set_status("pruned", pruned_at_round=round)
    return RunResult("pruned", training.run.rows, f"pruned at round {round}")


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    state: str  # complete | pruned
    value: float | None
    params: dict[str, Any]
    run_dir: Path
    message: str = ""


def storage_url(plan: TunePlan, storage: str | None) -> str:
    return storage or f"sqlite:///{(plan.root / 'study.db').resolve()}"


def open_study(plan: TunePlan, storage: str | None):
    """The plan's study in the storage, created or loaded; refused when it is another study."""
    optuna = require_optuna()
    url = storage_url(plan, storage)
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
    except Exception as failure:  # Optuna and SQLAlchemy's many errors: a bad URL, no server
        raise FLError(f"storage {url}: {type(failure).__name__}: {failure}") from None
    definition = json.loads(json.dumps(plan.definition))
    stored = study.user_attrs.get("definition")
    if stored is None:
        study.set_user_attr("definition", definition)
    elif stored != definition:
        raise FLError(
            f"{url} holds a study {plan.name} of another [base], [space] or [objective]; "
            "choose another name or --storage, or delete the study"
        )
    study.sampler = make_sampler(optuna, plan, len(study.get_trials(deepcopy=False)))
    return study


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


def run_study(plan: TunePlan, study) -> Iterator[TrialOutcome]:
    """Run trials until the budget is spent (trials already in the study count), one at a time;
    one TrialOutcome per trial. A trial whose run raises FLError (a metric that is no column)
    is marked FAIL and the error raised; Ctrl-C marks it for a retry (see the module's doc)."""
    optuna = require_optuna()
    ensure_partition(plan)
    retry_stale(study)
    distributions = {param.key: distribution(optuna, param) for param in plan.space}
    start = time.monotonic()
    while plan.trials is None or finished(tally(study)) < plan.trials:
        if plan.timeout is not None and time.monotonic() - start >= plan.timeout:
            return
        trial = study.ask(distributions)
        yield evaluate(plan, study, trial)


def evaluate(plan: TunePlan, study, trial) -> TrialOutcome:
    from optuna.trial import TrialState

    run_dir = Path(trial.user_attrs.get(RUN_DIR) or plan.root / "trials" / str(trial.number))
    try:
        return run_trial(plan, study, trial, run_dir)
    except KeyboardInterrupt:
        study.enqueue_trial(
            trial.params, user_attrs={RUN_DIR: str(run_dir), RETRY_OF: trial.number}
        )
        raise
    finally:  # not left RUNNING, whatever stopped it
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def run_trial(plan: TunePlan, study, trial, run_dir: Path) -> TrialOutcome:
    from optuna.trial import TrialState

    for key, value in (
        (RUN_DIR, str(run_dir)),
        ("host", socket.gethostname()),
        ("pid", os.getpid()),
    ):
        trial.set_user_attr(key, value)
    params, seeds = dict(trial.params), plan.objective.seeds
    values = []
    for index, seed in enumerate(seeds):
        out = run_dir / f"seed={seed}" if len(seeds) > 1 else run_dir
        config = plan.config(params, seed)
        result = train_run(plan.partition_dir, config, out, report_to(plan, trial, index))
        if result.status != "completed":
            trial.set_user_attr(STOPPED, result.message)
            study.tell(trial, state=TrialState.PRUNED)
            return TrialOutcome(trial.number, "pruned", None, params, run_dir, result.message)
        values.append(run_value(result.rows, plan.objective, plan.rounds))
    value = combine(values, plan.objective.k, plan.objective.minimize)
    if math.isnan(value):
        message = f"its {plan.objective.metric} is NaN"
        trial.set_user_attr(STOPPED, message)
        study.tell(trial, state=TrialState.PRUNED)
        return TrialOutcome(trial.number, "pruned", None, params, run_dir, message)
    trial.set_user_attr(SEED_VALUES, values)
    study.tell(trial, value)
    return TrialOutcome(trial.number, "complete", value, params, run_dir)


def report_to(plan: TunePlan, trial, seed_index: int) -> Callable[[dict], bool]:
    """on_round for train_run: reports the round's metric to the trial; True to prune it."""
    metric = plan.objective.metric

    def on_round(record: dict) -> bool:
        if metric not in record:
            raise FLError(
                f"[objective] metric = {metric!r} is not a column of rounds.csv; its columns: "
                f"{', '.join(record)}"
            )
        round = int(record["round"])
        if round % plan.pruner.every and round != plan.rounds:
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


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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
        result = train_run(plan.partition_dir, plan.config(best.params, seed), out, never)
        if result.status != "completed":
            raise RunFailed(f"the best config's re-run with seed {seed} failed: {result.message}")
        yield seed, run_value(result.rows, plan.objective, plan.rounds)


def never(record: dict) -> bool:
    return False


def best_toml(params: dict[str, Any]) -> str:
    """The params as TOML lines to paste into [base]."""
    return "\n".join(f"{key} = {json.dumps(value)}" for key, value in params.items())
