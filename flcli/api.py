"""The library API behind the command line: each command is one call here."""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flcli.algorithms.registry import make_algorithm
from flcli.config import FLUSH_SECONDS, TrainConfig
from flcli.data.build import build_partition
from flcli.data.heatmap import draw_heatmap
from flcli.data.store import Partition, load_partition, write_partition
from flcli.engine.backends import check_backend
from flcli.engine.loop import RoundResult, run_rounds
from flcli.errors import FLError, RunFailed
from flcli.models.registry import make_model
from flcli.runlog import RunDir, open_run


def partition(out: Path, dataset: str = "digits", **options) -> tuple[Partition, bool]:
    """Build a partition and write its dir; returns it and whether anything was written."""
    built = build_partition(dataset, **options)
    return built, write_partition(built, out, draw_heatmap=draw_heatmap)


@dataclass
class Training:
    """A run ready to go: iterate over rounds() to train, one record per round."""

    run: RunDir
    partition: Partition
    config: TrainConfig
    resume_from: RoundResult | None

    @property
    def already_completed(self) -> bool:
        return self.run.status == "completed"

    def rounds(self) -> Iterator[dict]:
        model = make_model(
            self.config.model, self.partition.num_features, self.partition.num_classes
        )
        algorithm = make_algorithm(self.config.algo, self.config.algo_params)
        every = self.config.checkpoint_every
        finished = False
        last_flush = time.monotonic()
        try:
            self.run.set_status("running")
            for result in run_rounds(
                self.partition, model, algorithm, self.config, self.resume_from
            ):
                self.run.append(result.record, result.state)
                round = result.record["round"]
                due = round % every == 0 if every else time.monotonic() - last_flush > FLUSH_SECONDS
                if due or round == self.config.rounds:
                    self.run.flush()
                    last_flush = time.monotonic()
                yield result.record
            finished = True
            self.run.set_status("completed", wall_time_s=self.run.rows[-1]["elapsed_s"])
        except RunFailed as failure:
            finished = True
            self.run.flush()
            self.run.set_status("failed", error=str(failure))
            raise
        finally:
            if not finished:
                self.run.flush()
                self.run.set_status("interrupted")


def prepare_training(
    partition_dir: Path, config: TrainConfig, out: Path, resume: bool = False
) -> Training:
    """Check everything a run needs before it starts; refuse an --out that holds another run."""
    data = load_partition(partition_dir)
    make_model(config.model, data.num_features, data.num_classes)
    make_algorithm(config.algo, config.algo_params)
    config.cohort_size(data.num_clients)
    check_backend(config.backend)
    run = open_run(out, config, Path(partition_dir), data.meta)
    resume_from = None
    if run.status != "completed" and run.rows:
        if not resume:
            raise FLError(
                f"--out {out} holds an unfinished run ({run.status}); "
                "continue it with --resume or choose a new --out"
            )
        saved = run.checkpoint()
        if saved is not None:
            resume_from = RoundResult(*saved)
    return Training(run=run, partition=data, config=config, resume_from=resume_from)
