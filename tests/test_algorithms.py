"""Each algorithm against a property only its correct maths satisfies."""

from dataclasses import replace

import numpy as np
import pytest

from flcli import api
from flcli.algorithms.base import ClientUpdates, Context
from flcli.algorithms.feddf import distill, ensemble_targets
from flcli.algorithms.registry import ALGORITHMS, make_algorithm
from flcli.algorithms.work import LocalSpec, correction_at
from flcli.api import simulate
from flcli.configfile import train_config
from flcli.data.store import Partition, load_partition
from flcli.engine.cohort import train_cohort
from flcli.engine.local import Cohort
from flcli.engine.stages import sample_clients
from flcli.models.linear import SoftmaxRegression

HEAD_BODY = ("fedper", "lg-fedavg", "fedrep", "fedbabu")
RANDOM_INIT = ("ifca",)  # k distinct initial models: softmax starts at zeros, the MLP draws


def model_of(partition):
    return SoftmaxRegression(partition.num_features, partition.num_classes)


def run(partition, **overrides):
    config = train_config(**overrides)
    return list(simulate(partition, config))


def params(results):
    return np.stack([r.state.params for r in results])


def algorithm(name, num_clients=2, lr=0.1, model=None, **hyperparameters):
    config = train_config(algo=name, lr=lr, **hyperparameters)
    context = Context(model=model, num_clients=num_clients, lr=lr)
    return make_algorithm(name, config.algo_args, context)


def updates(ids, deltas, samples, steps, losses=None):
    return ClientUpdates(
        ids=np.array(ids),
        deltas=np.array(deltas, dtype=float),
        num_samples=np.array(samples),
        num_steps=np.array(steps),
        losses=None if losses is None else np.array(losses, dtype=float),
    )


@pytest.mark.parametrize("name", sorted(n for n, info in ALGORITHMS.items() if info.factory))
def test_every_algorithm_gives_the_same_numbers_on_both_backends(personal_dir, name):
    partition = load_partition(personal_dir)
    settings = dict(
        algo=name,
        rounds=3,
        local_epochs=2,
        batch_size=7,
        lr=0.2,
        fraction=0.7,
        seed=4,
        stragglers=0.5,
        attack="labelflip" if name in ("ditto", "fedavglu") else "signflip",
        malicious=0.2,
        dropout=0.2,
    )
    if name in HEAD_BODY + RANDOM_INIT:  # a body and a head, or random inits: the MLP
        settings.update(model="mlp", hidden=(8,))
    if ALGORITHMS[name].reads_clients is None:  # it takes a robust aggregator
        settings["aggregator"] = "trimmed-mean"
    if ALGORITHMS[name].asynchronous:  # no synchronous rounds' faults: slow devices instead
        for key in ("stragglers", "attack", "malicious", "dropout"):
            del settings[key]
        settings["system"] = "lognormal:sigma=1"
    vectorized = run(partition, backend="vectorized", **settings)
    serial = run(partition, backend="serial", **settings)
    for a, b in zip(vectorized, serial, strict=True):
        assert np.allclose(a.state.params, b.state.params, rtol=0, atol=1e-9)
        assert a.state.extra.keys() == b.state.extra.keys()
        for key in a.state.extra:
            assert np.allclose(a.state.extra[key], b.state.extra[key], rtol=0, atol=1e-9)
        for key, value in a.record.items():
            if key != "elapsed_s":
                assert value == pytest.approx(b.record[key], abs=1e-9), key
    assert not np.allclose(vectorized[-1].state.params, vectorized[0].state.params)


def test_fedsgd_is_centralized_full_batch_gradient_descent(iid_dir):
    partition = load_partition(iid_dir)
    results = run(partition, algo="fedsgd", server_lr=0.7, rounds=3, local_epochs=4, batch_size=5)
    model = model_of(partition)
    x, y = partition.x_train[None], partition.y_train[None]
    w = np.zeros(model.num_params)
    for round in (1, 2, 3):
        _, grad = model.loss_grad(w[None], x, y, np.ones(y.shape))
        w = w - 0.7 * grad[0]
        assert np.allclose(results[round].state.params, w, rtol=0, atol=1e-12)


