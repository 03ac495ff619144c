"""Issue 20: the cost of compressing a cohort of 1,000 clients' updates against their local
training, per compressor, with and without error feedback.

Data: the Synthetic(0, 0) devices of cohorts.py (1,000 clients of 80-120 samples, 60 features,
10 classes). For softmax (P = 610) and MLP 256 (P = 18,186), float64, one round of FedAvg's local
training (--epochs, default 1; fl train's default is 2; batch 16) for all 1,000 clients, then the
uplink's Compress stage (flcli.engine.stages.Compress: compressor, decoding, bit count and the
error-feedback table) on the resulting [1000, P] updates. Each figure is the median of 9 runs
(a tenth, first and untimed, warms up and compiles flcli.compression_kernels). The
compression goes over the cohort in blocks of rows on every core, each one compiled pass
(flcli.compression_kernels, bit-identical to the NumPy functions of flcli.compression); no
Python loop over clients.

The row "copy (the floor)" is NumPy's copy of the updates into a new [1000, P] array, on one
core: every compressor reads the updates and writes a new array of decoded ones (error feedback
also reads and writes its table), so on two cores the cheapest come in only a little under it.
The training's time moves with the machine's load: compare seconds, and percentages only
within one run.

Run: python benchmarks/compression.py [--quick] [--epochs E] [--json out.json] [--figure out.png]
"""

import argparse
import functools
import json
import statistics
import time

import numpy as np
from cohorts import BATCH, CLASSES, EPOCHS, FEATURES, HIDDEN, synthetic_partition

SPECS = [
    ("qsgd:bits=8", None),
    ("qsgd:bits=2", None),
    ("uniform:bits=4", None),
    ("terngrad", None),
    ("sign", None),
    ("sign", "ef"),
    ("topk:fraction=0.01", None),
    ("topk:fraction=0.01", "ef"),
    ("topk:fraction=0.01", "ef21"),
    ("randk:fraction=0.01", None),
    ("bf16", None),
    ("fp16", None),
    ("hadamard+qsgd:bits=4", None),
]


def timed_seconds(work, repeats: int) -> list[float]:
    work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return times


def measure(clients: int, repeats: int, epochs: int) -> dict:
    from flcli import compression
    from flcli.algorithms.work import LocalSpec
    from flcli.engine.cohort import train_cohort
    from flcli.engine.local import Cohort
    from flcli.engine.stages import Compress, Message
    from flcli.models.registry import make_model

    partition = synthetic_partition(clients)
    ids = np.arange(clients)
    cohort = Cohort.of(ids, partition.offsets)
    results = {}
    for name in ("softmax", "mlp"):
        hidden = (HIDDEN,) if name == "mlp" else None
        model = make_model(name, FEATURES, CLASSES, hidden=hidden, dtype="float64")
        spec = LocalSpec(epochs, BATCH, 0.1 if name == "mlp" else 0.5)
        w = model.init(np.random.default_rng(0))
        x, y = partition.x_train.astype(np.float64), partition.y_train
        work = functools.partial(train_cohort, model, x, y, cohort, w, spec, 0, 1)
        training = statistics.median(timed_seconds(work, repeats))
        deltas = work().params - w
        alive = np.ones(clients, dtype=bool)
        row = {"params": int(model.num_params), "train_s": training, "compress_s": {}}
        row["compress_s"]["copy (the floor)"] = timed_seconds(deltas.copy, repeats)
        for text, feedback in SPECS:
            stage = Compress(compression.parse(text), 0, feedback, clients, model.num_params)
            state = stage.initial_state()

            send = functools.partial(stage.apply, Message(1, ids, deltas, alive), state)

            label = text + (f" + {feedback}" if feedback else "")
            row["compress_s"][label] = timed_seconds(send, repeats)
        results[name] = row
    return results


def markdown(results: dict, clients: int, epochs: int) -> str:
    lines = [
        f"Compressing {clients:,} clients' updates (the Compress stage: encode, decode, count "
        f"bits, error-feedback table), against one round of their local training ({epochs} "
        "epoch(s), batch 16, float64); median seconds (MLP: min-max too).",
        "",
        "| compressor | softmax (s) | % of training | MLP 256 (s) | % of training |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    soft, mlp = results["softmax"], results["mlp"]
    lines.append(f"| local training | {soft['train_s']:.4f} | | {mlp['train_s']:.4f} | |")
    for label, times in soft["compress_s"].items():
        seconds, others = statistics.median(times), mlp["compress_s"][label]
        other = statistics.median(others)
        lines.append(
            f"| {label} | {seconds:.4f} | {100 * seconds / soft['train_s']:.1f}% | "
            f"{other:.4f} ({min(others):.4f}-{max(others):.4f}) | "
            f"{100 * other / mlp['train_s']:.1f}% |"
        )
    return "\n".join(lines)


def figure(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, name in zip(axes, ("softmax", "mlp"), strict=True):
        row = results[name]
        labels = list(row["compress_s"])
        seconds = [statistics.median(row["compress_s"][label]) for label in labels]
        shares = [100 * second / row["train_s"] for second in seconds]
        ax.barh(labels, shares)
        ax.set_title(f"{name} (P = {row['params']:,})")
        ax.set_xlabel("compression time, % of local training (1,000 clients)")
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="100 clients, 2 repeats")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="local epochs per round")
    parser.add_argument("--json")
    parser.add_argument("--figure")
    args = parser.parse_args()
    clients, repeats = (100, 2) if args.quick else (1000, 9)
    results = measure(clients, repeats, args.epochs)
    print(markdown(results, clients, args.epochs))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.figure:
        figure(results, args.figure)


if __name__ == "__main__":
    main()
