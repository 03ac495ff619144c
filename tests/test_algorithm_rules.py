"""The papers' update rules, written out here in plain NumPy, against the library.

Most tests run a few rounds of `run_rounds` with full participation and full-batch local steps
(the batch is wider than every shard, so a local step is one gradient step on the whole shard and
the order of the rows does not matter) and replay them client by client with the rule from the
paper: the two must agree to rounding error. Hyperparameters are chosen away from the values
where a wrong rule would coincide with the right one (server lr != 1, T != 1, unequal shard sizes).
"""

import numpy as np
import pytest

from flcli.algorithms import robust
from flcli.algorithms.base import ClientUpdates, Context, ServerState
from flcli.algorithms.registry import make_algorithm
from flcli.algorithms.work import LocalSpec
from flcli.api import simulate
from flcli.configfile import train_config
from flcli.data.holdout import hold_out_proxy
from flcli.data.store import load_partition
from flcli.engine.cohort import train_cohort
from flcli.engine.local import Cohort
from flcli.models.linear import SoftmaxRegression

FULL_BATCH = 10_000  # wider than any shard: every local step is full-batch gradient descent
EXACT = 1e-12


def model_of(partition):
    return SoftmaxRegression(partition.num_features, partition.num_classes)


def run(partition, **settings):
    config = train_config(batch_size=FULL_BATCH, **settings)
    return list(simulate(partition, config))


def shard(partition, k):
    """Client k's training rows as a batch of one: X [1, n, D], y [1, n]."""
    rows = slice(partition.offsets[k], partition.offsets[k + 1])
    return partition.x_train[rows][None], partition.y_train[rows][None]


def loss_and_gradient(model, w, X, Y):
    loss, grad = model.loss_grad(w[None], X, Y, np.ones(Y.shape))
    return loss[0], grad[0]


def gradient_descent(model, start, X, Y, steps, lr, pull=None):
    """`steps` full-batch steps w <- w - lr (grad F(w) + pull(w)) from `start`."""
    w = start.copy()
    for _ in range(steps):
        extra = 0.0 if pull is None else pull(w)
        w = w - lr * (loss_and_gradient(model, w, X, Y)[1] + extra)
    return w


def local_models(partition, w, steps, lr, pull=None):
    model = model_of(partition)
    return np.array(
        [
            gradient_descent(model, w, *shard(partition, k), steps, lr, pull)
            for k in range(partition.num_clients)
        ]
    )


def fedavg_step(partition, w, steps, lr):
    """McMahan et al.'s FedAvg: the sample-weighted mean of the clients' local models."""
    return np.average(local_models(partition, w, steps, lr), axis=0, weights=partition.client_sizes)


def assert_exact(actual, expected, what):
    error = np.abs(np.asarray(actual) - np.asarray(expected)).max()
    assert error <= EXACT, f"{what}: max |library - reference| = {error:.3e}"


def test_fedavgm_server_momentum_accumulates_the_mean_update_and_steps_by_server_lr(
    dirichlet_dir,
):
    """FedAvgM (Hsu et al. 2019): v <- beta v + Delta_t; w <- w + eta_s v (v not an average)."""
    partition = load_partition(dirichlet_dir)
    lr, steps, eta, beta = 0.3, 2, 0.7, 0.6
    results = run(
        partition,
        algo="fedavgm",
        rounds=3,
        local_epochs=steps,
        lr=lr,
        server_lr=eta,
        server_momentum=beta,
    )
    w = results[0].state.params
    v = np.zeros_like(w)
    for result in results[1:]:
        delta = fedavg_step(partition, w, steps, lr) - w
        v = beta * v + delta
        w = w + eta * v
        assert_exact(result.state.params, w, f"fedavgm round {result.record['round']}")
        assert_exact(result.state.extra["momentum"], v, "fedavgm momentum")


def test_fedprox_local_steps_pull_towards_the_global_model_by_mu(dirichlet_dir):
    """FedProx (Li et al. 2020): w <- w - eta (grad F_k(w) + mu (w - w_t)); server: FedAvg."""
    partition = load_partition(dirichlet_dir)
    lr, steps, mu = 0.3, 3, 0.7  # from the second step on, w != w_t and the pull matters
    results = run(partition, algo="fedprox", mu=mu, rounds=3, local_epochs=steps, lr=lr)
    w = results[0].state.params
    for result in results[1:]:
        local = local_models(partition, w, steps, lr, pull=lambda u, w=w: mu * (u - w))
        w = np.average(local, axis=0, weights=partition.client_sizes)
        assert_exact(result.state.params, w, f"fedprox round {result.record['round']}")


