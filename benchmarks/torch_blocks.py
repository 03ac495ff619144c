"""flcli's torch step against its block size: clients per torch.func.vmap call.

TorchModel.block (flcli/models/torchmodel.py: as many clients as fit CACHE_BYTES of parameters, at
most MAX_BLOCK) sets how many clients one vmapped forward + backward takes. For CifarCNN on
3x32x32 and LeNet5 on 1x28x28 this times TorchModel.sgd_step on CLIENTS clients (batch BATCH, one
thread, as each of the engine's threads runs it) with the block set to each of BLOCKS, and splits
the time of the default block and of the fastest by PyTorch operator (torch.profiler, self CPU
time) into convolutions, matrix products, max pooling, ReLU, fills, copies, the SGD update and the
rest. For scale: a plain autograd step of the module (torch.optim.SGD), one client after another.

Run: python benchmarks/torch_blocks.py [--quick] [--out FILE (appended)]
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODELS = {"CifarCNN": (3, 32, 32), "LeNet5": (1, 28, 28)}
BLOCKS = (1, 2, 4, 8, 16)
CLIENTS, BATCH = 16, 10
KINDS = {  # operator (aten:: dropped) -> kind; any other convolution or max_pool one by its name
    **dict.fromkeys(("mm", "bmm", "addmm", "matmul", "linear"), "matrix products"),
    **dict.fromkeys(("relu", "clamp_min", "threshold_backward"), "ReLU"),
    **dict.fromkeys(("copy_", "clone", "contiguous", "cat", "stack", "_to_copy"), "copies"),
    **dict.fromkeys(("fill_", "zero_", "zeros", "zeros_like"), "fills"),
    "sub_": "SGD update",
}


def torch_model(name: str):
    from flcli.models.torchload import make_torch_model

    shape = MODELS[name]
    reference = f"torch:{ROOT / 'examples' / 'cnn.py'}:{name}"
    features = int(np.prod(shape))
    return make_torch_model(reference, features, 10, "classification", "float32", {}, (shape, None))


def batch(model, clients: int):
    """The parameters of `clients` clients and one step's batch of each."""
    g = np.random.default_rng(0)
    W = np.stack([model.init(np.random.default_rng(k)) for k in range(clients)])
    X = g.normal(size=(clients, BATCH, int(np.prod(model.input_shape)))).astype(np.float32)
    y = g.integers(0, 10, size=(clients, BATCH))
    return W, X, y, np.ones((clients, BATCH), dtype=np.float32)


def step_seconds(model, block: int, clients: int, repeats: int) -> float:
    """Seconds per client-step of sgd_step with this block (median of repeats, after a warm-up)."""
    model.block = block
    W, X, y, mask = batch(model, clients)
    model.sgd_step(W, X, y, mask, 0.01, None)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.sgd_step(W, X, y, mask, 0.01, None)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds) / clients


def plain_seconds(model, clients: int, repeats: int) -> float:
    """Seconds per client-step of a plain autograd step of the module, client after client."""
    import torch

    module = model.build(0)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01)
    _, X, y, _ = batch(model, clients)
    X_t, y_t = model.inputs(torch.from_numpy(X)), torch.from_numpy(y)

    def steps() -> float:
        start = time.perf_counter()
        for k in range(clients):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(module(X_t[k]), y_t[k]).backward()
            optimizer.step()
        return time.perf_counter() - start

    steps()
    return statistics.median(steps() for _ in range(repeats)) / clients


def kind_of(operator: str) -> str:
    name = operator.removeprefix("aten::")
    if "convolution" in name:
        return "convolution"
    if name.startswith("max_pool"):
        return "max pooling"
    return KINDS.get(name, "other")


def breakdown(model, block: int, clients: int) -> dict[str, float]:
    """The share of self CPU time of each kind of operator in sgd_step with this block."""
    from torch.profiler import ProfilerActivity, profile

    model.block = block
    W, X, y, mask = batch(model, clients)
    model.sgd_step(W, X, y, mask, 0.01, None)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        model.sgd_step(W, X, y, mask, 0.01, None)
    shares: dict[str, float] = {}
    for event in profiler.key_averages():
        kind = kind_of(event.key)
        shares[kind] = shares.get(kind, 0.0) + event.self_cpu_time_total
    total = sum(shares.values())
    return {kind: value / total for kind, value in sorted(shares.items(), key=lambda kv: -kv[1])}


def measure(quick: bool) -> list[dict]:
    clients, repeats = (4, 2) if quick else (CLIENTS, 5)
    rows = []
    for name in MODELS:
        model = torch_model(name)
        default = model.block
        sizes = [b for b in BLOCKS if b <= clients]
        seconds = {b: step_seconds(model, b, clients, repeats) for b in sizes}
        best = min(seconds, key=seconds.get)
        plain = plain_seconds(model, clients, repeats)
        rows.append(
            {
                "model": name,
                "params": model.num_params,
                "default": default,
                "seconds": seconds,
                "best": best,
                "plain": plain,
                "split": {b: breakdown(model, b, clients) for b in sorted({default, best})},
                "load": os.getloadavg()[0],
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        f"### flcli's torch step against its block size (batch {BATCH}, 1 thread; ms per "
        "client-step, median of 5)",
        "",
        "| model | parameters | default block | "
        + " | ".join(f"block {b}" for b in BLOCKS)
        + " | fastest | plain autograd loop | load (1 min) |",
        "| --- | --- | --- | " + " | ".join("---" for _ in BLOCKS) + " | --- | --- | --- |",
    ]
    for row in rows:
        cells = [f"{1000 * row['seconds'][b]:.2f}" if b in row["seconds"] else "-" for b in BLOCKS]
        lines.append(
            f"| {row['model']} | {row['params']:,} | {row['default']} | "
            + " | ".join(cells)
            + f" | {row['best']} | {1000 * row['plain']:.2f} | {row['load']:.1f} |"
        )
    lines += ["", "Where the time goes (share of self CPU time, torch.profiler):", ""]
    for row in rows:
        for block, split in row["split"].items():
            parts = ", ".join(f"{kind} {share:.0%}" for kind, share in split.items())
            lines.append(f"- {row['model']}, block {block}: {parts}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, help="append the markdown section to this file")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    text = markdown(measure(args.quick))
    print(text)
    if args.out:
        with args.out.open("a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
