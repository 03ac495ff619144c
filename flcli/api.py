"""The library API behind the command line: each command is one call here."""

import contextlib
import errno
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flcli.assemble import Parts, assemble
from flcli.config import FLUSH_SECONDS, TRACKERS, TrainConfig
from flcli.data.config import PartitionConfig
from flcli.data.store import Partition, load_partition, write_partition
from flcli.engine.health import LearningCheck
from flcli.engine.outcome import RoundResult
from flcli.engine.rounds import round_kind, run_rounds
from flcli.errors import FLError, RunFailed
from flcli.models.base import capabilities_of
from flcli.options import from_mapping
from flcli.runcheck import check_checkpoint
from flcli.runlog import RunDir, open_run
from flcli.tracking import EXPORT, Exported, Tracker, export_run, open_tracker, require

if TYPE_CHECKING:
    from flcli.plot import PlotSummary
    from flcli.report import Report


def partition(
    out: Path, config: PartitionConfig | None = None, **options: Any
) -> tuple[Partition, bool]:
    """Build a partition and write its dir; returns it and whether anything was written.

    options: PartitionConfig's fields by name (as in a sweep file), over config's own values,
    e.g. partition(out, dataset="digits", clients=10, scheme="dirichlet", alpha=0.1)."""
    from flcli.data.build import build_partition  # pandas, scikit-learn: only to partition
    from flcli.data.heatmap import draw_heatmap

    if config is None or options:
        base = {} if config is None else {f.name: getattr(config, f.name) for f in fields(config)}
        config = from_mapping(PartitionConfig, {**base, **options}, "partition options")
    built = build_partition(config)
    return built, write_partition(built, out, draw_heatmap=draw_heatmap)


@dataclass
class Training:
    """A run ready to go: iterate over rounds() to train, one record per round."""

    run: RunDir
    parts: Parts
    resume_from: RoundResult | None
    notes: list[str] = field(default_factory=list)  # what the user should know before it runs
    # what the user should know about the rounds so far (see flcli.engine.health); run.json keeps
    # them as `warnings`
    warnings: list[str] = field(default_factory=list)
    tracked: str | None = None  # with --track: where the rounds are logged, once training starts

    @property
    def config(self) -> TrainConfig:
        """The resolved config: every default filled."""
        return self.parts.config

    @property
    def partition(self) -> Partition:
        return self.parts.partition

    @property
    def already_completed(self) -> bool:
        return self.run.status == "completed"

    def rounds(self) -> Iterator[dict]:
        """Train, yielding each round's rounds.csv row; rounds.csv and the checkpoint are saved
        as the run goes (every second, or every --checkpoint-every rounds), and with --track each
        row is logged to the tracker as it comes."""
        if self.already_completed:
            return
        tracker = self.start_tracking()
        try:
            with contextlib.closing(self.train()) as records:  # its run status set before finish
                for record in records:
                    if tracker is not None:
                        track(tracker, record)
                    yield record
        finally:
            if tracker is not None:
                tracker.finish(self.run.status)

    def start_tracking(self) -> Tracker | None:
        """With --track: the run's tracked run, found again or started, holding the rounds a
        resumed run has logged already."""
        if self.config.track is None:
            return None
        tracker = open_tracker(
            self.config.track, self.config.track_uri, self.run.path, self.run.info, live=True
        )
        for row in self.run.rows:
            tracker.log(row)
        self.tracked = tracker.where
        return tracker

    def train(self) -> Iterator[dict]:
        """The rounds, saved as they come, the run's status kept in run.json."""
        every = self.config.checkpoint_every
        finished = False
        last_flush = time.monotonic()
        check = self.learning_check()
        try:
            self.run.set_status("running")
            for result in run_rounds(self.parts, self.resume_from):
                clients = result.clients if self.config.log_clients else None
                record = self.published(result.record)
                self.run.append(record, result.state, clients)
                if check.observe(self.run.rows, len(self.run.rows) - 1):
                    self.warnings[:] = self.run.info["warnings"] = list(check.warnings)
                round = result.record["round"]
                due = round % every == 0 if every else time.monotonic() - last_flush > FLUSH_SECONDS
                if due or round == self.config.rounds:
                    self.run.flush()
                    last_flush = time.monotonic()
                yield record
            finished = True
            self.run.set_status("completed", wall_time_s=self.run.rows[-1]["elapsed_s"])
        except OSError as failure:
            if failure.errno != errno.ENOSPC:
                raise
            finished = True  # no flush: it would hit the full disk again
            raise self.disk_full(failure) from None
        except (RunFailed, FLError, MemoryError) as failure:  # not resumable as it stands
            finished = True
            self.run.flush()
            self.run.set_status("failed", error=str(failure) or type(failure).__name__)
            raise
        finally:
            if not finished:
                self.run.flush()
                error = sys.exc_info()[1]  # an internal error (a bug) fails the run
                if error is None or isinstance(error, (KeyboardInterrupt, GeneratorExit)):
                    self.run.set_status("interrupted")
                else:
                    self.run.set_status("failed", error=f"internal error: {error!r}")
            self.run.release()

    def disk_full(self, failure: OSError) -> RunFailed:
        """The run marked failed (when run.json still fits) and the line that says so."""
        message = (
            f"{failure.filename or self.run.path}: no space left on device; free some space, then "
            "run the same command with --resume (the last checkpoint is intact)"
        )
        # not even run.json fits: it keeps "running", which --resume continues
        with contextlib.suppress(OSError):
            self.run.set_status("failed", error=message)
        return RunFailed(message)

    def published(self, record: dict) -> dict:
        """The round's record as rounds.csv gets it: with DP, without what epsilon does not cover
        (the exact cohort size, per-client accuracies) unless --dp-publish-uncovered."""
        if self.config.dp_clip is None or self.config.dp_publish_uncovered:
            return record
        return {key: value for key, value in record.items() if not uncovered(key)}

    def learning_check(self) -> LearningCheck:
        """The check of whether the run learns, having read the rounds a resumed run logged
        (their warnings kept, as the uninterrupted run found them)."""
        lr = self.config.lr if capabilities_of(self.parts.model).parametric else None
        check = LearningCheck(self.partition.num_classes, lr, self.parts.uplink.dp is not None)
        for i in range(len(self.run.rows)):
            check.observe(self.run.rows, i)
        self.warnings[:] = check.warnings
        if check.warnings:
            self.run.info["warnings"] = list(check.warnings)
        else:
            self.run.info.pop("warnings", None)
        return check

    def frame(self):
        """Train to the end and return rounds.csv as a pandas DataFrame."""
        import pandas as pd

        for _ in self.rounds():
            pass
        return pd.DataFrame(self.run.rows)