def test_ditto_personal_models_persist_across_rounds(personal_dir):
    """Ditto (Li et al. 2021): v_k <- v_k - eta (grad F_k(v_k) + lambda (v_k - w_t)), v_k kept
    from round to round (starting at the initial model); w follows FedAvg."""
    partition = load_partition(personal_dir)
    lr, steps, lam, personal_steps = 0.3, 2, 0.5, 3
    results = run(
        partition,
        algo="ditto",
        lam=lam,
        personal_epochs=personal_steps,
        rounds=3,
        local_epochs=steps,
        lr=lr,
    )
    model = model_of(partition)
    w = results[0].state.params
    personal = np.tile(w, (partition.num_clients, 1))
    for result in results[1:]:
        for k in range(partition.num_clients):
            personal[k] = gradient_descent(
                model,
                personal[k],
                *shard(partition, k),
                personal_steps,
                lr,
                pull=lambda v, w=w: lam * (v - w),
            )
        w = fedavg_step(partition, w, steps, lr)
        round = result.record["round"]
        assert_exact(result.state.params, w, f"ditto global model, round {round}")
        assert_exact(result.state.extra["personal"], personal, f"ditto personal, round {round}")


def test_fedavglu_fine_tunes_the_new_global_model(personal_dir):
    """FedAvgLU: after the FedAvg step w_t -> w_{t+1}, each client fine-tunes w_{t+1} (not w_t)
    by plain SGD for --personal-epochs; checked on the personal models personalize returns."""
    partition = load_partition(personal_dir)
    model, lr, personal_steps = model_of(partition), 0.3, 3
    config = train_config(algo="fedavglu", lr=lr, personal_epochs=personal_steps)
    context = Context(model=model, num_clients=partition.num_clients, lr=lr)
    fedavglu = make_algorithm("fedavglu", config.algo_args, context)
    ids = np.arange(partition.num_clients)
    cohort = Cohort.of(ids, partition.offsets)
    largest = int(partition.client_sizes.max())

    def train(anchor, work, epochs):
        spec = LocalSpec(epochs=epochs, batch_size=largest, lr=lr)
        return train_cohort(
            model, partition.x_train, partition.y_train, cohort, anchor, spec, 0, 1, work
        )

    generator = np.random.default_rng(0)
    before = ServerState(params=0.05 * generator.normal(size=model.num_params))  # w_t
    after = ServerState(params=0.05 * generator.normal(size=model.num_params))  # w_{t+1}
    state, personal = fedavglu.personalize(before, after, ids, train)
    assert_exact(state.params, after.params, "fedavglu global model")
    expected = local_models(partition, after.params, personal_steps, lr)
    assert_exact(personal, expected, "fedavglu personal models")


def test_fedavglu_personal_accuracy_is_that_of_the_fine_tuned_new_global_model(personal_dir):
    """FedAvgLU through the round loop: each client's personal_accuracy is the accuracy, on its
    local test split, of w_{t+1} fine-tuned on its shard by plain full-batch SGD."""
    partition = load_partition(personal_dir)
    lr, steps, personal_steps = 0.3, 2, 3
    results = run(
        partition,
        algo="fedavglu",
        personal_epochs=personal_steps,
        rounds=3,
        local_epochs=steps,
        lr=lr,
    )
    model = model_of(partition)
    offsets = partition.client_test_offsets
    w = results[0].state.params
    for result in results[1:]:
        w = fedavg_step(partition, w, steps, lr)
        assert_exact(result.state.params, w, "fedavglu global model")
        tuned = local_models(partition, w, personal_steps, lr)
        accuracy = [
            np.mean(
                model.predict(tuned[k], partition.x_client_test[offsets[k] : offsets[k + 1]])
                == partition.y_client_test[offsets[k] : offsets[k + 1]]
            )
            for k in range(partition.num_clients)
        ]
        assert np.array_equal(result.clients["personal_accuracy"], accuracy), (
            result.record["round"],
            result.clients["personal_accuracy"],
            accuracy,
        )


