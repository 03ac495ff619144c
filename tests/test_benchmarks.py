"""The benchmark harness's pure helpers (the benchmarks themselves are not part of the tests)."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

ceiling = pytest.importorskip("ceiling")
common = pytest.importorskip("common")
cohorts = pytest.importorskip("cohorts")
smallclients = pytest.importorskip("smallclients")


def test_spread_is_median_min_max():
    assert common.spread([3.0, 1.0, 2.0]) == "2.00 s (1.00-3.00)"


def test_the_mlp_flop_count_is_that_of_the_models_own_products(monkeypatch):
    """Every product of an MLP step goes through np.matmul: count 2 m n k of each."""
    import numpy as np

    from flcli.models.mlp import MLP

    d, h, c, batch = 7, 5, 3, 4
    model = MLP(d, (h,), c)
    counted = []
    matmul = np.matmul

    def counting(a, b, *args, **kwargs):
        counted.append(2 * a.shape[-2] * a.shape[-1] * b.shape[-1] * int(np.prod(a.shape[:-2])))
        return matmul(a, b, *args, **kwargs)

    monkeypatch.setattr(np, "matmul", counting)
    W = model.init(np.random.default_rng(0))[None]
    x = np.random.default_rng(1).normal(size=(1, batch, d))
    model.loss_grad(W, x, np.zeros((1, batch), dtype=int), np.ones((1, batch)))
    assert sum(counted) == batch * ceiling.mlp_flops(d, h, c)
    assert ceiling.softmax_flops(60, 10) == 4 * 61 * 10  # logits and gradient, bias included


def test_the_dense_flop_count_is_that_of_the_mlps_own_products(monkeypatch):
    """Two hidden layers: every product of the MLP's step goes through np.matmul."""
    import numpy as np

    from flcli.models.mlp import MLP

    batch, matmul, counted = 4, np.matmul, []

    def counting(a, b, *args, **kwargs):
        counted.append(2 * a.shape[-2] * a.shape[-1] * b.shape[-1] * int(np.prod(a.shape[:-2])))
        return matmul(a, b, *args, **kwargs)

    monkeypatch.setattr(np, "matmul", counting)
    model = MLP(7, (5, 4), 3)
    W = model.init(np.random.default_rng(0))[None]
    x = np.random.default_rng(1).normal(size=(1, batch, 7))
    model.loss_grad(W, x, np.zeros((1, batch), dtype=int), np.ones((1, batch)))
    assert sum(counted) == batch * smallclients.dense_flops((7, 5, 4, 3))
    assert smallclients.dense_flops((60, 10)) == ceiling.softmax_flops(60, 10)
    assert smallclients.dense_flops((60, 256, 10)) == ceiling.mlp_flops(60, 256, 10)


def test_per_client_cost_fits_a_line():
    sizes = [10, 100, 1000]
    times = {str(k): {"train": [0.002 + 1e-4 * k] * 3} for k in sizes}
    slope, intercept = cohorts.per_client_cost(times, sizes)
    assert slope == pytest.approx(1e-4) and intercept == pytest.approx(0.002)


def test_synthetic_partition_is_a_valid_partition(tmp_path):
    from flcli.data.store import load_partition, write_partition

    partition = cohorts.synthetic_partition(30)
    write_partition(partition, tmp_path / "p")
    loaded = load_partition(tmp_path / "p")
    sizes = loaded.client_sizes
    assert loaded.num_clients == 30 and sizes.min() >= 80 and sizes.max() <= 120
    assert loaded.x_train.shape == (sizes.sum(), 60) and set(loaded.y_train) <= set(range(10))


@pytest.mark.parametrize(
    "options",
    [{"rounds": 3}, {"rounds": 2, "clients_per_round": 30, "model": "mlp", "hidden": "16,8"}],
)
def test_a_plain_pytorch_loop_walking_flcli_batch_orders_reproduces_its_fedavg(tmp_path, options):
    """The peers benchmark's claim of like for like: the plain PyTorch per-client loop, given
    flcli's initial model, cohorts and batch orders (replay.write_setup), ends at flcli's own
    model to float64 rounding (measured: ~1e-16 on softmax regression)."""
    pytest.importorskip("torch")
    import numpy as np

    from flcli import api
    from flcli.config import TrainConfig

    replay = pytest.importorskip("replay")
    torch_fedavg = pytest.importorskip("torch_fedavg")
    part = tmp_path / "part"
    api.partition(part, dataset="digits", clients=100, scheme="dirichlet", alpha=0.5, seed=0)
    config = TrainConfig(seed=0, **options)
    setup = replay.write_setup(part, config, tmp_path / "setup")
    *_, last = api.simulate(part, config)
    result, module = torch_fedavg.plain(torch_fedavg.load(part), setup, tmp_path / "setup")
    ours = last.state.params
    assert np.abs(torch_fedavg.flat(module).numpy() - ours).max() < 1e-12 * np.abs(ours).max()
    assert result["accuracy"] == last.record["test_accuracy"]


