"""The `fl` command line: options -> config -> one library call -> rich output."""

import inspect
import io
import shlex
import signal
import sys
import typing
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flcli.config import ALGORITHM as ALGORITHM_PANEL
from flcli.config import TrainConfig
from flcli.crashlog import internal_error_line, raise_internal_errors
from flcli.data import progress
from flcli.data.config import PartitionConfig
from flcli.data.schemes import catalogue as scheme_catalogue
from flcli.errors import FLError, RunFailed
from flcli.options import command

try:  # typer >= 0.22 vendors click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer on the real click
    from click import exceptions as click_errors

app = typer.Typer(
    name="fl",
    help="Federated learning experiments from the command line: partition, train, plot.\n\n"
    "Example: fl partition digits --clients 10 --scheme dirichlet --alpha 0.1 --out results/p && "
    "fl train results/p --algo fedavg --out results/run && fl plot results/run --out acc.png",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
invocation: list[str] = []  # the arguments of this `fl` call, to print how to resume it


def show_version(given: bool) -> None:
    if given:
        from importlib.metadata import PackageNotFoundError, version

        try:
            out.print(f"flcli {version('flcli')}")
        except PackageNotFoundError:
            out.print("flcli (not installed as a package)")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print flcli's version.", callback=show_version),
    ] = False,
) -> None:
    """Federated learning experiments from the command line: partition, train, plot."""


OutDir = Annotated[Path, typer.Option("--out", help="Directory to write.", show_default=False)]


