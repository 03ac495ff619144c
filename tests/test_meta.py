"""Per-FedAvg (FO) and pFedMe (flcli.algorithms.meta): their local steps against hand-computed
rules, and pFedMe's limit as lambda grows."""

import numpy as np
import pytest

from flcli.algorithms.meta import meta_step
from flcli.api import simulate
from flcli.configfile import train_config
from flcli.data.store import load_partition
from flcli.engine.local import epoch_orders
from flcli.errors import FLError
from flcli.models.linear import LinearRegression, SoftmaxRegression
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


def quadratic_problem():
    """A least-squares model (a quadratic loss: its gradient is exactly H w + c), one client's
    minibatch of 9 rows and a start w."""
    gen = np.random.default_rng(5)
    model = LinearRegression(3)
    X, y = gen.standard_normal((1, 9, 3)), gen.standard_normal((1, 9))
    mask = np.ones((1, 9))
    w = gen.standard_normal((1, model.num_params))
    return model, X, y, mask, w


def gradient(model, w, X, y, mask):
    return model.loss_grad(w, X, y, mask)[1]


def test_per_fedavg_hessian_free_step_is_the_exact_maml_step_on_a_quadratic():
    """On a quadratic loss the central difference of gradients is exactly the Hessian-vector
    product, so the HF step is w - beta (I - alpha H'') grad F(w - alpha grad F(w; D); D'), H''
    the Hessian on D'' (rows 2, 5, 8); the first-order step lacks the alpha H'' term."""
    model, X, y, mask, w = quadratic_problem()
    alpha, beta = 0.1, 0.3
    thirds = [np.zeros_like(mask) for _ in range(3)]
    for part, third in enumerate(thirds):
        third[:, part::3] = 1
    zero = np.zeros_like(w)
    c = gradient(model, zero, X, y, thirds[2])[0]
    hessian = np.stack(
        [gradient(model, e[None], X, y, thirds[2])[0] - c for e in np.eye(model.num_params)],
        axis=1,
    )
    adapted = w - alpha * gradient(model, w, X, y, thirds[0])
    outer = gradient(model, adapted, X, y, thirds[1])[0]
    exact = w[0] - beta * (outer - alpha * hessian @ outer)
    hf, fo = w.copy(), w.copy()
    meta_step(model, hf, X, y, mask, alpha, w[0], beta=beta, variant="hf", delta=1e-2)
    meta_step(model, fo, X, y, mask, alpha, w[0], beta=beta, variant="fo")
    np.testing.assert_allclose(hf[0], exact, rtol=1e-9, atol=1e-12)
    assert np.linalg.norm(fo[0] - exact) > 1e-3 * np.linalg.norm(exact - w[0])


def test_per_fedavg_hessian_free_error_shrinks_as_delta_squared():
    """On a smooth loss that is not quadratic (softmax regression), the HF step's distance from
    its delta -> 0 limit falls by ~100 when delta falls by 10: a central difference is
    second-order accurate (a one-sided difference, or a wrong divisor, is not)."""
    gen = np.random.default_rng(6)
    model = SoftmaxRegression(4, 3)
    X, y = gen.standard_normal((1, 12, 4)), gen.integers(0, 3, (1, 12))
    mask = np.ones((1, 12))
    w = gen.standard_normal((1, model.num_params))

    def step(delta):
        W = w.copy()
        meta_step(model, W, X, y, mask, 0.5, w[0], beta=1.0, variant="hf", delta=delta)
        return W[0]

    limit = step(1e-5)
    errors = [np.linalg.norm(step(d) - limit) for d in (1e-1, 1e-2)]
    assert 50 < errors[0] / errors[1] < 200


def test_per_fedavg_hf_is_not_fo_through_the_engine(personal_dir):
    partition = load_partition(personal_dir)
    runs = [run(partition, algo="per-fedavg", variant=v, batch_size=12)[-1] for v in ("fo", "hf")]
    assert not np.allclose(runs[0].state.params, runs[1].state.params)
    assert 0 <= runs[1].record["personal_accuracy"] <= 1


def test_per_fedavg_refuses_an_unknown_variant(personal_dir):
    with pytest.raises(FLError, match="must be fo or hf"):
        run(load_partition(personal_dir), algo="per-fedavg", variant="so")