def softmax(logits):
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_feddist_distills_the_average_logits_at_temperature_t_into_the_weighted_average(
    dirichlet_dir,
):
    """FedDF (Lin et al. 2020): start from w = sum n_k w_k / n; teacher t = softmax(mean_k
    f(w_k, x) / T); steps w <- w - lr grad_w mean_x T^2 KL(t || softmax(f(w, x) / T))."""
    partition = load_partition(dirichlet_dir)
    lr, steps, temperature, distill_steps = 0.3, 2, 3.0, 4
    settings = dict(
        algo="feddist",
        rounds=2,
        local_epochs=steps,
        lr=lr,
        temperature=temperature,
        distill_steps=distill_steps,
        proxy_fraction=0.2,
    )
    results = run(partition, **settings)
    # the clients train on what the proxy split leaves them
    kept, x_proxy = hold_out_proxy(partition, 0.2, train_config(**settings).seed)
    d, c = partition.num_features, partition.num_classes

    def logits(w):  # w = [vec(W) (D x C, row-major), b (C)]
        return x_proxy @ w[: d * c].reshape(d, c) + w[d * c :]

    w = results[0].state.params
    for result in results[1:]:
        local = local_models(kept, w, steps, lr)
        teacher = softmax(np.mean([logits(m) for m in local], axis=0) / temperature)
        w = np.average(local, axis=0, weights=kept.client_sizes)
        for _ in range(distill_steps):
            # d/d logits of T^2 KL(t || softmax(logits / T)), averaged over the proxy rows
            residual = temperature * (softmax(logits(w) / temperature) - teacher) / len(x_proxy)
            w = w - lr * np.concatenate([(x_proxy.T @ residual).ravel(), residual.sum(axis=0)])
        assert_exact(result.state.params, w, f"feddist round {result.record['round']}")


def test_qfedavg_matches_the_q_ffl_rule_with_unequal_clients(dirichlet_dir):
    """q-FedAvg (Li et al. 2020): F_k = loss of w_t on client k's data, Dw_k = L (w_t - w_k),
    w <- w - sum p_k F_k^q Dw_k / sum p_k (q F_k^(q-1) ||Dw_k||^2 + L F_k^q), L = 1/lr."""
    partition = load_partition(dirichlet_dir)
    lr, steps, q = 0.3, 3, 1.5
    results = run(partition, algo="qfedavg", q=q, rounds=3, local_epochs=steps, lr=lr)
    model, L = model_of(partition), 1 / lr
    sizes = partition.client_sizes
    assert len(set(sizes.tolist())) > 1  # unequal p_k
    p = sizes / sizes.sum()
    w = results[0].state.params
    for result in results[1:]:
        losses = np.array(
            [
                loss_and_gradient(model, w, *shard(partition, k))[0]
                for k in range(partition.num_clients)
            ]
        )
        F = losses + 1e-10  # as the paper's reference code
        dw = L * (w - local_models(partition, w, steps, lr))
        numerator = (p * F**q) @ dw
        denominator = p @ (q * F ** (q - 1) * (dw * dw).sum(axis=1) + L * F**q)
        w = w - numerator / denominator
        assert_exact(result.state.params, w, f"qfedavg round {result.record['round']}")


def test_qfedavg_server_step_weighs_clients_by_their_sample_share_in_a_hand_computed_case():
    """q-FedAvg's server step with p = (1/4, 3/4), q = 2, L = 1/0.5 = 2, F = (1, 2)."""
    context = Context(model=None, num_clients=2, lr=0.5)
    qffl = make_algorithm("qfedavg", {"q": 2.0}, context)
    updates = ClientUpdates(
        ids=np.array([0, 1]),
        deltas=np.array([[1.0], [2.0]]),
        num_samples=np.array([1, 3]),
        num_steps=np.array([1, 1]),
        losses=np.array([1.0, 2.0]),
    )
    new = qffl.server_update(qffl.server_init(np.zeros(1), 2), updates)
    # Dw = -2 delta = [-2], [-4]; F^q Dw = [-2], [-16]; h = 2 F ||Dw||^2 + 2 F^2 = 10, 72
    # w = (1/4 * 2 + 3/4 * 16) / (1/4 * 10 + 3/4 * 72) = 12.5 / 56.5
    assert new.params == pytest.approx([25 / 113], abs=1e-9)


def test_weighted_geometric_median_in_one_dimension_is_the_weighted_median():
    """RFA (Pillutla et al. 2022): argmin_v sum_k a_k |v - x_k|; in 1-D, the weighted median."""
    X = np.array([[0.0], [1.0], [4.0]])
    assert robust.geometric_median(X) == pytest.approx([1.0], abs=1e-5)
    assert robust.geometric_median(X, np.array([1.0, 1.0, 3.0])) == pytest.approx([4.0], abs=1e-5)
    assert robust.geometric_median(X, np.array([3.0, 1.0, 1.0])) == pytest.approx([0.0], abs=1e-5)


