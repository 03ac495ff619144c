"""Small clients (issue #23, point 2): training time and the steps' share of a matmul, before/after.

- P1: digits, 100 Dirichlet(0.5) clients, 20 rounds of FedAvg (softmax, defaults: 2 epochs,
  batch 16). P3: Synthetic(0, 0), 1,000 natural clients (LogNormal sizes, 45 to 14,300 rows),
  10 rounds at 100 and at 1,000 clients per round. Each a whole `fl train` process, REPEATS
  times; reported: the training time (rounds.csv's elapsed_s at the last round: local training,
  aggregation and the evaluation of every round but round 0) and the wall time of the process.
- The first round of `--model mlp` (P2: MLP 64-128-64-10 on P1's clients, 20 rounds): round 1's
  elapsed_s less the median of the later rounds' lengths, what loading the compiled steps adds.
- The steps' GFLOP/s on P2-sized clients (P1's: 4 to 32 rows, batch 16, 2 epochs): one round of
  train_cohort of all 100 clients, the MLP 64-128-64-10 and softmax regression, as a share of a
  3000 x 3000 matmul with all threads, timed in turns as benchmarks/ceiling.py does; FLOPs are the
  useful ones (every sample's forward and backward pass once per epoch, none for padding).

--source DIR times the flcli checkout in DIR (its children run with PYTHONPATH=DIR): run it once
on the code before a change and once after, on the same machine, close in time.

Run: python benchmarks/smallclients.py [--source DIR] [--repeats 3] [--json out.json]
"""

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ceiling import block, matmul_gflops
from common import spread

HERE = Path(__file__).parent
HIDDEN = (128, 64)
RUNS = {  # name: (partition, fl train flags)
    "P1 softmax, 100 clients": ("digits", ["--rounds", "20"]),
    "P3 softmax, 100 per round": ("synthetic", ["--rounds", "10", "--clients-per-round", "100"]),
    "P3 softmax, 1,000 per round": ("synthetic", ["--rounds", "10", "--clients-per-round", "1000"]),
    "P2 MLP 64-128-64-10": ("digits", ["--rounds", "20", "--model", "mlp", "--hidden", "128,64"]),
}
PARTITIONS = {
    "digits": ["digits", "--clients", "100", "--scheme", "dirichlet", "--alpha", "0.5"],
    "synthetic": ["synthetic:alpha=0,beta=0,clients=1000", "--scheme", "natural"],
}


def fl(source: Path, *args: str) -> float:
    """Runs `fl ARGS` from the checkout in source; its wall seconds."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flcli", *args], check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def time_runs(source: Path, work: Path, repeats: int) -> dict:
    """Per run of RUNS: the wall and training seconds of each repeat, round 1's extra seconds."""
    for name, flags in PARTITIONS.items():
        fl(source, "partition", *flags, "--seed", "0", "--out", str(work / name))
    results = {}
    for name, (partition, flags) in RUNS.items():
        walls, trains, firsts = [], [], []
        for repeat in range(repeats):
            out = work / f"run-{len(results)}-{repeat}"
            walls.append(fl(source, "train", str(work / partition), *flags, "--out", str(out)))
            elapsed = [
                float(line.split(",")[header(out).index("elapsed_s")])
                for line in (out / "rounds.csv").read_text().splitlines()[1:]
            ]
            trains.append(elapsed[-1])
            lengths = np.diff(elapsed[1:])  # rounds 2, 3, ...
            firsts.append(elapsed[1] - float(np.median(lengths)))
        results[name] = {"wall": walls, "train": trains, "first_round_extra": firsts}
    return results


def header(run: Path) -> list[str]:
    return (run / "rounds.csv").read_text().splitlines()[0].split(",")


def dense_flops(units: tuple[int, ...]) -> int:
    """FLOPs of one sample's forward and backward pass through a dense network, biases included
    as the models compute them (a column of ones on each layer's input): the forward products,
    the weight and bias gradients (the same), and the gradients into the hidden layers."""
    layers = sum((a + 1) * b for a, b in zip(units[:-1], units[1:], strict=True))
    into_hidden = sum(a * b for a, b in zip(units[1:-1], units[2:], strict=True))
    return 4 * layers + 2 * into_hidden


