"""P4: a CIFAR-10-style CNN, 100 clients, FedAvg: flcli's vmap cohort, a plain PyTorch loop, pfl.

Model: examples/cnn.py:CifarCNN (pfl-research's simple_cnn without its dropout). Data: generated
3x32x32 images of 10 classes (image_partition): each class is a sum of 3 sinusoids per channel,
each image its class's pattern shifted by up to 2 pixels, scaled by U(0.5, 1.5) and drowned in
N(0, 2^2) noise per pixel; IID over 100 clients of 50 training images, 2,000 test images.
FedAvg, the same for all: the same initial vector (flcli's), the same cohorts (flcli's sample of
10 of the 100 clients per round), 20 rounds, 1 local epoch of SGD at lr 0.05 in batches of 10,
float32, weighted by samples.

Contenders, each a child process on the 2 cores:
- flcli `fl train` through the CLI, its default backend (chunks of the cohort in one thread per
  core, each through its own copy of the module), --eval-every ROUNDS (the peers evaluate once, at
  the end): the whole process and rounds.csv's elapsed_s;
- flcli's training alone: the same run's parts (flcli.assemble) and rounds (ParametricRounds.
  train: sampling, local training of the cohort, FedAvg), without evaluation; on 2 threads, and
  in one;
- a plain PyTorch per-client loop (torch_clients.py plain), 2 and 1 intra-op threads;
- pfl-research (torch_clients.py pfl) with the Python given by PFL_PYTHON, 2 intra-op threads.
Throughput: FLOPs per sample of forward + backward = 3 x 2 x the multiply-adds of the convolutions
and linear layers (cnn_flops), x 50 samples x 10 clients x 20 rounds, over the training seconds;
the share is of a 1024 x 1024 fp32 torch.mm at 1 and at 2 threads.

Run: PFL_PYTHON=/path/to/python python benchmarks/torch_cohort.py [--quick] [--repeats 3]
[--out FILE (the P4 section; benchmarks/TORCH.md holds it with the findings)]
"""

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import FL, json_line, spread, timed

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
IMAGE, CLASSES = (3, 32, 32), 10
SETTINGS = {  # the workload; --quick shrinks it
    "clients": 100,
    "per_client": 50,
    "test": 2000,
    "per_round": 10,
    "rounds": 20,
    "batch_size": 10,
    "epochs": 1,
    "lr": 0.05,
    "seed": 0,
}
QUICK = {"clients": 10, "per_client": 20, "test": 100, "per_round": 4, "rounds": 2}
NOISE, SHIFT = 2.0, 2


def class_patterns(seed: int) -> np.ndarray:
    """[CLASSES, 3, 32, 32]: per class and channel, a sum of 3 sinusoids of 1-4 cycles per image
    (periodic, so a circular shift keeps them whole)."""
    g = np.random.default_rng(seed)
    rows, columns = np.mgrid[0 : IMAGE[1], 0 : IMAGE[2]] / IMAGE[1]
    cycles = g.integers(1, 5, size=(CLASSES, IMAGE[0], 3, 2))
    phase = g.uniform(0, 2 * np.pi, size=(CLASSES, IMAGE[0], 3))
    waves = np.sin(
        2 * np.pi * (cycles[..., 0, None, None] * rows + cycles[..., 1, None, None] * columns)
        + phase[..., None, None]
    )
    return waves.sum(axis=2) / np.sqrt(3)


