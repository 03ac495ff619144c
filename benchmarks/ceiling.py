"""W3 ceiling: achieved GFLOP/s of local training against a large matmul, same machine, same run.

Local training: one round of train_cohort (1 epoch, batch 16, and 32 and 64 for the MLP) for 1,000
clients of 128 samples (60 features, 10 classes), MLP(256) and softmax regression; FLOPs counted
for the forward and backward pass of every sample (mlp_flops, softmax_flops). Reference: an
N x N @ N x N matmul (2 N^3 FLOPs) with NumPy's BLAS and all its threads. Both in float32 and
float64. The two are timed in turns, REPEATS times: a block of matmuls, then a block of rounds of
each workload, each block warmed up by one untimed run and summarised by the median of BLOCK timed
runs. On a shared machine the speed of the cores drifts, so each share is taken of the matmul and
the workload measured together (the median of REPEATS shares, with min and max); and the first
round after a matmul on every core runs about 20% slower than the next ones, which is the
transition, not the engine, hence the warm-up.

Run: python benchmarks/ceiling.py [--quick] [--json out.json]
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from common import spread

FEATURES, HIDDEN, CLASSES = 60, 256, 10


def mlp_flops(d: int, h: int, c: int) -> int:
    """Multiply-adds x 2 per sample of a one-hidden-layer MLP step, biases included as the models
    compute them (a column of ones on each layer's input): forward ((d + 1) h + (h + 1) c), weight
    and bias gradients (the same), gradient into the hidden layer (h c)."""
    layers = (d + 1) * h + (h + 1) * c
    return 2 * layers + 2 * layers + 2 * h * c


def softmax_flops(d: int, c: int) -> int:
    """Per sample: logits ((d + 1) c, the bias included) and the weight and bias gradient (the
    same), x 2."""
    return 4 * (d + 1) * c


def matmul_gflops(n: int, dtype: str):
    """A function that times one n x n matmul and returns its GFLOP/s."""
    g = np.random.default_rng(0)
    a, b = g.normal(size=(n, n)).astype(dtype), g.normal(size=(n, n)).astype(dtype)

    def rate() -> float:
        start = time.perf_counter()
        a @ b
        return 2 * n**3 / (time.perf_counter() - start) / 1e9

    return rate


def training_gflops(model_name: str, dtype: str, clients: int, batch: int):
    """A function that times one round of train_cohort and returns its GFLOP/s."""
    from flcli.algorithms.work import LocalSpec
    from flcli.engine.cohort import train_cohort
    from flcli.engine.local import Cohort
    from flcli.models.registry import make_model

    g = np.random.default_rng(0)
    sizes = np.full(clients, 128)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    x = g.normal(size=(offsets[-1], FEATURES)).astype(dtype)
    y = g.integers(0, CLASSES, offsets[-1])
    hidden = (HIDDEN,) if model_name == "mlp" else None
    model = make_model(model_name, FEATURES, CLASSES, hidden=hidden, dtype=dtype)
    w = model.init(np.random.default_rng(0))
    cohort = Cohort.of(np.arange(clients), offsets)
    spec = LocalSpec(1, batch, 0.05)
    per_sample = (
        mlp_flops(FEATURES, HIDDEN, CLASSES)
        if model_name == "mlp"
        else softmax_flops(FEATURES, CLASSES)
    )
    rounds = iter(range(1_000_000))

    def rate() -> float:
        start = time.perf_counter()
        train_cohort(model, x, y, cohort, w, spec, 0, next(rounds))
        return per_sample * int(sizes.sum()) / (time.perf_counter() - start) / 1e9

    return rate


WORKLOADS = (("mlp", 16), ("mlp", 32), ("mlp", 64), ("softmax", 16))
BLOCK = 3


def block(rate) -> float:
    """The median of BLOCK timed runs after one untimed."""
    rate()
    return statistics.median(rate() for _ in range(BLOCK))


def measure(quick: bool) -> dict:
    repeats = 2 if quick else 5
    n = 1024 if quick else 3000
    clients = 200 if quick else 1000
    rows = []
    for dtype in ("float32", "float64"):
        matmul = matmul_gflops(n, dtype)
        trainers = [training_gflops(model, dtype, clients, batch) for model, batch in WORKLOADS]
        reference, rates = [], [[] for _ in WORKLOADS]
        for _ in range(repeats):
            reference.append(block(matmul))
            for trainer, measured in zip(trainers, rates, strict=True):
                measured.append(block(trainer))
        for (model, batch), engine in zip(WORKLOADS, rates, strict=True):
            shares = [e / m for e, m in zip(engine, reference, strict=True)]
            rows.append(
                {
                    "dtype": dtype,
                    "model": model,
                    "batch": batch,
                    "engine": engine,
                    "matmul": reference,
                    "share": shares,
                }
            )
    return {"n": n, "clients": clients, "repeats": repeats, "rows": rows}


def markdown(results: dict) -> str:
    n = results["n"]
    lines = [
        f"### W3 ceiling: local training vs a {n} x {n} matmul (GFLOP/s, median (min-max) of "
        f"{results['repeats']} blocks of {BLOCK} runs, timed in turns)",
        "",
        f"One round of train_cohort: {results['clients']:,} clients x 128 samples, 1 epoch, "
        f"{FEATURES} features, {CLASSES} classes; FLOPs of forward + backward per sample: "
        f"MLP({HIDDEN}) {mlp_flops(FEATURES, HIDDEN, CLASSES):,}, softmax "
        f"{softmax_flops(FEATURES, CLASSES):,}.",
        "",
        "| dtype | model | batch | local training | large matmul | share (per pair) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {row['dtype']} | {row['model']} | {row['batch']} | "
            f"{spread(row['engine'], 'GFLOP/s', 1)} | "
            f"{spread(row['matmul'], 'GFLOP/s', 1)} | {percent(row['share'])} |"
        )
    return "\n".join(lines) + "\n"


def percent(shares: list[float]) -> str:
    """median (min-max) as percentages"""
    return f"{statistics.median(shares):.0%} ({min(shares):.0%}-{max(shares):.0%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = measure(args.quick)
    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
