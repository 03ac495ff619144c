"""W2 scale: time per round against clients per round, on 1,000 and 10,000 generated clients.

Data: FedProx's Synthetic(0, 0) family (60 features, 10 classes; device k draws W_k, b_k ~ N(0, 1)
and x ~ N(v_k, diag(j^-1.2)) with v_k ~ N(0, 1), y = argmax(x W_k + b_k)), but with 80-120
training samples per device (the generator's LogNormal sizes would put 4.5 M rows in 10,000
clients), written straight to a partition dir in float32 with flcli.data.store.write_partition.

For each partition and model (softmax, MLP 256) one child process trains ROUNDS rounds of FedAvg
(1 local epoch, batch 16) at each cohort size and reports, per round, the seconds of local
training, of aggregation, and of the per-round evaluation (test set + the global model's loss on
all training data, what rounds.csv logs); the child's peak RSS is the memory figure. Then the
whole `fl train` process on 10,000 clients (1,000 per round) gives the end-to-end peak RSS.

Run: python benchmarks/cohorts.py [--quick] [--json out.json]
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import FL, json_line, spread, timed

HERE = Path(__file__).parent
FEATURES, CLASSES, HIDDEN = 60, 10, 256
EPOCHS, BATCH = 1, 16


def synthetic_partition(num_clients: int, seed: int = 0):
    """A Partition of Synthetic(0, 0) devices with 80-120 training and 12 test samples each."""
    from flcli.data.store import partition_from_arrays

    g = np.random.default_rng(seed)
    per_device, test_per_device = 120, 12
    scale = np.arange(1, FEATURES + 1) ** -0.6
    sizes = g.integers(80, per_device + 1, num_clients)
    xs, ys, xt, yt = [], [], [], []
    for first in range(0, num_clients, 1000):
        k = min(1000, num_clients - first)
        weights = g.normal(size=(k, FEATURES, CLASSES))
        bias = g.normal(size=(k, 1, CLASSES))
        centres = g.normal(size=(k, 1, FEATURES))
        x = centres + g.normal(size=(k, per_device + test_per_device, FEATURES)) * scale
        y = (x @ weights + bias).argmax(axis=2)
        keep = np.arange(per_device) < sizes[first : first + k, None]
        xs.append(x[:, :per_device][keep].astype(np.float32))
        ys.append(y[:, :per_device][keep])
        xt.append(x[:, per_device:].reshape(-1, FEATURES).astype(np.float32))
        yt.append(y[:, per_device:].ravel())
    return partition_from_arrays(
        np.concatenate(xs),
        np.concatenate(ys),
        sizes,
        np.concatenate(xt),
        np.concatenate(yt),
        dataset="synthetic:alpha=0,beta=0 (80-120 samples per device)",
        num_classes=CLASSES,
        seed=seed,
    )


def child(part: Path, model_name: str, dtype: str, cohort_sizes: list[int], rounds: int) -> dict:
    """Runs in a child process: per cohort size, per-round seconds of training, aggregation,
    evaluation."""
    from flcli.algorithms.aggregate import weighted_mean
    from flcli.algorithms.work import LocalSpec
    from flcli.data.store import load_partition
    from flcli.engine.cohort import train_cohort
    from flcli.engine.evaluate import evaluate, per_sample
    from flcli.engine.local import Cohort
    from flcli.engine.stages import sample_clients
    from flcli.models.registry import make_model

    partition = load_partition(part).astype(dtype)
    hidden = (HIDDEN,) if model_name == "mlp" else None
    model = make_model(model_name, FEATURES, CLASSES, hidden=hidden, dtype=dtype)
    spec = LocalSpec(EPOCHS, BATCH, 0.1 if model_name == "mlp" else 0.5)
    x, y = partition.x_train, partition.y_train
    result = {}
    for size in cohort_sizes:
        w = model.init(np.random.default_rng(0))
        times = {"train": [], "aggregate": [], "evaluate": []}
        for round in range(rounds + 1):  # round 0 warms up (first use of this size): untimed
            ids = sample_clients(0, round, partition.num_clients, size)
            cohort = Cohort.of(ids, partition.offsets)
            start = time.perf_counter()
            local = train_cohort(model, x, y, cohort, w, spec, 0, round)
            trained = time.perf_counter()
            w = w + weighted_mean(local.params - w, cohort.sizes)
            aggregated = time.perf_counter()
            evaluate(model, w, partition.x_test, partition.y_test)
            per_sample(model, w, x, y)
            evaluated = time.perf_counter()
            if round:
                times["train"].append(trained - start)
                times["aggregate"].append(aggregated - trained)
                times["evaluate"].append(evaluated - aggregated)
        result[str(size)] = times
    return result


def fl_train_peak(part: Path, out: Path, per_round: int, rounds: int, dtype: str) -> dict:
    command = [
        *FL,
        "train",
        str(part),
        "--clients-per-round",
        str(per_round),
        "--rounds",
        str(rounds),
        "--local-epochs",
        str(EPOCHS),
        "--batch-size",
        str(BATCH),
        "--dtype",
        dtype,
        "--seed",
        "0",
        "--out",
        str(out),
    ]
    wall, peak, _ = timed(command)
    shown = " ".join(["fl", *command[3:]]).replace(str(part.parent), "$WORK")
    return {"wall": wall, "peak_mib": peak, "command": shown}


def measure(quick: bool, work: Path) -> dict:
    populations = [1000] if quick else [1000, 10000]
    cohort_sizes = [10, 100] if quick else [10, 30, 100, 300, 1000]
    rounds = 2 if quick else 5
    configs = [("softmax", "float32"), ("softmax", "float64"), ("mlp", "float32")]
    if quick:
        configs = configs[:1]
    from flcli.data.store import write_partition

    results = {"cohort_sizes": cohort_sizes, "rounds": rounds, "curves": [], "fl_train": []}
    for population in populations:
        part = work / f"synthetic-{population}"
        start = time.perf_counter()
        write_partition(synthetic_partition(population), part)
        results.setdefault("generate_s", {})[str(population)] = time.perf_counter() - start
        for model, dtype in configs:
            command = [sys.executable, str(HERE / "cohorts.py"), "--child", str(part), model, dtype]
            command += ["--sizes", ",".join(map(str, cohort_sizes)), "--rounds", str(rounds)]
            wall, peak, out = timed(command)
            results["curves"].append(
                {
                    "clients": population,
                    "model": model,
                    "dtype": dtype,
                    "peak_mib": peak,
                    "times": json_line(out),
                }
            )
        for dtype in ("float32",) if quick else ("float32", "float64"):
            run = fl_train_peak(part, work / f"run-{population}-{dtype}", 1000, rounds, dtype)
            results["fl_train"].append({"clients": population, "dtype": dtype, **run})
    return results


def markdown(results: dict) -> str:
    sizes = results["cohort_sizes"]
    lines = [
        "### W2 scale: Synthetic(0, 0), 80-120 samples per client, FedAvg, 1 epoch, batch 16",
        "",
        f"Seconds per round, median (min-max) of {results['rounds']} rounds after one untimed "
        "warm-up round per cohort size; training = local SGD of the whole cohort; evaluation = "
        "test set + global model on all training data. Peak RSS: one child process per row, "
        "which trains every cohort size in turn.",
        "",
        "| clients | model | dtype | peak RSS | "
        + " | ".join(f"train, {k}/round" for k in sizes)
        + f" | aggregate, {sizes[-1]} | evaluate |",
        "| --- " * (5 + len(sizes) + 1) + "|",
    ]
    for curve in results["curves"]:
        times = curve["times"]
        cells = [spread(times[str(k)]["train"], digits=3) for k in sizes]
        last = times[str(sizes[-1])]
        lines.append(
            f"| {curve['clients']:,} | {curve['model']} | {curve['dtype']} | "
            f"{curve['peak_mib']:.0f} MiB | {' | '.join(cells)} | "
            f"{spread(last['aggregate'], digits=3)} | {spread(last['evaluate'], digits=3)} |"
        )
    lines += [
        "",
        "Whole `fl train` processes (evaluation every round included; one run each):",
        "",
    ]
    for run in results["fl_train"]:
        lines.append(
            f"- `{run['command']}`: {run['wall']:.1f} s, peak RSS {run['peak_mib']:.0f} MiB"
        )
    return "\n".join(lines) + "\n"


def per_client_cost(times: dict, sizes: list[int]) -> tuple[float, float]:
    """Least-squares line through (cohort size, median training seconds): (slope, intercept)."""
    medians = [statistics.median(times[str(k)]["train"]) for k in sizes]
    slope, intercept = np.polyfit(np.array(sizes, dtype=float), medians, 1)
    return float(slope), float(intercept)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = results["cohort_sizes"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for curve in results["curves"]:
        runs = [curve["times"][str(k)]["train"] for k in sizes]
        medians = np.array([statistics.median(r) for r in runs])
        low = medians - np.array([min(r) for r in runs])
        high = np.array([max(r) for r in runs]) - medians
        label = f"{curve['model']} {curve['dtype']}, {curve['clients']:,} clients"
        ax.errorbar(sizes, medians, yerr=[low, high], marker="o", capsize=3, label=label)
    ax.set(xscale="log", yscale="log", xlabel="clients per round", ylabel="training s / round")
    ax.set_title("W2: local training time per round (median, min-max)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=3, metavar=("PART", "MODEL", "DTYPE"))
    parser.add_argument("--sizes", default="10,100")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.child:
        part, model, dtype = args.child
        sizes = [int(k) for k in args.sizes.split(",")]
        print(json.dumps(child(Path(part), model, dtype, sizes, args.rounds)))
        return
    with tempfile.TemporaryDirectory(prefix="flcli-w2-") as work:
        results = measure(args.quick, Path(work))
    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
