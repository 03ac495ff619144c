"""The model protocol (flcli.models.base): what check_model refuses, how a model without declared
capabilities trains, and what every built-in model declares."""

import numpy as np
import pytest

from flcli.api import simulate
from flcli.config import TrainConfig
from flcli.data.store import load_partition
from flcli.engine.backends import trainer_for
from flcli.engine.cohort import train_cohort
from flcli.engine.estimators import train_estimators
from flcli.errors import FLError
from flcli.models.base import Capabilities, capabilities_of, check_model
from flcli.models.linear import SoftmaxRegression
from flcli.models.registry import make_model

METHOD_OF = {  # the method each capability flag promises
    "fused_step": "sgd_step",
    "fused_steps": "sgd_steps",
    "distillable": "distill_loss_grad",
    "exact_log_proba": "log_proba",
}
BUILT_INS = {  # make_model arguments of every kind of built-in model
    "softmax": ("softmax", 6, 3),
    "logistic": ("logistic", 6, 2),
    "linear": ("linear", 6, None, "regression"),
    "mlp": ("mlp", 6, 3, "classification", (5,)),
    "mlp-regression": ("mlp", 6, None, "regression", (5,)),
    "sgd": ("sklearn:SGDClassifier", 6, 3),
    "ridge": ("sklearn:Ridge", 6, None, "regression"),
    "forest": ("sklearn:RandomForestClassifier", 6, 3),
}


class Tiny:
    """A user's model half written: no loss_grad, no predict_proba."""

    task = "classification"
    num_params = 3

    def init(self, rng):
        return np.zeros(self.num_params)

    def predict(self, w, X):
        return np.zeros(len(X), dtype=np.int64)


class UserSoftmax:
    """A user's cohort model with no `capabilities`."""

    task = "classification"

    def __init__(self, num_features, num_classes, dtype="float64"):
        self.inner = SoftmaxRegression(num_features, num_classes, dtype)
        self.num_params = self.inner.num_params

    def init(self, rng):
        return self.inner.init(rng)

    def loss_grad(self, W, X, y, mask, out=None, scale=1.0, workspace=None):
        return self.inner.loss_grad(W, X, y, mask, out, scale, workspace)

    def predict_proba(self, w, X):
        return self.inner.predict_proba(w, X)

    def predict(self, w, X):
        return self.inner.predict(w, X)


class UserSoftmaxWithExtras(UserSoftmax):
    """The optional methods, defined but not declared: the engine must not call them."""

    def sgd_step(self, W, X, y, mask, lr, workspace):
        raise AssertionError("sgd_step is not declared")

    def log_proba(self, w, X):
        raise AssertionError("log_proba is not declared")

    def distill_loss_grad(self, w, X, targets, temperature):
        raise AssertionError("distill_loss_grad is not declared")


def test_a_model_missing_members_is_refused_with_every_missing_name_in_one_line():
    with pytest.raises(FLError) as refused:
        check_model(Tiny(), "--model my.py:Tiny")
    message = str(refused.value)
    assert "\n" not in message
    assert message == (
        "--model my.py:Tiny lacks loss_grad, predict_proba; a model needs task, num_params, init, "
        "loss_grad, predict_proba, predict (see docs/api.md)"
    )


def test_a_declared_capability_requires_its_method():
    class Declares(UserSoftmax):
        capabilities = Capabilities(fused_step=True, distillable=True)

    with pytest.raises(FLError) as refused:
        check_model(Declares(4, 3), "--model Declares")
    assert str(refused.value) == (
        "--model Declares lacks sgd_step, distill_loss_grad; a model needs task, num_params, "
        "init, loss_grad, predict_proba, predict, and fused_step=True adds sgd_step, "
        "distillable=True adds distill_loss_grad (see docs/api.md)"
    )
    check_model(type("Both", (UserSoftmaxWithExtras, Declares), {})(4, 3), "--model Both")