def partition(
    given: dict,
    out_dir: OutDir,
    dataset: Annotated[
        str,
        typer.Argument(
            help="Built-in name, generator (synthetic:alpha=1,beta=1), FILE.csv|.parquet|.npz, "
            "openml:NAME, leaf:PATH, hf:NAME or flower:DIR (see: fl list datasets)."
        ),
    ] = PartitionConfig.dataset,
    export: Annotated[
        tuple[str, Path] | None,
        typer.Option(
            help="Also write the shards as FORMAT in DIR: flower (flwr-datasets create's "
            "DIR/partition_i folders, and DIR/test; needs flcli[hf]).",
            metavar="FORMAT DIR",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Split a dataset into client shards and write a partition dir."""
    from flcli import api

    config = PartitionConfig(dataset=dataset, **given)
    export = export or (None, None)
    if export[0] is not None and export[0] not in ("flower",):
        raise FLError(f"--export {export[0]!r}: the one format is flower (--export flower DIR)")
    if export[1] is not None and export[1].exists():
        raise FLError(
            f"--export flower {export[1]} already exists; choose a new folder or delete it"
        )
    with partition_progress(f"loading {dataset}") as listener, progress.listening(listener):
        built, written = api.partition(out_dir, config)
        if export[0] is not None:
            from flcli.data.flower_export import export_flower

            progress.stage(f"exporting {built.num_clients} shards to {export[1]}")
            export_flower(built, export[1])
    from flcli.data.report import partition_report

    out.print(partition_report(built.meta))
    note = "wrote" if written else "already there, identical:"
    out.print(f"{note} {out_dir} (partition.json, data.npz, partition.png)")
    if export[0] is not None:
        out.print(
            f"exported {built.num_clients} partitions to {export[1]} (Flower Datasets' layout)"
        )


@contextmanager
def partition_progress(first: str):
    """A transient line on stderr: the stage fl partition is at, with a bar of the bytes read
    while it reads a file; gone when it is done."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn()]
    with Progress(*columns, TimeElapsedColumn(), console=err, transient=True) as shown:
        task = shown.add_task(first, total=None)

        def listener(stage: str, done: int, total: int | None) -> None:
            shown.update(task, description=stage, completed=done, total=total)

        yield listener


app.command(
    name="partition",
    epilog="Examples: fl partition digits --clients 10 --scheme dirichlet --alpha 0.1 "
    "--seed 0 --out results/digits-dir0.1 · fl partition synthetic:alpha=1,beta=1 --scheme natural "
    "--out results/synthetic · fl partition data.csv --target label --scheme pathological "
    "--classes-per-client 2 --out results/mine",
)(command(PartitionConfig, partition))


@app.command(
    name="inspect",
    epilog="Examples: fl inspect results/digits-dir0.1 · fl inspect results/digits-dir0.1 --verify",
)
def inspect_(
    partition_dir: Annotated[Path, typer.Argument(help="A dir written by fl partition.")],
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Also read data.npz and hash its arrays in full against partition.json's hash "
            "(fl train hashes them only when data.npz changed since it last matched).",
        ),
    ] = False,
) -> None:
    """Print the report of an existing partition (sizes, labels per client, skew)."""
    from flcli.data.report import partition_report
    from flcli.data.store import load_partition, read_meta

    meta = load_partition(partition_dir, verify=True).meta if verify else read_meta(partition_dir)
    out.print(partition_report(meta))
    out.print(f"figure: {partition_dir / 'partition.png'}")
    if verify:
        out.print(f"verified: data.npz's arrays match partition.json's hash {meta['hash']}")


TRAIN_HELP = (
    "Simulate federated training rounds and log each round to rounds.csv.\n\n"
    "Privacy and robustness: fl train P --dp-clip 1.0 --dp-epsilon 2 --out R (client-level DP, "
    "epsilon per round in rounds.csv); --secure-agg; --aggregator krum --attack signflip "
    "--malicious 0.2; --dropout 0.1. Your own code: --algo my_fl.py:fedx --algo-arg decay=0.9 "
    "--model my_fl.py:MyModel --model-arg scale=0.1 (see docs/api.md)."
)
TRAIN_EPILOG = (
    "Example: fl train results/digits-iid --algo fedavg --model mlp --hidden 128,64 "
    "--rounds 30 --seed 0 --out results/runs/fedavg-mlp  ·  scikit-learn: --model "
    "sklearn:SGDClassifier --model-arg alpha=0.001  ·  repeat a run: "
    "fl train --config results/runs/fedavg-mlp/run.json --out results/runs/again"
)


def train(
    options: dict,
    out_dir: OutDir,
    partition_dir: Annotated[
        Path | None,
        typer.Argument(
            help="A dir written by fl partition (or `partition` in the --config file).",
            show_default=False,
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="A TOML file of train options (flags override it), or a run's run.json to "
            "repeat that run.",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run in --out.")] = False,
) -> None:
    """fl train; its help text is TRAIN_HELP (Typer keeps a docstring's line breaks)."""
    from flcli import api
    from flcli.configfile import resolve_train_config

    config, partition_dir = resolve_train_config(options, config_file, partition_dir)
    training = api.prepare_training(partition_dir, config, out_dir, resume=resume)
    if training.already_completed:
        out.print(f"{out_dir} already holds this completed run; nothing to do")
        if training.config.track is not None:
            out.print(f"to track it, run: fl export {out_dir} --to {training.config.track}")
        return
    for note in training.notes:  # a warning says so itself
        shown = note if note.startswith("warning: ") else f"note: {note}"
        err.print(shown, highlight=False, soft_wrap=True, markup=False)
    metric = "test_r2" if training.partition.task == "regression" else "test_accuracy"
    # a run stopped between its last checkpoint and "completed" trains no round when resumed
    record = follow_rounds(training, metric, resume, out_dir) or training.run.rows[-1]
    out.print(
        f"round {record['round']}: {metric.replace('_', ' ')} {record[metric]:.4f}, "
        f"train loss {record['train_loss']:.4f} -> {out_dir / 'rounds.csv'}"
    )
    if training.tracked is not None:
        out.print(f"tracked: {training.tracked}", soft_wrap=True, highlight=False)


def follow_rounds(training, metric: str, resume: bool, out_dir: Path) -> dict:
    """Train with a progress bar; Ctrl-C or SIGTERM saves what was done and says how to resume.
    Returns the last round's record."""
    import numpy as np
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[short]} {task.fields[metric]}  loss {task.fields[loss]}"),
    ]
    record = {}
    short = {"test_r2": "r2", "test_accuracy": "acc"}[metric]
    config = training.config
    # overflow shows up as a NaN loss, which stops the run with advice: no numpy warnings
    with Progress(*columns, console=err, transient=False) as progress, np.errstate(all="ignore"):
        task = progress.add_task(
            f"{training.parts.spec.name} rounds",
            total=config.rounds,
            short=short,
            metric="-",
            loss="-",
        )
        rounds = training.rounds()
        default_ctrl_c = signal.getsignal(signal.SIGINT)
        if default_ctrl_c is signal.default_int_handler:  # not when started with Ctrl-C ignored
            signal.signal(signal.SIGINT, interrupt_once)
        default_term = signal.signal(signal.SIGTERM, interrupt_once)  # kill: saved as Ctrl-C is
        interrupted, shown = False, 0
        try:
            for record in rounds:
                progress.update(task, completed=record["round"], **shown_scores(record, metric))
                for warning in training.warnings[shown:]:
                    warning_line(progress.console, warning)
                shown = len(training.warnings)
        except KeyboardInterrupt:
            interrupted = True
            rounds.close()  # saves what was done and marks the run interrupted
            raise resume_advice(training.run.saved_round, resume, out_dir) from None
        finally:
            if not interrupted:  # after a Ctrl-C, Ctrl-C stays ignored until the process exits
                signal.signal(signal.SIGINT, default_ctrl_c)
                signal.signal(signal.SIGTERM, default_term)
    return record


def shown_scores(record: dict, metric: str) -> dict[str, str]:
    """The progress bar's metric and loss of a round; none for a round not evaluated (the bar
    keeps the last evaluated round's)."""
    from flcli.engine.evalplan import is_evaluated

    if not is_evaluated(record):
        return {}
    return {"metric": f"{record[metric]:.4f}", "loss": f"{record['train_loss']:.4f}"}


def resume_advice(saved: int | None, resume: bool, out_dir: Path) -> RunFailed:
    """What an interrupted run says: how to start or continue it. saved: the checkpoint's round
    (may be one past the last record shown)."""
    if saved is None:
        return RunFailed(
            "interrupted before the first round was saved; start it again with: "
            f"{shlex.join(['fl', *invocation])}"
        )
    again = shlex.join(["fl", *invocation, *(["--resume"] if not resume else [])])
    return RunFailed(
        f"interrupted after round {saved}, saved in {out_dir}; continue it with: {again}"
    )


def alias_parameters() -> list[inspect.Parameter]:
    """--mu, --server-lr, ...: each built-in algorithm's hyperparameters as flags that fill
    --algo-arg, with their help from the factories' signatures."""
    from flcli.algorithms.registry import ALGORITHMS

    users: dict[str, list] = {}
    for spec in ALGORITHMS.values():
        for name, hyper in spec.hyperparameters.items():
            users.setdefault(name, []).append((spec.name, hyper))
    parameters = []
    for name, found in users.items():
        hyper = found[0][1]
        kind = next(k for k in typing.get_args(hyper.kind) or (hyper.kind,) if k is not type(None))
        info = typer.Option(
            hyper.flag,
            help=f"{hyper.about.help} ({', '.join(algo for algo, _ in found)})",
            show_default="per algorithm: fl list algorithms",
            rich_help_panel=ALGORITHM_PANEL,
        )
        parameters.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[kind | None, info],
            )  # fmt: skip
        )
    return parameters


