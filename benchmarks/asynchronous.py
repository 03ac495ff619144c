"""Issue 19: the cost of one server update of the asynchronous algorithms (fedbuff, fedasync) at
C = 100 and 1,000 clients training at once.

Data: 1,000 IID digits clients (1 to 2 training rows each), lognormal devices (sigma 1), softmax,
float64. Each run is a real `fl train` process of 300 server updates; the cost per update is
(elapsed_s at update 300 - elapsed_s at update 50) / 250 from its rounds.csv, so start-up and the
first dispatch (all C clients at once) are left out; it includes each row's evaluation, as a user
pays it. Each figure is the median (min-max) of REPEATS runs.

Run: python benchmarks/asynchronous.py [--quick]
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile

from common import FL, machine, spread

UPDATES, SKIP = 300, 50
RUNS = {
    "fedbuff (K = 10)": ["--algo", "fedbuff", "--buffer-size", "10"],
    "fedasync": ["--algo", "fedasync"],
}


def per_update(partition: str, out: str, flags: list[str], concurrency: int, updates: int) -> float:
    command = [*FL, "train", partition, *flags, "--concurrency", str(concurrency)]
    command += ["--system", "lognormal:sigma=1", "--rounds", str(updates), "--out", out]
    subprocess.run(command, check=True, capture_output=True)
    with open(os.path.join(out, "rounds.csv")) as f:
        elapsed = {int(row["round"]): float(row["elapsed_s"]) for row in csv.DictReader(f)}
    skip = min(SKIP, updates // 5)
    return (elapsed[updates] - elapsed[skip]) / (updates - skip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 updates, one repeat")
    args = parser.parse_args()
    updates, repeats = (60, 1) if args.quick else (UPDATES, 3)
    with tempfile.TemporaryDirectory() as folder:
        partition = os.path.join(folder, "p")
        subprocess.run(
            [*FL, "partition", "digits", "--clients", "1000", "--scheme", "iid"]
            + ["--min-samples", "1", "--seed", "0", "--out", partition],
            check=True,
            capture_output=True,
        )
        print(f"machine: {machine()}; load {os.getloadavg()[0]:.2f}")
        print(f"{'':20} {'C = 100':>24} {'C = 1,000':>24}")
        for name, flags in RUNS.items():
            cells = []
            for concurrency in (100, 1000):
                seconds = [
                    per_update(partition, os.path.join(folder, f"r{i}"), flags, concurrency,
                               updates) * 1000
                    for i in range(repeats)
                ]  # fmt: skip
                for i in range(repeats):
                    subprocess.run(["rm", "-rf", os.path.join(folder, f"r{i}")], check=True)
                cells.append(spread(seconds, "ms"))
            print(f"{name:20} {cells[0]:>24} {cells[1]:>24}")


if __name__ == "__main__":
    sys.exit(main())
