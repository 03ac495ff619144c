"""--model torch:FILE.py:NAME: a PyTorch module trained as a flat vector, a cohort at once."""

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error, assert_resume_is_exact

from flcli.algorithms.work import LocalSpec, LocalWork
from flcli.configfile import train_config
from flcli.data.store import load_partition
from flcli.engine.cohort import train_cohort
from flcli.engine.local import Cohort, epoch_orders
from flcli.models.registry import make_model

torch = pytest.importorskip("torch")

NETS = '''
import math

import torch
from torch import nn


class SmallCNN(nn.Module):
    """A convolution on 8x8 images, pooled, then a linear head."""

    default_lr = 0.1

    def __init__(self, num_classes, channels=4):
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(channels * 16, num_classes)

    def forward(self, x):
        x = x.reshape(-1, 1, 8, 8)
        return self.head(self.pool(torch.relu(self.conv(x))).flatten(1))


def mlp(num_classes, input_shape, hidden=16):
    features = math.prod(input_shape)
    layers = [nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, num_classes)]
    return nn.Sequential(nn.Flatten(), *layers)


def regressor(num_classes, input_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 1))


def with_batchnorm(num_classes, input_shape):
    norm = nn.BatchNorm1d(8)
    features = math.prod(input_shape)
    return nn.Sequential(nn.Flatten(), nn.Linear(features, 8), norm, nn.Linear(8, num_classes))


def with_dropout(num_classes, input_shape):
    features = math.prod(input_shape)
    layers = [nn.Linear(features, 8), nn.Dropout(0.5), nn.Linear(8, num_classes)]
    return nn.Sequential(nn.Flatten(), *layers)


def linear(num_classes, input_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))


def three_outputs(num_classes, input_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 3))


def not_a_module(num_classes, input_shape):
    return [1, 2]
'''


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("torchnets")
    (folder / "torchnets.py").write_text(NETS)
    return folder / "torchnets.py"


def model_of(nets, name, dtype="float64", features=64, classes=10, task="classification"):
    return make_model(f"torch:{nets}:{name}", features, classes, task=task, dtype=dtype)


def reference_step(model, w, x, y, lr, anchor=None, mu=0.0):
    """One SGD step of a plain PyTorch module on one client's batch: the loss's mean over the
    batch, autograd, w - lr (grad + mu (w - anchor))."""
    module = model.build(0).to(model.torch_dtype)
    torch.nn.utils.vector_to_parameters(torch.from_numpy(w.copy()), module.parameters())
    loss = torch.nn.functional.cross_entropy(module(torch.from_numpy(x)), torch.from_numpy(y))
    grads = torch.autograd.grad(loss, list(module.parameters()))
    grad = torch.cat([g.reshape(-1) for g in grads]).numpy()
    if mu:
        grad = grad + mu * (w - anchor)
    return w - lr * grad


def test_loss_grad_equals_autograd_of_the_module(nets):
    model = model_of(nets, "SmallCNN")
    rng = np.random.default_rng(0)
    W = np.stack([model.init(np.random.default_rng(k)) for k in range(3)])
    X, y = rng.random((3, 5, 64)), rng.integers(0, 10, (3, 5))
    mask = np.ones((3, 5))
    mask[1, 3:] = 0  # client 1 has 3 samples in this batch
    loss, grad = model.loss_grad(W, X, y, mask)
    for k in range(3):
        real = mask[k] > 0
        module = model.build(0).double()
        torch.nn.utils.vector_to_parameters(torch.from_numpy(W[k].copy()), module.parameters())
        out = module(torch.from_numpy(X[k][real]))
        expected = torch.nn.functional.cross_entropy(out, torch.from_numpy(y[k][real]))
        grads = torch.autograd.grad(expected, list(module.parameters()))
        flat = torch.cat([g.reshape(-1) for g in grads]).numpy()
        assert np.allclose(grad[k], flat, rtol=0, atol=1e-12)
        assert loss[k] == pytest.approx(expected.item(), abs=1e-12)


@pytest.mark.parametrize("dtype, atol", [("float64", 1e-12), ("float32", 1e-6)])
def test_cohort_step_equals_per_client_torch_training(nets, dtype, atol):
    """The vmapped step of K clients equals K plain PyTorch steps: to 1e-12 in float64, 1e-6 in
    float32 (the batched kernels sum in another order than a single client's)."""
    model = model_of(nets, "SmallCNN", dtype=dtype)
    rng = np.random.default_rng(1)
    K = 2 * model.block + 1  # two full blocks and a padded one
    W = np.stack([model.init(np.random.default_rng(k)) for k in range(K)]).astype(dtype)
    X, y = rng.random((K, 6, 64)).astype(dtype), rng.integers(0, 10, (K, 6))
    expected = [reference_step(model, W[k], X[k], y[k], 0.1) for k in range(K)]
    model.sgd_step(W, X, y, np.ones((K, 6), dtype=dtype), 0.1, None)
    assert W.dtype == np.dtype(dtype)
    for k in range(K):
        assert np.allclose(W[k], expected[k], rtol=0, atol=atol)