def test_a_regression_model_needs_no_predict_proba_but_a_classifier_does():
    class Regressor(Tiny):
        task = "regression"

        def loss_grad(self, W, X, y, mask, out=None, scale=1.0, workspace=None):
            return np.zeros(len(W)), np.zeros_like(W)

    assert check_model(Regressor(), "--model Regressor").task == "regression"
    with pytest.raises(FLError, match="lacks predict_proba;"):
        check_model(type("Classifier", (Regressor,), {"task": "classification"})(), "x")


@pytest.mark.parametrize("task", ["clasification", "Regression", None])
def test_a_wrong_task_is_refused(task):
    model = UserSoftmax(4, 3)
    model.task = task
    with pytest.raises(FLError, match=f"its task is {task!r}, not 'classification' or"):
        check_model(model, "--model my.py:UserSoftmax")


@pytest.mark.parametrize("size", [0, -3, 2.5, True, "12"])
def test_num_params_must_be_a_positive_int(size):
    model = UserSoftmax(4, 3)
    model.num_params = size
    with pytest.raises(FLError, match="its num_params is .*, not a positive int"):
        check_model(model, "--model my.py:UserSoftmax")


def test_capabilities_must_be_a_capabilities_with_a_known_way_of_training():
    model = UserSoftmax(4, 3)
    model.capabilities = {"fused_step": True}
    with pytest.raises(FLError, match="not a flcli.models.base.Capabilities"):
        check_model(model, "--model my.py:UserSoftmax")
    with pytest.raises(FLError, match="trains is one of cohort, client_by_client"):
        Capabilities(trains="vectorized")


@pytest.fixture(scope="module")
def user_model():
    """--model FILE.py:CLASS naming a class of this very file, as a user's own file would."""
    return f"{__file__}:UserSoftmaxWithExtras"


def test_a_model_without_capabilities_trains_as_a_cohort_model(iid_dir, user_model):
    partition = load_partition(iid_dir)
    shape = partition.num_features, partition.num_classes
    user = make_model(user_model, *shape)
    assert capabilities_of(user) == Capabilities()
    assert trainer_for(user, "vectorized") is train_cohort
    theirs = list(simulate(partition, TrainConfig(model=user_model, lr=0.5, rounds=2)))[-1]
    ours = list(simulate(partition, TrainConfig(model="softmax", rounds=2)))[-1]
    np.testing.assert_array_equal(theirs.state.params, ours.state.params)
    assert theirs.record["test_accuracy"] == ours.record["test_accuracy"]


def test_an_undeclared_distill_loss_grad_does_not_make_a_model_distillable(iid_dir, user_model):
    config = TrainConfig(rounds=1, model=user_model, algo="feddist")
    with pytest.raises(FLError, match="needs a model that can be distilled"):
        list(simulate(load_partition(iid_dir), config))


@pytest.mark.parametrize("kind", BUILT_INS)
def test_every_built_in_model_passes_check_model_and_has_what_it_declares(kind):
    model = make_model(*BUILT_INS[kind])
    assert check_model(model, kind) is model
    declared = model.capabilities
    for flag, method in METHOD_OF.items():
        assert callable(getattr(model, method, None)) == getattr(declared, flag), (kind, flag)
    if declared.trains == "client_by_client":
        assert trainer_for(model, "vectorized") is train_estimators
    elif declared.trains == "cohort":
        assert trainer_for(model, "vectorized") is train_cohort
    assert declared.parametric == (declared.trains != "fitted_members")


def test_every_exact_log_proba_is_the_log_of_predict_proba():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 6))
    for kind, arguments in BUILT_INS.items():
        model = make_model(*arguments)
        if not model.capabilities.exact_log_proba:
            continue
        w = model.init(rng) + rng.normal(size=model.num_params)
        expected = np.log(model.predict_proba(w, x))
        np.testing.assert_allclose(model.log_proba(w, x), expected, rtol=1e-9, err_msg=kind)