def register_train(full: bool) -> None:
    """Adds `fl train` to the app, after `inspect`. Its options come from TrainConfig and the
    algorithms' signatures, which import NumPy: they are built only when `fl train` runs; for any
    other command (`fl --help` lists train by its help alone) a stand-in without options does."""
    from typer.models import CommandInfo

    current = next((c for c in app.registered_commands if c.name == "train"), None)
    if current is not None and (current.callback is not train_stand_in or not full):
        return
    callback = command(TrainConfig, train, extra=alias_parameters()) if full else train_stand_in
    info = CommandInfo(name="train", callback=callback, help=TRAIN_HELP, epilog=TRAIN_EPILOG)
    if current is not None:
        app.registered_commands.remove(current)
    at = next(i for i, c in enumerate(app.registered_commands) if c.name == "inspect") + 1
    app.registered_commands.insert(at, info)


def train_stand_in() -> None:
    """What `fl --help` lists for train (never run: `fl train` registers the real command)."""


def interrupt_once(signum, frame):
    """Ctrl-C (or SIGTERM) stops the run; another, while the run saves what it did, is ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


RunPaths = Annotated[
    list[Path] | None,
    typer.Argument(help="Run dirs, or folders searched recursively for runs.", show_default=False),
]
SweepFile = Annotated[
    Path | None,
    typer.Option(
        "--sweep",
        help="Take exactly the runs of this sweep file's current grid (instead of RUNS).",
        metavar="SWEEP.toml",
    ),
]
Final = Annotated[
    str,
    typer.Option(help="Final metric of a run: last, last-k:K (mean of the last K rounds), best."),
]
GroupBy = Annotated[
    str | None,
    typer.Option(
        help="Setting(s) whose values make a group, comma-separated: algo, or any config or "
        "partition key (lr, mu, alpha, partition, ...). Runs of a group are averaged over seeds.",
        show_default="every setting that differs, seeds aside",
    ),
]
Metric = Annotated[
    str | None,
    typer.Option(
        help="rounds.csv column to show.",
        show_default="test_accuracy; test_r2 or test_mse for regression runs",
    ),
]


@app.command(
    epilog="Examples: fl plot results/runs --out results/accuracy.png  ·  "
    "fl plot results/sweep --group-by algo --facet partition --out results/sweep.pdf  ·  "
    "fl plot results/sweep --metric train_loss --logy --x bytes --out results/loss.svg"
)
def plot(
    out_file: Annotated[
        Path,
        typer.Option("--out", help="Figure to write (.png, .svg or .pdf).", show_default=False),
    ],
    runs: RunPaths = None,
    sweep_file: SweepFile = None,
    metric: Metric = None,
    x: Annotated[
        str,
        typer.Option(
            help="round, bytes (sent up), time or simtime (simulated seconds); or a setting "
            "(dp_epsilon, mu, alpha, malicious, ...): the final metric against its values, with "
            "error bars.",
        ),
    ] = "round",
    final: Final = "last",
    group_by: GroupBy = None,
    facet: Annotated[
        str | None,
        typer.Option(help="Setting with one panel per value (e.g. partition, alpha); shared axes."),
    ] = None,
    smooth: Annotated[
        int | None,
        typer.Option(
            help="Centred moving average over W rounds (fewer at the ends; round 0 kept).",
            metavar="W",
        ),
    ] = None,
    logy: Annotated[bool, typer.Option("--logy", help="Logarithmic y axis.")] = False,
    logx: Annotated[
        bool, typer.Option("--logx", help="Logarithmic x axis (e.g. --x bytes of compressed runs).")
    ] = False,
    label: Annotated[
        list[str] | None,
        typer.Option(
            help="Rename a value or a group in the legend and panel titles, e.g. "
            "--label fedprox='FedProx (μ=0.01)'; repeatable.",
            metavar="KEY=TEXT",
        ),
    ] = None,
    title: Annotated[
        str | None,
        typer.Option(help="Figure title, or none.", show_default="what was run"),
    ] = None,
    figsize: Annotated[
        str | None,
        typer.Option(help="Width x height in inches, e.g. 3.5x2.6.", show_default="from panels"),
    ] = None,
    ylim: Annotated[
        str | None,
        typer.Option(help="y range LOW:HIGH, either may be empty, e.g. 0.5:1.", metavar="LOW:HIGH"),
    ] = None,
    legend: Annotated[str, typer.Option(help="below, right or none.")] = "below",
    font_size: Annotated[
        float | None, typer.Option(help="Font size in points.", show_default="10")
    ] = None,
    kind: Annotated[
        str,
        typer.Option(
            help="line: the metric per round; distribution: the last round's per-client "
            "--metric (client_accuracy, client_loss, personal_accuracy) from clients.csv "
            "(fl train --log-clients), one ECDF per group (default: per algorithm).",
        ),
    ] = "line",
) -> None:
    """Plot a metric per round: one line per group of runs, mean ± 1 std over seeds."""
    from flcli import api
    from flcli.plot import Layout

    check_out_file(out_file, "accuracy.png")
    paths, labels = chosen_runs(runs, sweep_file)
    labels.update(parse_labels(label or []))
    layout = Layout(
        labels, title, parse_pair(figsize, "--figsize", "x", "3.5x2.6"),
        parse_pair(ylim, "--ylim", ":", "0.5:1"), legend, font_size, logx,
    )  # fmt: skip
    summary = api.plot(
        paths, out_file, metric, x=x, group_by=group_by, facet=facet, smooth=smooth,
        logy=logy, final=final, layout=layout, kind=kind,
    )  # fmt: skip
    for note in summary.notes:
        err.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
    panels = f", {summary.panels} panels" if summary.panels > 1 else ""
    out.print(
        f"wrote {out_file} ({summary.runs} runs, {summary.groups} lines{panels})", soft_wrap=True
    )


def chosen_runs(runs: list[Path] | None, sweep_file: Path | None) -> tuple[list[Path], dict]:
    """RUNS, or the run dirs of --sweep's current grid, and the sweep file's [labels]."""
    if sweep_file is None:
        if not runs:
            raise FLError("give run dirs or folders (e.g. results/noniid), or --sweep SWEEP.toml")
        return runs, {}
    if runs:
        raise FLError(f"give RUNS or --sweep {sweep_file}, not both")
    from flcli.sweep import grid_runs, load_sweep

    plan = load_sweep(sweep_file)
    found = grid_runs(plan)
    if not found:
        raise FLError(f"no run of {sweep_file}'s grid is trained yet; run fl sweep {sweep_file}")
    if len(found) < len(plan.runs):
        err.print(
            f"note: {len(found)} of the {len(plan.runs)} runs of {sweep_file}'s grid are "
            "trained; the others are left out",
            highlight=False,
            soft_wrap=True,
        )
    return found, dict(plan.labels)


def parse_labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise FLError(f"--label {item!r} must be KEY=TEXT, e.g. --label fedprox=FedProx")
        labels[key] = text
    return labels


def parse_pair(text: str | None, flag: str, sep: str, example: str):
    """ "3.5x2.6" -> (3.5, 2.6); "0.5:" -> (0.5, None); None stays None."""
    if text is None:
        return None
    parts = text.split(sep)
    try:
        if len(parts) != 2:
            raise ValueError
        pair = tuple(float(part) if part.strip() else None for part in parts)
    except ValueError:
        raise FLError(f"{flag} {text!r} must be two numbers, e.g. {flag} {example}") from None
    if sep == "x" and None in pair:
        raise FLError(f"{flag} {text!r} must give both inches, e.g. {flag} {example}")
    return pair


REPORT_SUFFIXES = {".md": "markdown", ".csv": "csv", ".tex": "latex"}
WIDE = 240  # columns of a table that goes to a file or a pipe rather than a terminal


def print_table(table: Table) -> None:
    """To the terminal at its width; to a pipe or a file without cutting long cells."""
    (out if out.is_terminal else Console(width=WIDE)).print(table)


@app.command(
    epilog="Example: fl report results/sweep --target-accuracy 0.9 --baseline fedavg "
    "--format markdown --out results/sweep.md"
)
def report(
    runs: RunPaths = None,
    sweep_file: SweepFile = None,
    target_accuracy: Annotated[
        float | None,
        typer.Option(
            help="Target of the metric (at most it, for losses and MSE) for the rounds, bytes "
            "and seconds to reach it.",
            show_default="none: no to-target columns",
        ),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            help="Group to compare rounds-to-target with (a value such as fedavg, or key=value).",
            show_default="fedavg when there is such a group",
        ),
    ] = None,
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="table, markdown, csv or latex (a booktabs tabular, best per column in bold).",
            show_default="from --out's extension (.md, .csv, .tex), else table",
        ),
    ] = None,
    group_by: GroupBy = None,
    metric: Metric = None,
    final: Final = "last",
    pivot: Annotated[
        tuple[str, str] | None,
        typer.Option(
            help="The final metric as a table: one row per value of ROWKEY, one column per "
            "value of COLKEY (e.g. --pivot algo partition).",
            metavar="ROWKEY COLKEY",
        ),
    ] = None,
    ci: Annotated[
        float | None,
        typer.Option(
            help="Give the final metric ± a confidence interval at this percent (Student's t "
            "over seeds), e.g. --ci 95.",
            show_default="± sample std",
        ),
    ] = None,
    compare: Annotated[
        tuple[str, str] | None,
        typer.Option(
            help="Paired t-test of the final metric of two groups over the seeds both ran, "
            "e.g. --compare fedavg fedprox.",
            metavar="A B",
        ),
    ] = None,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write the report to this file (a table is printed too, .md, .csv, .tex not).",
        ),
    ] = None,
) -> None:
    """Summarize runs per group: final and best metric, rounds/bytes/seconds to a target."""
    from flcli import api
    from flcli.fileio import atomic_write_text
    from flcli.report import FORMATS, comparison_text, to_csv, to_latex, to_markdown

    check_out_file(out_file, "report.md")
    suffix = out_file.suffix.lower() if out_file else ""
    format = format or REPORT_SUFFIXES.get(suffix, "table")
    if format not in FORMATS:
        raise FLError(f"--format {format!r} is not one of: {', '.join(FORMATS)}")
    if pivot and group_by:
        raise FLError(f"--pivot {' '.join(pivot)} sets the groups; drop --group-by {group_by}")
    paths, _ = chosen_runs(runs, sweep_file)
    summary = api.report(
        paths, metric, target_accuracy, baseline, ",".join(pivot) if pivot else group_by,
        final=final, ci=ci, pivot=pivot, compare=compare,
    )  # fmt: skip
    for note in summary.notes:
        err.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
    for result in summary.comparisons:  # one line per partition (or other shared setting)
        err.print(comparison_text(result), highlight=False, soft_wrap=True)
    if format == "table":
        table = report_table(summary)
        print_table(table)
        text = None
        if out_file:
            plain = Console(file=io.StringIO(), width=WIDE, color_system=None)
            plain.print(table)
            text = plain.file.getvalue()
    else:
        text = {"markdown": to_markdown, "csv": to_csv, "latex": to_latex}[format](summary)
        if not out_file:
            out.print(text, end="", markup=False, highlight=False, soft_wrap=True)
    if out_file:
        atomic_write_text(out_file, text)
        err.print(f"wrote {out_file}", highlight=False)


OWN_FILES = {  # a dir holding the first file is a run or partition dir; fl writes none of these
    "run.json": ("run.json", "rounds.csv", "clients.csv", "checkpoint.npz", ".lock"),
    "partition.json": ("partition.json", "data.npz", "partition.png"),
}


def check_out_folder(path: Path | None) -> None:
    """Refuse an --out results folder that is a file (or lies under one) before any work."""
    if path is None:
        return
    file = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if file == path:
        raise FLError(f"--out {path} is a file; give a folder")
    if file is not None:
        raise FLError(f"--out {path}: {file} is a file; give a folder")


def check_out_file(path: Path | None, example: str) -> None:
    """Refuse an --out that is a directory, or one of a run's or a partition's own files, before
    any work is done."""
    if path is None:
        return
    if path.is_dir():
        raise FLError(f"--out {path} is a directory; give a file in it, e.g. {path / example}")
    for marker, files in OWN_FILES.items():
        if path.name in files and (path.parent / marker).is_file():
            raise FLError(
                f"--out {path} is a file of the {marker.split('.')[0]} in {path.parent}; "
                f"write elsewhere, e.g. {path.parent / example}"
            )


def report_table(summary) -> Table:
    from flcli.report import caption, text_cells

    header, rows = text_cells(summary)
    table = Table(caption=caption(summary), caption_justify="left", box=box.SIMPLE_HEAD)
    for i, name in enumerate(header):
        right = i >= summary.label_columns and name != "status"
        widest = max((len(row[i]) for row in rows), default=0)  # values never wrap; headers may
        table.add_column(name, justify="right" if right else "left", min_width=widest)
    for row in rows:
        table.add_row(*map(Text, row))
    return table


@app.command(
    epilog="Example: fl sweep experiments/noniid.toml --jobs 2  (again: does nothing; "
    "interrupted: continues). On a Ray cluster: fl sweep experiments/noniid.toml --backend ray "
    "--ray-address HEAD:6379"
)
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep TOML: name, \\[base], \\[grid].")],
    jobs: Annotated[
        int | None,
        typer.Option(
            help="Runs at once; with --backend process, workers per run; with --backend ray "
            "and no --ray-address, the CPUs of the local Ray it starts.",
            show_default="all cores",
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(help="Backend of every run (overrides the file).", show_default="the file's"),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Results dir.", show_default="results/<name>"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="List the runs and which are done, run nothing.")
    ] = False,
    prune: Annotated[
        bool,
        typer.Option(
            help="List the run dirs under the results dir that the file's current grid does not "
            "plan (an older grid's, other configs'); with --yes delete them. Runs nothing."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="With --prune: delete what it lists.")] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="With --backend ray: the Ray cluster to run on (each run is one task, on every "
            "node; `ray status` prints the address)."
        ),
    ] = None,
) -> None:
    """Run a grid of partitions x training runs in parallel; completed runs are skipped."""
    from joblib.externals.loky import cpu_count

    from flcli.sweep import check_runnable, load_sweep, state

    if jobs is not None and jobs < 1:
        raise FLError(f"--jobs {jobs} must be a positive integer, e.g. 2")
    check_out_folder(out_dir)
    overrides = {"backend": backend} if backend is not None else {}
    if ray_address is not None:
        overrides["ray_address"] = ray_address
    plan = load_sweep(sweep_file, out_dir, overrides)
    if yes and not prune:
        raise FLError("--yes confirms --prune's deletions; add --prune")
    if prune:
        prune_runs(plan, yes)
        return
    summary = f"{plan.name}: {len(plan.runs)} runs on {plan.num_partitions} partitions"
    if dry_run:
        table = Table(title=summary, box=None)
        for column in ("run", "partition", "state"):
            table.add_column(column)
        for run in plan.runs:
            table.add_row(run.run_id, run.partition_id, state(run))
        print_table(table)
        return
    check_runnable(plan)
    counts, failures, finished = follow_sweep(plan, summary, jobs or cpu_count())
    print_table(sweep_table(plan, finished))
    nodes = Counter(outcome.node for outcome in finished.values() if outcome.node)
    if nodes:
        shown = ", ".join(f"{node}: {n}" for node, n in sorted(nodes.items()))
        out.print(f"runs trained per Ray node ({len(nodes)} nodes): {shown}")
    out.print(
        f"{counts['completed']} trained, {counts['skipped']} already done, "
        f"{counts['failed']} failed -> {plan.root}"
    )
    for failure in failures:
        err.print(
            f"failed: {failure.kind} {failure.id}: {failure.message}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if counts["interrupted"]:  # its workers were stopped, the sweep itself was not
        raise RunFailed(
            f"{counts['interrupted']} runs were interrupted; continue them with: "
            f"{shlex.join(['fl', *invocation])}"
        )
    if failures:
        raise RunFailed(
            f"{counts['failed']} of {len(plan.runs)} runs failed (listed above); fix them and "
            "run the same command again: completed runs are skipped"
        )


def follow_sweep(plan, summary: str, jobs: int) -> tuple[dict, list, dict]:
    """Run the sweep with a progress bar: (counts by status, failures, outcomes by run id)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flcli.sweep import run_sweep

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
    ]
    counts = {"completed": 0, "skipped": 0, "failed": 0, "interrupted": 0}
    failures, finished = [], {}
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task(summary, total=len(plan.runs), note="")
        try:
            for outcome in run_sweep(plan, jobs):
                if outcome.status == "failed":
                    failures.append(outcome)
                if outcome.kind == "partition":
                    progress.update(task, note=f"partition {outcome.id} {outcome.status}")
                    continue
                if outcome.kind == "cluster":
                    progress.update(
                        task, note="; ".join(filter(None, [done_note(counts), outcome.message]))
                    )
                    continue
                counts[outcome.status] += 1
                finished[outcome.id] = outcome
                progress.update(task, advance=1, note=done_note(counts))
        except KeyboardInterrupt:
            done = counts["completed"] + counts["skipped"]
            raise RunFailed(
                f"interrupted with {done} of {len(plan.runs)} runs done; {kept_note(plan)}; "
                f"continue with: {shlex.join(['fl', *invocation])}"
            ) from None
    return counts, failures, finished