def track(tracker: Tracker, record: dict) -> None:
    """Log a round; a tracker gone wrong stops the run, which is saved and resumes."""
    try:
        tracker.log(record)
    except FLError as failure:
        raise RunFailed(
            f"{failure}; the run stopped at round {record['round']}, saved: fix the tracking, then "
            "continue it with --resume"
        ) from None


def simulate(partition: Partition | Path, config: TrainConfig) -> Iterator[RoundResult]:
    """The rounds of a run in memory, nothing written: round 0 (the initial model), then one
    RoundResult per round (its rounds.csv record, the server state, the clients' rows)."""
    if not isinstance(partition, Partition):
        partition = load_partition(partition, config.dtype)
    return run_rounds(assemble(config, partition))


def check_sources(run: RunDir, sources: dict[str, dict]) -> None:
    """A run continues only with the code it started with: a plugin file that changed since is
    refused (its results would mix two algorithms without a word)."""
    recorded = run.info.get("sources") or {}
    for key, now in sources.items():
        before = recorded.get(key, {}).get("sha256")
        if run.rows and before and before != now.get("sha256"):
            run.release()
            raise FLError(
                f"{now.get('file', now['reference'])} changed since the run in {run.path} started "
                f"(sha256 {before[:12]}..., now {now['sha256'][:12]}...); put the file back as it "
                "was, or train in a new --out"
            )


UNCOVERED_PREFIXES = ("client_accuracy_", "personal_accuracy_")
# the cohort's exact size, and the counters that are multiples of it (bytes per client x clients)
UNCOVERED_COUNTS = ("clients", "bytes_up", "bytes_down", "dense_bytes", "dropped")


def uncovered(column: str) -> bool:
    """A rounds.csv column a DP run's epsilon does not cover."""
    return column in UNCOVERED_COUNTS or column.startswith(UNCOVERED_PREFIXES)