def test_a_clients_step_does_not_depend_on_the_rest_of_its_cohort(nets):
    """Bit for bit: what makes every backend and every chunking give the same rounds.csv."""
    model = model_of(nets, "mlp", dtype="float32")
    rng = np.random.default_rng(2)
    K = 3 * model.block
    W = rng.normal(size=(K, model.num_params)).astype(np.float32)
    X, y = rng.random((K, 7, 64)).astype(np.float32), rng.integers(0, 10, (K, 7))
    mask = (rng.random((K, 7)) < 0.8).astype(np.float32)
    whole = W.copy()
    model.sgd_step(whole, X, y, mask, 0.2, None)
    for part in (slice(0, 1), slice(1, 4), slice(K - 5, K)):
        alone = W[part].copy()
        model.sgd_step(alone, X[part], y[part], mask[part], 0.2, None)
        assert np.array_equal(alone, whole[part])


def test_fedprox_correction_is_applied_in_each_torch_step(dirichlet_dir, nets):
    """Local FedProx through the engine equals plain PyTorch SGD on the proximal objective,
    walking the same batches."""
    partition = load_partition(dirichlet_dir)
    model = model_of(nets, "SmallCNN")
    anchor = model.init(np.random.default_rng(5))
    cohort = Cohort.of(np.array([0, 3]), partition.offsets)
    spec = LocalSpec(epochs=1, batch_size=16, lr=0.05)
    work = LocalWork(pull=0.5)  # FedProx's mu (w - anchor)
    args = (partition.x_train, partition.y_train, cohort, anchor, spec, 7, 1, work)
    trained = train_cohort(model, *args).params
    orders = epoch_orders(7, 1, cohort.ids, cohort.sizes, 1)
    starts = np.concatenate([[0], np.cumsum(cohort.sizes)])
    for k, (first, size) in enumerate(zip(cohort.starts, cohort.sizes, strict=True)):
        order, w = orders[starts[k] : starts[k + 1]], anchor.copy()
        for b in range(0, size, 16):
            rows = first + order[b : b + 16]
            x, y = partition.x_train[rows], partition.y_train[rows]
            w = reference_step(model, w, x, y, 0.05, anchor=anchor, mu=0.5)
        assert np.allclose(trained[k], w, rtol=0, atol=1e-10)


def rounds_of(out):
    return pd.read_csv(out / "rounds.csv").drop(columns=["elapsed_s"])


@pytest.mark.parametrize(
    "algo, backends",
    [("fedavg", ("process", "ray", "serial")), ("scaffold", ("process", "serial"))],
)
def test_cli_runs_are_the_same_on_every_backend(cli, dirichlet_dir, nets, tmp_path, algo, backends):
    common = ("--model", f"torch:{nets}:SmallCNN", "--algo", algo, "--rounds", "3", "--seed", "4")
    runs = {}
    for backend in ("vectorized", *backends):
        out = tmp_path / backend
        result = cli("train", dirichlet_dir, *common, "--backend", backend, "--out", out)
        assert result.code == 0, result.err
        runs[backend] = rounds_of(out)
    for exact in set(backends) - {"serial"}:
        pd.testing.assert_frame_equal(runs["vectorized"], runs[exact], check_exact=True)
    pd.testing.assert_frame_equal(runs["vectorized"], runs["serial"], check_exact=False, atol=1e-9)
    assert runs["vectorized"]["test_accuracy"].iloc[-1] > 0.5


def test_run_json_records_the_module_file_and_resume_is_exact(cli, iid_dir, nets, tmp_path):
    import json

    out = tmp_path / "run"
    result = cli("train", iid_dir, "--model", f"torch:{nets}:mlp", "--rounds", "1", "--out", out)
    assert result.code == 0, result.err
    run = json.loads((out / "run.json").read_text())
    source = run["sources"]["model"]
    assert source["reference"] == f"{nets}:mlp" and len(source["sha256"]) == 64
    assert run["config"]["lr"] == 0.05  # a module without a default_lr of its own
    config = train_config(model=f"torch:{nets}:mlp", rounds=4, seed=3, algo="fedavgm")
    assert_resume_is_exact(iid_dir, config, tmp_path)


def test_regression_module(regression_dir, nets, cli, tmp_path):
    out = tmp_path / "reg"
    args = ("--model", f"torch:{nets}:regressor", "--rounds", "3", "--lr", "0.01")
    result = cli("train", regression_dir, *args, "--out", out)
    assert result.code == 0, result.err
    frame = rounds_of(out)
    assert frame["test_loss"].iloc[-1] < frame["test_loss"].iloc[0]