def kept_note(plan) -> str:
    """What an interrupted sweep kept of its unfinished runs: a run trained here saved its
    checkpoint; a Ray task cancelled on a node sent nothing back, so that run starts over."""
    if any(run.config.backend == "ray" for run in plan.runs):
        return "runs in flight on the Ray cluster were cancelled and start over"
    return "unfinished runs keep what they trained"


def done_note(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n)


def prune_runs(plan, delete: bool) -> None:
    import shutil

    from flcli.sweep import stale_runs

    stale = stale_runs(plan)
    for run_dir in stale:
        if delete:
            shutil.rmtree(run_dir)
        out.print(f"{'deleted' if delete else 'not in the grid'}: {run_dir}", soft_wrap=True)
    if not stale:
        out.print(f"every run under {plan.root} is in the grid of {plan.name}")
    elif not delete:
        out.print(f"{len(stale)} run dirs are not in the grid; delete them with --prune --yes")


def sweep_table(plan, finished: dict) -> Table:
    """One row per run that finished: its status and accuracy, and on a Ray sweep its node."""
    on_nodes = any(outcome.node for outcome in finished.values())
    table = Table(box=None)
    columns = [("run", "left"), ("status", "left"), ("test accuracy", "right")]
    for column, justify in columns + ([("node", "left")] if on_nodes else []):
        table.add_column(column, justify=justify)
    for run in plan.runs:
        outcome = finished.get(run.run_id)
        if outcome is None:
            continue
        accuracy = outcome.record.get("test_accuracy")
        row = [run.run_id, outcome.status, "-" if accuracy is None else f"{accuracy:.4f}"]
        table.add_row(*row, *([outcome.node] if on_nodes else []))
    return table


