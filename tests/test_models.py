"""The NumPy models: gradients against finite differences (with masks), shapes, dtypes, init."""

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra.numpy import array_shapes, arrays

from flcli.errors import FLError
from flcli.models.heads import row_max
from flcli.models.linear import LinearRegression, LogisticRegression, SoftmaxRegression
from flcli.models.mlp import MLP
from flcli.models.registry import make_model

MODELS = {
    "softmax": lambda d: SoftmaxRegression(d, 3),
    "logistic": lambda d: LogisticRegression(d),
    "linear": lambda d: LinearRegression(d),
    "mlp": lambda d: MLP(d, (5, 4), 3),
    "mlp-one-layer": lambda d: MLP(d, (6,), 2),
    "mlp-regression": lambda d: MLP(d, (5, 3), None),
}


def batch(model, seed=0, K=3, B=5):
    g = np.random.default_rng(seed)
    D = model.num_features
    W = g.normal(size=(K, model.num_params)) * 0.7
    X = g.normal(size=(K, B, D))
    if model.task == "regression":
        y = g.normal(size=(K, B)) * 3
    else:
        y = g.integers(0, model.num_classes, size=(K, B))
    mask = np.ones((K, B))
    mask[1, 3:] = 0  # a short last batch
    mask[2, 1:] = 0  # a client with one sample left
    return W, X, y, mask


def numeric_gradient(model, W, X, y, mask, eps=1e-6):
    numeric = np.zeros_like(W)
    for p in range(W.shape[1]):
        step = np.zeros_like(W)
        step[:, p] = eps
        plus, _ = model.loss_grad(W + step, X, y, mask)
        minus, _ = model.loss_grad(W - step, X, y, mask)
        numeric[:, p] = (plus - minus) / (2 * eps)
    return numeric


@pytest.mark.parametrize("name", MODELS)
def test_gradient_matches_finite_differences_with_masks(name):
    model = MODELS[name](4)
    W, X, y, mask = batch(model)
    _, grad = model.loss_grad(W, X, y, mask)
    assert np.allclose(grad, numeric_gradient(model, W, X, y, mask), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", MODELS)
def test_masked_slots_do_not_matter_and_a_finished_client_gets_zero(name):
    model = MODELS[name](4)
    W, X, y, mask = batch(model)
    mask[2, :] = 0
    loss, grad = model.loss_grad(W, X, y, mask)
    X2, y2 = X.copy(), y.copy()
    X2[mask == 0] = 1e3
    y2[mask == 0] = 1
    loss2, grad2 = model.loss_grad(W, X2, y2, mask)
    assert np.array_equal(loss, loss2) and np.array_equal(grad, grad2)
    assert loss[2] == 0 and not grad[2].any()


@pytest.mark.parametrize("name", MODELS)
def test_loss_is_the_mean_loss_of_the_single_model_predictions(name):
    model = MODELS[name](4)
    W, X, y, mask = batch(model)
    loss, _ = model.loss_grad(W, X, y, mask)
    if model.task == "regression":
        expected = ((model.predict(W[0], X[0]) - y[0]) ** 2).mean()
    else:
        proba = model.predict_proba(W[0], X[0])
        assert np.allclose(proba.sum(axis=1), 1)
        assert np.array_equal(model.predict(W[0], X[0]), proba.argmax(axis=1))
        expected = -np.log(proba[np.arange(5), y[0]]).mean()
    assert np.isclose(loss[0], expected, rtol=1e-12)


@pytest.mark.parametrize("name", MODELS)
def test_float32_stays_float32(name):
    model = MODELS[name](4)
    W, X, y, mask = batch(model)
    W, X, mask = W.astype(np.float32), X.astype(np.float32), mask.astype(np.float32)
    if model.task == "regression":
        y = y.astype(np.float32)
    loss, grad = model.loss_grad(W, X, y, mask)
    assert loss.dtype == np.float32 and grad.dtype == np.float32
    loss64, grad64 = model.loss_grad(W.astype(np.float64), X.astype(np.float64), y, mask)
    assert np.allclose(grad, grad64, rtol=1e-4, atol=1e-5)


def test_logistic_is_softmax_with_two_classes_and_one_class_pinned_to_zero():
    g = np.random.default_rng(1)
    X, y, mask = g.normal(size=(2, 6, 3)), g.integers(0, 2, size=(2, 6)), np.ones((2, 6))
    logistic, softmax = LogisticRegression(3), SoftmaxRegression(3, 2)
    w = g.normal(size=(2, 4))  # [v (3), b]
    W_soft = np.zeros((2, softmax.num_params))  # column 0 of W and b[0] stay 0
    W_soft[:, [1, 3, 5]], W_soft[:, 7] = w[:, :3], w[:, 3]
    assert np.allclose(
        logistic.loss_grad(w, X, y, mask)[0], softmax.loss_grad(W_soft, X, y, mask)[0]
    )


def test_linear_gradient_descent_reaches_least_squares():
    g = np.random.default_rng(2)
    X = g.normal(size=(200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 4.0 + g.normal(size=200) * 0.1
    model, w = LinearRegression(3), np.zeros(4)
    for _ in range(500):
        w = w - 0.1 * model.loss_grad(w[None], X[None], y[None], np.ones((1, 200)))[1][0]
    exact = np.linalg.lstsq(np.c_[X, np.ones(200)], y, rcond=None)[0]
    assert np.allclose(w, exact, atol=1e-8)


def test_mlp_he_initialisation():
    model = MLP(400, (300,), 10)
    w = model.init(np.random.default_rng(0))
    (w1, b1), (w2, b2) = model.layers(w)
    assert w1.shape == (400, 300) and w2.shape == (300, 10)
    assert np.isclose(w1.std(), np.sqrt(2 / 400), rtol=0.02)
    assert np.isclose(w2.std(), np.sqrt(2 / 300), rtol=0.1)
    assert not b1.any() and not b2.any()
    assert model.num_params == 400 * 300 + 300 + 300 * 10 + 10


def test_make_model_checks_the_task():
    with pytest.raises(FLError, match="use --model linear or mlp"):
        make_model("softmax", 4, None, task="regression")
    with pytest.raises(FLError, match="use --model softmax"):
        make_model("linear", 4, 3, task="classification")
    with pytest.raises(FLError, match="binary"):
        make_model("logistic", 4, 3)
    assert make_model("mlp", 4, None, task="regression", hidden=(3,)).task == "regression"


@settings(max_examples=200, deadline=None)
@given(
    arrays(
        np.float64,
        array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=80),
        elements=st.floats(allow_nan=True, allow_infinity=True),
    )
)
def test_row_max_is_numpys_max_over_the_last_axis(z):
    """log_softmax's maximum class by class equals z.max(axis=-1): NaN, infinities, wide rows."""
    expected = z.max(axis=-1, keepdims=True)
    assert np.array_equal(row_max(z), expected, equal_nan=True)
    assert row_max(z).shape == expected.shape
