"""The compiled steps of the dense models (flcli.models.dense): the linear models' fused step
against their NumPy one, every local step at once against the steps one by one, and the linear
corrections (FedProx, SCAFFOLD, FedDyn) applied inside the kernel against the Python ones."""

from dataclasses import replace
from functools import partial

import numpy as np
import pytest

from flcli.algorithms.base import Context
from flcli.algorithms.registry import make_algorithm
from flcli.algorithms.work import LocalSpec, LocalWork
from flcli.engine.cohort import balanced_cuts, train_cohort
from flcli.engine.compiled import takes_compiled_steps
from flcli.engine.local import Cohort
from flcli.models.base import Batches
from flcli.models.linear import LinearRegression, LogisticRegression, SoftmaxRegression
from flcli.models.mlp import MLP
from flcli.models.registry import make_model
from flcli.models.workspace import Workspace

LR = 0.3
FEATURES = 6


def models(dtype="float64"):
    return [
        SoftmaxRegression(FEATURES, 4, dtype),
        LogisticRegression(FEATURES, dtype),
        LinearRegression(FEATURES, dtype),
        MLP(FEATURES, (16, 8), 4, dtype),
        MLP(FEATURES, (8,), None, dtype),
    ]


def labels(model, g, shape):
    if model.task == "regression":
        return g.normal(size=shape)
    return g.integers(0, model.num_classes, shape)


@pytest.mark.parametrize("model", models(), ids=lambda m: type(m).__name__)
def test_the_fused_step_is_loss_grad_and_the_update(model):
    """float64, with a short batch (client 1) and an empty one (client 2)."""
    g = np.random.default_rng(1)
    clients, batch = 4, 7
    W = g.normal(size=(clients, model.num_params)) * 0.5
    X = g.normal(size=(clients, batch, FEATURES))
    y = labels(model, g, (clients, batch))
    mask = np.ones((clients, batch))
    mask[1, 4:] = 0
    mask[2] = 0
    _, grad = model.loss_grad(W, X, y, mask, scale=LR)
    expected = W - grad
    model.sgd_step(W, X, y, mask, LR, Workspace())
    np.testing.assert_allclose(W, expected, rtol=0, atol=1e-12 * np.abs(grad).max())
    np.testing.assert_array_equal(W[2], expected[2])  # an empty batch does not move its client
    assert np.abs(grad[0]).max() > 1e-3


def shards(seed=3, dtype="float64", model=None):
    """(x, y, a cohort of 30 clients of 1 to 90 rows: smaller and larger than a batch)."""
    g = np.random.default_rng(seed)
    sizes = np.concatenate([g.integers(1, 8, 15), g.integers(20, 90, 15)])
    g.shuffle(sizes)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    x = g.normal(size=(offsets[-1], FEATURES)).astype(dtype)
    y = labels(model, g, offsets[-1])
    return x, y, Cohort.of(np.arange(len(sizes)), offsets)


def given_shift(W, anchor, *, shift):
    return shift


def pulled(W, anchor, *, pull):
    return pull * (W - anchor)


def pulled_and_shifted(W, anchor, *, pull, shift):
    return pull * (W - anchor) + shift


def python_twin(work: LocalWork, num_params: int) -> LocalWork:
    """The same work with its linear correction as a Python correction function, which the engine
    calls at every step around the model's sgd_step instead of handing it to sgd_steps. (Without
    one: no frozen coordinates, which changes nothing but the path.)"""
    if work.pull and work.shift is not None:
        correction, inputs = partial(pulled_and_shifted, pull=work.pull), {"shift": work.shift}
    elif work.pull:
        correction, inputs = partial(pulled, pull=work.pull), {}
    elif work.shift is not None:
        correction, inputs = given_shift, {"shift": work.shift}
    else:
        return replace(work, frozen=np.zeros(num_params, bool))
    return replace(work, pull=0.0, shift=None, correction=correction, inputs=inputs)


def linear_works(num_params: int, clients: int, seed=5) -> dict[str, LocalWork]:
    g = np.random.default_rng(seed)
    shift = g.normal(size=(clients, num_params))
    return {
        "plain": LocalWork(),
        "pull": LocalWork(pull=0.3),
        "shift": LocalWork(shift=shift),
        "pull and shift": LocalWork(pull=0.2, shift=-shift),
        "stragglers": LocalWork(pull=0.1, max_steps=g.integers(0, 9, clients)),
    }


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("index", range(5), ids=lambda i: type(models()[i]).__name__)
def test_all_steps_at_once_are_the_fused_steps_one_by_one_bit_for_bit(dtype, index):
    """sgd_steps (every step of a chunk in one call, the correction inside the kernel) against
    the engine's step loop calling sgd_step and the correction function at each step."""
    model = models(dtype)[index]
    x, y, cohort = shards(dtype=dtype, model=model)
    w = (model.init(np.random.default_rng(0)) + 0.1).astype(dtype)
    spec = LocalSpec(2, 16, 0.05)
    for name, work in linear_works(model.num_params, len(cohort.ids)).items():
        twin = python_twin(work, model.num_params)
        at_once = train_cohort(model, x, y, cohort, w, spec, 0, 1, work)
        one_by_one = train_cohort(model, x, y, cohort, w, spec, 0, 1, twin)
        assert at_once.params.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(at_once.params, one_by_one.params, err_msg=name)
        np.testing.assert_array_equal(at_once.num_steps, one_by_one.num_steps, err_msg=name)


