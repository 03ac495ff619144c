"""Peers of flcli, like for like (issue 23), and the older W1 comparison with lbfgs clients.

Like for like: every peer runs the same FedAvg as `fl train` on the same partition: the same
initial model (flcli's round 0), the same cohorts (flcli's sampler), plain SGD at the same learning
rate, batch size and local epochs, in float64, the local models averaged weighted by samples.
replay.py writes flcli's initial model, cohorts and batch orders; torch_fedavg.py replays them in
another interpreter:
- a plain PyTorch per-client loop (TORCH_PYTHON, default this Python when torch imports), which
  walks flcli's exact batch orders, so that its final model equals flcli's to rounding (the
  figure is reported: max |w_torch - w_flcli|);
- pfl-research 0.6 (PFL_PYTHON, skipped with a note when absent), whose users' datasets yield
  flcli's batches epoch by epoch, so that it takes flcli's steps too (its model equals flcli's to
  float32 rounding: pfl 0.6 keeps each client's model difference in float32,
  PyTorchModel.get_model_difference).
Workloads: P1 softmax regression on digits, Dirichlet(0.5) over 100 clients, 20 rounds, all
clients every round; P2 the MLP 64-128-64-10 on the same partition, 30 rounds; P3 softmax
regression on Synthetic(0,0) over 1,000 clients, 10 rounds of 100 and of 1,000 clients.
flcli: `fl train` in a child process (whole process; training = rounds.csv's elapsed_s at the last
round, which includes flcli's per-round evaluation); peers: their rounds (train_s, evaluation
excluded) and whole process. Median (min-max) of --repeats.

W1 (bench, markdown): flcli's SGD softmax against scikit-learn LogisticRegression(lbfgs,
warm_start, max_iter=5) clients, in one process and under Flower: a different local method, kept
for its timings and labelled so; their accuracies are not flcli's to match.

Run: [TORCH_PYTHON=PY] [PFL_PYTHON=PY] python benchmarks/peers.py [--repeats 3]
     [--workloads P1,P2,P3-100,P3-1000] [--out benchmarks/RESULTS.md] [--figure FILE.png]
     python benchmarks/peers.py --w1 [--flower-python PY]   # the lbfgs comparison
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import FL, json_line, machine, spread, timed

HERE = Path(__file__).parent
LBFGS = "different method: lbfgs"
DIGITS = ["digits", "--clients", "100", "--scheme", "dirichlet", "--alpha", "0.5", "--seed", "0"]
SYNTHETIC = ["synthetic:alpha=0,beta=0", "--clients", "1000", "--seed", "0"]
WORKLOADS = {  # name: (partition arguments, TrainConfig options = `fl train` options)
    "P1": (DIGITS, {"rounds": 20}),
    "P2": (DIGITS, {"rounds": 30, "model": "mlp", "hidden": "128,64"}),
    "P3-100": (SYNTHETIC, {"rounds": 10, "clients_per_round": 100}),
    "P3-1000": (SYNTHETIC, {"rounds": 10}),
}
DESCRIPTION = {
    "P1": "softmax, digits, Dirichlet(0.5), 100 clients (all per round), 20 rounds",
    "P2": "MLP 64-128-64-10, digits, Dirichlet(0.5), 100 clients (all per round), 30 rounds",
    "P3-100": "softmax, Synthetic(0,0) (`fl partition synthetic:alpha=0,beta=0 --clients 1000`: "
    "23-24 training rows per client, 23,554 in all), 1,000 clients, 100 per round, 10 rounds",
    "P3-1000": "softmax, Synthetic(0,0), 1,000 clients, 1,000 per round, 10 rounds",
}


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
    systems = {
        "flcli (vectorized)": None,
        "plain scikit-learn loop (different method: lbfgs)": sys.executable,
    }
    if flower:
        systems[f"Flower (simulation, Ray; {LBFGS})"] = flower
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
        f"### W1: digits, Dirichlet(0.5), {rounds} rounds of FedAvg; peers of a {LBFGS}",
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


def load_average() -> str:
    """`uptime`'s load averages (1, 5, 15 min)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def peer_python(variable: str, module: str) -> tuple[str | None, str]:
    """The interpreter given by the environment variable (or, for torch, this one) if it imports
    module; and a note saying which, or why the peer is skipped."""
    python = os.environ.get(variable) or (sys.executable if module == "torch" else None)
    if python is None:
        return None, f"skipped: {variable} not set"
    probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True)
    if probe.returncode != 0:
        return None, f"skipped: `{python}` cannot import {module}"
    return python, f"`{python}`"


def cli_options(options: dict) -> list[str]:
    return [
        arg for key, value in options.items() for arg in (f"--{key.replace('_', '-')}", str(value))
    ]


