"""Model names for --model: the NumPy models, any scikit-learn estimator as sklearn:NAME, and a
user's own model class (FILE.py:CLASS, module:CLASS, or an entry point in group flcli.models).

The model classes are imported by make_model only: `fl --help` lists the models without NumPy.
A user's class is built as CLASS(num_features, num_classes, dtype=..., **model_args), num_classes
None for regression; its optional class attribute default_lr is its default --lr.
"""

from dataclasses import dataclass

from flcli.errors import FLError
from flcli.models.base import check_model
from flcli.plugins import TORCH_PREFIX, call, entry_points, find

SKLEARN_PREFIX = "sklearn:"
DEFAULT_HIDDEN = (128, 64)


@dataclass(frozen=True)
class ModelSpec:
    tasks: tuple[str, ...]  # the partition tasks it can train on
    lr: float  # the default --lr
    description: str
    model: str  # "module:Class" of a class with for_data(num_features, num_classes, dtype, hidden)


MODELS = {
    "softmax": ModelSpec(
        ("classification",),
        0.5,
        "multinomial logistic regression (NumPy; the default)",
        "flcli.models.linear:SoftmaxRegression",
    ),
    "logistic": ModelSpec(
        ("classification",),
        0.5,
        "binary logistic regression (NumPy; two classes)",
        "flcli.models.linear:LogisticRegression",
    ),
    "linear": ModelSpec(
        ("regression",),
        0.05,
        "least-squares linear regression (NumPy)",
        "flcli.models.linear:LinearRegression",
    ),
    "mlp": ModelSpec(
        ("classification", "regression"),
        0.2,
        "ReLU multilayer perceptron, --hidden 128,64, He init (NumPy)",
        "flcli.models.mlp:MLP",
    ),
}
SKLEARN_MODELS = {  # name: (tasks, description)
    "sklearn:SGDClassifier": ("classification", "linear model, partial_fit per minibatch"),
    "sklearn:LogisticRegression": ("classification", "warm-started fit on each client"),
    "sklearn:MLPClassifier": ("classification", "partial_fit per minibatch"),
    "sklearn:SGDRegressor": ("regression", "linear model, partial_fit per minibatch"),
    "sklearn:Ridge": ("regression", "refitted on each client (no warm start)"),
    "sklearn:NAME": (
        "either",
        "any estimator with coef_/intercept_ or coefs_/intercepts_; --model-arg key=value",
    ),
}
FITTED_MODELS = {  # classifiers without parameters to average: name -> description
    "sklearn:RandomForestClassifier": "a random forest fitted per client",
    "sklearn:HistGradientBoostingClassifier": "gradient-boosted trees fitted per client",
    "sklearn:KNeighborsClassifier": "k nearest neighbours in each client's shard",
    "sklearn:CLASSIFIER": "any classifier without coef_/coefs_ to average",
}
SKLEARN_LR = 0.1  # for sklearn models --lr only scales the algorithm's correction step
PLUGIN_LR = 0.1  # a user's model without a default_lr of its own
# families of estimators without parameters to average: --lr is then the step of feddist's softmax
# student, whose default it takes
UNPARAMETRIC_FAMILIES = ("sklearn.ensemble", "sklearn.neighbors", "sklearn.tree")


def lr_defaults() -> str:
    """The default --lr of each model, as --help shows it."""
    by_lr: dict[float, list[str]] = {}
    for name, spec in MODELS.items():
        by_lr.setdefault(spec.lr, []).append(name)
    shown = [f"{'/'.join(names)} {lr:g}" for lr, names in by_lr.items()]
    return ", ".join([*shown, f"sklearn {SKLEARN_LR:g} (forests, k-NN {MODELS['softmax'].lr:g})"])


def is_plugin(name: str) -> bool:
    return name not in MODELS and not name.startswith((SKLEARN_PREFIX, TORCH_PREFIX))


def takes_model_args(name: str) -> bool:
    """--model-arg goes to scikit-learn estimators and to users' model classes."""
    return name not in MODELS


def plugin_class(name: str):
    """The user's model class that --model `name` names, or FLError."""
    found = find(name, "model")
    if found is None:
        known = [*MODELS, *entry_points("model")]
        raise FLError(
            f"unknown model {name!r}; choose one of: {', '.join(known)}, sklearn:ESTIMATOR or "
            "your own FILE.py:CLASS (see: fl list models)"
        )
    if not callable(found[0]):
        raise FLError(f"--model {name} is a {type(found[0]).__name__}, not a model class")
    return found[0]


def default_lr(name: str) -> float:
    """The default --lr of a model (models differ in scale: an MLP needs smaller steps)."""
    if is_plugin(name):
        return checked_lr(getattr(plugin_class(name), "default_lr", PLUGIN_LR), name)
    if name.startswith(TORCH_PREFIX):
        from flcli.models import torchload

        factory = torchload.module_factory(name)
        return checked_lr(getattr(factory, "default_lr", torchload.DEFAULT_LR), name)
    if name.startswith(SKLEARN_PREFIX):
        from flcli.models.sklearn import find_estimator

        family = find_estimator(name[len(SKLEARN_PREFIX) :]).__module__
        return MODELS["softmax"].lr if family.startswith(UNPARAMETRIC_FAMILIES) else SKLEARN_LR
    return MODELS[name].lr if name in MODELS else MODELS["softmax"].lr


