"""W1 parity: flcli against a plain scikit-learn loop and against Flower, on the same partition.

Workload: digits, Dirichlet(0.5), 10 and 100 clients, 20 rounds of FedAvg. flcli trains its
vectorized softmax regression; the baselines train scikit-learn LogisticRegression(warm_start,
max_iter=5) per client (benchmarks/sklearn_client.py), the plain loop in one process, Flower with
its simulation engine (Ray). Flower runs when `flwr[simulation]` is importable by the Python given
with --flower-python (or by this one); otherwise it is skipped with a note.

Run: python benchmarks/peers.py [--repeats 3] [--flower-python /path/to/venv/bin/python]
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from common import FL, json_line, machine, spread, timed

HERE = Path(__file__).parent


def has_flower(python: str) -> bool:
    probe = subprocess.run([python, "-c", "import flwr.simulation"], capture_output=True)
    return probe.returncode == 0


def flower_versions(python: str) -> str:
    """e.g. "flwr 1.42.0, ray 2.55.1, scikit-learn 1.9.1" of the Python that runs Flower."""
    probe = (
        "import flwr, ray, sklearn; print(f'flwr {flwr.__version__}, ray {ray.__version__}, "
        "scikit-learn {sklearn.__version__}')"
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    return done.stdout.strip() or "versions unknown"


def bench(clients: int, rounds: int, repeats: int, flower: str | None, work: Path) -> list[dict]:
    part = work / f"part-{clients}"
    timed(
        [
            *FL,
            "partition",
            "digits",
            "--clients",
            str(clients),
            "--scheme",
            "dirichlet",
            "--alpha",
            "0.5",
            "--seed",
            "0",
            "--out",
            str(part),
        ]
    )
    systems = {"flcli (vectorized)": None, "plain scikit-learn loop": sys.executable}
    if flower:
        systems["Flower (simulation, Ray)"] = flower
    rows = []
    for name, python in systems.items():
        walls, trains, accuracy = [], [], None
        for repeat in range(repeats):
            if python is None:
                run = work / f"run-{clients}-{repeat}"
                wall, _, _ = timed(
                    [
                        *FL,
                        "train",
                        str(part),
                        "--rounds",
                        str(rounds),
                        "--seed",
                        "0",
                        "--out",
                        str(run),
                    ]
                )
                last = pd.read_csv(run / "rounds.csv").iloc[-1]
                train, accuracy = float(last["elapsed_s"]), float(last["test_accuracy"])
            else:
                script = "plain_sklearn.py" if python == sys.executable else "flower_digits.py"
                wall, _, out = timed([python, str(HERE / script), str(part), str(rounds)])
                result = json_line(out)
                train, accuracy = result["train_s"], result["accuracy"]
            walls.append(wall)
            trains.append(train)
        rows.append(
            {
                "clients": clients,
                "system": name,
                "wall": walls,
                "train": trains,
                "accuracy": accuracy,
            }
        )
    return rows


def markdown(rows: list[dict], rounds: int, flower_note: str) -> str:
    lines = [
        f"### W1 parity: digits, Dirichlet(0.5), {rounds} rounds of FedAvg",
        "",
        "| clients | system | whole process | training | final accuracy |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['clients']} | {row['system']} | {spread(row['wall'])} | "
            f"{spread(row['train'], digits=3)} | {row['accuracy']:.4f} |"
        )
    lines += [
        "",
        "Training: for flcli, rounds.csv's elapsed_s at the last round (rounds 1 on: local "
        "training, aggregation and the per-round evaluation of test accuracy and the loss on all "
        "training rows); for the plain loop, the clients' fits and the averaging (evaluated once, "
        "untimed); for Flower, from building its apps to the end of the simulation (Ray's "
        "start-up, the per-round evaluation and shutdown included: its training alone cannot be "
        "timed apart). Whole process: the wall time of the process, start-up and loading "
        "included. The targets compare flcli's training with Flower's whole process.",
        "",
        flower_note,
        "",
    ]
    for clients in sorted({r["clients"] for r in rows}):
        ours = next(r for r in rows if r["clients"] == clients and r["system"].startswith("flcli"))
        for other in (r for r in rows if r["clients"] == clients and r is not ours):
            lines.append(
                f"- {clients} clients: flcli training is "
                f"{statistics.median(other['train']) / statistics.median(ours['train']):.0f}x "
                f"below {other['system']}'s training and "
                f"{statistics.median(other['wall']) / statistics.median(ours['train']):.0f}x below "
                f"its whole process; flcli's whole `fl train` process: "
                f"{statistics.median(ours['wall']):.2f} s"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--flower-python", default=sys.executable)
    parser.add_argument("--out", type=Path, help="append the markdown section to this file")
    args = parser.parse_args()
    flower = args.flower_python if has_flower(args.flower_python) else None
    note = (
        f"Flower: {flower_versions(args.flower_python)} from `{args.flower_python}`."
        if flower
        else "Flower: skipped (flwr[simulation] not importable; pass --flower-python)."
    )
    work = Path(tempfile.mkdtemp(prefix="flcli-peers-"))
    try:
        rows = [
            row
            for clients in (10, 100)
            for row in bench(clients, args.rounds, args.repeats, flower, work)
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = f"Machine: {machine()}\n\n" + markdown(rows, args.rounds, note)
    print(text)
    if args.out:
        with args.out.open("a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