def like_for_like(
    name: str, repeats: int, peers: dict[str, str], work: Path, threads: int, peer_repeats: int
) -> list[dict]:
    """One workload: flcli's `fl train` and every peer, repeats times each; rows per system."""
    from replay import write_setup

    from flcli.config import TrainConfig

    partition, options = WORKLOADS[name]
    part = work / ("part-" + partition[0].split(":")[0])
    if not part.exists():
        timed([*FL, "partition", *partition, "--out", str(part)])
    setup_dir = work / f"setup-{name}"
    write_setup(part, TrainConfig(seed=0, **options), setup_dir)
    rows = []
    runs = {"flcli": None, **peers}
    final = {}
    for system, python in runs.items():
        walls, trains, accuracies, loads = [], [], [], []
        for repeat in range(repeats if python is None else peer_repeats):
            loads.append(load_average())
            if python is None:
                run = work / f"run-{name}-{repeat}"
                command = [*FL, "train", str(part), "--seed", "0", *cli_options(options)]
                wall, _, _ = timed([*command, "--out", str(run)])
                last = pd.read_csv(run / "rounds.csv").iloc[-1]
                train, accuracy = float(last["elapsed_s"]), float(last["test_accuracy"])
                with np.load(run / "checkpoint.npz") as saved:
                    final[system] = saved["params"]
                shutil.rmtree(run)
            else:
                mode = "plain" if system.startswith("plain") else "pfl"
                model = work / f"final-{name}-{mode}.npy"
                script = str(HERE / "torch_fedavg.py")
                command = [python, script, mode, str(part), str(setup_dir), str(threads)]
                wall, _, out = timed([*command, "--save", str(model)])
                result = json_line(out)
                train, accuracy = result["train_s"], result["accuracy"]
                final[system] = np.load(model)
            walls.append(wall)
            trains.append(train)
            accuracies.append(accuracy)
        gap = float(np.abs(final[system] - final["flcli"]).max())
        rows.append(
            {
                "workload": name,
                "system": system,
                "wall": walls,
                "train": trains,
                "accuracy": accuracies[-1],
                "max_abs_diff": gap,
                "scale": float(np.abs(final["flcli"]).max()),
                "loads": loads,
            }
        )
    return rows


