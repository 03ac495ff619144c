"""Any scikit-learn estimator with parameters to average, as a flcli model (classifiers without
them become flcli.models.ensemble.FittedClassifiers, for feddist and fedbag).

The parameters are the estimator's fitted coef_/intercept_ (linear models) or coefs_/intercepts_
(MLPs), laid out as one flat vector, so every parametric algorithm works unchanged. A client trains
its own copy of the estimator, started from the global parameters:

- partial_fit (SGDClassifier, SGDRegressor, MLPClassifier, ...): one partial_fit call per local
  epoch over the client's rows in its own shuffled order (the one the NumPy engine uses); the
  estimator batches them itself (SGD per sample; an MLP by --batch-size unless --model-arg
  batch_size is given);
- warm_start (LogisticRegression, ...): one fit() per local epoch, started from the global
  parameters; labels a client lacks are added as zero-weight rows, so the class set (and the
  parameter shapes) stay those of the federation;
- neither (Ridge, ...): one fit() per round; the local solution does not depend on the start.

Before any client trains, the estimator is fitted once on a placeholder set (one all-zero row per
class) so that it holds every fitted attribute; each client then copies that estimator and
overwrites its parameters. The estimator's own optimizer state (SGD's step counter t_, an MLP's
Adam moments) thus restarts every round from the same placeholder state. random_state is derived
from (--seed, round, client), so runs are reproducible.
"""

import copy
import inspect
import warnings
from dataclasses import dataclass

import numpy as np

from flcli.errors import FLError
from flcli.models.base import Capabilities, check_model
from flcli.models.ensemble import FittedClassifiers, has_parameters

LINEAR = ("coef_", "intercept_")
LAYERED = ("coefs_", "intercepts_")
COMMON_MODULES = ("linear_model", "neural_network", "svm", "ensemble", "neighbors", "tree")


def find_estimator(name: str) -> type:
    """The scikit-learn estimator class called name (common modules first: all_estimators()
    imports every module of scikit-learn and takes seconds)."""
    import importlib

    for module in COMMON_MODULES:
        found = getattr(importlib.import_module(f"sklearn.{module}"), name, None)
        if isinstance(found, type) and hasattr(found, "get_params"):
            return found
    from sklearn.utils import all_estimators

    estimators = dict(all_estimators())
    if name not in estimators:
        raise FLError(
            f"--model sklearn:{name}: scikit-learn has no estimator {name!r}; e.g. "
            "sklearn:SGDClassifier, sklearn:LogisticRegression, sklearn:MLPClassifier, "
            "sklearn:SGDRegressor, sklearn:Ridge"
        )
    return estimators[name]


@dataclass(frozen=True)
class Slot:
    """Where one fitted array lives in the estimator and in the flat vector."""

    attribute: str  # coef_, intercept_, coefs_ or intercepts_
    index: int | None  # position in coefs_/intercepts_, None for coef_/intercept_
    shape: tuple[int, ...]
    start: int

    @property
    def stop(self) -> int:
        return self.start + int(np.prod(self.shape, dtype=np.int64))

    def array(self, estimator) -> np.ndarray:
        value = getattr(estimator, self.attribute)
        return value if self.index is None else value[self.index]

    def write(self, estimator, values: np.ndarray) -> None:
        """Sets the slot to values (the slot's part of a flat vector)."""
        current = self.array(estimator)
        if isinstance(current, np.ndarray):
            np.copyto(current, values.reshape(self.shape))
        else:  # a regressor of one target keeps its intercept_ as a scalar
            setattr(estimator, self.attribute, values.reshape(())[()])


