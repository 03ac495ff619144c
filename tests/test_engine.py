import os

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from flcli import api
from flcli.algorithms.aggregate import weighted_mean
from flcli.algorithms.work import LocalSpec, LocalWork
from flcli.api import simulate
from flcli.config import TrainConfig
from flcli.configfile import train_config
from flcli.data.store import load_partition
from flcli.engine.cohort import train_cohort
from flcli.engine.local import Cohort, compiled_epoch_rows, epoch_orders
from flcli.engine.serial import train_serial
from flcli.models.linear import SoftmaxRegression


def run(partition, **overrides):
    config = train_config(**overrides)
    return list(simulate(partition, config))


def test_vectorized_equals_serial_on_clients_of_different_sizes(dirichlet_dir):
    partition = load_partition(dirichlet_dir)
    assert len(set(partition.client_sizes)) > 1
    settings = dict(rounds=3, local_epochs=2, batch_size=7, lr=0.3, fraction=0.75, seed=4)
    vectorized = run(partition, backend="vectorized", **settings)
    serial = run(partition, backend="serial", **settings)
    for a, b in zip(vectorized, serial, strict=True):
        assert np.allclose(a.state.params, b.state.params, rtol=0, atol=1e-9)
        assert a.record["test_accuracy"] == b.record["test_accuracy"]


@pytest.mark.parametrize("hidden", [None, (16,)])
def test_a_clients_training_does_not_depend_on_the_rest_of_the_cohort(dirichlet_dir, hidden):
    """Bit for bit: what makes every backend and every chunking give the same rounds.csv."""
    from flcli.models.mlp import MLP

    partition = load_partition(dirichlet_dir)
    d, c = partition.num_features, partition.num_classes
    model = SoftmaxRegression(d, c) if hidden is None else MLP(d, hidden, c)
    w = np.random.default_rng(0).normal(size=model.num_params) * 0.1
    spec = LocalSpec(epochs=2, batch_size=5, lr=0.2)
    everyone = Cohort.of(np.arange(partition.num_clients), partition.offsets)
    x, y = partition.x_train, partition.y_train
    crowd = train_cohort(model, x, y, everyone, w, spec, seed=1, round=2, threads=1)
    for k in range(partition.num_clients):
        alone = train_cohort(model, x, y, everyone.chunk(slice(k, k + 1)), w, spec, 1, 2)
        np.testing.assert_array_equal(alone.params[0], crowd.params[k])


def test_fedavg_on_one_client_equals_plain_minibatch_sgd(tmp_path):
    out = tmp_path / "one"
    api.partition(out, dataset="digits", clients=1, scheme="iid", seed=0)
    partition = load_partition(out)
    rounds, epochs, batch, lr, seed = 3, 2, 32, 0.2, 5
    results = run(partition, rounds=rounds, local_epochs=epochs, batch_size=batch, lr=lr, seed=seed)
    model = SoftmaxRegression(partition.num_features, partition.num_classes)
    x, y, n = partition.x_train, partition.y_train, len(partition.y_train)
    w = np.zeros(model.num_params)
    for round in range(1, rounds + 1):
        for order in epoch_orders(seed, round, [0], [n], epochs).reshape(epochs, n):
            for first in range(0, n, batch):
                rows = order[first : first + batch]
                _, grad = model.loss_grad(
                    w[None], x[rows][None], y[rows][None], np.ones((1, len(rows)))
                )
                w = w - lr * grad[0]
        assert np.allclose(results[round].state.params, w, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", ["vectorized", "serial"])
def test_full_batch_single_step_fedavg_equals_centralized_gradient_descent(iid_dir, backend):
    partition = load_partition(iid_dir)
    lr = 0.5
    results = run(partition, rounds=2, local_epochs=1, batch_size=10_000, lr=lr, backend=backend)
    model = SoftmaxRegression(partition.num_features, partition.num_classes)
    x, y = partition.x_train[None], partition.y_train[None]
    w = np.zeros(model.num_params)
    for round in (1, 2):
        _, grad = model.loss_grad(w[None], x, y, np.ones(y.shape))
        w = w - lr * grad[0]
        assert np.allclose(results[round].state.params, w, rtol=0, atol=1e-12)


def test_weighted_mean_weights_by_sample_count():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [4.0, 4.0]])
    assert np.allclose(weighted_mean(vectors, np.array([1, 1, 2])), [2.25, 2.25])
    assert np.allclose(weighted_mean(vectors[:2], np.array([3, 1])), [0.75, 0.25])


