"""The `fl` command line: options -> config -> one library call -> rich output."""

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flcli.config import TrainConfig
from flcli.data.partition import SCHEMES
from flcli.data.report import partition_report
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


def Default(help: str, key: str):
    """An option whose default is TrainConfig's `key` (shown in --help); None means "not given",
    so that a config file's value is not overridden by a default."""
    return typer.Option(help=help, show_default=str(getattr(DEFAULTS, key)))


OutDir = Annotated[Path, typer.Option("--out", help="Directory to write.", show_default=False)]
Seed = Annotated[int, typer.Option(help="Seed of every random stream (same seed, same results).")]


@app.command(
    epilog="Examples: fl partition digits --clients 10 --scheme dirichlet --alpha 0.1 "
    "--seed 0 --out results/digits-dir0.1 · fl partition synthetic:alpha=1,beta=1 --scheme natural "
    "--out results/synthetic · fl partition data.csv --target label --scheme pathological "
    "--classes-per-client 2 --out results/mine"
)
def partition(
    out_dir: OutDir,
    dataset: Annotated[
        str,
        typer.Argument(
            help="Built-in name, generator (synthetic:alpha=1,beta=1), FILE.csv|.parquet|.npz or "
            "openml:NAME (see: fl list datasets)."
        ),
    ] = "digits",
    clients: Annotated[
        int | None,
        typer.Option(help="Number of clients.", show_default="10; natural: the data's own"),
    ] = None,
    scheme: Annotated[
        str, typer.Option(help=f"{', '.join(SCHEMES)} (see: fl list schemes).")
    ] = "iid",
    alpha: Annotated[
        float, typer.Option(help="Dirichlet concentration (dirichlet, quantity); small = skewed.")
    ] = 0.5,
    classes_per_client: Annotated[
        int, typer.Option(help="Classes each client holds (pathological).")
    ] = 2,
    shards_per_client: Annotated[
        int, typer.Option(help="Shards dealt to each client (shards).")
    ] = 2,
    sizes: Annotated[
        str,
        typer.Option(
            help="Size law (quantity): dirichlet, lognormal[:SIGMA], linear, exponential."
        ),
    ] = "dirichlet",
    noise_std: Annotated[
        float,
        typer.Option(help="Noise std of the last client (noise); client i gets i/(N-1) of it."),
    ] = 0.1,
    by: Annotated[
        str | None,
        typer.Option(
            help="Column whose values are the clients (natural), or feature to sort by "
            "(continuous)."
        ),
    ] = None,
    strictness: Annotated[
        float, typer.Option(help="0 = IID to 1 = strictly sorted by --by (continuous).")
    ] = 0.5,
    target: Annotated[
        str | None, typer.Option(help="Label column of a file or openml: dataset.")
    ] = None,
    encode: Annotated[
        bool, typer.Option(help="One-hot encode non-numeric feature columns of a file.")
    ] = False,
    test_size: Annotated[
        float | None,
        typer.Option(
            help="Fraction held out as the central test set.",
            show_default="0.2, or the dataset's own split",
        ),
    ] = None,
    min_samples: Annotated[
        int | None,
        typer.Option(help="Least samples per client.", show_default="min(10, n / 3 clients)"),
    ] = None,
    seed: Seed = 0,
) -> None:
    """Split a dataset into client shards and write a partition dir."""
    from flcli import api

    with err.status(f"partitioning {dataset} ({scheme})"):
        built, written = api.partition(
            out_dir,
            dataset,
            num_clients=clients,
            scheme=scheme,
            alpha=alpha,
            classes_per_client=classes_per_client,
            shards_per_client=shards_per_client,
            sizes=sizes,
            noise_std=noise_std,
            by=by,
            strictness=strictness,
            target=target,
            encode=encode,
            test_size=test_size,
            min_samples=min_samples,
            seed=seed,
        )
    out.print(partition_report(built.meta))
    note = "wrote" if written else "already there, identical:"
    out.print(f"{note} {out_dir} (partition.json, data.npz, partition.png)")


@app.command(name="inspect", epilog="Example: fl inspect results/digits-dir0.1")
def inspect_(
    partition_dir: Annotated[Path, typer.Argument(help="A dir written by fl partition.")],
) -> None:
    """Print the report of an existing partition (sizes, labels per client, skew)."""
    from flcli.data.store import read_meta

    out.print(partition_report(read_meta(partition_dir)))
    out.print(f"figure: {partition_dir / 'partition.png'}")


@app.command(
    epilog="Example: fl train results/digits-iid --algo fedavg --model softmax "
    "--rounds 20 --seed 0 --out results/runs/fedavg-iid"
)
def train(
    partition_dir: Annotated[Path, typer.Argument(help="A dir written by fl partition.")],
    out_dir: OutDir,
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
        str | None, Default("vectorized (fast) or serial (reference).", "backend")
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
        "checkpoint_every": checkpoint_every,
    }
    config = TrainConfig.from_dict(
        {key: value for key, value in flags.items() if value is not None}
    )
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
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task(f"{config.algo} rounds", total=config.rounds, acc="-", loss="-")
        try:
            for record in training.rounds():
                progress.update(
                    task,
                    completed=record["round"],
                    acc=f"{record['test_accuracy']:.4f}",
                    loss=f"{record['train_loss']:.4f}",
                )
        except KeyboardInterrupt:
            raise RunFailed(
                f"interrupted after round {record.get('round', '-')}; continue it with the same "
                "command and --resume"
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


@app.command(name="list", epilog="Example: fl list algorithms")
def list_(
    what: Annotated[str, typer.Argument(help="datasets, schemes, algorithms or models.")],
) -> None:
    """Describe the available datasets, schemes, algorithms or models."""
    from flcli.algorithms.registry import ALGORITHMS
    from flcli.data.datasets import catalogue
    from flcli.models.registry import MODELS

    catalogues = {
        "datasets": catalogue(),
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