def layout_of(estimator) -> list[Slot]:
    if all(hasattr(estimator, name) for name in LAYERED):
        names = [(name, i) for i in range(len(estimator.coefs_)) for name in LAYERED]
    elif hasattr(estimator, "coef_"):
        names = [("coef_", None)]
        intercept = getattr(estimator, "intercept_", None)
        # fit_intercept=False leaves a plain 0.0; a fitted one of a single target is a scalar
        fits_intercept = estimator.get_params().get("fit_intercept", True)
        if isinstance(intercept, np.ndarray) or (intercept is not None and fits_intercept):
            names.append(("intercept_", None))
    else:
        raise FLError(
            f"--model sklearn:{type(estimator).__name__} has no coef_/intercept_ or "
            "coefs_/intercepts_ to average; choose a parametric estimator (e.g. SGDClassifier)"
        )
    slots, start = [], 0
    for attribute, index in names:
        value = getattr(estimator, attribute)
        value = value if index is None else value[index]
        if isinstance(value, np.ndarray) and not value.flags.writeable:
            raise FLError(
                f"--model sklearn:{type(estimator).__name__}: its {attribute} is computed from "
                "other fitted attributes and cannot be set, so there is nothing to average; "
                "choose an estimator that stores it (e.g. sklearn:LinearSVC for a linear SVM)"
            )
        slots.append(Slot(attribute, index, np.shape(value), start))
        start = slots[-1].stop
    return slots


def accepts(method, argument: str) -> bool:
    return argument in inspect.signature(method).parameters


