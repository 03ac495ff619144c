import numpy as np

from flcli.engine.evaluate import CHUNK, evaluate, per_sample
from flcli.models.linear import LinearRegression, LogisticRegression, SoftmaxRegression
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


def test_the_loss_is_exact_where_the_labels_probability_underflows():
    """Cross-entropy from the logits: log(1 + e^s) for a logistic score s against label 0, and the
    logit gap for softmax, where the probability of the label is 0 in floating point."""
    x = np.ones((1, 1))
    for dtype, score in (("float64", 40.0), ("float32", 20.0)):
        logistic = LogisticRegression(1, dtype=dtype)
        w = np.array([score, 0.0], dtype=dtype)
        loss = evaluate(logistic, w, x.astype(dtype), np.array([0]))["loss"]
        assert np.isclose(loss, np.logaddexp(0, score), rtol=1e-6)
    softmax = SoftmaxRegression(1, 2)
    loss = evaluate(softmax, np.array([0.0, 800.0, 0.0, 0.0]), x, np.array([0]))["loss"]
    assert np.isclose(loss, 800.0)
    mlp = MLP(1, (2,), 2)
    w = np.zeros(mlp.num_params)
    w[-2:] = [0.0, 900.0]  # the output bias: label 1 beats label 0 by 900
    assert np.isclose(evaluate(mlp, w, x, np.array([0]))["loss"], 900.0)
