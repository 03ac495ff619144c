"""The `fl` command line: options -> config -> one library call -> rich output."""

import shlex
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from flcli.config import TrainConfig
from flcli.configfile import resolve_train_config
from flcli.errors import FLError, RunFailed

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
DEFAULTS = TrainConfig()
out = Console()
err = Console(stderr=True)
invocation: list[str] = []  # the arguments of this `fl` call, to print how to resume it


def Default(help: str, key: str):
    """An option whose default is TrainConfig's `key` (shown in --help); None means "not given",
    so that a config file's value is not overridden by a default."""
    return typer.Option(help=help, show_default=str(getattr(DEFAULTS, key)))


OutDir = Annotated[Path, typer.Option("--out", help="Directory to write.", show_default=False)]
Seed = Annotated[int, typer.Option(help="Seed of every random stream (same seed, same results).")]


@app.command(
    epilog="Example: fl partition digits --clients 10 --scheme dirichlet --alpha 0.1 "
    "--seed 0 --out results/digits-dir0.1"
)
def partition(
    out_dir: OutDir,
    dataset: Annotated[
        str, typer.Argument(help="Dataset name (see: fl list datasets).")
    ] = "digits",
    clients: Annotated[int, typer.Option(help="Number of clients.")] = 10,
    scheme: Annotated[str, typer.Option(help="iid or dirichlet (see: fl list schemes).")] = "iid",
    alpha: Annotated[float, typer.Option(help="Dirichlet concentration; small = skewed.")] = 0.5,
    test_size: Annotated[
        float, typer.Option(help="Fraction held out as the central test set.")
    ] = 0.2,
    min_samples: Annotated[
        int | None,
        typer.Option(help="Least samples per client.", show_default="min(10, n / 3 clients)"),
    ] = None,
    seed: Seed = 0,
) -> None:
    """Split a dataset into client shards and write a partition dir."""
    from flcli import api

    built, written = api.partition(
        out_dir,
        dataset,
        num_clients=clients,
        scheme=scheme,
        alpha=alpha,
        test_size=test_size,
        min_samples=min_samples,
        seed=seed,
    )
    out.print(partition_table(built.meta))
    note = "wrote" if written else "already there, identical:"
    out.print(f"{note} {out_dir} (partition.json, data.npz, partition.png)")


def partition_table(meta: dict) -> Table:
    sizes = np.asarray(meta["client_sizes"])
    labels = (np.asarray(meta["label_counts"]) > 0).sum(axis=1)
    skew = meta["heterogeneity"]
    table = Table(title=f"{meta['dataset']} · {meta['scheme']} {meta['params']}", box=None)
    for column in (
        "clients",
        "size min / median / max",
        "labels per client min / mean / max",
        "JS divergence",
        "size CV",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        str(meta["num_clients"]),
        f"{sizes.min()} / {np.median(sizes):g} / {sizes.max()}",
        f"{labels.min()} / {labels.mean():.1f} / {labels.max()}",
        f"{skew['js_divergence']:.3f}",
        f"{skew['size_cv']:.2f}",
    )
    return table


