import numpy as np

from flcli.engine.evaluate import evaluate
from flcli.models.linear import LinearRegression, SoftmaxRegression


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