def test_cnn_flops_are_three_times_torchs_count_of_the_forward():
    """cnn_flops: forward + backward = 3 x the forward's FLOPs, which torch counts the same."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    torch_cohort = pytest.importorskip("torch_cohort")
    module = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 5)
    )
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(torch.zeros(1, 2, 6, 6))
    assert torch_cohort.cnn_flops(module, (2, 6, 6)) == 3 * counter.get_total_flops()
    assert counter.get_total_flops() == 2 * (4 * 4 * 4 * 2 * 9 + 64 * 5)


def test_image_partition_records_the_image_shape(tmp_path):
    pytest.importorskip("torch")
    torch_cohort = pytest.importorskip("torch_cohort")
    from flcli.data.store import load_partition

    settings = {**torch_cohort.SETTINGS, **torch_cohort.QUICK}
    loaded = load_partition(torch_cohort.image_partition(tmp_path / "p", settings))
    assert loaded.meta["input_shape"] == [3, 32, 32]
    assert loaded.x_train.shape == (10 * 20, 3 * 32 * 32) and loaded.x_test.shape[0] == 100
    assert (loaded.client_sizes == 20).all() and set(loaded.y_train) <= set(range(10))


def test_flat_cifar_cnn_has_cifar_cnns_parameters_and_outputs():
    """flcli trains FlatCifarCNN on flat rows; the peers CifarCNN on images: the same model."""
    torch = pytest.importorskip("torch")
    torch_clients = pytest.importorskip("torch_clients")

    torch.manual_seed(0)
    flat = torch_clients.FlatCifarCNN(10, (3072,))
    torch.manual_seed(0)
    images = torch_clients.FlatCifarCNN(10, (3, 32, 32))
    assert [p.shape for p in flat.parameters()] == [p.shape for p in images.parameters()]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(flat(x.reshape(2, -1)), images(x))


def test_profiler_operators_are_sorted_into_kinds():
    torch_blocks = pytest.importorskip("torch_blocks")
    kinds = [
        torch_blocks.kind_of(name)
        for name in ("aten::convolution_backward", "aten::bmm", "aten::max_pool2d", "aten::scatter")
    ]
    assert kinds == ["convolution", "matrix products", "max pooling", "other"]


def test_the_plain_loop_is_flclis_fedavg(tmp_path):
    """One round of the plain loop's FedAvg, two clients of one full batch each (the order of a
    batch does not matter), gives flcli's model: the same step, clients from the same start."""
    torch = pytest.importorskip("torch")
    torch_clients = pytest.importorskip("torch_clients")
    from flcli.models.torchload import make_torch_model

    reference = f"torch:{Path(torch_clients.__file__)}:FlatCifarCNN"
    model = make_torch_model(reference, 3072, 10, "classification", "float32", {})
    g = np.random.default_rng(0)
    x, y = g.normal(size=(8, 3072)).astype(np.float32), g.integers(0, 10, 8)
    w0 = model.init(np.random.default_rng(1))
    np.save(tmp_path / "w0.npy", w0)
    W = np.stack([w0, w0])
    model.sgd_step(W, x.reshape(2, 4, -1), y.reshape(2, 4), np.ones((2, 4), np.float32), 0.1, None)
    data = {"x_train": x, "y_train": y, "offsets": np.array([0, 4, 8])}
    setup = {"w0": str(tmp_path / "w0.npy"), "cohorts": [[0, 1]], "seed": 0, "lr": 0.1}
    module = torch_clients.initial_module({**setup, "epochs": 1, "batch_size": 4}, 10)
    torch_clients.plain_fedavg(module, data, {**setup, "epochs": 1, "batch_size": 4})
    got = torch.nn.utils.parameters_to_vector(module.parameters()).detach().numpy()
    np.testing.assert_allclose(got, W.mean(axis=0), atol=1e-6)