def test_clients_sampled_per_round_follow_the_config(iid_dir):
    partition = load_partition(iid_dir)
    results = run(partition, rounds=4, clients_per_round=3)
    assert [r.record["clients"] for r in results] == [0, 3, 3, 3, 3]
    per_model = 8 * (partition.num_features + 1) * partition.num_classes
    assert results[-1].record["bytes_up"] == 4 * 3 * per_model
    assert results[-1].record["bytes_down"] == 4 * 3 * per_model


def test_serial_engine_counts_steps(iid_dir):
    partition = load_partition(iid_dir)
    model = SoftmaxRegression(partition.num_features, partition.num_classes)
    cohort = Cohort.of(np.array([0, 1]), partition.offsets)
    spec = LocalSpec(epochs=3, batch_size=50, lr=0.1)
    for train in (train_serial, train_cohort):
        result = train(
            model,
            partition.x_train,
            partition.y_train,
            cohort,
            np.zeros(model.num_params),
            spec,
            seed=0,
            round=1,
        )
        assert list(result.num_steps) == [3 * int(np.ceil(n / 50)) for n in cohort.sizes]


def run_model(partition, model_name, **overrides):

    config = train_config(model=model_name, **overrides)
    return list(simulate(partition, config))


@pytest.mark.parametrize("algo", ["fedavg", "fedprox", "scaffold"])
def test_mlp_vectorized_equals_serial_on_clients_of_different_sizes(dirichlet_dir, algo):
    """The vectorized MLP steps with its compiled kernel (fedprox and scaffold add their
    corrections to it); serial with loss_grad."""
    partition = load_partition(dirichlet_dir)
    settings = dict(rounds=2, batch_size=7, fraction=0.75, seed=3, hidden=(16, 8), algo=algo)
    vectorized = run_model(partition, "mlp", backend="vectorized", **settings)
    serial = run_model(partition, "mlp", backend="serial", **settings)
    for a, b in zip(vectorized, serial, strict=True):
        assert np.allclose(a.state.params, b.state.params, rtol=0, atol=1e-9)


def test_float32_runs_in_float32_and_agrees_with_serial_and_float64(dirichlet_dir):
    partition = load_partition(dirichlet_dir)
    settings = dict(rounds=2, batch_size=7, fraction=0.75, seed=3, hidden=(16,))
    single = run_model(partition, "mlp", dtype="float32", **settings)
    serial = run_model(partition, "mlp", dtype="float32", backend="serial", **settings)
    double = run_model(partition, "mlp", **settings)
    assert all(r.state.params.dtype == np.float32 for r in single)
    for a, b, c in zip(single, serial, double, strict=True):
        assert np.allclose(a.state.params, b.state.params, rtol=0, atol=1e-4)
        assert np.allclose(a.state.params, c.state.params, rtol=0, atol=1e-3)
    assert single[-1].record["bytes_up"] * 2 == double[-1].record["bytes_up"]


def centralized_least_squares(partition):
    """(the least-squares weights [v, b] on all training rows, their r2 on the test split)."""
    x, y = np.c_[partition.x_train, np.ones(len(partition.y_train))], partition.y_train
    w = np.linalg.lstsq(x, y, rcond=None)[0]
    residual = partition.y_test - np.c_[partition.x_test, np.ones(len(partition.y_test))] @ w
    return w, 1 - (residual**2).mean() / partition.y_test.var()