@pytest.mark.parametrize("index", range(5), ids=lambda i: type(models()[i]).__name__)
def test_all_steps_at_once_agree_with_the_numpy_steps(index):
    model = models()[index]
    x, y, cohort = shards(model=model)
    w = model.init(np.random.default_rng(0)) + 0.1
    spec = LocalSpec(2, 16, 0.05)
    for name, work in linear_works(model.num_params, len(cohort.ids)).items():
        compiled = train_cohort(model, x, y, cohort, w, spec, 0, 1, work)
        numpy = train_cohort(model, x, y, cohort, w, spec, 0, 1, work, compiled=False)
        moved = np.abs(numpy.params - w).max()
        assert moved > 1e-3, name
        np.testing.assert_allclose(
            compiled.params, numpy.params, rtol=0, atol=1e-12 * moved, err_msg=name
        )


@pytest.mark.parametrize("algo", ["fedprox", "scaffold", "feddyn"])
def test_each_algorithms_correction_is_compiled_as_its_python_correction(algo):
    """The algorithm's own LocalWork (pull and shift as data) in the kernel, against the same
    correction written as a Python function, on a state where every term is non-zero."""
    model = SoftmaxRegression(FEATURES, 4)
    x, y, cohort = shards(model=model)
    context = Context(model, len(cohort.ids), 0.05, None, 0, 2)
    algorithm = make_algorithm(algo, {}, context)
    w = np.random.default_rng(0).normal(size=model.num_params)
    state = algorithm.server_init(w, len(cohort.ids))
    g = np.random.default_rng(1)
    state.extra.update({key: g.normal(size=np.shape(v)) for key, v in state.extra.items()})
    work = algorithm.client_work(state, cohort.ids)
    assert work.correction is None and (work.pull or work.shift is not None)
    spec = LocalSpec(2, 16, 0.05)
    compiled = train_cohort(model, x, y, cohort, w, spec, 0, 1, work)
    python = train_cohort(model, x, y, cohort, w, spec, 0, 1, python_twin(work, w.size))
    np.testing.assert_array_equal(compiled.params, python.params)
    numpy = train_cohort(model, x, y, cohort, w, spec, 0, 1, work, compiled=False)
    np.testing.assert_allclose(compiled.params, numpy.params, rtol=0, atol=1e-12)


def test_a_clients_steps_do_not_depend_on_its_chunk():
    model = SoftmaxRegression(FEATURES, 4)
    x, y, cohort = shards(model=model)
    w = model.init(np.random.default_rng(0))
    spec = LocalSpec(3, 8, 0.1)
    whole = train_cohort(model, x, y, cohort, w, spec, 2, 5, threads=1)
    for k in range(len(cohort.ids)):
        alone = train_cohort(model, x, y, cohort.chunk(slice(k, k + 1)), w, spec, 2, 5)
        np.testing.assert_array_equal(alone.params[0], whole.params[k])
    threaded = train_cohort(model, x, y, cohort, w, spec, 2, 5, threads=2)
    np.testing.assert_array_equal(threaded.params, whole.params)


def test_chunks_of_about_equal_steps_cover_the_cohort_the_largest_first():
    steps = np.array([1, 1, 1, 40, 1, 1, 2, 2, 30, 1])
    cuts = balanced_cuts(steps, 4)
    in_order = sorted(cuts, key=lambda cut: cut.start)
    assert in_order[0].start == 0 and in_order[-1].stop == len(steps)
    assert all(a.stop == b.start for a, b in zip(in_order[:-1], in_order[1:], strict=True))
    assert all(cut.stop > cut.start for cut in cuts)
    totals = [int(steps[cut].sum()) for cut in cuts]
    assert totals == sorted(totals, reverse=True) == [46, 31, 3]
    assert balanced_cuts(np.zeros(5, dtype=int), 4) == [slice(0, 5)]


def test_rows_outside_x_and_steps_beyond_the_rows_are_refused():
    """The kernel indexes raw memory: what would read out of bounds is an error."""
    model = SoftmaxRegression(FEATURES, 4)
    x = np.zeros((10, FEATURES))
    y = np.zeros(10, dtype=np.int64)
    W = np.zeros((1, model.num_params))

    def steps(rows, steps, data=x):
        start, size = np.zeros(1, np.int64), np.array([4])
        batches = Batches(np.array(rows), start, size, np.array([steps]), 2)
        model.sgd_steps(W, data, y, batches, LR, None, Workspace())

    steps([0, 1, 2, 3], 2)  # one epoch of two batches
    with pytest.raises(ValueError, match="not a row of x"):
        steps([0, 1, 2, 10], 2)
    with pytest.raises(ValueError, match="walk past"):
        steps([0, 1, 2, 3], 3)  # a second epoch the rows do not hold
    with pytest.raises(ValueError, match="x \\[N, 6\\] in W's dtype"):
        steps([0, 1, 2, 3], 2, x.astype(np.float32))


class Settings:
    """The config fields the estimate reads."""

    def __init__(self, rounds, local_epochs=2, batch_size=16):
        self.rounds, self.local_epochs, self.batch_size = rounds, local_epochs, batch_size


def test_linear_models_compile_in_long_runs_only_and_the_mlp_always():
    softmax, mlp = make_model("softmax", 60, 10), make_model("mlp", 60, 10, hidden=(8,))
    small = np.full(100, 14)  # digits' 100 clients
    large = np.full(1000, 400)
    assert not takes_compiled_steps(softmax, small, 100, Settings(rounds=20))
    assert takes_compiled_steps(softmax, large, 1000, Settings(rounds=10))
    assert takes_compiled_steps(mlp, small, 10, Settings(rounds=1))
