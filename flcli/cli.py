"""The `fl` command line: options -> config -> one library call -> rich output."""

import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from flcli.config import HYPERPARAMETERS, TrainConfig
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
HYPER_FLAGS = {name: flag for name, (flag, _, _) in HYPERPARAMETERS.items()}
out = Console()
err = Console(stderr=True)


def Default(help: str, key: str):
    """An option whose default is TrainConfig's `key` (shown in --help); None means "not given",
    so that a config file's value is not overridden by a default."""
    return typer.Option(help=help, show_default=str(getattr(DEFAULTS, key)))


def Hyper(help: str):
    """An algorithm hyperparameter: its default depends on --algo (see: fl list algorithms)."""
    return typer.Option(help=help, show_default="per algorithm: fl list algorithms")


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
    client_test_fraction: Annotated[
        float,
        typer.Option(
            help="Fraction of each client's shard kept as its local test split "
            "(for personalization: ditto, fedavglu).",
            show_default="0: none",
        ),
    ] = 0.0,
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
        client_test_fraction=client_test_fraction,
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
    stragglers: Annotated[
        float | None,
        Default("Fraction of each round's clients doing fewer local steps.", "stragglers"),
    ] = None,
    drop_stragglers: Annotated[
        bool | None,
        typer.Option(
            "--drop-stragglers/--keep-stragglers",
            help="Leave stragglers out of the aggregate, or use their partial work.",
            show_default="drop for fedavg, keep for the others",
        ),
    ] = None,
    log_clients: Annotated[
        bool | None,
        typer.Option("--log-clients", help="Write clients.csv (each client, each round)."),
    ] = None,
    server_lr: Annotated[float | None, Hyper("Server learning rate.")] = None,
    server_momentum: Annotated[float | None, Hyper("Server momentum (fedavgm).")] = None,
    mu: Annotated[float | None, Hyper("Proximal term weight (fedprox).")] = None,
    beta1: Annotated[float | None, Hyper("First-moment decay (fedadagrad/adam/yogi).")] = None,
    beta2: Annotated[float | None, Hyper("Second-moment decay (fedadam, fedyogi).")] = None,
    tau: Annotated[float | None, Hyper("Adaptivity floor (fedadagrad/adam/yogi).")] = None,
    alpha_dyn: Annotated[float | None, Hyper("Dynamic regularization weight (feddyn).")] = None,
    q: Annotated[float | None, Hyper("Fairness exponent (qfedavg).")] = None,
    lam: Annotated[
        float | None,
        typer.Option(
            "--lambda",
            help="Pull of personal models to the global one (ditto).",
            show_default="per algorithm: fl list algorithms",
        ),
    ] = None,
    temperature: Annotated[float | None, Hyper("Distillation temperature (feddist).")] = None,
    distill_steps: Annotated[int | None, Hyper("Server distillation steps (feddist).")] = None,
    proxy_fraction: Annotated[
        float | None, Hyper("Fraction of each shard held out as the proxy set (feddist).")
    ] = None,
    personal_epochs: Annotated[
        int | None, Hyper("Epochs of personal training (ditto, fedavglu).")
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
        "stragglers": stragglers,
        "drop_stragglers": drop_stragglers,
        "log_clients": log_clients,
        "server_lr": server_lr,
        "server_momentum": server_momentum,
        "mu": mu,
        "beta1": beta1,
        "beta2": beta2,
        "tau": tau,
        "alpha_dyn": alpha_dyn,
        "q": q,
        "lam": lam,
        "temperature": temperature,
        "distill_steps": distill_steps,
        "proxy_fraction": proxy_fraction,
        "personal_epochs": personal_epochs,
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
    from flcli.data.datasets import DATASETS
    from flcli.data.partition import SCHEMES
    from flcli.models.registry import MODELS

    catalogues = {
        "datasets": {name: text for name, (_, text) in DATASETS.items()},
        "schemes": SCHEMES,
        "algorithms": {name: algorithm_line(info) for name, info in ALGORITHMS.items()},
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


def algorithm_line(info) -> str:
    defaults = ", ".join(
        f"{HYPER_FLAGS[name]} {'= --local-epochs' if callable(v) else v}"
        for name, v in info.defaults.items()
    )
    return info.description + (f" [{defaults}]" if defaults else "")


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
