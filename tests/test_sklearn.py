"""The scikit-learn adapter: parameters as flat vectors, local training through the estimator,
and FedAvg with sklearn estimators against the NumPy softmax model."""

import numpy as np
import pytest

from flcli.algorithms.work import LocalSpec, LocalWork
from flcli.api import simulate
from flcli.config import TrainConfig
from flcli.configfile import train_config
from flcli.data.store import load_partition
from flcli.engine.estimators import train_estimators
from flcli.engine.local import Cohort
from flcli.errors import FLError
from flcli.models.registry import make_model


def final_record(partition, **settings):
    config = train_config(**settings)
    return list(simulate(partition, config))[-1].record


def test_sgd_and_logistic_regression_under_fedavg_within_two_points_of_numpy_softmax(iid_dir):
    partition = load_partition(iid_dir)
    softmax = final_record(partition, model="softmax", rounds=10)["test_accuracy"]
    logistic = final_record(partition, model="sklearn:LogisticRegression", rounds=10)
    # a constant step: a decaying schedule would restart every round (see flcli.models.sklearn)
    sgd_args = dict(loss="log_loss", learning_rate="constant", eta0=0.03, alpha=1e-5)
    sgd = final_record(partition, model="sklearn:SGDClassifier", rounds=10, model_args=sgd_args)
    assert softmax > 0.94
    assert logistic["test_accuracy"] >= softmax - 0.02
    assert sgd["test_accuracy"] >= softmax - 0.02


@pytest.mark.parametrize(
    "name", ["SGDClassifier", "LogisticRegression", "MLPClassifier", "Perceptron"]
)
def test_parameters_round_trip_through_the_estimator(name, iid_dir):
    partition = load_partition(iid_dir)
    model = make_model(f"sklearn:{name}", partition.num_features, partition.num_classes)
    w = np.random.default_rng(0).normal(size=model.num_params)
    estimator = model.estimator_at(w)
    assert np.array_equal(model.params_of(estimator), w)
    assert np.array_equal(model.predict(w, partition.x_test), estimator.predict(partition.x_test))


def test_linear_layout_is_coef_then_intercept(iid_dir):
    partition = load_partition(iid_dir)
    model = make_model("sklearn:SGDClassifier", partition.num_features, partition.num_classes)
    w = np.arange(model.num_params, dtype=float)
    estimator = model.estimator_at(w)
    d, c = partition.num_features, partition.num_classes
    assert model.num_params == d * c + c
    assert np.array_equal(estimator.coef_, w[: d * c].reshape(c, d))
    assert np.array_equal(estimator.intercept_, w[d * c :])


def train(model, partition, ids, w, correction=None, epochs=2, lr=0.1, round=1, max_steps=None):
    cohort = Cohort.of(np.array(ids), partition.offsets)
    spec = LocalSpec(epochs=epochs, batch_size=16, lr=lr)
    work = LocalWork(correction=correction, max_steps=max_steps)
    return train_estimators(
        model, partition.x_train, partition.y_train, cohort, w, spec, 0, round, work
    )


def test_clients_train_from_the_global_parameters(iid_dir):
    partition = load_partition(iid_dir)
    model = make_model(
        "sklearn:SGDClassifier",
        partition.num_features,
        partition.num_classes,
        model_args={"learning_rate": "constant", "eta0": 1e-6},
    )
    w = np.random.default_rng(1).normal(size=model.num_params)
    result = train(model, partition, [0, 1], w)
    # a tiny step moves every client only slightly away from where the server put it
    assert np.abs(result.params - w).max() < 1e-3
    assert np.abs(result.params - w).max() > 0
    assert list(result.num_steps) == [2 * n for n in Cohort.of([0, 1], partition.offsets).sizes]


def test_training_is_reproducible_and_a_client_does_not_depend_on_the_cohort(iid_dir):
    partition = load_partition(iid_dir)
    model = make_model("sklearn:MLPClassifier", partition.num_features, partition.num_classes)
    w = model.init(np.random.default_rng(0))
    alone = train(model, partition, [3], w)
    crowd = train(model, partition, [1, 3], w)
    assert np.array_equal(alone.params[0], crowd.params[1])
    assert not np.array_equal(crowd.params[0], crowd.params[1])


def test_the_correction_is_applied_after_each_local_pass(iid_dir):
    partition = load_partition(iid_dir)
    model = make_model("sklearn:SGDClassifier", partition.num_features, partition.num_classes)
    w = np.zeros(model.num_params)
    # a correction that, with lr 1, pulls all the way back to the anchor after every pass
    result = train(model, partition, [0, 2], w, correction=lambda W, anchor: W - anchor, lr=1.0)
    assert np.allclose(result.params, w, atol=1e-12)
    half = train(model, partition, [0], w, lambda W, a: W - a, epochs=1, lr=0.5)
    free = train(model, partition, [0], w, epochs=1)
    assert np.allclose(half.params, free.params / 2)