def peers_markdown(rows: list[dict], notes: list[str]) -> str:
    lines = [
        "## Peers, like for like (issue 23)",
        "",
        *notes,
        "",
        "| workload | system | whole process | training | training / flcli's | test accuracy | "
        "max abs diff of the final model from flcli's |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        ours = next(r for r in rows if r["workload"] == row["workload"] and r["system"] == "flcli")
        ratio = statistics.median(row["train"]) / statistics.median(ours["train"])
        gap = "-" if row is ours else f"{row['max_abs_diff']:.1e} (of max {row['scale']:.2f})"
        lines.append(
            f"| {row['workload']} | {row['system']} | {spread(row['wall'])} | "
            f"{spread(row['train'], digits=3)} | {ratio:.1f}x | {row['accuracy']:.4f} | {gap} |"
        )
    gaps = [
        f"{r['workload']} {r['system']} {100 * (r['accuracy'] - ours['accuracy']):+.1f}"
        for r in rows
        for ours in [next(o for o in rows if o["workload"] == r["workload"] and o is not r)]
        if r["system"] != "flcli" and ours["system"] == "flcli"
    ]
    lines += ["", "![peers' training time over flcli's](peers.png)"]
    lines += ["", "Test accuracy minus flcli's, in points: " + ", ".join(gaps) + "."]
    lines += ["", "Workloads:", ""]
    lines += [
        f"- {name}: {DESCRIPTION[name]}" for name in dict.fromkeys(r["workload"] for r in rows)
    ]
    lines += [
        "",
        "Every system: FedAvg weighted by samples from flcli's initial model (softmax zeros; "
        "the MLP's He initialisation as flcli draws it), flcli's cohorts, SGD at flcli's default "
        "learning rate (softmax 0.5, MLP 0.2), batch 16, 2 local epochs, float64, on the same "
        "partition files. The plain PyTorch loop and pfl walk flcli's batch orders (pfl through "
        "a user dataset that yields epoch e's batches at its e-th walk), so their final models "
        "equal flcli's: the plain loop's to float64 rounding, pfl's to float32 rounding (pfl 0.6 "
        "keeps each client's model difference in float32: PyTorchModel.get_model_difference), so "
        "the accuracies agree (a gap, if any, is a test image or two on the decision boundary). "
        "flcli's training (rounds.csv's elapsed_s) includes its per-round evaluation of the test "
        "set and of every training row; the peers' excludes evaluation. Loads are `uptime`'s 1, "
        "5, 15 min averages before each repeat. An earlier pfl replay that repeated the first "
        "epoch's order in the second ended 0.01-0.04 from flcli's model, -0.6 to +1.7 accuracy "
        "points away (P2 the largest). The peers "
        "run one torch thread: a per-client loop of small products gains nothing from two, and "
        "on this loaded machine two threads made the plain loop 8x slower (P1: 73 s, one run).",
        "",
    ]
    return "\n".join(lines) + "\n"


def figure(rows: list[dict], out: Path) -> None:
    """Bar chart of the peers' training time over flcli's, per workload (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    systems = [s for s in dict.fromkeys(r["system"] for r in rows) if s != "flcli"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(1, len(systems))
    for i, system in enumerate(systems):
        ratios, xs = [], []
        for j, name in enumerate(workloads):
            ours = next(r for r in rows if r["workload"] == name and r["system"] == "flcli")
            row = next((r for r in rows if r["workload"] == name and r["system"] == system), None)
            if row is not None:
                xs.append(j + i * width)
                ratios.append(statistics.median(row["train"]) / statistics.median(ours["train"]))
        bars = ax.bar(xs, ratios, width, label=system)
        ax.bar_label(bars, fmt="%.0fx", fontsize=8)
    ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(workloads))], workloads)
    ax.set_yscale("log")
    ax.set_ylim(bottom=1)  # 1x: as fast as flcli
    ax.set_ylabel("training time / flcli's")
    ax.set_title("FedAvg, same SGD, init, cohorts and batches: peers' training over flcli's")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def replace_section(path: Path, text: str, title: str = "## Peers, like for like") -> None:
    """Put text in path in place of its section starting with title (or at the end)."""
    old = path.read_text() if path.exists() else ""
    if title in old:
        start = old.index(title)
        end = old.find("\n## ", start + len(title))
        old = old[:start] + (old[end + 1 :] if end >= 0 else "")
        old = old.rstrip("\n") + "\n\n" if old.strip() else ""
    if not old.strip():
        path.write_text(text)
    elif "\n## Reproduce" in old:  # the section goes before the file's last, Reproduce
        at = old.index("\n## Reproduce") + 1
        path.write_text(old[:at] + text + "\n" + old[at:])
    else:
        path.write_text(old.rstrip("\n") + "\n\n" + text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-repeats", type=int, help="the peers' repeats (default --repeats)")
    parser.add_argument("--torch-threads", type=int, default=1, help="the peers' intra-op threads")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--from-json", type=Path, help="write the section and figure from a JSON")
    parser.add_argument("--out", type=Path, help="write the section into this markdown file")
    parser.add_argument("--json", type=Path, help="write the measured rows to this file")
    parser.add_argument("--figure", type=Path, help="bar chart of the peers' time ratios")
    parser.add_argument("--w1", action="store_true", help="the older lbfgs comparison instead")
    parser.add_argument("--rounds", type=int, default=20, help="W1's rounds")
    parser.add_argument("--flower-python", default=sys.executable, help="W1's Flower")
    args = parser.parse_args()
    if args.w1:
        return w1_main(args)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        return publish(args, saved["rows"], saved["notes"])
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    peer_repeats = args.peer_repeats or args.repeats
    torch_python, torch_note = peer_python("TORCH_PYTHON", "torch")
    pfl_python, pfl_note = peer_python("PFL_PYTHON", "pfl")
    peers = {}
    if torch_python:
        peers["plain PyTorch loop"] = torch_python
    if pfl_python:
        peers["pfl"] = pfl_python
    versions = {
        name: json.loads(
            subprocess.run(
                [python, "-c", VERSIONS.format(module="pfl" if name == "pfl" else "torch")],
                capture_output=True,
                text=True,
            ).stdout
        )
        for name, python in peers.items()
    }
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = load_average()
    work = Path(tempfile.mkdtemp(prefix="flcli-peers-"))
    rows = []

    def notes() -> list[str]:
        return [
            f"Measured {started} with `PFL_PYTHON=... peers.py --repeats {args.repeats} "
            f"--peer-repeats "
            f"{peer_repeats}`: median (min-max) of {args.repeats} runs of flcli, of {peer_repeats} "
            f"of each peer. Machine: {machine()}. flcli's threads: its default (one per available "
            f"core, {threads}); the peers' torch intra-op threads: {args.torch_threads}. Load "
            f"(`uptime`, 1/5/15 min) before: {load_before}, after: {load_average()} (2 cores "
            "shared with other jobs: the timings are noisy).",
            "",
            f"- plain PyTorch loop: {torch_note}"
            + (f", {versions['plain PyTorch loop']}" if "plain PyTorch loop" in versions else ""),
            f"- pfl: {pfl_note}" + (f", {versions['pfl']}" if "pfl" in versions else ""),
            "- Flower: not in this comparison (its client, flower_digits.py, trains lbfgs: see W1)",
        ]

    try:
        for name in args.workloads.split(","):
            rows += like_for_like(name, args.repeats, peers, work, args.torch_threads, peer_repeats)
            if args.json:  # after every workload: a partial run keeps what it measured
                args.json.write_text(json.dumps({"notes": notes(), "rows": rows}, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    publish(args, rows, notes())


def publish(args, rows: list[dict], notes: list[str]) -> None:
    text = peers_markdown(rows, notes)
    print(text)
    if args.out:
        replace_section(args.out, text)
    if args.figure:
        figure(rows, args.figure)


VERSIONS = (
    "import json, platform, torch; from importlib.metadata import version; "
    "print(json.dumps(f'Python {{platform.python_version()}}, torch {{torch.__version__}}' "
    "+ (', pfl ' + version('pfl') if '{module}' == 'pfl' else '')))"
)


def w1_main(args) -> None:
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