def images(patterns: np.ndarray, n: int, g: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n labelled images, flat [n, 3*32*32] in CHW order (float32), and their labels."""
    y = g.integers(0, CLASSES, n)
    shifts = g.integers(-SHIFT, SHIFT + 1, size=(n, 2))
    pairs = zip(y, shifts, strict=True)
    x = np.stack([np.roll(patterns[label], tuple(shift), axis=(1, 2)) for label, shift in pairs])
    x = x * g.uniform(0.5, 1.5, size=(n, 1, 1, 1)) + NOISE * g.normal(size=x.shape)
    return x.reshape(n, -1).astype(np.float32), y


def image_partition(out: Path, settings: dict) -> Path:
    """The partition dir of the generated images, IID: client k holds training rows
    k*per_client:(k+1)*per_client. partition.json records input_shape [3, 32, 32] (what `fl
    partition images:...` will write); this one function is what that command replaces."""
    from flcli.data.store import partition_from_arrays, write_partition

    seed, clients = settings["seed"], settings["clients"]
    g = np.random.default_rng(seed)
    patterns = class_patterns(seed)
    x, y = images(patterns, clients * settings["per_client"], g)
    x_test, y_test = images(patterns, settings["test"], g)
    partition = partition_from_arrays(
        x,
        y,
        np.full(clients, settings["per_client"]),
        x_test,
        y_test,
        dataset=f"generated 3x32x32 images (torch_cohort.py, noise {NOISE}, shift {SHIFT})",
        num_classes=CLASSES,
        scheme="iid",
        seed=seed,
    )
    partition.meta["input_shape"] = list(IMAGE)
    write_partition(partition, out)
    return out


def model_reference() -> str:
    """flcli's --model: CifarCNN, which gets NCHW images by the partition's input_shape."""
    return f"torch:{ROOT / 'examples' / 'cnn.py'}:CifarCNN"


def train_flags(settings: dict) -> list[str]:
    return [
        "--model",
        model_reference(),
        "--rounds",
        str(settings["rounds"]),
        "--clients-per-round",
        str(settings["per_round"]),
        "--local-epochs",
        str(settings["epochs"]),
        "--batch-size",
        str(settings["batch_size"]),
        "--lr",
        str(settings["lr"]),
        "--seed",
        str(settings["seed"]),
        "--dtype",
        "float32",
        "--eval-every",
        str(settings["rounds"]),
    ]


def train_config(settings: dict):
    """The TrainConfig of train_flags."""
    from flcli.config import TrainConfig

    return TrainConfig(
        model=model_reference(),
        rounds=settings["rounds"],
        clients_per_round=settings["per_round"],
        local_epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        lr=settings["lr"],
        seed=settings["seed"],
        dtype="float32",
    )


def flcli_rounds(part: Path, settings: dict, one_thread: bool = False):
    """(the rounds, the parts) of the run `fl train` makes of these settings; one_thread: with
    the vectorized trainer held to one thread."""
    from dataclasses import replace
    from functools import partial

    from flcli.assemble import assemble
    from flcli.data.store import load_partition
    from flcli.engine.cohort import train_cohort
    from flcli.engine.parametric import ParametricRounds

    parts = assemble(train_config(settings), load_partition(part))
    if one_thread:
        parts = replace(parts, trainer=partial(train_cohort, threads=1))
    return ParametricRounds(parts), parts


def write_setup(part: Path, work: Path, settings: dict) -> Path:
    """setup.json for the peers: flcli's initial vector (w0.npy), its cohorts, the local SGD."""
    rounds, _ = flcli_rounds(part, settings)
    np.save(work / "w0.npy", rounds.initial_state().params)
    cohorts = [rounds.sample(r, 0.0).tolist() for r in range(1, settings["rounds"] + 1)]
    setup = {**settings, "w0": str(work / "w0.npy"), "cohorts": cohorts}
    (work / "setup.json").write_text(json.dumps(setup))
    return work / "setup.json"


def engine_child(part: Path, setup_file: Path, trainer: str) -> None:
    """Runs in a child: flcli's rounds as `fl train` runs them, timed without the evaluation that
    fl train does after each round; prints train_s and the final test accuracy. trainer:
    "vectorized" (fl train's default, a thread per core) or "1-thread"."""
    from flcli.engine.evaluate import evaluate

    setup = json.loads(setup_file.read_text())
    rounds, parts = flcli_rounds(part, setup, one_thread=trainer == "1-thread")
    state, now = rounds.initial_state(), 0.0
    start, cpu = time.perf_counter(), time.process_time()
    for r in range(1, setup["rounds"] + 1):
        ids = rounds.sample(r, now)
        if ids.tolist() != setup["cohorts"][r - 1]:
            raise SystemExit(f"round {r}: flcli sampled {ids}, not setup.json's cohort")
        trained = rounds.train(state, r, ids)
        state, now = trained.state, now + trained.seconds
    train_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    data = parts.partition
    scores = evaluate(parts.model, state.params, data.x_test, data.y_test)
    print(json.dumps({"train_s": train_s, "cpu_s": cpu_s, "accuracy": scores["accuracy"]}))


def cnn_flops(module, input_shape) -> int:
    """FLOPs of forward + backward for one sample: 3 x 2 x the multiply-adds of the Conv2d and
    Linear layers (backward = the gradients of the inputs and of the weights, each as costly as
    the forward; biases, activations and pooling not counted)."""
    import torch

    counted = []

    def count(layer, inputs, output):
        if isinstance(layer, torch.nn.Conv2d):
            kernel = int(np.prod(layer.kernel_size)) * layer.in_channels // layer.groups
            counted.append(output[0].numel() * kernel)
        elif isinstance(layer, torch.nn.Linear):
            counted.append(layer.in_features * layer.out_features)

    hooks = [m.register_forward_hook(count) for m in module.modules()]
    with torch.no_grad():
        module(torch.zeros(1, *input_shape))
    for hook in hooks:
        hook.remove()
    return 6 * sum(counted)


def matmul_gflops(threads: int, n: int = 1024, runs: int = 10) -> float:
    """GFLOP/s of an n x n fp32 torch.mm at that many intra-op threads (median of runs)."""
    import torch

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    torch.mm(a, b)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        torch.mm(a, b)
        seconds.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(seconds) / 1e9


def contenders(part: Path, work: Path, setup: Path, pfl_python: str | None) -> dict:
    """name -> (threads, command) of each child; flcli's CLI run writes into work/run."""
    clients = str(HERE / "torch_clients.py")
    flags = train_flags(json.loads(setup.read_text()))
    engine = [sys.executable, __file__, "--engine", str(part), str(setup)]
    chosen = {
        "flcli: fl train (CLI)": (
            "1 x 2 threads",
            [*FL, "train", str(part), *flags, "--out", str(work / "run")],
        ),
        "flcli: training alone": ("1 x 2 threads", [*engine, "vectorized"]),
        "flcli: training alone, 1 thread": ("1", [*engine, "1-thread"]),
        "plain PyTorch loop": ("2", [sys.executable, clients, "plain", str(part), str(setup), "2"]),
        "plain PyTorch loop, 1 thread": (
            "1",
            [sys.executable, clients, "plain", str(part), str(setup), "1"],
        ),
    }
    if pfl_python:
        pfl = [pfl_python, clients, "pfl", str(part), str(setup), "2"]
        chosen["pfl (SimulatedBackend)"] = ("2", pfl)
    return chosen


def run_one(name: str, command: list[str], work: Path) -> dict:
    """(wall, training seconds, accuracy, load before) of one run of a contender."""
    load = os.getloadavg()[0]
    shutil.rmtree(work / "run", ignore_errors=True)
    wall, _, out = timed(command)
    if name.endswith("(CLI)"):
        with (work / "run" / "rounds.csv").open() as f:
            record = list(csv.DictReader(f))[-1]
        train, accuracy = float(record["elapsed_s"]), float(record["test_accuracy"])
        cpu = None
    else:
        result = json_line(out)
        train, accuracy, cpu = result["train_s"], result["accuracy"], result["cpu_s"]
    return {"wall": wall, "train": train, "cpu": cpu, "accuracy": accuracy, "load": load}


def measure(settings: dict, repeats: int, pfl_python: str | None, work: Path) -> dict:
    """Every contender `repeats` times, in turns, each turn after the matmul references."""
    part = image_partition(work / "part", settings)
    setup = write_setup(part, work, settings)
    chosen = contenders(part, work, setup, pfl_python)
    runs = {name: [] for name in chosen}
    matmul = {1: [], 2: []}
    for _ in range(repeats):
        for threads in matmul:
            matmul[threads].append(matmul_gflops(threads))
        for name, (_, command) in chosen.items():
            runs[name].append(run_one(name, command, work))
            print(f"{name}: {runs[name][-1]}", file=sys.stderr, flush=True)
    samples = settings["rounds"] * settings["per_round"] * settings["per_client"]
    return {
        "settings": settings,
        "threads": {name: threads for name, (threads, _) in chosen.items()},
        "runs": runs,
        "matmul": matmul,
        "flops": samples * settings["epochs"] * cifar_flops(),
        "versions": versions(pfl_python),
    }


def cifar_flops() -> int:
    sys.path.insert(0, str(HERE))
    from torch_clients import examples_cnn

    return cnn_flops(examples_cnn().CifarCNN(CLASSES, IMAGE), IMAGE)


def versions(pfl_python: str | None) -> str:
    import torch

    text = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PyTorch {torch.__version__}, NumPy {np.__version__}"
    )
    if pfl_python:
        probe = "import importlib.metadata as m; print(m.version('pfl'), m.version('torch'))"
        found = subprocess.run([pfl_python, "-c", probe], capture_output=True, text=True)
        pfl, pfl_torch = found.stdout.split()
        text += f"; pfl {pfl} with PyTorch {pfl_torch} ({pfl_python})"
    return text