def test_a_straggler_with_partial_fit_stops_at_its_step_budget_within_a_pass(iid_dir):
    partition = load_partition(iid_dir)
    model = make_model("sklearn:SGDClassifier", partition.num_features, partition.num_classes)
    w = np.zeros(model.num_params)
    n = int(Cohort.of([0], partition.offsets).sizes[0])
    per_pass = -(-n // 16)
    for budget, epochs, samples in ((3, 1, 48), (per_pass + 2, 2, n + 32)):
        result = train(model, partition, [0], w, epochs=epochs, max_steps=np.array([budget]))
        assert list(result.num_steps) == [samples]  # SGDClassifier steps once per sample
    three_steps = train(model, partition, [0], w, epochs=1, max_steps=np.array([3]))
    assert not np.array_equal(three_steps.params, train(model, partition, [0], w, epochs=1).params)


def test_a_straggler_without_partial_fit_does_one_whole_pass(iid_dir):
    partition = load_partition(iid_dir)
    model = make_model("sklearn:LogisticRegression", partition.num_features, partition.num_classes)
    w = np.zeros(model.num_params)
    straggler = train(model, partition, [0], w, epochs=1, max_steps=np.array([1]))
    assert np.array_equal(straggler.params, train(model, partition, [0], w, epochs=1).params)


@pytest.mark.parametrize("algo", ["fednova", "scaffold"])
def test_stragglers_on_an_sklearn_model_do_some_work(iid_dir, algo):
    """Budgets below one pass used to round down to no pass: FedNova's 0 / 0, SCAFFOLD's NaN."""
    partition = load_partition(iid_dir)
    config = TrainConfig(model="sklearn:SGDClassifier", algo=algo, rounds=2, stragglers=0.5)
    records = [r.record for r in simulate(partition, config)]
    assert records[-1]["test_accuracy"] > 0.8


@pytest.mark.parametrize("algo", ["fedprox", "scaffold"])
def test_correcting_algorithms_run_with_an_sklearn_model(iid_dir, algo):
    partition = load_partition(iid_dir)
    config = TrainConfig(model="sklearn:LogisticRegression", algo=algo, rounds=2)
    records = [r.record for r in simulate(partition, config)]
    assert records[-1]["test_accuracy"] > 0.9


def test_missing_classes_keep_the_federation_shapes(dirichlet_dir):
    partition = load_partition(dirichlet_dir)
    counts = np.array(partition.meta["label_counts"])
    lacking = int(np.flatnonzero((counts == 0).any(axis=1))[0])
    model = make_model("sklearn:LogisticRegression", partition.num_features, 10)
    result = train(model, partition, [lacking], np.zeros(model.num_params))
    assert result.params.shape == (1, model.num_params) and np.isfinite(result.params).all()


def test_regressors_train_on_a_regression_partition(regression_dir):
    partition = load_partition(regression_dir)
    for name in ("sklearn:SGDRegressor", "sklearn:Ridge"):
        record = final_record(partition, model=name, rounds=3)
        assert record["test_r2"] > 0.9, name


def test_estimators_are_checked_against_the_task_and_their_parameters():
    with pytest.raises(FLError, match="regressor"):
        make_model("sklearn:SGDClassifier", 4, None, task="regression")
    with pytest.raises(FLError, match="no coef_"):
        make_model("sklearn:KNeighborsRegressor", 4, None, task="regression")
    knn = make_model("sklearn:KNeighborsClassifier", 4, 3)
    assert not knn.capabilities.parametric  # feddist, fedbag
    with pytest.raises(FLError, match="no estimator 'Nope'"):
        make_model("sklearn:Nope", 4, 3)
    with pytest.raises(FLError, match="--model-arg alpah"):
        make_model("sklearn:SGDClassifier", 4, 3, model_args={"alpah": 0.1})
    with pytest.raises(FLError, match="'alpha' parameter"):
        make_model("sklearn:SGDClassifier", 4, 3, model_args={"alpha": -1.0})


@pytest.mark.parametrize("name", ["Ridge", "Lasso"])
def test_a_single_target_regressors_scalar_intercept_is_a_parameter(name):
    """Such regressors keep intercept_ as a scalar: it must still be averaged, not dropped."""
    model = make_model(f"sklearn:{name}", 3, None, task="regression", model_args={"alpha": 1e-3})
    assert model.num_params == 4
    x = np.random.default_rng(0).normal(size=(40, 3))
    y = x @ [1.0, 2.0, 3.0] + 100.0
    cohort = Cohort.of(np.array([0]), np.array([0, 40]))
    spec = LocalSpec(epochs=1, batch_size=8, lr=0.1)
    w = train_estimators(model, x, y, cohort, np.zeros(4), spec, 0, 1).params[0]
    assert abs(w[-1] - 100.0) < 0.1
    assert np.allclose(model.predict(w, x), y, atol=0.1)


def test_estimators_whose_parameters_flcli_cannot_set_are_refused():
    with pytest.raises(FLError, match="coef_ is computed"):
        make_model("sklearn:SVC", 4, 3, model_args={"kernel": "linear"})
    with pytest.raises(FLError, match="average=True"):
        make_model("sklearn:SGDClassifier", 4, 3, model_args={"average": True})
    assert make_model("sklearn:SGDClassifier", 4, 3, model_args={"average": False}).num_params == 15


def test_an_algorithm_that_divides_by_the_local_step_says_so_with_an_estimator(
    cli, iid_dir, tmp_path
):
    model = ("--model", "sklearn:SGDClassifier", "--rounds", "1")
    noted = cli("train", iid_dir, "--algo", "qfedavg", *model, "--out", tmp_path / "q")
    assert noted.code == 0, noted.err
    assert "note: --algo qfedavg with --model sklearn:SGDClassifier" in noted.err
    assert "--lr" in noted.err
    plain = cli("train", iid_dir, "--algo", "qfedavg", "--rounds", "1", "--out", tmp_path / "p")
    assert plain.code == 0 and "note:" not in plain.err