def test_fedprox_with_mu_0_is_fedavg_and_larger_mu_keeps_local_models_closer(dirichlet_dir):
    partition = load_partition(dirichlet_dir)
    settings = dict(rounds=3, local_epochs=2, fraction=0.5, seed=1)
    fedavg = params(run(partition, algo="fedavg", **settings))
    assert np.array_equal(params(run(partition, algo="fedprox", mu=0.0, **settings)), fedavg)
    assert not np.allclose(params(run(partition, algo="fedprox", mu=0.5, **settings)), fedavg)

    model = model_of(partition)
    w = fedavg[1]
    cohort = Cohort.of(np.arange(partition.num_clients), partition.offsets)
    spec = LocalSpec(epochs=3, batch_size=8, lr=0.3)
    drift = []
    for mu in (0.0, 0.1, 1.0):
        work = algorithm("fedprox", mu=mu).client_work(None, cohort.ids)
        local = train_cohort(
            model, partition.x_train, partition.y_train, cohort, w, spec, 0, 1, work
        )
        drift.append(np.linalg.norm(local.params - w, axis=1))
    assert (drift[0] > drift[1]).all() and (drift[1] > drift[2]).all()


def copies_of_one_shard(source: Partition, clients: int, rows: int = 60) -> Partition:
    x, y = source.x_train[:rows], source.y_train[:rows]
    offsets = np.arange(clients + 1) * rows
    meta = {**source.meta, "num_clients": clients}
    return replace(
        source,
        meta=meta,
        x_train=np.tile(x, (clients, 1)),
        y_train=np.tile(y, clients),
        offsets=offsets,
    )


def test_scaffold_corrections_vanish_when_every_client_holds_the_same_data(iid_dir):
    same = copies_of_one_shard(load_partition(iid_dir), clients=4)
    settings = dict(rounds=4, local_epochs=3, batch_size=60, lr=0.5)  # full batches: same path
    scaffold = run(same, algo="scaffold", **settings)
    assert np.abs(scaffold[-1].state.extra["c"]).max() > 1e-3  # the variates are not all zero
    assert np.allclose(params(scaffold), params(run(same, algo="fedavg", **settings)), atol=1e-10)
    skewed = load_partition(iid_dir)
    assert not np.allclose(
        params(run(skewed, algo="scaffold", **settings)),
        params(run(skewed, algo="fedavg", **settings)),
        atol=1e-4,
    )


def test_scaffold_option_2_variate_after_one_full_batch_step_is_the_clients_gradient(dirichlet_dir):
    partition = load_partition(dirichlet_dir)
    results = run(partition, algo="scaffold", rounds=1, local_epochs=1, batch_size=10_000, lr=0.3)
    model = model_of(partition)
    w0 = results[0].state.params
    grads = []
    for k in range(partition.num_clients):
        rows = slice(partition.offsets[k], partition.offsets[k + 1])
        x, y = partition.x_train[rows][None], partition.y_train[rows][None]
        grads.append(model.loss_grad(w0[None], x, y, np.ones(y.shape))[1][0])
    state = results[1].state
    assert np.allclose(state.extra["client_c"], grads, atol=1e-10)
    assert np.allclose(state.extra["c"], np.mean(grads, axis=0), atol=1e-10)