@app.command(
    epilog="Example: fl tune experiments/tune-fedprox.toml  (again, or after Ctrl-C: continues "
    "the study; --dry-run: the space and the budget)"
)
def tune(
    tune_file: Annotated[
        Path,
        typer.Argument(
            help="Tune TOML: name, trials and/or timeout, \\[base], \\[space], \\[objective], "
            "\\[pruner]."
        ),
    ],
    trials: Annotated[
        int | None,
        typer.Option(
            help="The study's total trials, those done included.", show_default="the file's"
        ),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            help="Start no trial after this long: seconds, or 30m, 2h.", show_default="the file's"
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL; postgresql://... lets several machines tune one study.",
            show_default="sqlite:///<out>/study.db",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Results dir.", show_default="results/<name>"),
    ] = None,
    confirm_seeds: Annotated[
        int, typer.Option(help="Re-run the best config over this many fresh seeds (0: none).")
    ] = 3,
    dry_run: Annotated[
        bool, typer.Option(help="Show the space, the objective and the budget; run nothing.")
    ] = False,
    backend: Annotated[
        str | None,
        typer.Option(
            help="ray: trials as Ray tasks, as many at once as the cluster has CPUs (overrides "
            "[base]'s backend).",
            show_default="[base]'s",
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(help="With --backend ray: the Ray cluster to run the trials on."),
    ] = None,
) -> None:
    """Search fl train's options with Optuna (pip install 'flcli\\[tune]'), one trial at a time
    (on a Ray cluster, one per CPU); then print the best configs and re-run the best over fresh
    seeds."""
    from flcli.tunefile import load_tune, parse_duration

    if confirm_seeds < 0:
        raise FLError(f"--confirm-seeds {confirm_seeds} must be 0 or more, e.g. 3")
    if trials is not None and trials < 1:
        raise FLError(f"--trials {trials} must be an integer >= 1, e.g. 30")
    if timeout is not None:
        timeout = parse_duration(timeout, f"--timeout {timeout}")
    check_out_folder(out_dir)
    overrides = {"trials": trials, "timeout": timeout}
    base = {"backend": backend, "ray_address": ray_address}
    plan = load_tune(
        tune_file,
        out_dir,
        {k: v for k, v in overrides.items() if v is not None},
        {k: v for k, v in base.items() if v is not None},
    )
    if dry_run:
        print_table(tune_plan_table(plan, storage))
        return
    tune_and_confirm(plan, storage, confirm_seeds)


def tune_and_confirm(plan, storage: str | None, confirm_seeds: int) -> None:
    """Run the study to its budget, print its best trials and config, and re-run the best over
    fresh seeds."""
    from flcli import tune as tuning
    from flcli.tunefile import check_metric

    tuning.check_runnable(plan)
    check_metric(plan)
    study = tuning.open_study(plan, storage)
    with stopped_by_ctrl_c(f"the study keeps its finished trials; {trials_kept_note(plan)}"):
        follow_tune(plan, study, storage)
    best = tuning.best_trials(study, 5)
    if not best:
        raise RunFailed(
            f"no trial of {plan.name} completed (see `fl report {plan.root / 'trials'}`); "
            "widen the space, relax the pruner or add trials"
        )
    print_table(best_table(plan, best))
    out.print(f"best config (trial {best[0].number}), for [base]:", highlight=False, markup=False)
    out.print(tuning.best_toml(best[0].params), highlight=False, markup=False, soft_wrap=True)
    if confirm_seeds:
        with stopped_by_ctrl_c("the re-runs saved what they trained"):
            confirm_best(plan, best[0], tuning.confirm_seeds(plan, confirm_seeds))


def trials_kept_note(plan) -> str:
    """What an interrupted study keeps of its trials in flight (as kept_note says of a sweep's
    runs): a trial trained here saved its checkpoint; Ray tasks cancelled sent nothing back."""
    if plan.config({}, plan.objective.seeds[0]).backend == "ray":
        return (
            "the trials in flight on the Ray cluster were cancelled and are retried first, "
            "from round 0"
        )
    return "the current trial's run is saved and retried first"


@contextmanager
def stopped_by_ctrl_c(kept: str):
    """Ctrl-C or SIGTERM: one line saying what was kept and how to continue; exit code 1."""
    default_ctrl_c = signal.getsignal(signal.SIGINT)
    if default_ctrl_c is signal.default_int_handler:  # not when started with Ctrl-C ignored
        signal.signal(signal.SIGINT, interrupt_once)
    default_term = signal.signal(signal.SIGTERM, interrupt_once)
    try:
        yield
    except KeyboardInterrupt:  # Ctrl-C stays ignored until the process exits
        raise RunFailed(
            f"interrupted; {kept}; continue with: {shlex.join(['fl', *invocation])}"
        ) from None
    signal.signal(signal.SIGINT, default_ctrl_c)
    signal.signal(signal.SIGTERM, default_term)


def follow_tune(plan, study, storage: str | None) -> None:
    """Run the study's trials with a progress bar: done, pruned, failed, the best so far."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flcli.tune import finished, run_study, tally

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
    ]
    counts = tally(study)
    best = None if counts["complete"] == 0 else study.best_value
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task(
            f"{plan.name} trials", total=plan.trials, completed=finished(counts), note=""
        )
        for outcome in run_study(plan, study, storage):
            counts[outcome.state] += 1
            if outcome.value is not None:
                better = best is None or (outcome.value < best) == plan.objective.minimize
                best = outcome.value if better else best
            shown = f"best {best:.4g}" if best is not None else "best -"
            progress.update(
                task,
                advance=1,
                note=f"{counts['complete']} done, {counts['pruned']} pruned, "
                f"{counts['failed']} failed, {shown}",
            )


def tune_plan_table(plan, storage: str | None) -> Table:
    from flcli.tune import storage_url
    from flcli.tunefile import Choice

    budget = [
        f"{plan.trials} trials" if plan.trials else "",
        f"{plan.timeout:g} s" if plan.timeout else "",
    ]
    objective = plan.objective
    goal = f"{objective.mode} {objective.metric}" + (
        f" to {objective.target:g}" if objective.target is not None else ""
    )
    table = Table(title=f"{plan.name}: {' or '.join(b for b in budget if b)}", box=None)
    for column in ("key", "search"):
        table.add_column(column)
    for param in plan.space:
        if isinstance(param, Choice):
            table.add_row(param.key, f"one of {', '.join(map(str, param.values))}")
        else:
            scale = "log" if param.log else "linear"
            table.add_row(
                param.key, f"{param.low:g} .. {param.high:g} ({scale}, {type(param.low).__name__})"
            )
    sense = "minimize" if objective.minimize else "maximize"
    table.add_row(
        "objective", f"{sense} {goal}, seeds {list(objective.seeds)}, k = {objective.k:g}"
    )
    table.add_row(
        "sampler", f"{plan.sampler}, seed {plan.seed}, {plan.startup_trials} random first"
    )
    table.add_row("pruner", plan.pruner.kind)
    table.add_row("storage", storage_url(plan, storage))
    return table


def best_table(plan, best: list) -> Table:
    table = Table(title="best trials", box=None)
    table.add_column("trial", justify="right")
    table.add_column(
        plan.objective.metric if plan.objective.mode == "final" else plan.objective.mode,
        justify="right",
    )
    for param in plan.space:
        table.add_column(param.key, justify="right")
    table.add_column("run dir")
    for trial in best:
        values = [
            f"{v:.4g}" if isinstance(v, float) else str(v)
            for v in (trial.params[p.key] for p in plan.space)
        ]
        table.add_row(str(trial.number), f"{trial.value:.4f}", *values, str(trial.run_dir))
    return table


def confirm_best(plan, best, seeds: list[int]) -> None:
    """Re-run the best config over fresh seeds and print the mean ± std of its value there."""
    from flcli.runs import spread
    from flcli.tune import confirm

    with err.status(
        f"re-running trial {best.number} over fresh seeds {', '.join(map(str, seeds))}"
    ):
        values = [value for _, value in confirm(plan, best, seeds)]
    mean, std = spread(values)
    spread_text = f" ± {std:.4f}" if len(values) > 1 else ""
    objective = plan.objective
    what = (
        objective.metric
        if objective.mode in ("final", "best")
        else f"{objective.mode} {objective.target:g}"
    )
    out.print(
        f"fresh seeds {', '.join(map(str, seeds))}: {objective.mode} {what} "
        f"{mean:.4f}{spread_text} (mean ± std over {len(values)} seeds; the study's estimate "
        f"was {best.value:.4f}) -> {plan.root / 'best' / str(best.number)}",
        highlight=False,
        soft_wrap=True,
    )


@app.command(
    name="export",
    epilog="Examples: fl export results/noniid --to mlflow (then: mlflow ui, in this folder) · "
    "fl export results/runs/fedavg --to mlflow --uri http://127.0.0.1:5000 · "
    "fl export results/noniid --to tensorboard (then: tensorboard --logdir results/noniid)",
)
def export(
    runs: Annotated[
        list[Path],
        typer.Argument(help="Run dirs, or folders searched recursively for runs."),
    ],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="mlflow (pip install 'flcli\\[mlflow]') or tensorboard (pip install "
            "'flcli\\[tensorboard]').",
            metavar="mlflow|tensorboard",
            show_default=False,
        ),
    ],
    uri: Annotated[
        str | None,
        typer.Option(
            help="mlflow: a tracking URI, sqlite:///FILE.db or a server http://HOST:PORT; "
            "tensorboard: a folder, events in FOLDER/EXPERIMENT/RUN.",
            show_default="sqlite:///mlflow.db (mlflow), RUN/tb (tensorboard)",
            metavar="URI",
        ),
    ] = None,
) -> None:
    """Log finished runs (run.json's config, rounds.csv's rows) to MLflow or TensorBoard, as fl
    train --track does; a run exported before gets only the rounds it lacks."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from flcli import api

    count, exports = api.export(runs, to, uri)
    columns = [TextColumn(f"[bold]exporting to {to}"), BarColumn(), MofNCompleteColumn()]
    with Progress(*columns, console=err, transient=True, disable=count < 2) as progress:
        task = progress.add_task("export", total=count)
        for done in exports:
            out.print(export_line(done), soft_wrap=True, highlight=False, markup=False)
            progress.advance(task)


def export_line(done) -> str:
    if done.added == 0 and done.rounds > 0:
        return f"{done.run_dir}: already in {done.where}, nothing to add"
    return f"{done.run_dir} -> {done.where}: {done.added} of {done.rounds} rounds"


@app.command(name="list", epilog="Example: fl list algorithms")
def list_(
    what: Annotated[str, typer.Argument(help="datasets, schemes, algorithms or models.")],
) -> None:
    """Describe the available datasets, schemes, algorithms or models."""
    catalogues = {
        "datasets": dataset_lines,
        "schemes": scheme_catalogue,
        "algorithms": algorithm_lines,
        "models": model_lines,
    }
    if what not in catalogues:
        raise FLError(f"cannot list {what!r}; choose one of: {', '.join(catalogues)}")
    table = Table(box=None, show_header=False)
    table.add_column(style="bold cyan")
    table.add_column()
    for name, text in catalogues[what]().items():  # only the one asked for is built
        table.add_row(name, text)
    out.print(table)


def dataset_lines() -> dict[str, str]:
    from flcli.data.datasets import catalogue

    return catalogue()


def algorithm_lines() -> dict[str, str]:
    from flcli.algorithms.registry import algorithm_specs

    return {name: algorithm_line(spec) for name, spec in algorithm_specs().items()}


def model_lines() -> dict[str, str]:
    from flcli.algorithms.registry import ALGORITHMS
    from flcli.models.registry import describe_models

    return describe_models(ALGORITHMS)


def algorithm_line(spec) -> str:
    def shown(h) -> str:
        fallback = h.about.default_from
        if fallback:
            return f"= --{fallback.replace('_', '-')}"
        return "(required)" if h.required else str(h.default)

    defaults = ", ".join(f"{h.flag} {shown(h)}" for h in spec.hyperparameters.values())
    refuses = " (no --dp-clip, --secure-agg, --aggregator)" if spec.reads_clients else ""
    return spec.description + (f" [{defaults}]" if defaults else "") + refuses


def warning_line(console: Console, message: str) -> None:
    """A warning on stderr, printed as it is (the run goes on)."""
    console.print(f"warning: {message}", highlight=False, soft_wrap=True, markup=False, emoji=False)


def error_line(message: str) -> None:
    """One line on stderr, printed as it is (no rich markup or :emoji: codes in user values)."""
    err.print(f"error: {message}", highlight=False, soft_wrap=True, markup=False, emoji=False)


INTERRUPTED = 130  # what Typer exits with on a Ctrl-C: 128 + SIGINT


def main(argv: list[str] | None = None) -> None:
    """Entry point of `fl`: errors become one line on stderr and an exit code, never a traceback."""
    invocation[:] = sys.argv[1:] if argv is None else argv
    named = [arg for arg in invocation if not arg.startswith("-")]
    register_train(full=named[:1] == ["train"])
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="fl", standalone_mode=False)
    except click_errors.NoArgsIsHelpError:  # the help was already shown
        sys.exit(2)
    except click_errors.UsageError as usage:
        hint = f" (see: {usage.ctx.command_path} --help)" if usage.ctx else ""
        error_line(f"{usage.format_message()}{hint}")
        sys.exit(2)
    except click_errors.ClickException as failure:
        error_line(failure.format_message())
        sys.exit(failure.exit_code)
    except FLError as bad_input:
        error_line(str(bad_input))
        sys.exit(2)
    except RunFailed as failure:
        error_line(str(failure))
        sys.exit(1)
    except MemoryError:
        error_line("not enough memory; try a smaller model, fewer clients per round or float32")
        sys.exit(1)
    except OSError as failure:  # a path that cannot be read or written: --out, a data file
        where = f"{failure.filename}: " if failure.filename else ""
        error_line(f"{where}{failure.strerror}; choose another path or fix it")
        sys.exit(2)
    except typer.Abort:
        sys.exit(1)
    except Exception as bug:  # the last line of defence; FL_RAISE_INTERNAL_ERRORS=1 turns it off
        if raise_internal_errors():
            raise
        error_line(internal_error_line(bug, invocation))
        sys.exit(1)
    if code == INTERRUPTED:  # Typer's code for a Ctrl-C that no command handled
        error_line("interrupted; nothing was written: run the same command again")
    sys.exit(code if isinstance(code, int) else 0)