def test_regression_rounds_report_mse_and_r2_and_reach_least_squares(regression_dir):
    partition = load_partition(regression_dir)
    results = run_model(partition, "linear", rounds=15)
    record = results[-1].record
    assert "test_accuracy" not in record
    assert record["test_mse"] == record["test_loss"]
    x = np.c_[partition.x_train, np.ones(len(partition.y_train))]
    _, centralized_r2 = centralized_least_squares(partition)
    assert abs(record["test_r2"] - centralized_r2) < 0.05
    train_mse = ((partition.y_train - x @ results[-1].state.params) ** 2).mean()
    assert np.isclose(record["train_loss"], train_mse)


def test_fedavg_linear_on_diabetes_is_within_005_r2_of_centralized_least_squares(tmp_path):
    api.partition(tmp_path / "diabetes", dataset="diabetes", clients=5, scheme="iid", seed=0)
    partition = load_partition(tmp_path / "diabetes")
    record = run_model(partition, "linear", rounds=30)[-1].record
    _, centralized_r2 = centralized_least_squares(partition)
    assert abs(record["test_r2"] - centralized_r2) < 0.05


def test_mlp_fedavg_on_iid_digits_reaches_096_in_30_rounds_with_defaults(iid_dir):
    results = run_model(load_partition(iid_dir), "mlp", rounds=30)
    assert results[-1].record["test_accuracy"] >= 0.96


@pytest.mark.parametrize("hidden", [(8,), (2048,)])  # (2048,): more cache-sized chunks than threads
def test_threaded_cohort_equals_one_chunk_exactly(hidden):
    """A cohort cut into chunks (per thread, and small enough to stay in cache) trains every client
    exactly as one chunk does, also a chunk whose clients are all smaller than a batch."""
    from flcli.engine.cohort import train_chunk
    from flcli.models.mlp import MLP

    g = np.random.default_rng(3)
    sizes = np.concatenate([g.integers(3, 8, 40), g.integers(20, 40, 40)])  # small ones first
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    x, y = g.normal(size=(offsets[-1], 6)).astype(np.float32), g.integers(0, 3, offsets[-1])
    model = MLP(6, hidden, 3, dtype="float32")
    w = model.init(np.random.default_rng(0))
    cohort = Cohort.of(np.arange(80), offsets)
    spec = LocalSpec(2, 16, 0.1)
    whole = train_chunk(
        model, x, y, cohort, w, spec, 0, 1, LocalWork(), np.empty((80, w.size), x.dtype)
    )
    for threads, out in ((1, None), (2, None), (2, np.empty_like(whole.params))):
        cut = train_cohort(model, x, y, cohort, w, spec, 0, 1, threads=threads, out=out)
        assert out is None or cut.params is out  # the caller's array: the process backend's file
        np.testing.assert_array_equal(whole.params, cut.params)
        np.testing.assert_array_equal(whole.num_steps, cut.num_steps)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores for 2 BLAS threads")
def test_the_global_model_does_not_depend_on_the_number_of_blas_threads(tmp_path):
    """The server's weights @ deltas over 48 MLP updates split its sum across BLAS threads."""
    api.partition(tmp_path / "p", dataset="digits", clients=64, scheme="iid", seed=0)
    partition = load_partition(tmp_path / "p")
    config = TrainConfig(model="mlp", rounds=2, clients_per_round=48)

    def final_model(threads):
        with threadpool_limits(threads):
            return list(simulate(partition, config))[-1].state

    assert np.array_equal(final_model(1).params, final_model(2).params)


def test_the_compiled_epoch_orders_are_epoch_orders():
    """Clients of 0 to 300 rows (ties in a 32-bit key are as rare as in a run: the kernel sorts
    key and position together, which orders ties as a stable sort does by construction)."""
    g = np.random.default_rng(0)
    for _ in range(50):
        sizes = g.integers(0, 300, 20)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        cohort = Cohort.of(g.permutation(20)[:12], offsets)
        epochs, seed, round = int(g.integers(1, 4)), int(g.integers(2**40)), int(g.integers(99))
        expected = epoch_orders(seed, round, cohort.ids, cohort.sizes, epochs)
        expected += np.repeat(cohort.starts, cohort.sizes * epochs)
        got = compiled_epoch_rows(seed, round, cohort, epochs)
        np.testing.assert_array_equal(got, expected)
