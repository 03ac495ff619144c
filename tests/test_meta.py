"""Per-FedAvg (FO) and pFedMe (flcli.algorithms.meta): their local steps against hand-computed
rules, and pFedMe's limit as lambda grows."""

import numpy as np
import pytest

from flcli.api import simulate
from flcli.configfile import train_config
from flcli.data.store import load_partition
from flcli.engine.local import epoch_orders
from flcli.errors import FLError
from flcli.models.mlp import MLP
from flcli.rng import Purpose, rng

BASE = dict(model="mlp", hidden=(8,), rounds=1, local_epochs=1, seed=2, fraction=1.0, lr=0.1)


def run(partition, **settings):
    return list(simulate(partition, train_config(**{**BASE, **settings})))


def test_per_fedavg_first_order_step_by_hand(personal_dir):
    """One full-shard step per client: w_k = w - beta grad F(w - alpha grad F(w; D); D'), D and D'
    the even and odd positions of the client's shuffled shard; the server averages by n_k."""
    partition = load_partition(personal_dir)
    batch = int(partition.client_sizes.max())
    result = run(partition, algo="per-fedavg", beta=0.3, batch_size=batch)[-1]
    model = MLP(partition.num_features, (8,), partition.num_classes)
    w = model.init(rng(BASE["seed"], Purpose.INIT))
    sizes = partition.client_sizes
    orders = epoch_orders(BASE["seed"], 1, np.arange(len(sizes)), sizes, 1)
    ends = np.cumsum(sizes)

    def grad(at, rows):
        x, y = partition.x_train[rows][None], partition.y_train[rows][None]
        return model.loss_grad(at[None], x, y, np.ones((1, len(rows))))[1][0]

    local = []
    for k, n in enumerate(sizes):
        rows = partition.offsets[k] + orders[ends[k] - n : ends[k]]
        adapted = w - 0.1 * grad(w, rows[0::2])
        local.append(w - 0.3 * grad(adapted, rows[1::2]))
    expected = np.asarray(sizes, dtype=float) @ np.array(local) / sizes.sum()
    np.testing.assert_allclose(result.state.params, expected, rtol=1e-9, atol=1e-12)
    assert 0 <= result.record["personal_accuracy"] <= 1


def test_pfedme_with_one_exact_inner_step_is_fedavg(personal_dir):
    """K = 1 and nu = 1/lambda make theta = w - grad F(w)/lambda, so w - eta lambda (w - theta)
    is w - eta grad F(w): FedAvg's step, for any lambda."""
    partition = load_partition(personal_dir)
    fedavg = run(partition, algo="fedavg", rounds=2, batch_size=16)[-1].state.params
    for lam in (4.0, 40.0):
        pfedme = run(
            partition,
            algo="pfedme",
            rounds=2,
            batch_size=16,
            pfedme_lambda=lam,
            personal_lr=1 / lam,
            inner_steps=1,
        )[-1].state.params
        np.testing.assert_allclose(pfedme, fedavg, rtol=1e-7, atol=1e-9)


def test_pfedme_approaches_fedavg_as_lambda_grows(personal_dir):
    """With the inner problem solved (K = 40 steps at nu = 0.5/lambda), pFedMe's step is eta
    times the Moreau envelope's gradient grad F(prox(w)), which tends to grad F(w)."""
    partition = load_partition(personal_dir)
    fedavg = run(partition, algo="fedavg", rounds=2, batch_size=16)[-1].state.params
    distances = []
    for lam in (3.0, 30.0, 300.0, 3000.0):
        pfedme = run(
            partition,
            algo="pfedme",
            rounds=2,
            batch_size=16,
            pfedme_lambda=lam,
            personal_lr=0.5 / lam,
            inner_steps=40,
        )[-1].state.params
        distances.append(np.linalg.norm(pfedme - fedavg))
    assert distances[0] > distances[1] > distances[2] > distances[3] > 0
    assert distances[3] < distances[0] / 100


def test_pfedme_server_beta_scales_the_mean_local_move(personal_dir):
    partition = load_partition(personal_dir)
    results = [run(partition, algo="pfedme", server_beta=b, batch_size=16) for b in (1.0, 2.0)]
    w0 = results[0][0].state.params
    moves = [r[-1].state.params - w0 for r in results]
    np.testing.assert_allclose(moves[1], 2 * moves[0], rtol=1e-9, atol=1e-12)
    assert 0 <= results[0][-1].record["personal_accuracy"] <= 1


def test_own_local_steps_refuse_scikit_learn_estimators(personal_dir):
    partition = load_partition(personal_dir)
    for algo in ("pfedme", "per-fedavg"):
        with pytest.raises(FLError, match="local step is its own"):
            list(simulate(partition, train_config(algo=algo, model="sklearn:SGDClassifier")))