def checked_lr(lr, name: str) -> float:
    """A user's class's default_lr, checked."""
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < float("inf"):
        raise FLError(f"--model {name}'s default_lr {lr!r} must be a number > 0, e.g. 0.1")
    return float(lr)


def make_model(
    name: str,
    num_features: int,
    num_classes: int | None,
    task: str = "classification",
    hidden: tuple[int, ...] | None = None,
    dtype: str = "float64",
    model_args: dict | None = None,
    shape: tuple | None = None,
):
    """The model `name` for data with num_features inputs and the given task (num_classes is None
    for regression), checked against the model protocol (flcli.models.base.check_model). Raises
    FLError when the model does not fit the task. shape is (one sample's shape, vocabulary size
    or None), for PyTorch modules."""
    if name.startswith(TORCH_PREFIX):
        from flcli.models.torchload import make_torch_model

        model = make_torch_model(
            name, num_features, num_classes, task, dtype, model_args or {}, shape
        )
        return check_model(model, f"--model {name}")
    if is_plugin(name):
        return make_plugin_model(name, num_features, num_classes, task, dtype, model_args or {})
    if name.startswith(SKLEARN_PREFIX):
        from flcli.models.sklearn import make_estimator_model  # checks what it makes

        return make_estimator_model(
            name[len(SKLEARN_PREFIX) :], num_features, num_classes, task, model_args or {}, dtype
        )
    model = numpy_model(name, num_features, num_classes, task, hidden, dtype)
    return check_model(model, f"--model {name}")


def numpy_model(
    name: str,
    num_features: int,
    num_classes: int | None,
    task: str,
    hidden: tuple[int, ...] | None,
    dtype: str,
):
    """The NumPy model `name` (one of MODELS) for the data: its class's for_data."""
    import importlib

    spec = MODELS[name]
    if task not in spec.tasks:
        fits = [other for other, s in MODELS.items() if task in s.tasks]
        raise FLError(
            f"--model {name} is a {spec.tasks[0]} model but the partition's task is {task}; "
            f"use --model {' or '.join(fits)}"
        )
    module, _, attribute = spec.model.partition(":")
    cls = getattr(importlib.import_module(module), attribute)
    classes = num_classes if task == "classification" else None
    return cls.for_data(num_features, classes, dtype, hidden or DEFAULT_HIDDEN)


def describe_models(algorithms: dict) -> dict[str, str]:
    """One line per model for `fl list models`: its task, the algorithms that accept it, what it
    is. `algorithms` is the --algo registry: parametric models go with those having a `factory`
    (with sklearn models a gradient correction such as FedProx's is applied after each local
    pass); classifiers without parameters with those having an `ensemble_factory`."""
    left_out = [name for name, info in algorithms.items() if info.factory is None]
    every = f"all but {', '.join(left_out)}" if left_out else "all algorithms"
    refused = [name for name, info in algorithms.items() if info.refuses_estimators]
    estimators = f"all but {', '.join(refused + left_out)}"
    fitted = ", ".join(name for name, info in algorithms.items() if info.ensemble_factory)
    lines = {}
    for name, spec in MODELS.items():
        tasks = "either" if len(spec.tasks) > 1 else spec.tasks[0]
        lines[name] = f"{tasks:<15} {every:<16} {spec.description}"
    for name, (tasks, text) in SKLEARN_MODELS.items():
        lines[name] = f"{tasks:<15} {estimators:<16} {text}"
    for name, text in FITTED_MODELS.items():
        lines[name] = f"{'classification':<15} {fitted:<16} {text}"
    for name, point in entry_points("model").items():  # installed packages' models
        lines[name] = f"{'?':<15} {every:<16} {point.value} (installed plugin)"
    lines["torch:FILE.py:NAME"] = (
        f"{'either':<15} {every:<16} a PyTorch module trained a cohort at once (the torch extra; "
        "examples/cnn.py), --model-arg key=value"
    )
    lines["FILE.py:CLASS"] = (
        f"{'either':<15} {every:<16} your own model class (see docs/api.md), --model-arg key=value"
    )
    return lines


def make_plugin_model(name, num_features, num_classes, task, dtype, model_args):
    """A user's model class built for the data: whatever its constructor raises is one line."""
    cls = plugin_class(name)
    classes = num_classes if task != "regression" else None
    model = call(cls, f"--model {name}", num_features, classes, dtype=dtype, **model_args)
    check_model(model, f"--model {name}")
    if model.task != task:
        raise FLError(
            f"--model {name} is a {model.task} model but the partition's task is {task}; "
            "use a partition of its task"
        )
    check_init(model, name)
    return model


def check_init(model, name: str) -> None:
    """A user's init gives one float vector of num_params values (the engine stacks them)."""
    import numpy as np

    w = call(model.init, f"--model {name}'s init", np.random.default_rng(0))
    shape = getattr(w, "shape", None)
    if shape != (model.num_params,) or getattr(w, "dtype", np.dtype(object)).kind != "f":
        raise FLError(
            f"--model {name}'s init returned {type(w).__name__} of shape {shape}, not a float "
            f"vector of num_params = {model.num_params} values"
        )
