"""The `fl` command line: options -> config -> one library call -> rich output."""

import dataclasses
import io
import shlex
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flcli.config import HYPERPARAMETERS, TrainConfig, parse_model_args
from flcli.configfile import resolve_train_config
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
DEFAULTS = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
HYPER_FLAGS = {name: flag for name, (flag, _, _) in HYPERPARAMETERS.items()}
out = Console()
err = Console(stderr=True)
invocation: list[str] = []  # the arguments of this `fl` call, to print how to resume it


def Default(help: str, key: str):
    """An option whose default is TrainConfig's `key` (shown in --help); None means "not given",
    so that a config file's value is not overridden by a default."""
    return typer.Option(help=help, show_default=str(DEFAULTS[key]))


def lr_defaults() -> str:
    from flcli.models.registry import MODELS, SKLEARN_LR

    by_lr: dict[float, list[str]] = {}
    for name, spec in MODELS.items():
        by_lr.setdefault(spec.lr, []).append(name)
    shown = [f"{'/'.join(names)} {lr:g}" for lr, names in by_lr.items()]
    return ", ".join([*shown, f"sklearn {SKLEARN_LR:g} (forests, k-NN {MODELS['softmax'].lr:g})"])


def Hyper(help: str):
    """An algorithm hyperparameter: its default depends on --algo (see: fl list algorithms)."""
    return typer.Option(help=help, show_default="per algorithm: fl list algorithms")


OutDir = Annotated[Path, typer.Option("--out", help="Directory to write.", show_default=False)]


def partition(
    given: dict,
    out_dir: OutDir,
    dataset: Annotated[
        str,
        typer.Argument(
            help="Built-in name, generator (synthetic:alpha=1,beta=1), FILE.csv|.parquet|.npz or "
            "openml:NAME (see: fl list datasets)."
        ),
    ] = PartitionConfig.dataset,
) -> None:
    """Split a dataset into client shards and write a partition dir."""
    from flcli import api

    config = PartitionConfig(dataset=dataset, **given)
    with err.status(f"partitioning {dataset} ({config.scheme})"):
        built, written = api.partition(out_dir, config)
    from flcli.data.report import partition_report

    out.print(partition_report(built.meta))
    note = "wrote" if written else "already there, identical:"
    out.print(f"{note} {out_dir} (partition.json, data.npz, partition.png)")


app.command(
    name="partition",
    epilog="Examples: fl partition digits --clients 10 --scheme dirichlet --alpha 0.1 "
    "--seed 0 --out results/digits-dir0.1 · fl partition synthetic:alpha=1,beta=1 --scheme natural "
    "--out results/synthetic · fl partition data.csv --target label --scheme pathological "
    "--classes-per-client 2 --out results/mine",
)(command(PartitionConfig, partition))


@app.command(name="inspect", epilog="Example: fl inspect results/digits-dir0.1")
def inspect_(
    partition_dir: Annotated[Path, typer.Argument(help="A dir written by fl partition.")],
) -> None:
    """Print the report of an existing partition (sizes, labels per client, skew)."""
    from flcli.data.report import partition_report
    from flcli.data.store import read_meta

    out.print(partition_report(read_meta(partition_dir)))
    out.print(f"figure: {partition_dir / 'partition.png'}")


