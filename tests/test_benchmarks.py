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


def test_flop_counts():
    # forward 2(dh + hc), weight gradients 2(dh + hc), hidden gradient 2hc
    assert ceiling.mlp_flops(2, 3, 4) == 2 * 18 + 2 * 18 + 2 * 12
    assert ceiling.softmax_flops(60, 10) == 2400


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