def test_scaffold_matches_the_papers_algorithm_over_rounds_of_partial_participation(
    dirichlet_dir,
):
    """Option II, written out here client by client: K = 3 full-batch corrected steps, 3 of 8
    clients a round, c moved by 1/N of the variates' changes. Partial participation and K > 1 are
    where a wrong sign, a missing K or 1/|S| instead of 1/N would show."""
    partition = load_partition(dirichlet_dir)
    settings = dict(rounds=4, clients_per_round=3, local_epochs=3, batch_size=10_000, lr=0.3)
    results = run(partition, algo="scaffold", seed=4, **settings)
    model, lr, K, N = model_of(partition), 0.3, 3, partition.num_clients
    x = results[0].state.params
    c, client_c = np.zeros_like(x), np.zeros((N, x.size))
    for result in results[1:]:
        sampled = sample_clients(4, result.record["round"], N, 3)
        deltas, sizes, variate_change = [], [], np.zeros_like(x)
        for i in sampled:
            rows = slice(partition.offsets[i], partition.offsets[i + 1])
            X, Y = partition.x_train[rows][None], partition.y_train[rows][None]
            y = x.copy()
            for _ in range(K):
                gradient = model.loss_grad(y[None], X, Y, np.ones(Y.shape))[1][0]
                y = y - lr * (gradient + c - client_c[i])
            new = client_c[i] - c + (x - y) / (K * lr)
            variate_change += new - client_c[i]
            client_c[i] = new
            deltas.append(y - x)
            sizes.append(Y.size)
        x = x + np.average(deltas, axis=0, weights=sizes)
        c = c + variate_change / N
        assert np.allclose(result.state.params, x, rtol=0, atol=1e-10)
        assert np.allclose(result.state.extra["c"], c, rtol=0, atol=1e-10)
        assert np.allclose(result.state.extra["client_c"], client_c, rtol=0, atol=1e-10)


def test_fednova_equal_steps_is_fedavg_and_unequal_steps_match_a_hand_computed_case(iid_dir):
    partition = load_partition(iid_dir)
    settings = dict(rounds=3, local_epochs=2, batch_size=16, seed=2)  # 143/144 rows: 9 steps each
    assert np.allclose(
        params(run(partition, algo="fednova", **settings)),
        params(run(partition, algo="fedavg", **settings)),
        rtol=0,
        atol=1e-12,
    )
    nova = algorithm("fednova")
    state = nova.server_init(np.zeros(2), 2)
    # p = (1/4, 3/4), tau = (1, 4): tau_eff = 13/4; step = 13/4 (1/4 [1, 0] + 3/4 [0, 2] / 4)
    new = nova.server_update(state, updates([0, 1], [[1, 0], [0, 2]], [1, 3], [1, 4]))
    assert np.allclose(new.params, [0.8125, 1.21875], rtol=0, atol=1e-15)


def test_server_sgd_with_lr_1_and_no_momentum_is_fedavg(dirichlet_dir):
    partition = load_partition(dirichlet_dir)
    settings = dict(rounds=3, fraction=0.5, seed=3)
    fedavgm = run(partition, algo="fedavgm", server_lr=1.0, server_momentum=0.0, **settings)
    assert np.allclose(params(fedavgm), params(run(partition, **settings)), rtol=0, atol=1e-12)
    with_momentum = run(partition, algo="fedavgm", server_momentum=0.9, **settings)
    assert not np.allclose(params(with_momentum), params(fedavgm))


def test_one_step_of_the_adaptive_server_optimizers_matches_hand_computed_updates():
    hyper = dict(server_lr=0.5, beta1=0.9, tau=0.1)
    # Delta = (1 [2, -1] + 3 [2, -1]) / 4 = [2, -1]; m = 0.1 Delta = [0.2, -0.1]; v0 = tau^2
    step = updates([0, 1], [[2, -1], [2, -1]], [1, 3], [5, 5])
    # adam: v = 0.99 * 0.01 + 0.01 * [4, 1] = [0.0499, 0.0199]
    # w = 0.5 * [0.2 / (sqrt(0.0499) + 0.1), -0.1 / (sqrt(0.0199) + 0.1)]
    expected = {
        "fedadam": [0.30923077, -0.20741091],
        # adagrad: v = 0.01 + [4, 1] = [4.01, 1.01]
        "fedadagrad": [0.04756246, -0.04524938],
        # yogi: v = 0.01 - 0.01 [4, 1] sign(0.01 - [4, 1]) = [0.05, 0.02]
        "fedyogi": [0.30901699, -0.20710678],
    }
    for name, result in expected.items():
        extra = {} if name == "fedadagrad" else {"beta2": 0.99}
        opt = algorithm(name, **hyper, **extra)
        new = opt.server_update(opt.server_init(np.zeros(2), 2), step)
        assert np.allclose(new.params, result, rtol=0, atol=1e-7), name


