"""MLP local-training throughput: the whole cohort at once vs the same work client by client.

Workload: digits, 100 IID clients (about 14 training samples each), all 100 clients per round,
the MLP with its defaults (--hidden 128,64, 2 local epochs, batch 16). Times ROUNDS rounds of local
training (no aggregation or evaluation) per engine and dtype, REPEATS times; reports the median
throughput in training samples per second (samples x epochs / seconds) and the speed-up.

Run: .venv/bin/python benchmarks/models.py [--rounds 5] [--repeats 3]
"""

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from flcli import api
from flcli.algorithms.work import LocalSpec
from flcli.config import TrainConfig
from flcli.data.store import load_partition
from flcli.engine.cohort import train_cohort
from flcli.engine.local import Cohort
from flcli.engine.serial import train_serial

ENGINES = {"cohort (vectorized)": train_cohort, "client by client (serial)": train_serial}


def throughput(train, model, partition, spec, rounds: int) -> float:
    cohort = Cohort.of(np.arange(partition.num_clients), partition.offsets)
    w = model.init(np.random.default_rng(0))
    start = time.perf_counter()
    for round in range(1, rounds + 1):
        train(model, partition.x_train, partition.y_train, cohort, w, spec, 0, round)
    seconds = time.perf_counter() - start
    return rounds * spec.epochs * int(cohort.sizes.sum()) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "part"
        api.partition(
            out, dataset="digits", clients=args.clients, scheme="iid", seed=0, min_samples=5
        )
        base = load_partition(out)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, NumPy {np.__version__}; digits, {args.clients} IID "
        f"clients, all per round; MLP 128,64; {args.rounds} rounds x {args.repeats} repeats"
    )
    print(f"{'dtype':<9}{'engine':<28}{'samples/s (median, min-max)':<34}speed-up")
    for dtype in ("float64", "float32"):
        config = TrainConfig(model="mlp", dtype=dtype)
        partition = base.astype(dtype)
        model = api.model_for(config, partition)
        spec = LocalSpec(config.local_epochs, config.batch_size, config.lr)
        rates = {}
        for name, train in ENGINES.items():
            runs = [
                throughput(train, model, partition, spec, args.rounds) for _ in range(args.repeats)
            ]
            rates[name] = runs
        serial = statistics.median(rates["client by client (serial)"])
        for name, runs in rates.items():
            median = statistics.median(runs)
            spread = f"{median:,.0f} ({min(runs):,.0f}-{max(runs):,.0f})"
            print(f"{dtype:<9}{name:<28}{spread:<34}{median / serial:.1f}x")


if __name__ == "__main__":
    main()
