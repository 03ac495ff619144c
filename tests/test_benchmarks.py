"""The benchmark harness's pure helpers (the benchmarks themselves are not part of the tests)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

ceiling = pytest.importorskip("ceiling")
common = pytest.importorskip("common")
cohorts = pytest.importorskip("cohorts")


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