@app.command(
    help="Simulate federated training rounds and log each round to rounds.csv.\n\n"
    "Privacy and robustness: fl train P --dp-clip 1.0 --dp-epsilon 2 --out R (client-level DP, "
    "epsilon per round in rounds.csv); --secure-agg; --aggregator krum --attack signflip "
    "--malicious 0.2; --dropout 0.1.",
    epilog="Example: fl train results/digits-iid --algo fedavg --model mlp --hidden 128,64 "
    "--rounds 30 --seed 0 --out results/runs/fedavg-mlp  ·  scikit-learn: --model "
    "sklearn:SGDClassifier --model-arg alpha=0.001  ·  repeat a run: "
    "fl train --config results/runs/fedavg-mlp/run.json --out results/runs/again",
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
    lr: Annotated[
        float | None,
        typer.Option(
            help="Local SGD learning rate; the default depends on --model (for sklearn:NAME it "
            "scales an algorithm's correction step, and scaffold, feddyn and qfedavg take it for "
            "the client's step size: give the estimator's own, e.g. --model-arg eta0=0.01 "
            "--model-arg learning_rate='constant' --lr 0.01; for forests, boosted trees and k-NN "
            "it is the step of feddist's softmax student).",
            show_default=lr_defaults(),
        ),
    ] = None,
    clients_per_round: Annotated[
        int | None, typer.Option(help="Clients sampled per round.", show_default="all")
    ] = None,
    fraction: Annotated[
        float | None,
        typer.Option(
            help="Fraction of clients sampled per round (rounded half up, at least 1).",
            show_default="all",
        ),
    ] = None,
    seed: Annotated[int | None, Default("Seed of every random stream.", "seed")] = None,
    backend: Annotated[
        str | None,
        Default(
            "vectorized (fast), serial (reference), process (worker processes) or ray "
            "(pip install 'flcli\\[ray]').",
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
    hidden: Annotated[
        str | None,
        typer.Option(
            help="Hidden layer sizes of --model mlp, e.g. 256,128.", show_default="128,64"
        ),
    ] = None,
    dtype: Annotated[
        str | None, Default("float64, or float32 (half the memory, faster).", "dtype")
    ] = None,
    model_arg: Annotated[
        list[str] | None,
        typer.Option(
            help="Constructor argument of a sklearn:NAME model, key=value (a Python literal or a "
            "string); repeatable.",
            show_default=False,
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
    dp_clip: Annotated[
        str | None,
        typer.Option(
            help="DP-FedAvg: clip each client's update to this L2 norm, or 'adaptive' "
            "(Andrew et al. 2021). Needs --dp-noise or --dp-epsilon.",
            rich_help_panel="Privacy",
            show_default="no DP",
        ),
    ] = None,
    dp_noise: Annotated[
        float | None,
        typer.Option(
            help="DP noise multiplier z: Gaussian noise of std z*C on the sum of updates.",
            rich_help_panel="Privacy",
            show_default=False,
        ),
    ] = None,
    dp_epsilon: Annotated[
        float | None,
        typer.Option(
            help="Instead of --dp-noise: the epsilon the whole run may spend.",
            rich_help_panel="Privacy",
            show_default=False,
        ),
    ] = None,
    dp_delta: Annotated[
        float | None,
        typer.Option(
            help="DP delta: keep it well below 1/clients.",
            rich_help_panel="Privacy",
            show_default="min(1e-5, clients^-1.1)",
        ),
    ] = None,
    dp_accountant: Annotated[
        str | None,
        typer.Option(
            help="rdp or pld (dp-accounting's accountants).",
            rich_help_panel="Privacy",
            show_default=DEFAULTS["dp_accountant"],
        ),
    ] = None,
    secure_agg: Annotated[
        bool | None,
        typer.Option(
            "--secure-agg",
            help="Secure aggregation (Bonawitz et al. 2017): the server sees only the sum.",
            rich_help_panel="Privacy",
            show_default=False,
        ),
    ] = None,
    secagg_threshold: Annotated[
        int | None,
        typer.Option(
            help="Survivors needed to unmask the sum.",
            rich_help_panel="Privacy",
            show_default="a majority of the cohort",
        ),
    ] = None,
    aggregator: Annotated[
        str | None,
        typer.Option(
            help="mean, median, trimmed-mean, krum, multi-krum, bulyan or geomed.",
            rich_help_panel="Robustness",
            show_default=DEFAULTS["aggregator"],
        ),
    ] = None,
    byzantine: Annotated[
        float | None,
        typer.Option(
            help="Fraction of each cohort the robust aggregator tolerates.",
            rich_help_panel="Robustness",
            show_default="--malicious, else 0.1",
        ),
    ] = None,
    attack: Annotated[
        str | None,
        typer.Option(
            help="signflip, gaussian, scale or labelflip (needs --malicious).",
            rich_help_panel="Robustness",
            show_default="none",
        ),
    ] = None,
    malicious: Annotated[
        float | None,
        typer.Option(
            help="Fraction of all clients that attack, fixed for the run by the seed.",
            rich_help_panel="Robustness",
            show_default=False,
        ),
    ] = None,
    attack_strength: Annotated[
        float | None,
        typer.Option(
            help="signflip/scale factor or gaussian std.",
            rich_help_panel="Robustness",
            show_default="4, 10, 1",
        ),
    ] = None,
    dropout: Annotated[
        float | None,
        typer.Option(
            help="Probability that a sampled client fails mid-round.",
            rich_help_panel="Robustness",
            show_default=str(DEFAULTS["dropout"]),
        ),
    ] = None,
) -> None:
    """fl train; its help text is the decorator's (Typer keeps a docstring's line breaks)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

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
        "hidden": hidden,
        "dtype": dtype,
        "model_args": parse_model_args(model_arg) if model_arg else None,
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
        "dp_clip": dp_clip,
        "dp_noise": dp_noise,
        "dp_epsilon": dp_epsilon,
        "dp_delta": dp_delta,
        "dp_accountant": dp_accountant,
        "secure_agg": secure_agg,
        "secagg_threshold": secagg_threshold,
        "aggregator": aggregator,
        "byzantine": byzantine,
        "attack": attack,
        "malicious": malicious,
        "attack_strength": attack_strength,
        "dropout": dropout,
    }
    config, partition_dir = resolve_train_config(flags, config_file, partition_dir)
    training = api.prepare_training(partition_dir, config, out_dir, resume=resume)
    if training.already_completed:
        out.print(f"{out_dir} already holds this completed run; nothing to do")
        return
    for note in training.notes:
        err.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
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
    metric = "test_r2" if training.partition.task == "regression" else "test_accuracy"
    short = {"test_r2": "r2", "test_accuracy": "acc"}[metric]
    import numpy as np

    # overflow shows up as a NaN loss, which stops the run with advice: no numpy warnings
    with Progress(*columns, console=err, transient=False) as progress, np.errstate(all="ignore"):
        task = progress.add_task(
            f"{config.algo} rounds", total=config.rounds, short=short, metric="-", loss="-"
        )
        rounds = training.rounds()
        default_ctrl_c = signal.getsignal(signal.SIGINT)
        if default_ctrl_c is signal.default_int_handler:  # not when started with Ctrl-C ignored
            signal.signal(signal.SIGINT, interrupt_once)
        default_term = signal.signal(signal.SIGTERM, interrupt_once)  # kill: saved as Ctrl-C is
        interrupted = False
        try:
            for record in rounds:
                progress.update(
                    task,
                    completed=record["round"],
                    metric=f"{record[metric]:.4f}",
                    loss=f"{record['train_loss']:.4f}",
                )
        except KeyboardInterrupt:
            interrupted = True
            rounds.close()  # saves what was done and marks the run interrupted
            saved = training.run.saved_round  # may be one past the last record shown
            if saved is None:
                raise RunFailed(
                    "interrupted before the first round was saved; start it again with: "
                    f"{shlex.join(['fl', *invocation])}"
                ) from None
            again = shlex.join(["fl", *invocation, *(["--resume"] if not resume else [])])
            raise RunFailed(
                f"interrupted after round {saved}, saved in {out_dir}; continue it with: {again}"
            ) from None
        finally:
            if not interrupted:  # after a Ctrl-C, Ctrl-C stays ignored until the process exits
                signal.signal(signal.SIGINT, default_ctrl_c)
                signal.signal(signal.SIGTERM, default_term)
    out.print(
        f"round {record['round']}: {metric.replace('_', ' ')} {record[metric]:.4f}, "
        f"train loss {record['train_loss']:.4f} -> {out_dir / 'rounds.csv'}"
    )


def interrupt_once(signum, frame):
    """Ctrl-C (or SIGTERM) stops the run; another, while the run saves what it did, is ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


RunPaths = Annotated[
    list[Path], typer.Argument(help="Run dirs, or folders searched recursively for runs.")
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
    runs: RunPaths,
    out_file: Annotated[
        Path,
        typer.Option("--out", help="Figure to write (.png, .svg or .pdf).", show_default=False),
    ],
    metric: Metric = None,
    x: Annotated[str, typer.Option(help="round, bytes (sent up) or time.")] = "round",
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
) -> None:
    """Plot a metric per round: one line per group of runs, mean ± 1 std over seeds."""
    from flcli import api

    check_out_file(out_file, "accuracy.png")
    summary = api.plot(runs, out_file, metric, x, group_by, facet, smooth, logy)
    for note in summary.notes:
        err.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
    panels = f", {summary.panels} panels" if summary.panels > 1 else ""
    out.print(
        f"wrote {out_file} ({summary.runs} runs, {summary.groups} lines{panels})", soft_wrap=True
    )


REPORT_SUFFIXES = {".md": "markdown", ".csv": "csv"}
WIDE = 240  # columns of a table that goes to a file or a pipe rather than a terminal


def print_table(table: Table) -> None:
    """To the terminal at its width; to a pipe or a file without cutting long cells."""
    (out if out.is_terminal else Console(width=WIDE)).print(table)


@app.command(
    epilog="Example: fl report results/sweep --target-accuracy 0.9 --baseline fedavg "
    "--format markdown --out results/sweep.md"
)
def report(
    runs: RunPaths,
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
            help="table, markdown or csv.",
            show_default="from --out's extension (.md, .csv), else table",
        ),
    ] = None,
    group_by: GroupBy = None,
    metric: Metric = None,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write the report to this file (a table is printed too, .md and .csv not).",
        ),
    ] = None,
) -> None:
    """Summarize runs per group: final and best metric, rounds/bytes/seconds to a target."""
    from flcli import api
    from flcli.fileio import atomic_write_text
    from flcli.report import FORMATS, to_csv, to_markdown

    check_out_file(out_file, "report.md")
    suffix = out_file.suffix.lower() if out_file else ""
    format = format or REPORT_SUFFIXES.get(suffix, "table")
    if format not in FORMATS:
        raise FLError(f"--format {format!r} is not one of: {', '.join(FORMATS)}")
    summary = api.report(runs, metric, target_accuracy, baseline, group_by)
    for note in summary.notes:
        err.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
    if format == "table":
        table = report_table(summary)
        print_table(table)
        text = None
        if out_file:
            plain = Console(file=io.StringIO(), width=WIDE, color_system=None)
            plain.print(table)
            text = plain.file.getvalue()
    else:
        text = to_markdown(summary) if format == "markdown" else to_csv(summary)
        if not out_file:
            out.print(text, end="", markup=False, highlight=False, soft_wrap=True)
    if out_file:
        atomic_write_text(out_file, text)
        err.print(f"wrote {out_file}", highlight=False)


