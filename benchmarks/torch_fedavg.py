"""flcli's FedAvg replayed by peers, one child process each: a plain PyTorch per-client loop and
pfl-research, on the models of the peers benchmark (softmax regression, flcli's MLP).

Needs only NumPy and PyTorch (and pfl for `pfl`), so that it runs in another interpreter: it reads
the partition's data.npz, and a setup written by peers.py (flcli's side): setup.json (lr, batch
size, epochs, the model, the cohort of every round), w0.npy (flcli's initial model, the flat vector
in flcli's layout) and orders.npz (flcli's batch orders of every round: epoch_orders, one
permutation of each client's rows per epoch, client by client). Both peers start from w0, train
the same cohorts with plain SGD (mean cross-entropy per batch, a short last batch as it is) and
average the local models weighted by samples (w + sum n_k (w_k - w) / sum n_k, as flcli does).
- plain: walks flcli's batch orders exactly; in float64 it reproduces flcli's models to rounding.
- pfl: pfl's FederatedAveraging in its SimulatedBackend; each (round, client) is a pfl user whose
  dataset yields, at pfl's e-th walk of it (one per local epoch), flcli's batches of epoch e, so
  pfl too takes flcli's steps.
Prints one JSON line: train_s (the rounds, evaluation excluded), accuracy (test set, last round),
and the final model (flat, flcli's layout) when asked with --save.

Run: python torch_fedavg.py plain|pfl PARTITION_DIR SETUP_DIR THREADS [--save FILE.npy]
"""

import json
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

ARRAYS = ("x_train", "y_train", "offsets", "x_test", "y_test")


class Layers(torch.nn.Module):
    """flcli's softmax regression (no hidden layer) or MLP (ReLU hidden layers), with flcli's
    parameter layout: per layer W [in, out] then b [out], so the flat vector is flcli's."""

    def __init__(self, units: list[int], dtype=torch.float64):
        super().__init__()
        self.weights = torch.nn.ParameterList(
            torch.nn.Parameter(torch.zeros(a, b, dtype=dtype))
            for a, b in zip(units[:-1], units[1:], strict=True)
        )
        self.biases = torch.nn.ParameterList(
            torch.nn.Parameter(torch.zeros(b, dtype=dtype)) for b in units[1:]
        )

    def parameters(self, recurse: bool = True):  # flcli's order: W_1, b_1, W_2, b_2, ...
        for w, b in zip(self.weights, self.biases, strict=True):
            yield w
            yield b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.addmm(b, x, w)
            if i < last:
                x = torch.relu(x)
        return x


def load(part: Path) -> dict[str, np.ndarray]:
    with np.load(part / "data.npz") as arrays:
        return {name: arrays[name] for name in ARRAYS}


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def load_vector(module: torch.nn.Module, vector: torch.Tensor) -> None:
    """Copy the flat vector into the module's parameters (not views of it)."""
    with torch.no_grad():
        start = 0
        for parameter in module.parameters():
            parameter.copy_(vector[start : start + parameter.numel()].view_as(parameter))
            start += parameter.numel()


def initial_module(setup: dict, setup_dir: Path, data: dict) -> Layers:
    units = [data["x_train"].shape[1], *setup["hidden"], int(data["y_train"].max()) + 1]
    module = Layers(units)
    load_vector(module, torch.from_numpy(np.load(setup_dir / "w0.npy")))
    return module


def accuracy(module: torch.nn.Module, data: dict) -> float:
    with torch.no_grad():
        logits = module(torch.from_numpy(data["x_test"]))
    return float((logits.argmax(1).numpy() == data["y_test"]).mean())


def plain_fedavg(module: Layers, data: dict, setup: dict, orders: dict) -> None:
    """FedAvg as a loop over clients, in place: the one module, loaded with the global weights
    for each client, torch.optim.SGD over the client's rows in flcli's order for the round."""
    x, y, offsets = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"]), None
    offsets = data["offsets"]
    epochs, batch = setup["epochs"], setup["batch_size"]
    for r, ids in enumerate(setup["cohorts"], start=1):
        order = torch.from_numpy(orders[f"round_{r}"])
        w_global = flat(module).clone()
        deltas = torch.empty(len(ids), len(w_global), dtype=w_global.dtype)
        sizes = torch.empty(len(ids), dtype=w_global.dtype)
        at = 0
        for k, client in enumerate(ids):
            load_vector(module, w_global)
            optimizer = torch.optim.SGD(module.parameters(), lr=setup["lr"])
            first, n = int(offsets[client]), int(offsets[client + 1] - offsets[client])
            for _ in range(epochs):
                rows = first + order[at : at + n]
                at += n
                for batch_rows in rows.split(batch):
                    optimizer.zero_grad()
                    loss = torch.nn.functional.cross_entropy(module(x[batch_rows]), y[batch_rows])
                    loss.backward()
                    optimizer.step()
            deltas[k] = flat(module) - w_global
            sizes[k] = n
        load_vector(module, w_global + sizes @ deltas / sizes.sum())


def plain(data: dict, setup: dict, setup_dir: Path) -> tuple[dict, Layers]:
    module = initial_module(setup, setup_dir, data)
    with np.load(setup_dir / "orders.npz") as f:
        orders = {name: f[name] for name in f.files}
    start = time.perf_counter()
    plain_fedavg(module, data, setup, orders)
    train_s = time.perf_counter() - start
    return {"train_s": train_s, "accuracy": accuracy(module, data)}, module


