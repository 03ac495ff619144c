"""One run of a sweep trained to its end, whatever happens to it: an Outcome, never an exception.

Shared by `fl sweep`'s local workers and the Ray tasks of a cluster sweep (flcli/cluster.py)."""

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from flcli import api
from flcli.config import TrainConfig
from flcli.errors import FLError, RunFailed
from flcli.runlog import RunBusy, wait_for_run


@dataclass(frozen=True)
class Outcome:
    """What happened to one run (or one partition) of the sweep."""

    kind: str  # "partition", "run", or "cluster" (a progress note of a Ray sweep)
    id: str
    status: str  # completed | skipped | failed | interrupted (cluster: running)
    message: str = ""
    record: dict = field(default_factory=dict)  # the run's last rounds.csv row
    node: str = ""  # the Ray node that trained the run


def prepare(partition_dir: Path, config: TrainConfig, out: Path) -> api.Training:
    """The run's Training; a run another fl process trains (a second fl sweep on the same file) is
    waited for, then reopened: done by then, or left interrupted to continue."""
    while True:
        try:
            return api.prepare_training(partition_dir, config, out, resume=True)
        except RunBusy:
            wait_for_run(out)


def train_run(partition_dir: Path, config: TrainConfig, out: Path, run_id: str) -> Outcome:
    try:
        training = prepare(partition_dir, config, out)
        if training.already_completed:
            return Outcome("run", run_id, "skipped", record=training.run.rows[-1])
        last = deque(training.rounds(), maxlen=1)  # train; keep the last round's record
    except (FLError, RunFailed) as failure:
        return Outcome("run", run_id, "failed", str(failure))
    except KeyboardInterrupt:  # Ctrl-C reaches the workers too: the run saved what it did
        return Outcome("run", run_id, "interrupted")
    except Exception as bug:  # one broken run must not take the sweep down
        return Outcome("run", run_id, "failed", f"{type(bug).__name__}: {bug}")
    return Outcome("run", run_id, "completed", record=last[0] if last else {})