@pytest.mark.parametrize("name", ["fedadam", "fedyogi", "fedadagrad"])
def test_the_adaptive_server_optimizers_carry_their_moments_from_round_to_round(name):
    """Three rounds of Reddi et al.'s Algorithm 2, written out here: m and v persist."""
    beta1, beta2, tau, server_lr = 0.9, 0.99, 0.1, 0.5
    extra = {} if name == "fedadagrad" else {"beta2": beta2}
    opt = algorithm(name, server_lr=server_lr, beta1=beta1, tau=tau, **extra)
    state = opt.server_init(np.zeros(2), 2)
    w, m, v = np.zeros(2), np.zeros(2), np.full(2, tau**2)
    for deltas in ([[2, -1], [2, -1]], [[-1, 3], [0, 1]], [[0.5, 0.5], [-2, 0]]):
        state = opt.server_update(state, updates([0, 1], deltas, [1, 3], [5, 5]))
        delta = np.average(deltas, axis=0, weights=[1, 3])
        m = beta1 * m + (1 - beta1) * delta
        if name == "fedadam":
            v = beta2 * v + (1 - beta2) * delta**2
        elif name == "fedyogi":
            v = v - (1 - beta2) * delta**2 * np.sign(v - delta**2)
        else:
            v = v + delta**2
        w = w + server_lr * m / (np.sqrt(v) + tau)
        assert np.allclose(state.params, w, rtol=0, atol=1e-12)


def test_feddyn_two_clients_two_rounds_by_hand():
    dyn = algorithm("feddyn", alpha_dyn=0.5)
    state = dyn.server_init(np.zeros(2), 2)
    work = dyn.client_work(state, np.array([0, 1]))
    W = np.ones((2, 2))
    # alpha (w - w_0) - g_k with g_k = 0
    assert np.allclose(correction_at(work, W, state.params, work.inputs, work.shift), 0.5 * W)
    # round 1, both clients: g = -alpha delta; h = -alpha/2 ([1, 0] + [0, 2]) = [-0.25, -0.5];
    # w_1 = mean of local models [0.5, 1] - h / alpha = [1, 2]
    state = dyn.server_update(state, updates([0, 1], [[1, 0], [0, 2]], [5, 7], [3, 3]))
    assert np.allclose(state.extra["client_grad"], [[-0.5, 0], [0, -1]])
    assert np.allclose(state.extra["h"], [-0.25, -0.5])
    assert np.allclose(state.params, [1, 2])
    # round 2, client 0 alone: its correction at w = w_1 is -g_0 = [0.5, 0]
    work = dyn.client_work(state, np.array([0]))
    at_w1 = correction_at(work, state.params[None], state.params, work.inputs, work.shift)
    assert np.allclose(at_w1, [[0.5, 0]])
    # local model [2, 3]; g_0 = [-0.5, 0] - 0.5 [1, 1]; h = h - 0.5/2 [1, 1] = [-0.5, -0.75];
    # w_2 = [2, 3] - h / 0.5 = [3, 4.5]; client 1's state is untouched
    state = dyn.server_update(state, updates([0], [[1, 1]], [5], [3]))
    assert np.allclose(state.extra["client_grad"], [[-1, -0.5], [0, -1]])
    assert np.allclose(state.extra["h"], [-0.5, -0.75])
    assert np.allclose(state.params, [3, 4.5])


def test_qfedavg_with_q_0_is_fedavg(dirichlet_dir):
    partition = load_partition(dirichlet_dir)
    settings = dict(rounds=3, fraction=0.5, seed=3)
    qffl = run(partition, algo="qfedavg", q=0.0, **settings)
    assert np.allclose(params(qffl), params(run(partition, **settings)), rtol=0, atol=1e-10)


