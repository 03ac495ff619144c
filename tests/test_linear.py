import numpy as np

from flcli.models.linear import SoftmaxRegression


def batch(seed=0, K=3, B=5, D=4, C=3):
    g = np.random.default_rng(seed)
    model = SoftmaxRegression(D, C)
    W = g.normal(size=(K, model.num_params))
    X = g.normal(size=(K, B, D))
    y = g.integers(0, C, size=(K, B))
    mask = np.ones((K, B))
    mask[1, 3:] = 0  # a short last batch
    mask[2, :] = 0  # a client that is done
    return model, W, X, y, mask


def test_gradient_matches_finite_differences():
    model, W, X, y, mask = batch()
    mask[2, 0] = 1  # give the last client one sample
    _, grad = model.loss_grad(W, X, y, mask)
    eps = 1e-6
    numeric = np.zeros_like(W)
    for p in range(W.shape[1]):
        step = np.zeros_like(W)
        step[:, p] = eps
        plus, _ = model.loss_grad(W + step, X, y, mask)
        minus, _ = model.loss_grad(W - step, X, y, mask)
        numeric[:, p] = (plus - minus) / (2 * eps)
    assert np.allclose(grad, numeric, atol=1e-7)


def test_masked_slots_do_not_matter_and_empty_clients_get_zero():
    model, W, X, y, mask = batch()
    loss, grad = model.loss_grad(W, X, y, mask)
    X2, y2 = X.copy(), y.copy()
    X2[mask == 0] = 1e3
    y2[mask == 0] = 0
    loss2, grad2 = model.loss_grad(W, X2, y2, mask)
    assert np.array_equal(loss, loss2) and np.array_equal(grad, grad2)
    assert loss[2] == 0 and not grad[2].any()


def test_loss_is_mean_cross_entropy_of_predict_proba():
    model, W, X, y, mask = batch()
    loss, _ = model.loss_grad(W, X, y, mask)
    proba = model.predict_proba(W[0], X[0])
    assert np.allclose(proba.sum(axis=1), 1)
    assert np.isclose(loss[0], -np.log(proba[np.arange(5), y[0]]).mean())