def with_pfl_methods(module: torch.nn.Module) -> torch.nn.Module:
    """The module with the loss and metrics methods pfl's PyTorchModel calls: cross-entropy, and
    its sum and the correct predictions weighted by the rows."""
    from pfl.metrics import Weighted

    def loss(self, x, y, eval=False):
        self.eval() if eval else self.train()
        return torch.nn.functional.cross_entropy(self(x), y.long())

    @torch.no_grad()
    def metrics(self, x, y, eval=True):
        logits = self(x)
        correct = float((logits.argmax(-1) == y).sum())
        total = float(torch.nn.functional.cross_entropy(logits, y.long(), reduction="sum"))
        return {"loss": Weighted(total, len(x)), "accuracy": Weighted(correct, len(x))}

    module.loss = types.MethodType(loss, module)
    module.metrics = types.MethodType(metrics, module)
    return module


def averaging_seconds(module: torch.nn.Module, dataset, setup: dict) -> tuple[float, float]:
    """(wall, CPU) seconds of pfl's FederatedAveraging over the users of dataset, in its
    SimulatedBackend: local torch.optim.SGD, the central optimizer SGD with lr 1 (w += the
    weighted mean of the clients' differences), WeightByDatapoints, setup's rounds, cohort size,
    local epochs, batch size and lr; pfl's per-user evaluation off."""
    from dataclasses import replace

    from pfl.aggregate.simulate import SimulatedBackend
    from pfl.aggregate.weighting import WeightByDatapoints
    from pfl.algorithm import FederatedAveraging, NNAlgorithmParams
    from pfl.hyperparam import NNTrainHyperParams
    from pfl.model.pytorch import PyTorchModel

    class Averaging(FederatedAveraging):
        def get_next_central_contexts(self, *args, **kwargs):
            contexts, model, metrics = super().get_next_central_contexts(*args, **kwargs)
            if contexts is not None:
                contexts = tuple(replace(c, do_evaluation=False) for c in contexts)
            return contexts, model, metrics

    model = PyTorchModel(
        model=module,
        local_optimizer_create=torch.optim.SGD,
        central_optimizer=torch.optim.SGD(module.parameters(), lr=1.0),
    )
    backend = SimulatedBackend(
        training_data=dataset, val_data=None, postprocessors=[WeightByDatapoints()]
    )
    rounds = len(setup["cohorts"])
    params = NNAlgorithmParams(
        central_num_iterations=rounds,
        evaluation_frequency=rounds,
        train_cohort_size=len(setup["cohorts"][0]),
        val_cohort_size=None,
    )
    train = NNTrainHyperParams(
        local_learning_rate=setup["lr"],
        local_num_epochs=setup["epochs"],
        local_batch_size=setup["batch_size"],
    )
    start, cpu = time.perf_counter(), time.process_time()
    Averaging().run(algorithm_params=params, backend=backend, model=model, model_train_params=train)
    return time.perf_counter() - start, time.process_time() - cpu


def pfl_run(data: dict, setup: dict, setup_dir: Path) -> tuple[dict, Layers]:
    """pfl's FederatedAveraging in its SimulatedBackend: local torch.optim.SGD, the central
    optimizer SGD with lr 1 (w += the weighted mean of the clients' differences),
    WeightByDatapoints, the users drawn in the order of setup's cohorts (each (round, client) its
    batches in flcli's order, epoch by epoch), pfl's per-user evaluation off."""
    from pfl.data.dataset import Dataset
    from pfl.data.federated_dataset import FederatedDataset

    module = with_pfl_methods(initial_module(setup, setup_dir, data))
    x, y, offsets = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"]), None
    offsets = data["offsets"]

    class EpochOrdered(Dataset):
        """A user's rows that pfl walks in flcli's order of each epoch: pfl calls iter once per
        local epoch (PyTorchModel.do_multiple_epochs_of), so the e-th call walks epoch e's."""

        def __init__(self, epochs: list[torch.Tensor], user_id: str):
            super().__init__(raw_data=[x[epochs[0]], y[epochs[0]]], user_id=user_id)
            self.epochs, self.calls = epochs, 0

        def iter(self, batch_size):  # noqa: A003 (pfl's name)
            rows = self.epochs[self.calls % len(self.epochs)]
            self.calls += 1
            for batch in rows.split(batch_size):
                yield [x[batch], y[batch]]

    users = []  # each (round, client): its rows in flcli's order, epoch by epoch
    epochs = setup["epochs"]
    with np.load(setup_dir / "orders.npz") as f:
        for r, ids in enumerate(setup["cohorts"], start=1):
            order, at = torch.from_numpy(f[f"round_{r}"]), 0
            for client in ids:
                n = int(offsets[client + 1] - offsets[client])
                first = int(offsets[client])
                users.append([first + order[at + e * n : at + (e + 1) * n] for e in range(epochs)])
                at += n * epochs
    drawn = iter(range(len(users)))

    def make_dataset(user: int) -> Dataset:
        return EpochOrdered(users[user], str(user))

    dataset = FederatedDataset(make_dataset, lambda: next(drawn))
    train_s, _ = averaging_seconds(module, dataset, setup)
    return {"train_s": train_s, "accuracy": accuracy(module, data)}, module


def main() -> None:
    mode, part, setup_dir, threads = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    setup = json.loads((setup_dir / "setup.json").read_text())
    torch.set_num_threads(int(threads))
    torch.set_default_dtype(torch.float64)
    data = load(part)
    run = plain if mode == "plain" else pfl_run
    result, module = run(data, setup, setup_dir)
    if "--save" in sys.argv:
        np.save(sys.argv[sys.argv.index("--save") + 1], flat(module).numpy())
    result["threads"] = torch.get_num_threads()
    result["versions"] = f"torch {torch.__version__}, numpy {np.__version__}"
    if mode == "pfl":
        from importlib.metadata import version

        result["versions"] = f"pfl {version('pfl')}, " + result["versions"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