def test_larger_q_raises_the_worst_clients_accuracy_on_a_skewed_partition(tmp_path):
    api.partition(
        tmp_path / "p", dataset="digits", clients=10, scheme="dirichlet", alpha=0.1, seed=0
    )
    partition = load_partition(tmp_path / "p")  # clients of 25 to 230 rows, 1 to 9 labels
    settings = dict(algo="qfedavg", rounds=10, local_epochs=1, batch_size=10_000, lr=0.5)
    last = [run(partition, q=q, **settings)[-1].record for q in (0, 1, 5)]
    p10 = [record["client_accuracy_p10"] for record in last]
    assert p10[0] < p10[1] < p10[2] and p10[2] > p10[0] + 0.03, p10
    assert last[2]["client_accuracy_std"] < last[0]["client_accuracy_std"]


def test_qfedavg_weighs_clients_by_their_loss_to_the_power_q():
    qffl = algorithm("qfedavg", q=2.0, lr=0.5)  # L = 2
    state = qffl.server_init(np.zeros(1), 2)
    # Dw = L (w - w_k) = [-2], [-4]; Delta = F^2 Dw = [-2], [-16];
    # h = 2 F ||Dw||^2 + 2 F^2 = 8 + 2, 64 + 8; p = (1/2, 1/2): w = 18 / 82
    new = qffl.server_update(state, updates([0, 1], [[1], [2]], [4, 4], [1, 1], [1.0, 2.0]))
    assert np.allclose(new.params, [18 / 82], rtol=0, atol=1e-9)


def test_personal_models_beat_the_global_model_on_dirichlet_digits(personal_dir):
    partition = load_partition(personal_dir)
    for name in ("fedavglu", "ditto"):
        last = run(partition, algo=name, rounds=5, local_epochs=2)[-1].record
        assert last["personal_accuracy"] > last["test_accuracy"] + 0.03, (name, last)


def test_ditto_with_lambda_0_trains_personal_models_as_fedavg_trains_local_ones(personal_dir):
    partition = load_partition(personal_dir)
    results = run(partition, algo="ditto", lam=0.0, rounds=1, local_epochs=2)
    personal = results[1].state.extra["personal"]  # started from the same model, same batches
    mean = personal.T @ partition.client_sizes / partition.client_sizes.sum()
    assert np.allclose(mean, results[1].state.params, rtol=0, atol=1e-12)
    pulled = run(partition, algo="ditto", lam=1.0, rounds=1, local_epochs=2)[1].state
    w0 = results[0].state.params
    assert (
        np.linalg.norm(pulled.extra["personal"] - w0, axis=1)
        < np.linalg.norm(personal - w0, axis=1)
    ).all()


def test_distillation_lowers_the_kl_divergence_to_the_ensemble(dirichlet_dir):
    partition = load_partition(dirichlet_dir)
    model = model_of(partition)
    spec = LocalSpec(epochs=2, batch_size=16, lr=0.3)
    cohort = Cohort.of(np.arange(partition.num_clients), partition.offsets)
    w = np.zeros(model.num_params)
    clients = train_cohort(
        model, partition.x_train, partition.y_train, cohort, w, spec, 0, 1
    ).params
    proxy = partition.x_test
    # for linear models the ensemble's mean logits are those of the uniform mean of the clients'
    # parameters; FedDF starts from the sample-weighted mean, which differs on skewed sizes
    average = partition.client_sizes @ clients / partition.client_sizes.sum()
    for temperature in (1.0, 3.0):
        teacher = ensemble_targets(model, clients, proxy, temperature)
        before, _ = model.distill_loss_grad(average, proxy, teacher, temperature)
        student = distill(model, average, proxy, teacher, temperature, steps=20, lr=0.3)
        after, _ = model.distill_loss_grad(student, proxy, teacher, temperature)
        assert after < 0.8 * before, (temperature, before, after)


def test_distillation_gradient_matches_finite_differences(iid_dir):
    partition = load_partition(iid_dir)
    model = model_of(partition)
    gen = np.random.default_rng(0)
    w = gen.normal(size=model.num_params) * 0.1
    x = partition.x_train[:30]
    targets = gen.dirichlet(np.ones(partition.num_classes), size=30)
    _, grad = model.distill_loss_grad(w, x, targets, 2.0)
    for i in gen.choice(model.num_params, 5, replace=False):
        e = np.zeros_like(w)
        e[i] = 1e-6
        up, _ = model.distill_loss_grad(w + e, x, targets, 2.0)
        down, _ = model.distill_loss_grad(w - e, x, targets, 2.0)
        assert (up - down) / 2e-6 == pytest.approx(grad[i], abs=1e-6)