def prepare_training(
    partition_dir: Path, config: TrainConfig, out: Path, resume: bool = False
) -> Training:
    """Check everything a run needs before it starts and build its parts, once; refuse an --out
    that holds another run."""
    data = load_partition(partition_dir, config.dtype)  # straight in the run's dtype
    parts = assemble(config, data)
    if config.track is not None:  # the library and the URI, before the run dir is written
        require(config.track, config.track_uri)
    run = open_run(out, parts.config, Path(partition_dir), data.meta, given=config)
    if parts.uplink.dp is not None:  # what the epsilon column was computed from, for a paper
        run.info["dp"] = parts.uplink.dp_record()
    sources = parts.sources
    check_sources(run, sources)
    if sources:
        run.info["sources"] = sources
    resume_from = None
    if run.status != "completed" and run.rows:
        if not resume:
            raise FLError(
                f"--out {out} holds an unfinished run ({run.status}); "
                "continue it with --resume or choose a new --out"
            )
        saved = run.checkpoint()
        if saved is not None:
            record, state = saved
            fresh = round_kind(parts).initial_state()
            file = Path(out) / "checkpoint.npz"
            check_checkpoint(file, record["round"], state, fresh, parts.config.rounds)
            resume_from = RoundResult(record, state)
    return Training(run, parts, resume_from, list(parts.notes))


def plot(paths: list[Path], out: Path, metric: str | None = None, **options) -> "PlotSummary":
    """Find the runs under `paths` (copies of one run counted once), group them and draw the
    figure `out`. options: plot_runs's (x, group_by as "algo,alpha", facet, smooth, logy,
    final, layout), and kind: line (the default) or distribution (the last round's per-client
    metric, one ECDF per group, from clients.csv: flcli.distplot)."""
    from flcli.plot import plot_runs  # matplotlib and pandas: only for plots and reports
    from flcli.runs import default_metric, find_runs, merge_copies, parse_keys

    runs, notes = merge_copies(find_runs(paths))
    options["group_by"] = parse_keys(options.get("group_by"), "--group-by")
    kind = options.pop("kind", "line")
    if kind == "distribution":
        from flcli.distplot import plot_distribution

        layout = options.get("layout")
        labels = layout.labels if layout is not None else {}
        metric = metric or "client_accuracy"
        summary = plot_distribution(runs, out, metric, options["group_by"], labels)
        summary.notes[:0] = notes
        return summary
    if kind != "line":
        raise FLError(f"--kind {kind}: choose line or distribution")
    summary = plot_runs(runs, out, metric=metric or default_metric(runs), **options)
    summary.notes[:0] = notes
    return summary


def report(
    paths: list[Path],
    metric: str | None = None,
    target: float | None = None,
    baseline: str | None = None,
    group_by: str | None = None,
    **options,
) -> "Report":
    """Find the runs under `paths` (copies of one run counted once), group them and summarize
    each group. options: summarize's (final, ci, pivot, compare)."""
    from flcli.report import summarize
    from flcli.runs import default_metric, find_runs, group_runs, merge_copies, parse_keys

    runs, notes = merge_copies(find_runs(paths))
    groups = group_runs(runs, parse_keys(group_by, "--group-by"))
    summary = summarize(groups, metric or default_metric(runs), target, baseline, **options)
    summary.notes[:0] = notes
    return summary


def export(paths: list[Path], to: str, uri: str | None = None) -> tuple[int, Iterator[Exported]]:
    """Log the runs found under `paths` (run.json's config, rounds.csv's rows) to `to`, mlflow or
    tensorboard, as --track would have; a run already there gets only the rounds it lacks.
    Returns how many runs were found, and one Exported per run as each is done."""
    from flcli.runs import find_runs

    if to not in TRACKERS:
        raise FLError(f"--to {to!r} is not one of: {', '.join(TRACKERS)}")
    runs = find_runs(paths)  # a path that holds no run is one line before a store is made
    require(to, uri, EXPORT)

    def each() -> Iterator[Exported]:
        for run in runs:
            rows = [] if run.rounds is None else run.rounds.to_dict("records")
            yield export_run(run.path, run.info, rows, to, uri)

    return len(runs), each()