class EstimatorModel:
    """A scikit-learn estimator over a flat parameter vector; trains client by client."""

    capabilities = Capabilities(trains="client_by_client")

    def __init__(self, primed, args: dict, task: str, num_classes: int | None, dtype="float64"):
        self.primed = primed  # fitted once on the placeholder set
        self.args = args  # the --model-arg values
        self.task = task
        self.num_classes = num_classes
        self.dtype = np.dtype(dtype)
        self.name = type(primed).__name__
        self.slots = layout_of(primed)
        self.num_params = self.slots[-1].stop
        params = primed.get_params()
        self.mode = (
            "partial_fit"
            if hasattr(primed, "partial_fit")
            else "warm_start"
            if "warm_start" in params
            else "fit"
        )
        if self.mode == "warm_start":
            self.primed.set_params(warm_start=True)
        self.takes_classes = self.mode == "partial_fit" and accepts(primed.partial_fit, "classes")
        self.takes_weights = accepts(primed.fit, "sample_weight")

    def init(self, rng: np.random.Generator) -> np.ndarray:
        """Zeros for linear models; for layered ones (MLPs) scikit-learn's own Glorot-uniform
        scheme, U(-b, b) with b = sqrt(6 / (fan_in + fan_out)), drawn from rng."""
        w = np.zeros(self.num_params, dtype=self.dtype)
        for slot in self.slots:
            if slot.index is not None:
                fan_in, fan_out = self.slots[2 * slot.index].shape
                bound = np.sqrt(6.0 / (fan_in + fan_out))
                w[slot.start : slot.stop] = rng.uniform(-bound, bound, slot.stop - slot.start)
        return w

    def estimator_at(self, w: np.ndarray, random_state: int | None = None, batch_size=None):
        """A copy of the primed estimator holding the parameters w; random_state and batch_size
        (--batch-size, unless given by --model-arg) are set where the estimator has them."""
        estimator = copy.deepcopy(self.primed)
        params = estimator.get_params()
        if random_state is not None and "random_state" in params:
            estimator.set_params(random_state=random_state)
        if batch_size is not None and "batch_size" in params and "batch_size" not in self.args:
            estimator.set_params(batch_size=batch_size)
        self.set_params(estimator, w)
        return estimator

    def set_params(self, estimator, w: np.ndarray) -> None:
        for slot in self.slots:
            slot.write(estimator, w[slot.start : slot.stop])

    def params_of(self, estimator) -> np.ndarray:
        return np.concatenate([np.ravel(slot.array(estimator)) for slot in self.slots])

    def local_pass(self, estimator, x: np.ndarray, y: np.ndarray) -> int:
        """One local epoch over (x, y), rows in the client's batch order; returns the optimizer
        steps it took (for partial_fit: per sample for SGD, per minibatch for an MLP)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning of a deliberately short fit
            if self.mode == "partial_fit":
                extra = {"classes": np.arange(self.num_classes)} if self.takes_classes else {}
                estimator.partial_fit(x, y, **extra)
                batch = estimator.get_params().get("batch_size", 1)
                return -(-len(y) // (batch if isinstance(batch, int) else min(200, len(y))))
            estimator.fit(*self.with_every_class(x, y))
        iterations = getattr(estimator, "n_iter_", None)  # None for closed-form solvers
        return 1 if iterations is None else int(np.max(iterations))

    def with_every_class(self, x, y) -> tuple:
        """(x, y[, sample_weight]) with one zero-weight row per class the client lacks."""
        if self.task != "classification" or not self.takes_weights:
            return x, y
        missing = np.setdiff1d(np.arange(self.num_classes), y)
        pad = np.zeros((len(missing), x.shape[1]), dtype=x.dtype)
        weights = np.r_[np.ones(len(y)), np.zeros(len(missing))]
        return np.vstack([x, pad]), np.r_[y, missing].astype(y.dtype), weights

    def predict_proba(self, w, X):
        """Class probabilities; for estimators without predict_proba (a hinge-loss
        SGDClassifier) the softmax of decision_function, so test_loss is still defined."""
        estimator = self.estimator_at(w)
        if hasattr(estimator, "predict_proba"):
            return estimator.predict_proba(X)
        scores = estimator.decision_function(X)
        if scores.ndim == 1:
            scores = np.stack([-scores, scores], axis=1) / 2
        scores = scores - scores.max(axis=1, keepdims=True)
        return np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)

    def predict(self, w, X):
        return self.estimator_at(w).predict(X)


def make_estimator_model(
    name: str,
    num_features: int,
    num_classes: int | None,
    task: str,
    model_args: dict,
    dtype: str = "float64",
) -> "EstimatorModel | FittedClassifiers":
    """The adapter of estimator `name`: an EstimatorModel when the fitted estimator has
    coef_/coefs_ to average, else FittedClassifiers (for feddist and fedbag)."""
    from sklearn.base import is_classifier, is_regressor

    cls = find_estimator(name)
    required = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self"
    ]
    if required:
        raise FLError(
            f"--model sklearn:{name} needs constructor arguments ({', '.join(required)}) that "
            "flcli cannot give; choose an estimator that has defaults, e.g. sklearn:SGDClassifier"
        )
    known = cls().get_params()
    for key in model_args:
        if key == "random_state":
            raise FLError(
                "--model-arg random_state: flcli sets it from --seed, round and client; drop it"
            )
        if key not in known:
            raise FLError(
                f"--model-arg {key}: {name} has no parameter {key!r}; its parameters: "
                f"{', '.join(sorted(known))}"
            )
        if key == "average" and model_args[key]:
            raise FLError(
                f"--model-arg average={model_args[key]!r}: averaged SGD trains from a private "
                "copy of its weights, not from the global model flcli sets; drop it"
            )
    wrong_task = (task == "classification" and not is_classifier(cls())) or (
        task == "regression" and not is_regressor(cls())
    )
    if wrong_task:
        raise FLError(
            f"--model sklearn:{name} does not do {task}, the partition's task; choose a "
            f"{'classifier' if task == 'classification' else 'regressor'}"
        )
    estimator = cls(**model_args)
    rows = num_classes if task == "classification" else 2
    x = np.zeros((rows, num_features))
    y = np.arange(rows) if task == "classification" else np.zeros(rows)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if hasattr(estimator, "partial_fit") and task == "classification":
                estimator.partial_fit(x, y, classes=np.arange(num_classes))
            elif hasattr(estimator, "partial_fit"):
                estimator.partial_fit(x, y)
            else:
                estimator.fit(x, y)
    except (ValueError, TypeError) as bad:  # scikit-learn's InvalidParameterError is both
        message = str(bad).splitlines()[0]
        given = ", ".join(f"{k}={v!r}" for k, v in model_args.items()) or "defaults"
        raise FLError(f"--model-arg ({given}): {message}") from None
    if not has_parameters(estimator):
        if task != "classification":
            raise FLError(
                f"--model sklearn:{name} has no coef_/coefs_ to average, and feddist and fedbag "
                "combine classifiers only; choose a parametric regressor (e.g. sklearn:Ridge)"
            )
        fitted = FittedClassifiers(cls(**model_args), num_features, num_classes)
        return check_model(fitted, f"--model sklearn:{name}")
    model = EstimatorModel(estimator, model_args, task, num_classes, dtype)
    return check_model(model, f"--model sklearn:{name}")
