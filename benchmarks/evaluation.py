"""Evaluation against training (issue #23, part 3): seconds per round of each, on W2's largest
workload, where evaluating every round on every training row cost 4x the round's training.

Workload: 10,000 Synthetic(0, 0) clients of 80-120 samples (benchmarks/cohorts.py's partition,
float32), FedAvg, MLP(256), 1,000 clients per round, 1 local epoch, batch 16, lr 0.1.

1. Per round, in a child process per setting: the seconds of the round's training (the round
   kind's train: local SGD, aggregation) and of its evaluation (its measure: the test set, the
   train loss, the cohort's per-client accuracies), median (min-max) of ROUNDS rounds after one
   untimed warm-up round (wall and CPU seconds, the latter less skewed by a busy machine), with
   --eval-clients 1 (the default: every training row) and 0.1. With
   --baseline DIR (a checkout of the code before, e.g. `git archive main | tar -x -C DIR`), the
   default evaluation with DIR's flcli too.
2. Whole `fl train` processes of the same workload: the default, --eval-clients 0.1, and
   --eval-every 5 with it.

Run: .venv/bin/python benchmarks/evaluation.py [--clients 10000] [--rounds 5] [--baseline DIR]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import spread

HERE = Path(__file__).parent
TRAIN = {
    "model": "mlp",
    "hidden": (256,),
    "dtype": "float32",
    "clients_per_round": 1000,
    "local_epochs": 1,
    "batch_size": 16,
    "lr": 0.1,
    "seed": 0,
}
FLAGS = [
    "--model", "mlp", "--hidden", "256", "--dtype", "float32", "--clients-per-round", "1000",
    "--local-epochs", "1", "--batch-size", "16", "--lr", "0.1", "--seed", "0",
]  # fmt: skip


def child(part: str, fraction: float, rounds: int) -> dict:
    """Runs in a child process: per round, the seconds of training and of evaluation."""
    from flcli.assemble import assemble
    from flcli.config import TrainConfig
    from flcli.data.store import load_partition
    from flcli.engine.rounds import round_kind

    options = dict(TRAIN, rounds=rounds + 1)
    if fraction < 1:  # a baseline before --eval-clients knows no such field
        options["eval_clients"] = fraction
    parts = assemble(TrainConfig(**options), load_partition(Path(part)))
    kind = round_kind(parts)
    state = kind.initial_state()
    times = {"train": [], "evaluate": [], "train_cpu": [], "evaluate_cpu": []}
    for round in range(1, rounds + 2):  # round 1 warms up (the compiled step): untimed
        ids = kind.sample(round, 0.0)
        start, start_cpu = time.perf_counter(), time.process_time()
        trained = kind.train(state, round, ids)
        middle, middle_cpu = time.perf_counter(), time.process_time()
        state = trained.state
        sampled = () if fraction == 1 else (evaluation_clients(parts, round),)
        kind.measure(state, round, ids, trained.personal, {}, *sampled)
        end, end_cpu = time.perf_counter(), time.process_time()
        if round > 1:
            times["train"].append(middle - start)
            times["evaluate"].append(end - middle)
            times["train_cpu"].append(middle_cpu - start_cpu)
            times["evaluate_cpu"].append(end_cpu - middle_cpu)
    return times


def evaluation_clients(parts, round: int):
    from flcli.engine.evalplan import EvaluationPlan

    return EvaluationPlan.of(parts.config, parts.partition.num_clients).train_clients(round)


def per_round(part: Path, fraction: float, rounds: int, source: str | None) -> dict:
    """child() in a process of its own, with source's flcli first on the path if given."""
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    command = [sys.executable, __file__, "--child", str(part), str(fraction), str(rounds)]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def whole_run(part: Path, out: Path, rounds: int, flags: list[str]) -> tuple[float, int]:
    """(wall seconds of `fl train`, the rounds it evaluated)."""
    command = [sys.executable, "-m", "flcli", "train", str(part), *FLAGS]
    command += ["--rounds", str(rounds), *flags, "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - start
    rounds_csv = pd.read_csv(out / "rounds.csv")
    evaluated = rounds_csv["evaluated"].sum() if "evaluated" in rounds_csv else len(rounds_csv)
    return wall, int(evaluated)


def share(times: dict, suffix: str = "") -> float:
    """Evaluation's share of a round (training + evaluation), from the medians; suffix "_cpu":
    of the CPU seconds (both use every core: on a busy machine, less skewed by other
    processes than wall seconds)."""
    train, evaluate = (statistics.median(times[k + suffix]) for k in ("train", "evaluate"))
    return evaluate / (train + evaluate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", help="a checkout of flcli before the change")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # PART FRACTION ROUNDS
    args = parser.parse_args()
    if args.child:
        part, fraction, rounds = args.child
        print(json.dumps(child(part, float(fraction), int(rounds))))
        return
    from cohorts import synthetic_partition

    from flcli.data.store import write_partition

    with open("/proc/loadavg") as file:
        print(f"load average before: {file.read().strip()}")
    with tempfile.TemporaryDirectory(prefix="flcli-bench-evaluation-") as folder:
        work = Path(folder)
        part = work / "part"
        write_partition(synthetic_partition(args.clients), part)
        settings = [("after", None, 1.0), ("after", None, 0.1)]
        if args.baseline is not None:
            settings.insert(0, ("before", str(Path(args.baseline).resolve()), 1.0))
        print(f"\n{args.clients:,} clients, 1,000 per round, MLP(256), float32; seconds per round")
        print(
            "| code | --eval-clients | training | evaluation | evaluation / round | "
            "training, CPU | evaluation, CPU | evaluation / round, CPU |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for label, source, fraction in settings:
            times = per_round(part, fraction, args.rounds, source)
            cells = [label, f"{fraction:g}"]
            cells += [spread(times[k], digits=3) for k in ("train", "evaluate")]
            cells.append(f"{share(times):.0%}")
            cells += [spread(times[k], digits=3) for k in ("train_cpu", "evaluate_cpu")]
            cells.append(f"{share(times, '_cpu'):.0%}")
            print(f"| {' | '.join(cells)} |")
        print(f"\nwhole `fl train` processes, {2 * args.rounds} rounds")
        print("| flags | wall | rounds evaluated |")
        print("|---|---|---|")
        for flags in (
            [],
            ["--eval-clients", "0.1"],
            ["--eval-clients", "0.1", "--eval-every", "5"],
        ):
            run = work / f"run-{len(flags)}"
            wall, evaluated = whole_run(part, run, 2 * args.rounds, flags)
            print(f"| {' '.join(flags) or '(defaults)'} | {wall:.1f} s | {evaluated} |")
    with open("/proc/loadavg") as file:
        print(f"load average after: {file.read().strip()}")


if __name__ == "__main__":
    main()