def check_out_file(path: Path | None, example: str) -> None:
    """Refuse an --out that is a directory before any work is done."""
    if path is not None and path.is_dir():
        raise FLError(f"--out {path} is a directory; give a file in it, e.g. {path / example}")


def report_table(summary) -> Table:
    from flcli.report import caption, text_cells

    header, rows = text_cells(summary)
    table = Table(caption=caption(summary), caption_justify="left", box=box.SIMPLE_HEAD)
    for i, name in enumerate(header):
        right = i >= max(len(summary.keys), 1) and name != "status"
        widest = max((len(row[i]) for row in rows), default=0)  # values never wrap; headers may
        table.add_column(name, justify="right" if right else "left", min_width=widest)
    for row in rows:
        table.add_row(*map(Text, row))
    return table


@app.command(
    epilog="Example: fl sweep experiments/noniid.toml --jobs 2  (again: does nothing; "
    "interrupted: continues)"
)
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep TOML: name, \\[base], \\[grid].")],
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

    from flcli.sweep import load_sweep, run_sweep, state

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
            table.add_row(run.run_id, run.partition_id, state(run))
        print_table(table)
        return
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
        except KeyboardInterrupt:
            done = counts["completed"] + counts["skipped"]
            raise RunFailed(
                f"interrupted with {done} of {len(plan.runs)} runs done; unfinished runs keep what "
                f"they trained; continue with: {shlex.join(['fl', *invocation])}"
            ) from None
    print_table(sweep_table(plan, finished))
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
    from flcli.data.datasets import catalogue
    from flcli.models.registry import describe_models

    catalogues = {
        "datasets": catalogue(),
        "schemes": scheme_catalogue(),
        "algorithms": {name: algorithm_line(info) for name, info in ALGORITHMS.items()},
        "models": describe_models(ALGORITHMS),
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
    refuses = " (no --dp-clip, --secure-agg, --aggregator)" if info.reads_clients else ""
    return info.description + (f" [{defaults}]" if defaults else "") + refuses


def error_line(message: str) -> None:
    """One line on stderr, printed as it is (no rich markup or :emoji: codes in user values)."""
    err.print(f"error: {message}", highlight=False, soft_wrap=True, markup=False, emoji=False)


INTERRUPTED = 130  # what Typer exits with on a Ctrl-C: 128 + SIGINT


def main(argv: list[str] | None = None) -> None:
    """Entry point of `fl`: errors become one line on stderr and an exit code, never a traceback."""
    command = typer.main.get_command(app)
    invocation[:] = sys.argv[1:] if argv is None else argv
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
    if code == INTERRUPTED:  # Typer's code for a Ctrl-C that no command handled
        error_line("interrupted; nothing was written: run the same command again")
    sys.exit(code if isinstance(code, int) else 0)