def test_geometric_median_weights_count_as_repeated_points_and_satisfy_optimality():
    """RFA: a client of weight a_k is a_k copies of its update; at the optimum the weighted unit
    vectors sum to zero, sum_k a_k (v - x_k) / ||v - x_k|| = 0."""
    X = np.random.default_rng(0).normal(size=(6, 3))
    weights = np.array([1, 4, 2, 1, 3, 1])
    weighted = robust.geometric_median(X, weights.astype(float))
    assert_exact(weighted, robust.geometric_median(np.repeat(X, weights, axis=0)), "repeats")
    precise = robust.geometric_median(X, weights.astype(float), max_iter=10_000, tol=1e-15)
    unit = (precise - X) / np.linalg.norm(precise - X, axis=1, keepdims=True)
    assert np.linalg.norm(weights @ unit) < 1e-6
    assert np.linalg.norm(np.ones(6) @ unit) > 0.1  # not the unweighted optimum


def test_geomed_aggregator_weighs_clients_by_their_sample_counts(dirichlet_dir):
    """FedAvg with the geometric-median aggregator (RFA): w <- w + GM_a(Delta_k), a_k = n_k,
    i.e. the plain geometric median of every client's update repeated n_k times."""
    partition = load_partition(dirichlet_dir)
    lr, steps = 0.3, 2
    results = run(partition, aggregator="geomed", rounds=2, local_epochs=steps, lr=lr)
    sizes = partition.client_sizes
    assert len(set(sizes.tolist())) > 1
    w = results[0].state.params
    for result in results[1:]:
        deltas = local_models(partition, w, steps, lr) - w
        w = w + robust.geometric_median(np.repeat(deltas, sizes, axis=0))
        assert_exact(result.state.params, w, f"geomed round {result.record['round']}")


@pytest.mark.parametrize("algo", ["fedavg", "scaffold"])
def test_uniform_server_weighting_averages_the_clients_updates_equally(dirichlet_dir, algo):
    """--server-weighting uniform: w_{t+1} = w_t + (1/K) sum_k (w_k - w_t), whatever the shard
    sizes (FedAvg from the paper's uniform mean; SCAFFOLD's model step in its first round, where
    the control variates are still 0)."""
    partition = load_partition(dirichlet_dir)
    steps, lr = 2, 0.3
    results = run(
        partition, algo=algo, rounds=1, local_epochs=steps, lr=lr, server_weighting="uniform"
    )
    w0 = results[0].state.params
    uniform = local_models(partition, w0, steps, lr).mean(axis=0)
    assert_exact(results[1].state.params, uniform, f"{algo} with uniform server weighting")
    weighted = fedavg_step(partition, w0, steps, lr)
    assert np.abs(weighted - uniform).max() > 1e-3  # the shards differ: the weighting matters


class Quadratic:
    """A stand-in student whose distillation loss is 0.5 ||w||^2 (gradient w), whatever the rows."""

    def distill_loss_grad(self, w, x, targets, temperature):
        return 0.5 * float(w @ w), w.copy()


def test_feddist_adam_student_first_two_steps_by_hand():
    """Kingma & Ba 2015, bias-corrected: with m, v = 0 the first step is lr * g / |g| per
    coordinate whatever the gradient's scale; the second is worked out below."""
    from flcli.algorithms.feddf import Adam, AdamStudent

    student = AdamStudent(Adam(0.1), batch=100, patience=5, max_steps=2, seed=3)
    x, targets = np.zeros((10, 1)), np.zeros((10, 2))
    w = student.distill(Quadratic(), np.array([1.0, -2.0]), x, targets, 1.0, round=1)
    # step 1: g = (1, -2), m = 0.1 g, v = 0.001 g^2, m/(1-0.9) = g, v/(1-0.999) = g^2
    w1 = np.array([1.0 - 0.1, -2.0 + 0.1])
    # step 2: g = w1
    m = 0.9 * np.array([0.1, -0.2]) + 0.1 * w1
    v = 0.999 * np.array([0.001, 0.004]) + 0.001 * w1**2
    w2 = w1 - 0.1 * (m / (1 - 0.9**2)) / (np.sqrt(v / (1 - 0.999**2)) + 1e-8)
    np.testing.assert_allclose(w, w2, rtol=1e-7)
    np.testing.assert_allclose(w2, [0.8004122, -1.8001669], atol=1e-6)


