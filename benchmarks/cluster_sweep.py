"""A 16-run sweep on a two-node Ray cluster on this machine against the same sweep run locally.

The sweep: FedAvg, FedProx, SCAFFOLD, FedAdam x 2 seeds x IID / Dirichlet(0.3) digits, 20 clients,
the softmax model (or --model mlp). Local: `fl sweep --jobs 2` (joblib worker processes). Cluster:
a head and a worker node of one CPU each (ray.cluster_utils.Cluster), `fl sweep --backend ray
--ray-address HEAD`. Each is one whole `fl sweep` process, timed from start to exit, alternating,
median of --repeats. The rounds.csv files of both are compared (timing columns aside).

Run: .venv/bin/python benchmarks/cluster_sweep.py [--rounds 40] [--model mlp --lr 0.05]
     [--repeats 3]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

SWEEP = """
name = "sixteen"
[base]
dataset = "digits"
clients = 20
rounds = {rounds}
model = "{model}"
{lr}[grid]
algo = ["fedavg", "fedprox", "scaffold", "fedadam"]
seed = [0, 1]
partition = [{{ scheme = "iid" }}, {{ scheme = "dirichlet", alpha = 0.3 }}]
"""
FL = str(Path(sys.executable).parent / "fl")


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def same_rounds(a: Path, b: Path) -> bool:
    runs = sorted(p.parent.name for p in a.glob("*/rounds.csv"))
    return len(runs) == 16 and all(
        pd.read_csv(a / r / "rounds.csv")
        .drop(columns="elapsed_s")
        .equals(pd.read_csv(b / r / "rounds.csv").drop(columns="elapsed_s"))
        for r in runs
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--model", default="softmax")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--lr", type=float, help="default: the model's (with --model mlp SCAFFOLD diverges at it)"
    )

    args = parser.parse_args()
    from ray.cluster_utils import Cluster

    folder = Path(tempfile.mkdtemp(prefix="flcli-cluster-bench-"))
    sweep = folder / "sixteen.toml"
    lr = "" if args.lr is None else f"lr = {args.lr}\n"
    sweep.write_text(SWEEP.format(rounds=args.rounds, model=args.model, lr=lr))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    local_s, ray_s = [], []
    try:
        for _ in range(args.repeats):
            shutil.rmtree(folder / "local", ignore_errors=True)
            shutil.rmtree(folder / "ray", ignore_errors=True)
            local_s.append(
                timed([FL, "sweep", str(sweep), "--jobs", "2", "--out", str(folder / "local")])
            )
            ray_s.append(
                timed(
                    [
                        FL,
                        "sweep",
                        str(sweep),
                        "--backend",
                        "ray",
                        "--ray-address",
                        cluster.address,
                        "--out",
                        str(folder / "ray"),
                    ]
                )  # fmt: skip
            )
        equal = same_rounds(folder / "local", folder / "ray")
    finally:
        cluster.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"16 runs, {args.model}, {args.rounds} rounds; load {os.getloadavg()[0]:.1f}")
    for name, times in (("fl sweep --jobs 2", local_s), ("2-node Ray cluster", ray_s)):
        low, middle, high = min(times), sorted(times)[len(times) // 2], max(times)
        print(f"{name:20s} median {middle:.1f} s (min {low:.1f}, max {high:.1f})")
    print(f"rounds.csv equal (timing aside): {equal}")


if __name__ == "__main__":
    main()