@pytest.mark.parametrize(
    "name, fragments",
    [
        ("with_batchnorm", ["has buffers", "GroupNorm"]),
        ("with_dropout", ["has dropout", "p=0"]),
        ("three_outputs", ["outputs shape [3]", "10 class scores"]),
        ("not_a_module", ["returned a list", "torch.nn.Module"]),
        ("missing", ["has no 'missing'"]),
    ],
)
def test_modules_flcli_cannot_train_are_one_line(cli, iid_dir, nets, tmp_path, name, fragments):
    result = cli("train", iid_dir, "--model", f"torch:{nets}:{name}", "--out", tmp_path / "r")
    assert_one_line_error(result, f"--model torch:{nets}:{name}", *fragments)
    assert not (tmp_path / "r").exists()


def test_without_torch_installed_is_one_line(iid_dir, nets, tmp_path):
    program = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # as if PyTorch were not installed
        from flcli.cli import main
        main(["train", {str(iid_dir)!r}, "--model", "torch:{nets}:mlp", "--out",
              {str(tmp_path / "r")!r}])
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "pip install 'flcli[torch]'" in done.stderr


def test_fl_list_models_shows_the_torch_kind(cli):
    result = cli("list", "models")
    assert result.code == 0
    assert "torch:FILE.py:NAME" in result.out


def test_head_is_the_last_layer(nets):
    model = model_of(nets, "SmallCNN")
    head = model.head_slice()
    assert head.stop == model.num_params
    assert head.stop - head.start == 4 * 16 * 10 + 10


@pytest.mark.parametrize(
    "name, args",
    [("mlp", {"hidden": 600}), ("FedAvgCNN", {})],  # blocks of 5 clients (vmap); one (autograd)
)
def test_chunks_trained_in_threads_at_once_give_the_same_models(dirichlet_dir, nets, name, args):
    """Threads train chunks of clients at once, each through its own copy of the module."""
    partition = load_partition(dirichlet_dir)
    where = "examples/cnn.py" if name == "FedAvgCNN" else nets
    model = make_model(
        f"torch:{where}:{name}",
        partition.num_features,
        10,
        dtype="float32",
        model_args=args,
        shape=(partition.input_shape, None),
    )
    data = partition.astype("float32")
    cohort = Cohort.of(np.arange(partition.num_clients), partition.offsets)
    w = model.init(np.random.default_rng(0))
    spec = LocalSpec(epochs=1, batch_size=8, lr=0.05)
    args = (data.x_train, data.y_train, cohort, w, spec, 3, 1)
    alone = train_cohort(model, *args, threads=1).params
    together = train_cohort(model, *args, threads=2).params
    assert np.array_equal(alone, together)


def test_char_lstm_trains_on_leaf_text_as_characters(cli, tmp_path):
    from test_text import write_leaf_text

    root = write_leaf_text(tmp_path / "shakespeare", sentences=False)
    partition = tmp_path / "p"
    made = cli("partition", f"leaf:{root}", "--text", "chars", "--out", partition)
    assert made.code == 0, made.err
    lstm = "torch:examples/char_lstm.py:CharLSTM"
    small = ("--model-arg", "hidden=8", "--model-arg", "embedding=4", "--model-arg", "layers=1")
    args = ("--model", lstm, *small, "--rounds", "3", "--local-epochs", "3", "--dtype", "float32")
    result = cli("train", partition, *args, "--out", tmp_path / "r")
    assert result.code == 0, result.err
    frame = rounds_of(tmp_path / "r")
    assert frame["train_loss"].iloc[-1] < frame["train_loss"].iloc[0]


def test_distillation_gradient_equals_softmax_regressions(nets):
    """FedDF's student loss T^2 KL(targets || softmax(logits / T)) of a linear module equals
    flcli's NumPy softmax regression's, its gradient mapped through nn.Linear's [C, D] layout."""
    from flcli.models.linear import SoftmaxRegression

    module, numpy_model = model_of(nets, "linear"), SoftmaxRegression(64, 10)
    rng = np.random.default_rng(6)
    weights, bias = rng.normal(size=(64, 10)), rng.normal(size=10)
    X, targets = rng.random((9, 64)), rng.dirichlet(np.ones(10), size=9)
    expected_loss, expected = numpy_model.distill_loss_grad(
        np.concatenate([weights.ravel(), bias]), X, targets, 2.0
    )
    loss, grad = module.distill_loss_grad(
        np.concatenate([weights.T.ravel(), bias]), X, targets, 2.0
    )
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    assert np.allclose(grad[:640].reshape(10, 64).T, expected[:640].reshape(64, 10), atol=1e-12)
    assert np.allclose(grad[640:], expected[640:], atol=1e-12)


def every_algorithm():
    from flcli.algorithms.registry import BUILT_IN

    return [spec.name for spec in BUILT_IN if spec.name != "fedbag"]  # fedbag: parameterless


@pytest.mark.parametrize("algo", every_algorithm())
def test_every_algorithm_trains_a_torch_module(cli, personal_dir, nets, tmp_path, algo):
    model = ("--model", f"torch:{nets}:mlp", "--model-arg", "hidden=8")
    result = cli("train", personal_dir, *model, "--algo", algo, "--rounds", "2", "--out", tmp_path)
    assert result.code == 0, result.err
    assert len(rounds_of(tmp_path)) == 3