def column(runs: list[dict], key: str) -> list[float]:
    return [run[key] for run in runs]


def table(results: dict) -> list[str]:
    """One row per contender: median (min-max) of the runs, GFLOP/s, shares, accuracy, ratios."""
    runs, flops = results["runs"], results["flops"]
    mm1, mm2 = (statistics.median(results["matmul"][t]) for t in (1, 2))
    ours = [
        statistics.median(column(runs[name], "train"))
        for name in ("flcli: training alone", "flcli: training alone, 1 thread")
    ]
    lines = [
        "| system | torch threads | training | its CPU time | whole process | GFLOP/s | share of "
        "mm 1 thread / 2 threads | accuracy | training / flcli's (2 cores / 1 thread) | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, measured in runs.items():
        train = statistics.median(column(measured, "train"))
        rate = flops / train / 1e9
        accuracies, loads = column(measured, "accuracy"), column(measured, "load")
        lines.append(
            f"| {name} | {results['threads'][name]} | {spread(column(measured, 'train'))} | "
            f"{cpu_text(column(measured, 'cpu'))} | {spread(column(measured, 'wall'))} | "
            f"{rate:.1f} | {rate / mm1:.0%} / {rate / mm2:.0%} | "
            f"{min(accuracies):.3f}-{max(accuracies):.3f} | "
            f"{train / ours[0]:.2f}x / {train / ours[1]:.2f}x | {min(loads):.1f}-{max(loads):.1f} |"
        )
    return lines


def cpu_text(seconds: list) -> str:
    """The CPU seconds' spread, or - where they were not measured (fl train, worker processes)."""
    return "-" if None in seconds else spread(seconds)


def markdown(results: dict, note: str) -> str:
    s = results["settings"]
    mm = results["matmul"]
    repeats = len(mm[1])
    lines = [
        f"### P4: CifarCNN, {s['clients']} clients, {s['per_round']} per round, {s['rounds']} "
        f"rounds of FedAvg (median (min-max) of {repeats} runs)",
        "",
        f"Machine: {results['versions']}. 1024 x 1024 fp32 torch.mm: {spread(mm[1], 'GFLOP/s', 1)}"
        f" at 1 thread, {spread(mm[2], 'GFLOP/s', 1)} at 2 threads.",
        "",
        f"Data: {s['clients']} IID clients x {s['per_client']} generated 3x32x32 images, 10 "
        f"classes, {s['test']} test images; local SGD: {s['epochs']} epoch, batch "
        f"{s['batch_size']}, lr {s['lr']}, float32; the same initial model and cohorts for all. "
        f"FLOPs: {results['flops'] / 1e12:.2f} TFLOP of training in all ({cifar_flops() / 1e6:.1f}"
        " MFLOP per sample, forward + backward = 3 x 2 x multiply-adds of conv and linear).",
        "",
        *table(results),
        "",
        "Training: flcli CLI, rounds.csv's elapsed_s at the last round (includes the evaluation of "
        "the test set and all training rows after every round but the last); flcli training alone "
        "and the peers, the rounds only. Accuracy: on the test set after the last round (min-max "
        "over the runs). CPU time: of the training, all threads of the process (not measured "
        "for fl train and flcli's worker processes). torch threads: flcli, 1 intra-op thread in "
        "each of 2 worker processes (or in its one thread); the peers, one process with that "
        "many intra-op threads. Load: the 1-minute load average before each run (2 cores, "
        "shared with other work).",
        "",
        note,
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the markdown section to this file")
    parser.add_argument("--engine", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        part, setup, trainer = args.engine
        return engine_child(Path(part), Path(setup), trainer)
    settings = {**SETTINGS, **(QUICK if args.quick else {})}
    pfl_python = os.environ.get("PFL_PYTHON")
    if pfl_python and subprocess.run([pfl_python, "-c", "import pfl"]).returncode:
        raise SystemExit(f"PFL_PYTHON={pfl_python} cannot import pfl")
    note = "pfl: run." if pfl_python else "pfl: skipped (set PFL_PYTHON to a Python with pfl)."
    work = Path(tempfile.mkdtemp(prefix="flcli-p4-"))
    try:
        results = measure(settings, 1 if args.quick else args.repeats, pfl_python, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = markdown(results, note)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