def test_feddist_holds_the_proxy_set_out_of_every_client(dirichlet_dir):
    partition = load_partition(dirichlet_dir)
    results = run(partition, algo="feddist", proxy_fraction=0.25, rounds=1)
    assert results[1].record["clients"] == partition.num_clients
    sizes = results[0].clients["n"]
    assert (
        sizes.sum() == partition.client_sizes.sum() - np.round(0.25 * partition.client_sizes).sum()
    )


def test_stragglers_are_dropped_by_fedavg_and_used_by_fedprox(iid_dir):
    partition = load_partition(iid_dir)
    settings = dict(rounds=2, stragglers=1.0)  # every client straggles
    dropped = run(partition, algo="fedavg", **settings)
    assert np.array_equal(dropped[-1].state.params, dropped[0].state.params)
    assert dropped[-1].record["bytes_up"] == 0
    kept = run(partition, algo="fedprox", **settings)
    assert not np.allclose(kept[-1].state.params, kept[0].state.params)
    full = run(partition, algo="fedprox", rounds=2)
    assert not np.allclose(kept[-1].state.params, full[-1].state.params)


def test_straggler_budgets_are_below_the_full_one_for_the_chosen_fraction():
    from flcli.engine.stragglers import straggler_budgets

    ids = np.arange(20)
    full = np.full(20, 10)
    budgets, straggling = straggler_budgets(3, 1, ids, full, 0.9)
    assert straggling.sum() == 18
    assert ((budgets[straggling] >= 1) & (budgets[straggling] < 10)).all()
    assert (budgets[~straggling] == 10).all()
    again, _ = straggler_budgets(3, 1, ids, full, 0.9)
    assert np.array_equal(budgets, again)
    assert len(set(budgets[straggling])) > 3  # uniformly random, not one value


def test_client_metrics_describe_the_sampled_clients(dirichlet_dir):
    partition = load_partition(dirichlet_dir)
    results = run(partition, rounds=2, fraction=0.5)
    for result in results[1:]:
        accuracy = result.clients["accuracy"]
        assert len(accuracy) == 4
        record = result.record
        assert record["client_accuracy_mean"] == pytest.approx(accuracy.mean())
        assert record["client_accuracy_std"] == pytest.approx(accuracy.std())
        assert accuracy.min() <= record["client_accuracy_p10"] <= record["client_accuracy_mean"]


def test_client_test_split_is_held_out_of_each_shard(tmp_path, iid_dir):
    out = tmp_path / "p"
    api.partition(out, dataset="digits", clients=5, scheme="iid", seed=0, client_test_fraction=0.25)
    part = load_partition(out)
    plain = load_partition(iid_dir)
    assert not plain.has_client_test
    test_sizes = np.diff(part.client_test_offsets)
    assert (test_sizes == np.round(0.25 * (part.client_sizes + test_sizes))).all()
    assert len(part.y_train) + len(part.y_client_test) == len(plain.y_train)
    assert part.meta["client_test_sizes"] == test_sizes.tolist()
    assert part.meta["params"]["client_test_fraction"] == 0.25
    assert sum(part.meta["client_sizes"]) == len(part.y_train)


def test_feddist_teacher_stays_finite_when_float32_probabilities_underflow(tmp_path):
    """Confident float32 clients give probabilities that underflow to 0: the teacher must come
    from exact log-probabilities, not log(max(p, 1e-300)), which is log 0 = -inf in float32."""
    api.partition(
        tmp_path / "p", dataset="digits", clients=10, scheme="dirichlet", alpha=0.1, seed=0
    )
    config = train_config(
        algo="feddist", dtype="float32", lr=10.0, local_epochs=20, rounds=1, distill_steps=5
    )
    last = list(api.simulate(tmp_path / "p", config))[-1].record
    assert np.isfinite(last["train_loss"])  # it raised RunFailed (diverged) before
