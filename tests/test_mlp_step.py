"""The compiled MLP step against the NumPy one: W - lr x loss_grad's gradient."""

import numpy as np
import pytest

from flcli.models.mlp import MLP
from flcli.models.workspace import Workspace

LR = 0.3


def cohort(model, clients=4, batch=7, seed=1):
    """(W [K, P], X, y, mask) with a short batch (client 1) and an empty one (client 2)."""
    g = np.random.default_rng(seed)
    W = np.stack([model.init(g) for _ in range(clients)])
    X = g.normal(size=(clients, batch, model.num_features)).astype(model.dtype)
    if model.task == "classification":
        y = g.integers(0, model.num_classes, (clients, batch))
    else:
        y = g.normal(size=(clients, batch))
    mask = np.ones((clients, batch), dtype=model.dtype)
    mask[1, 4:] = 0
    mask[2] = 0
    return W, X, y, mask


@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-14), ("float32", 1e-6)])
@pytest.mark.parametrize("hidden", [(16,), (16, 8)])
@pytest.mark.parametrize("num_classes", [3, None])
def test_step_is_the_numpy_gradient_step(dtype, tolerance, hidden, num_classes):
    model = MLP(5, hidden, num_classes, dtype=dtype)
    W, X, y, mask = cohort(model)
    _, grad = model.loss_grad(W, X, y, mask, scale=LR)
    expected = W - grad
    model.sgd_step(W, X, y, mask, LR, Workspace())
    assert W.dtype == np.dtype(dtype)
    assert np.abs(W - expected).max() <= tolerance * np.abs(grad).max()
    assert np.abs(grad[0]).max() > 100 * tolerance  # the step did move the weights


def test_an_empty_batch_leaves_its_client_unchanged():
    model = MLP(5, (16,), 3)
    W, X, y, mask = cohort(model)
    before = W.copy()
    model.sgd_step(W, X, y, mask, LR, Workspace())
    assert np.array_equal(W[2], before[2])
    assert not np.array_equal(W[1], before[1])


def test_masked_slots_do_not_count():
    """Client 1's masked slots hold other samples: the step is the same without them."""
    model = MLP(5, (16,), 3)
    W, X, y, mask = cohort(model)
    alone = W[1:2].copy()
    model.sgd_step(W, X, y, mask, LR, Workspace())
    model.sgd_step(alone, X[1:2, :4], y[1:2, :4], mask[1:2, :4], LR, Workspace())
    assert np.allclose(W[1], alone[0], rtol=0, atol=1e-15)


def test_a_client_steps_the_same_whatever_its_cohort():
    model = MLP(5, (16, 8), 3, dtype="float32")
    W, X, y, mask = cohort(model, clients=5)
    apart = W.copy()
    model.sgd_step(W, X, y, mask, LR, Workspace())
    for k in range(len(W)):
        model.sgd_step(
            apart[k : k + 1], X[k : k + 1], y[k : k + 1], mask[k : k + 1], LR, Workspace()
        )
    assert np.array_equal(W, apart)


def test_a_view_that_is_not_contiguous_is_refused():
    model = MLP(5, (16,), 3)
    W, X, y, mask = cohort(model)
    with pytest.raises(ValueError, match="C-contiguous"):
        model.sgd_step(W[:, ::2], X, y, mask, LR, Workspace())


@pytest.mark.parametrize(
    "model_dtype, data_dtype", [("float64", "float32"), ("float32", "float64")]
)
def test_the_data_dtype_is_the_compute_dtype(model_dtype, data_dtype):
    """As in loss_grad: a model built in one dtype steps parameters and data of the other."""
    model = MLP(5, (16,), 3, dtype=model_dtype)
    W, X, y, mask = cohort(model)
    W, X, mask = W.astype(data_dtype), X.astype(data_dtype), mask.astype(data_dtype)
    _, grad = model.loss_grad(W, X, y, mask, scale=LR)
    expected = W - grad
    model.sgd_step(W, X, y, mask, LR, Workspace())
    assert W.dtype == np.dtype(data_dtype)
    assert np.allclose(W, expected, rtol=0, atol=1e-6)


def test_shapes_and_labels_that_do_not_fit_the_network_are_refused():
    """The kernel indexes raw memory: what would read or write out of bounds is an error."""
    model = MLP(5, (16,), 3)
    W, X, y, mask = cohort(model)
    with pytest.raises(ValueError, match="C-contiguous"):
        model.sgd_step(W[:1], X, y, mask, LR, Workspace())
    with pytest.raises(ValueError, match="X \\[K, B, 5\\]"):
        model.sgd_step(W, X[..., :4], y, mask, LR, Workspace())
    with pytest.raises(ValueError, match="y and mask"):
        model.sgd_step(W, X, y[:, :3], mask, LR, Workspace())
    with pytest.raises(IndexError, match="classes"):
        model.sgd_step(W, X, np.full_like(y, 3), mask, LR, Workspace())