def step_rates(partition: Path, model_name: str, compiled: bool):
    """A function that times one round of train_cohort on the partition's clients (all of them)
    and returns its GFLOP/s, or None when this checkout cannot choose the NumPy path."""
    from flcli.algorithms.work import LocalSpec
    from flcli.data.store import load_partition
    from flcli.engine.cohort import train_cohort
    from flcli.engine.local import Cohort
    from flcli.models.registry import make_model

    data = load_partition(partition)
    hidden = HIDDEN if model_name == "mlp" else None
    model = make_model(model_name, data.num_features, data.num_classes, hidden=hidden)
    choose = "compiled" in inspect.signature(train_cohort).parameters
    options = {"compiled": compiled} if choose else {}
    if not choose and compiled != (model_name == "mlp"):
        return None  # before: the MLP always compiled, the linear models never
    units = (data.num_features, *(hidden or ()), data.num_classes)
    flops = dense_flops(units) * int(data.client_sizes.sum()) * 2  # 2 epochs
    w = model.init(np.random.default_rng(0))
    cohort = Cohort.of(np.arange(data.num_clients), data.offsets)
    spec = LocalSpec(2, 16, 0.05)
    rounds = iter(range(1, 1_000_000))

    def rate() -> float:
        start = time.perf_counter()
        for round in [next(rounds) for _ in range(10)]:  # a round takes a few milliseconds
            train_cohort(model, data.x_train, data.y_train, cohort, w, spec, 0, round, **options)
        return 10 * flops / (time.perf_counter() - start) / 1e9

    return rate


def measure_rates(partition: Path, repeats: int) -> list[dict]:
    """In the child process: each step's GFLOP/s and its share of the matmul timed beside it."""
    matmul = matmul_gflops(3000, "float64")
    rows = []
    for model_name in ("mlp", "softmax"):
        for compiled in (True, False):
            rate = step_rates(partition, model_name, compiled)
            if rate is None:
                continue
            reference, engine = [], []
            for _ in range(repeats):
                reference.append(block(matmul))
                engine.append(block(rate))
            shares = [e / m for e, m in zip(engine, reference, strict=True)]
            path = "compiled" if compiled else "NumPy"
            rows.append({"model": model_name, "path": path, "engine": engine, "share": shares})
    return rows


def markdown(results: dict) -> str:
    lines = [
        f"### Small clients: {results['source']} (load average {results['load']})",
        "",
        "| run | training (elapsed_s) | whole `fl train` | round 1 beyond a later round |",
        "| --- | --- | --- | --- |",
    ]
    for name, run in results["runs"].items():
        lines.append(
            f"| {name} | {spread(run['train'], digits=3)} | {spread(run['wall'])} | "
            f"{spread(run['first_round_extra'], digits=3)} |"
        )
    lines += ["", "| step (P2-sized clients, float64) | GFLOP/s | share of a matmul |"]
    lines.append("| --- | --- | --- |")
    for row in results["rates"]:
        shares = row["share"]
        lines.append(
            f"| {row['model']} {row['path']} | {spread(row['engine'], 'GFLOP/s', 1)} | "
            f"{statistics.median(shares):.0%} ({min(shares):.0%}-{max(shares):.0%}) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=HERE.parent)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child-rates", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_rates:
        print(json.dumps(measure_rates(args.child_rates, args.repeats)))
        return
    source = args.source.resolve()
    load = f"{os.getloadavg()[0]:.1f}"
    with tempfile.TemporaryDirectory(prefix="flcli-small-") as folder:
        runs = time_runs(source, Path(folder), args.repeats)
        child = [sys.executable, __file__, "--child-rates", str(Path(folder) / "digits")]
        env = {**os.environ, "PYTHONPATH": f"{source}{os.pathsep}{HERE}"}
        done = subprocess.run([*child, "--repeats", str(args.repeats)], check=True, env=env,
                              capture_output=True, text=True)  # fmt: skip
    rates = json.loads(done.stdout.strip().splitlines()[-1])
    results = {"source": str(source), "load": load, "runs": runs, "rates": rates}
    results["load"] += f" before, {os.getloadavg()[0]:.1f} after"
    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
