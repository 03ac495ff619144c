import numpy as np

from flcli.engine.evaluate import CHUNK, evaluate, per_sample
from flcli.models.linear import LinearRegression, SoftmaxRegression
from flcli.models.mlp import MLP


def test_classification_metrics_are_cross_entropy_and_accuracy():
    model = SoftmaxRegression(2, 3)
    w = np.random.default_rng(0).normal(size=model.num_params)
    x = np.random.default_rng(1).normal(size=(50, 2))
    y = np.random.default_rng(2).integers(0, 3, 50)
    metrics = evaluate(model, w, x, y)
    proba = model.predict_proba(w, x)
    assert set(metrics) == {"loss", "accuracy"}
    assert np.isclose(metrics["loss"], -np.log(proba[np.arange(50), y]).mean())
    assert metrics["accuracy"] == (proba.argmax(axis=1) == y).mean()


def test_regression_metrics_match_sklearn():
    from sklearn.metrics import mean_squared_error, r2_score

    model = LinearRegression(2)
    w = np.array([1.0, -1.0, 0.5])
    x = np.random.default_rng(1).normal(size=(40, 2))
    y = x @ [0.8, -1.2] + np.random.default_rng(2).normal(size=40)
    metrics = evaluate(model, w, x, y)
    assert set(metrics) == {"loss", "mse", "r2"}
    assert np.isclose(metrics["mse"], mean_squared_error(y, model.predict(w, x)))
    assert np.isclose(metrics["r2"], r2_score(y, model.predict(w, x)))


def test_per_sample_scores_of_many_chunks_equal_those_of_each_chunk_alone():
    """Chunks of a large evaluation run in threads; a row's scores do not depend on that."""
    model = MLP(5, (16,), 4)
    w = model.init(np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(3 * CHUNK + 100, 5))
    y = np.random.default_rng(2).integers(0, 4, len(x))
    loss, correct = per_sample(model, w, x, y)
    for start in range(0, len(x), CHUNK):
        part = slice(start, start + CHUNK)
        alone_loss, alone_correct = per_sample(model, w, x[part], y[part])
        assert np.array_equal(loss[part], alone_loss)
        assert np.array_equal(correct[part], alone_correct)
