"""Scale: 10,000 clients, 100 sampled per round, 100 rounds of FedAvg on softmax regression, with
the vectorized, process and ray backends; local work as in the FedProx paper's synthetic runs (20
epochs, batch 10, lr 0.01).

Data: a FedProx-style Synthetic(1, 1) population generated here (each client its own softmax model
and feature mean; power-law-like client sizes), written as a partition dir with
flcli.data.store.write_partition. Each backend runs once as a whole `fl train` process. Reported:
wall time of the process, training time (rounds.csv's elapsed_s at the last round), peak RSS of the
`fl` process (os.wait4, in launch.py) and peak PSS of its whole process tree (sampled from /proc
every 0.1 s: worker processes, Ray's daemons and object store included, shared pages counted once).

Run: make scale   (or: .venv/bin/python benchmarks/scale.py [--clients 10000] [--rounds 100])
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import launched

from flcli.data.store import Partition, partition_from_arrays, write_partition

FEATURES, CLASSES = 60, 10


def synthetic_population(num_clients: int, seed: int = 0, alpha: float = 1.0, beta: float = 1.0):
    """(x_train, y_train, sizes, x_test, y_test): Synthetic(alpha, beta) of the FedProx paper."""
    gen = np.random.default_rng(seed)
    sizes = (10 + gen.lognormal(2.5, 1.0, num_clients)).astype(np.int64)
    u = gen.normal(0, np.sqrt(alpha), num_clients)
    b_mean = gen.normal(0, np.sqrt(beta), num_clients)
    scale = np.arange(1, FEATURES + 1) ** -0.6  # sqrt of the covariance diagonal j^-1.2
    x_parts, y_parts = [], []
    for first in range(0, num_clients, 1000):
        block = slice(first, min(first + 1000, num_clients))
        k = block.stop - block.start
        W = gen.normal(u[block, None, None], 1.0, (k, FEATURES, CLASSES))
        b = gen.normal(u[block, None], 1.0, (k, CLASSES))
        v = gen.normal(b_mean[block, None], 1.0, (k, FEATURES))
        owner = np.repeat(np.arange(k), sizes[block])
        x = v[owner] + gen.normal(0, 1, (len(owner), FEATURES)) * scale
        logits = np.einsum("nd,ndc->nc", x, W[owner]) + b[owner]
        x_parts.append(x)
        y_parts.append(logits.argmax(axis=1))
    x_all, y_all = np.concatenate(x_parts), np.concatenate(y_parts)
    test = gen.choice(len(y_all), min(10_000, len(y_all) // 10), replace=False)
    return x_all, y_all, sizes, x_all[test], y_all[test]


def write_population(out: Path, num_clients: int) -> Partition:
    x_train, y_train, sizes, x_test, y_test = synthetic_population(num_clients)
    partition = partition_from_arrays(
        x_train,
        y_train,
        sizes,
        x_test,
        y_test,
        dataset="synthetic-benchmark:alpha=1,beta=1",
        num_classes=CLASSES,
    )
    write_partition(partition, out)
    return partition


def tree_pss_kib(root: int) -> int:
    """Proportional set size of a process and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return total


def run_fl(args: list[str], log: Path) -> tuple[float, int, int]:
    """(wall seconds, peak RSS of the fl process in MiB, peak PSS of its tree in MiB)."""
    result = log.with_suffix(".launch.json")
    start = time.perf_counter()
    with log.open("w") as stderr:  # via launch.py: the fl process's peak RSS, not this one's
        process = subprocess.Popen(
            launched([sys.executable, "-m", "flcli", *args], result),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    peak_pss, done = 0, threading.Event()

    def sample():
        nonlocal peak_pss
        while not done.is_set():
            peak_pss = max(peak_pss, tree_pss_kib(process.pid))
            done.wait(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    code = process.wait()
    done.set()
    sampler.join()
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"fl {' '.join(args)} failed: {log.read_text()[-2000:]}")
    return wall, json.loads(result.read_text())["maxrss_kib"] // 1024, peak_pss // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--local-epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--backends", default="vectorized,process,ray")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flcli-scale-"))
    try:
        start = time.perf_counter()
        partition = write_population(work / "part", args.clients)
        made = time.perf_counter() - start
        data_mib = sum(getattr(partition, a).nbytes for a in ("x_train", "y_train")) / 2**20
        rows = len(partition.y_train)
        del partition
        results = []
        for backend in args.backends.split(","):
            run = work / backend
            train = ["train", str(work / "part"), "--clients-per-round", str(args.per_round)]
            train += ["--rounds", str(args.rounds), "--backend", backend]
            if backend in ("process", "ray"):
                train += ["--jobs", str(args.jobs)]
            train += [
                "--local-epochs",
                str(args.local_epochs),
                "--batch-size",
                str(args.batch_size),
            ]
            train += ["--lr", str(args.lr)]
            log = work / f"{backend}.log"
            wall, rss, pss = run_fl([*train, "--seed", "0", "--out", str(run)], log)
            rounds = pd.read_csv(run / "rounds.csv")
            results.append((backend, wall, rounds, rss, pss))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {args.clients} clients ({rows} rows x {FEATURES} features, "
        f"training arrays {data_mib:.0f} MiB; generated and written in {made:.0f} s), "
        f"{args.per_round} per round, {args.rounds} rounds, softmax, FedAvg, {args.local_epochs} "
        f"local epochs, batch {args.batch_size}, lr {args.lr}, --jobs {args.jobs}"
    )
    header = (
        f"{'backend':<12}{'fl wall':>9}{'training':>10}{'peak RSS fl':>13}{'peak PSS tree':>15}"
    )
    print(header + "  final accuracy")
    reference = results[0][2].drop(columns="elapsed_s")
    for backend, wall, rounds, rss, pss in results:
        same = rounds.drop(columns="elapsed_s").equals(reference)
        print(
            f"{backend:<12}{wall:>8.1f}s{rounds['elapsed_s'].iloc[-1]:>9.1f}s{rss:>9} MiB"
            f"{pss:>11} MiB  {rounds['test_accuracy'].iloc[-1]:.4f}"
            f"{'' if same else '  (rounds.csv differs from ' + results[0][0] + '!)'}"
        )


if __name__ == "__main__":
    main()
