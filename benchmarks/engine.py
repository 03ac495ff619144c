"""Time `fl train` with the serial and the vectorized backend on the same work.

Workload: digits, 100 Dirichlet(0.5) clients, 50 rounds of FedAvg (softmax regression, defaults).
Each backend runs REPEATS times as a whole `fl` process; reported: median (min-max) of the process
wall time and of the training time (rounds.csv's elapsed_s at the last round).

Run: .venv/bin/python benchmarks/engine.py [--repeats 3]   (issue 2: 5x; make bench runs W1-W3)
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

FL = [sys.executable, "-m", "flcli"]


def fl(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([*FL, *args], check=True, capture_output=True)
    return time.perf_counter() - start


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flcli-bench-"))
    try:
        part = work / "part"
        fl(
            "partition",
            "digits",
            "--clients",
            "100",
            "--scheme",
            "dirichlet",
            "--alpha",
            "0.5",
            "--seed",
            "0",
            "--out",
            str(part),
        )
        rows = []
        for backend in ("serial", "vectorized"):
            walls, trains = [], []
            for repeat in range(args.repeats):
                run = work / f"{backend}-{repeat}"
                walls.append(
                    fl(
                        "train",
                        str(part),
                        "--rounds",
                        str(args.rounds),
                        "--backend",
                        backend,
                        "--seed",
                        "0",
                        "--out",
                        str(run),
                    )
                )
                rounds = pd.read_csv(run / "rounds.csv")
                trains.append(float(rounds["elapsed_s"].iloc[-1]))
                accuracy = float(rounds["test_accuracy"].iloc[-1])
            rows.append(
                (backend, spread(walls), spread(trains), accuracy, statistics.median(trains))
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; digits, 100 Dirichlet(0.5) clients, {args.rounds} rounds"
    )
    print(f"{'backend':<12}{'fl train wall':<26}{'training':<26}final accuracy")
    for backend, wall, train, accuracy, _ in rows:
        print(f"{backend:<12}{wall:<26}{train:<26}{accuracy:.4f}")
    ratio = rows[0][4] / rows[1][4]
    print(f"vectorized training is {ratio:.1f}x faster than serial")


if __name__ == "__main__":
    main()