@app.command(
    epilog="Example: fl train results/digits-iid --algo fedavg --model softmax "
    "--rounds 20 --seed 0 --out results/runs/fedavg-iid  ·  repeat a run: "
    "fl train --config results/runs/fedavg-iid/run.json --out results/runs/again"
)
def train(
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
    algo: Annotated[
        str | None, Default("Aggregation algorithm (see: fl list algorithms).", "algo")
    ] = None,
    model: Annotated[str | None, Default("Model (see: fl list models).", "model")] = None,
    rounds: Annotated[int | None, Default("Communication rounds.", "rounds")] = None,
    local_epochs: Annotated[int | None, Default("Local epochs per round.", "local_epochs")] = None,
    batch_size: Annotated[int | None, Default("Local minibatch size.", "batch_size")] = None,
    lr: Annotated[float | None, Default("Local SGD learning rate.", "lr")] = None,
    clients_per_round: Annotated[
        int | None, typer.Option(help="Clients sampled per round.", show_default="all")
    ] = None,
    fraction: Annotated[
        float | None,
        typer.Option(help="Fraction of clients sampled per round.", show_default="all"),
    ] = None,
    seed: Annotated[int | None, Default("Seed of every random stream.", "seed")] = None,
    backend: Annotated[
        str | None,
        Default(
            "vectorized (fast), serial (reference), process (worker processes) or ray "
            "(pip install 'flcli[ray]').",
            "backend",
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            help="Worker processes (process) or CPUs of the local Ray (ray).",
            show_default="all cores (process), 2 (ray)",
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Join this Ray cluster (e.g. auto) instead of starting a local one."),
    ] = None,
    checkpoint_every: Annotated[
        int | None,
        typer.Option(
            help="Save rounds.csv and checkpoint.npz every N rounds.", show_default="each second"
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run in --out.")] = False,
) -> None:
    """Simulate federated training rounds and log each round to rounds.csv."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from flcli import api

    flags = {
        "algo": algo,
        "model": model,
        "rounds": rounds,
        "local_epochs": local_epochs,
        "batch_size": batch_size,
        "lr": lr,
        "clients_per_round": clients_per_round,
        "fraction": fraction,
        "seed": seed,
        "backend": backend,
        "jobs": jobs,
        "ray_address": ray_address,
        "checkpoint_every": checkpoint_every,
    }
    config, partition_dir = resolve_train_config(flags, config_file, partition_dir)
    training = api.prepare_training(partition_dir, config, out_dir, resume=resume)
    if training.already_completed:
        out.print(f"{out_dir} already holds this completed run; nothing to do")
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("acc {task.fields[acc]}  loss {task.fields[loss]}"),
    ]
    record = {}
    # overflow shows up as a NaN loss, which stops the run with advice: no numpy warnings
    with Progress(*columns, console=err, transient=False) as progress, np.errstate(all="ignore"):
        task = progress.add_task(f"{config.algo} rounds", total=config.rounds, acc="-", loss="-")
        rounds = training.rounds()
        try:
            for record in rounds:
                progress.update(
                    task,
                    completed=record["round"],
                    acc=f"{record['test_accuracy']:.4f}",
                    loss=f"{record['train_loss']:.4f}",
                )
        except KeyboardInterrupt:
            rounds.close()  # saves what was done and marks the run interrupted
            again = shlex.join(["fl", *invocation, *(["--resume"] if not resume else [])])
            raise RunFailed(
                f"interrupted after round {record.get('round', '-')}, saved in {out_dir}; "
                f"continue it with: {again}"
            ) from None
    out.print(
        f"round {record['round']}: test accuracy {record['test_accuracy']:.4f}, "
        f"train loss {record['train_loss']:.4f} -> {out_dir / 'rounds.csv'}"
    )


@app.command(epilog="Example: fl plot results/runs --out results/accuracy.png")
def plot(
    runs: Annotated[list[Path], typer.Argument(help="Run dirs, or folders searched for runs.")],
    out_file: Annotated[Path, typer.Option("--out", help="Figure to write (.png, .svg, .pdf).")],
    metric: Annotated[str, typer.Option(help="rounds.csv column on the y axis.")] = "test_accuracy",
    x: Annotated[str, typer.Option(help="round, bytes or time.")] = "round",
) -> None:
    """Plot a metric per round, one line per run."""
    from flcli.plot import find_runs, plot_runs

    found = find_runs(runs)
    plot_runs(found, out_file, metric=metric, x=x)
    out.print(f"wrote {out_file} ({len(found)} runs)")


@app.command(
    epilog="Example: fl sweep experiments/noniid.toml --jobs 2  (again: does nothing; "
    "interrupted: continues)"
)
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep TOML: name, [base], [grid].")],
    jobs: Annotated[
        int | None,
        typer.Option(
            help="Runs at once; with --backend process or ray, workers per run.",
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
) -> None:
    """Run a grid of partitions x training runs in parallel; completed runs are skipped."""
    from joblib.externals.loky import cpu_count
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flcli.sweep import is_done, load_sweep, run_sweep

    if jobs is not None and jobs < 1:
        raise FLError(f"--jobs {jobs} must be a positive integer, e.g. 2")
    overrides = {"backend": backend} if backend is not None else {}
    plan = load_sweep(sweep_file, out_dir, overrides)
    summary = f"{plan.name}: {len(plan.runs)} runs on {plan.num_partitions} partitions"
    if dry_run:
        table = Table(title=summary, box=None)
        for column in ("run", "partition", "state"):
            table.add_column(column)
        for run in plan.runs:
            table.add_row(run.run_id, run.partition_id, "done" if is_done(run) else "to run")
        out.print(table)
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
    ]
    counts = {"completed": 0, "skipped": 0, "failed": 0}
    failures, finished = [], {}
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task(summary, total=len(plan.runs), note="")
        for outcome in run_sweep(plan, jobs or cpu_count()):
            if outcome.status == "failed":
                failures.append(outcome)
            if outcome.kind == "partition":
                progress.update(task, note=f"partition {outcome.id} {outcome.status}")
                continue
            counts[outcome.status] += 1
            finished[outcome.id] = outcome
            progress.update(
                task,
                advance=1,
                note=", ".join(f"{n} {status}" for status, n in counts.items() if n),
            )
    out.print(sweep_table(plan, finished))
    out.print(
        f"{counts['completed']} trained, {counts['skipped']} already done, "
        f"{counts['failed']} failed -> {plan.root}"
    )
    if failures:
        for failure in failures:
            err.print(
                f"failed: {failure.kind} {failure.id}: {failure.message}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        raise RunFailed(
            f"{counts['failed']} of {len(plan.runs)} runs failed (listed above); fix them and "
            "run the same command again: completed runs are skipped"
        )


def sweep_table(plan, finished: dict) -> Table:
    table = Table(box=None)
    for column, justify in (("run", "left"), ("status", "left"), ("test accuracy", "right")):
        table.add_column(column, justify=justify)
    for run in plan.runs:
        outcome = finished.get(run.run_id)
        if outcome is None:
            continue
        accuracy = outcome.record.get("test_accuracy")
        table.add_row(run.run_id, outcome.status, "-" if accuracy is None else f"{accuracy:.4f}")
    return table


@app.command(name="list", epilog="Example: fl list algorithms")
def list_(
    what: Annotated[str, typer.Argument(help="datasets, schemes, algorithms or models.")],
) -> None:
    """Describe the available datasets, schemes, algorithms or models."""
    from flcli.algorithms.registry import ALGORITHMS
    from flcli.data.datasets import DATASETS
    from flcli.data.partition import SCHEMES
    from flcli.models.registry import MODELS

    catalogues = {
        "datasets": {name: text for name, (_, text) in DATASETS.items()},
        "schemes": SCHEMES,
        "algorithms": {name: text for name, (_, text) in ALGORITHMS.items()},
        "models": MODELS,
    }
    if what not in catalogues:
        raise FLError(f"cannot list {what!r}; choose one of: {', '.join(catalogues)}")
    table = Table(box=None, show_header=False)
    table.add_column(style="bold cyan")
    table.add_column()
    for name, text in catalogues[what].items():
        table.add_row(name, text)
    out.print(table)


def main(argv: list[str] | None = None) -> None:
    """Entry point of `fl`: errors become one line on stderr and an exit code, never a traceback."""
    command = typer.main.get_command(app)
    invocation[:] = sys.argv[1:] if argv is None else argv
    try:
        code = command.main(args=argv, prog_name="fl", standalone_mode=False)
    except click_errors.UsageError as usage:
        hint = f" (see: fl {usage.ctx.info_name} --help)" if usage.ctx else ""
        err.print(f"error: {usage.format_message()}{hint}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except FLError as bad_input:
        err.print(f"error: {bad_input}", highlight=False, soft_wrap=True, markup=False)
        sys.exit(2)
    except RunFailed as failure:
        err.print(f"error: {failure}", highlight=False, soft_wrap=True, markup=False)
        sys.exit(1)
    except click_errors.Abort:
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
