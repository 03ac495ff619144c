"""P4's peers of flcli, one child process each: a plain PyTorch per-client loop and pfl-research.

Needs only NumPy and PyTorch (and pfl for `pfl`), so that it runs in another interpreter: it reads
the partition's data.npz and examples/cnn.py by path, never flcli. Both train CifarCNN from the
same initial vector (w0.npy, the flat parameters in named_parameters order, as flcli keeps them)
on the same cohorts, with plain SGD and FedAvg weighted by samples, and print one JSON line:
train_s (the rounds, evaluation excluded), cpu_s (their CPU seconds, all threads), accuracy (on
the test set, after the last round).

Also the module flcli trains: FlatCifarCNN, CifarCNN on flat rows, for partitions that do not
record their samples' shape yet (see torch_cohort.py's model_reference).

Run: python torch_clients.py plain|pfl PARTITION_DIR SETUP_JSON THREADS
"""

import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch_fedavg import averaging_seconds, load, load_vector, with_pfl_methods

ROOT = Path(__file__).resolve().parents[1]
IMAGE = (3, 32, 32)


def examples_cnn():
    """examples/cnn.py as a module, imported by path (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("examples_cnn", ROOT / "examples" / "cnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def FlatCifarCNN(num_classes: int = 10, input_shape=IMAGE) -> torch.nn.Module:
    """CifarCNN for flcli: given flat rows (input_shape (3072,), a partition without its samples'
    shape), it views them as 3x32x32 images first; the parameters are CifarCNN's, in its order."""
    cnn = examples_cnn().CifarCNN(num_classes, IMAGE)
    if tuple(input_shape) == IMAGE:
        return cnn
    return torch.nn.Sequential(torch.nn.Unflatten(1, IMAGE), cnn)


def initial_module(setup: dict, classes: int) -> torch.nn.Module:
    """CifarCNN with the parameters of w0.npy (flcli's initial model)."""
    module = examples_cnn().CifarCNN(classes, IMAGE)
    load_vector(module, torch.from_numpy(np.load(setup["w0"])))
    return module


def images(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).view(-1, *IMAGE)


def accuracy(module: torch.nn.Module, data: dict) -> float:
    with torch.no_grad():
        logits = torch.cat([module(batch) for batch in images(data["x_test"]).split(256)])
    return float((logits.argmax(1).numpy() == data["y_test"]).mean())


def plain_fedavg(module: torch.nn.Module, data: dict, setup: dict) -> None:
    """FedAvg as a loop over clients, in place: the one module, loaded with the global weights
    for each client, torch.optim.SGD over the client's rows in a fresh random order per epoch."""
    x, y, offsets = images(data["x_train"]), torch.from_numpy(data["y_train"]), data["offsets"]
    generator = torch.Generator().manual_seed(setup["seed"])
    for ids in setup["cohorts"]:
        w_global = torch.nn.utils.parameters_to_vector(module.parameters()).detach().clone()
        total, weight = torch.zeros_like(w_global), 0
        for client in ids:
            load_vector(module, w_global)
            optimizer = torch.optim.SGD(module.parameters(), lr=setup["lr"])
            first, last = int(offsets[client]), int(offsets[client + 1])
            for _ in range(setup["epochs"]):
                order = first + torch.randperm(last - first, generator=generator)
                for rows in order.split(setup["batch_size"]):
                    optimizer.zero_grad()
                    loss = torch.nn.functional.cross_entropy(module(x[rows]), y[rows])
                    loss.backward()
                    optimizer.step()
            with torch.no_grad():
                total += (last - first) * torch.nn.utils.parameters_to_vector(module.parameters())
            weight += last - first
        load_vector(module, total / weight)


def plain(data: dict, setup: dict) -> dict:
    module = initial_module(setup, int(data["y_train"].max()) + 1)
    start, cpu = time.perf_counter(), time.process_time()
    plain_fedavg(module, data, setup)
    train_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    return {"train_s": train_s, "cpu_s": cpu_s, "accuracy": accuracy(module, data)}


def pfl_module(setup: dict, classes: int) -> torch.nn.Module:
    """The initial CifarCNN with the loss and metrics methods pfl's PyTorchModel calls."""
    return with_pfl_methods(initial_module(setup, classes))


def pfl_run(data: dict, setup: dict) -> dict:
    """pfl's FederatedAveraging in its SimulatedBackend: local torch.optim.SGD, the central
    optimizer SGD with lr 1 (w += the weighted mean of the clients' differences),
    WeightByDatapoints, the users drawn in the order of setup's cohorts, and pfl's per-user
    evaluation off."""
    from pfl.data.federated_dataset import FederatedDataset

    module = pfl_module(setup, int(data["y_train"].max()) + 1)
    x, y, offsets = images(data["x_train"]), torch.from_numpy(data["y_train"]), data["offsets"]
    users = {
        client: [x[offsets[client] : offsets[client + 1]], y[offsets[client] : offsets[client + 1]]]
        for client in range(len(offsets) - 1)
    }
    order = iter([int(client) for ids in setup["cohorts"] for client in ids])
    dataset = FederatedDataset.from_slices(users, lambda: next(order))
    train_s, cpu_s = averaging_seconds(module, dataset, setup)
    return {"train_s": train_s, "cpu_s": cpu_s, "accuracy": accuracy(module, data)}


def main() -> None:
    mode, part, setup_file, threads = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    setup = json.loads(setup_file.read_text())
    torch.set_num_threads(int(threads))
    torch.manual_seed(setup["seed"])
    data = load(part)
    result = plain(data, setup) if mode == "plain" else pfl_run(data, setup)
    result["threads"] = torch.get_num_threads()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