def test_feddist_adam_student_stops_early_and_keeps_the_best_validation_student():
    """Training rows teach p(class 0) = 0.9, validation rows 0.5; the student starts at p = 0.1,
    so the validation KL falls, then rises once p passes 0.5: the student kept is the epoch-end
    one with the lowest validation KL, not the last one."""
    from flcli.algorithms.feddf import Adam, AdamStudent
    from flcli.models.linear import SoftmaxRegression
    from flcli.rng import Purpose, rng

    model, n, seed, round = SoftmaxRegression(1, 2), 10, 4, 7
    valid = rng(seed, Purpose.PROXY, round, 0).permutation(n)[:2]  # 20% addressed by the round
    x = np.ones((n, 1))
    targets = np.tile([0.9, 0.1], (n, 1))
    targets[valid] = [0.5, 0.5]
    train = np.setdiff1d(np.arange(n), valid)
    start = np.array([-2.2, 0.0, 0.0, 0.0])  # [W (1 x 2), b]: logits (-2.2, 0), p0 ~ 0.1
    adam, patience = Adam(0.1), 3
    student = AdamStudent(adam, batch=n, patience=patience, max_steps=1000, seed=seed)
    kept = student.distill(model, start, x, targets, 1.0, round)

    def kl(w, rows):
        return model.distill_loss_grad(w, x[rows], targets[rows], 1.0)[0]

    # replay: one full step over the training rows per epoch, then one evaluation
    w, m, v, t = start, np.zeros(4), np.zeros(4), 0
    best, best_kl, waited, seen = start, kl(start, valid), 0, [kl(start, valid)]
    while waited < patience:
        t += 1
        _, grad = model.distill_loss_grad(w, x[train], targets[train], 1.0)
        w, m, v = adam.step(w, grad, m, v, t)
        seen.append(kl(w, valid))
        if seen[-1] < best_kl:
            best, best_kl, waited = w, seen[-1], 0
        else:
            waited += 1
    np.testing.assert_allclose(kept, best, rtol=1e-12)
    assert seen[1] < seen[0] and seen[-1] > min(seen)  # the validation KL fell, then rose
    assert kl(kept, valid) < kl(w, valid) and not np.allclose(kept, w)


def test_feddist_adam_student_gives_the_same_numbers_on_both_backends(dirichlet_dir):
    partition = load_partition(dirichlet_dir)
    settings = dict(
        algo="feddist", rounds=2, student="adam", student_lr=0.01, student_batch=16, patience=2
    )
    vectorized = run(partition, backend="vectorized", **settings)
    serial = run(partition, backend="serial", **settings)
    sgd = run(partition, backend="vectorized", algo="feddist", rounds=2)
    for a, b in zip(vectorized, serial, strict=True):
        np.testing.assert_array_equal(a.state.params, b.state.params)
    assert not np.allclose(vectorized[-1].state.params, sgd[-1].state.params)


def test_feddist_student_adam_runs_through_the_cli(cli, iid_dir, tmp_path):
    out = tmp_path / "adam"
    result = cli(
        "train", iid_dir, "--algo", "feddist", "--algo-arg", "student=adam",
        "--algo-arg", "patience=2", "--rounds", "2", "--out", out,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert (out / "rounds.csv").exists()
    refused = cli(
        "train", iid_dir, "--algo", "feddist", "--algo-arg", "student=lbfgs",
        "--out", tmp_path / "no",
    )  # fmt: skip
    assert refused.code == 2 and "sgd or adam" in refused.err


def test_feddist_adam_student_resumes_exactly(cli, dirichlet_dir, tmp_path):
    """The round that addresses the validation split and the minibatches is kept in the server
    state, so a run cut after round 2 and resumed gives the uninterrupted run's rounds.csv."""
    import json

    import pandas as pd

    from flcli import api
    from flcli.config import TrainConfig

    args = [dirichlet_dir, "--algo", "feddist", "--rounds", 4, "--clients-per-round", 4]
    args += ["--algo-arg", "student=adam", "--algo-arg", "student_batch=16"]
    args += ["--algo-arg", "student_lr=0.01", "--seed", 3]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert cli("train", *args, "--out", whole).code == 0
    config = TrainConfig.from_dict(json.loads((whole / "run.json").read_text())["config"])
    rounds = api.prepare_training(dirichlet_dir, config, cut).rounds()
    for record in rounds:
        if record["round"] == 2:
            break
    rounds.close()
    resumed = cli("train", *args, "--out", cut, "--resume")
    assert resumed.code == 0, resumed.err

    def table(run_dir):
        return pd.read_csv(run_dir / "rounds.csv").drop(columns=["elapsed_s"])

    pd.testing.assert_frame_equal(table(whole), table(cut), check_exact=True)
