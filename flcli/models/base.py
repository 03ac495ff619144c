"""The model interface: a model is a small object over a flat float parameter vector.

Everything works on a whole cohort of K clients at once: W is [K, P], X is [K, B, D], y is [K, B]
and mask [K, B] marks the real samples of each client's batch (clients differ in size).

A model says what it can do in one value, `capabilities` (a Capabilities; a class without one is a
plain cohort model, Capabilities()), and the engine reads that value instead of probing the model
for methods. check_model refuses, in one line, a model that lacks what it declares.

What a model must have, by Capabilities.trains:
- "cohort" (the default): task, num_params, init, loss_grad, predict_proba, predict;
- "client_by_client" (flcli.models.sklearn.EstimatorModel, trained by flcli.engine.estimators):
  task, num_params, init, predict_proba, predict, and the trainer's name, mode, estimator_at,
  local_pass, params_of, set_params;
- "fitted_members" (flcli.models.ensemble.FittedClassifiers, run by flcli.engine.ensembles): no
  parameters; task "classification", predict_proba and predict over a list of members, name,
  num_features, num_classes and fit.
predict_proba is for classification only: the engine scores a regression model by predict alone,
so a regression model may leave it out (LinearRegression does).
Each capability flag adds one method: fused_step sgd_step, fused_steps sgd_steps, distillable
distill_loss_grad, exact_log_proba log_proba, splits_head head_slice.

The fused steps are compiled (numba), each in one pass per client:
- sgd_step(W [K, P], X [K, B, D], y [K, B], mask [K, B], lr, workspace): one SGD step of a block
  of clients, in place: W -= lr x loss_grad's gradient. The engine adds an algorithm's
  correction after it, in NumPy.
- sgd_steps(W [K, P], x [N, D], y [N], batches, lr, correction, workspace): every local step of a
  chunk of clients in one call, in place: client k takes batches.steps[k] SGD steps over its own
  rows of x (a Batches), each step's gradient plus, when correction (a LinearCorrection) is
  given, correction.pull (w - correction.anchor) + correction.shift[k]. The engine calls it once
  per chunk of clients whose algorithm asks for nothing else (no LocalWork.step, correction
  function or frozen coordinates).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from flcli.errors import FLError

if TYPE_CHECKING:
    import numpy as np

TASKS = ("classification", "regression")
TRAINS = ("cohort", "client_by_client", "fitted_members")
COHORT = ("task", "num_params", "init", "loss_grad", "predict_proba", "predict")
ESTIMATOR = ("name", "mode", "estimator_at", "local_pass", "params_of", "set_params")
FITTED = ("task", "predict_proba", "predict", "name", "num_features", "num_classes", "fit")
REQUIRED = {  # by Capabilities.trains
    "cohort": COHORT,
    "client_by_client": tuple(m for m in COHORT if m != "loss_grad") + ESTIMATOR,
    "fitted_members": FITTED,
}
CLASSIFICATION_ONLY = ("predict_proba",)
ADDED_BY = {
    "fused_step": "sgd_step",
    "fused_steps": "sgd_steps",
    "distillable": "distill_loss_grad",
    "exact_log_proba": "log_proba",
    "splits_head": "head_slice",
}
ATTRIBUTES = ("task", "num_params", "name", "mode", "num_features", "num_classes")
DOCS = "see docs/api.md"


@dataclass(frozen=True)
class Capabilities:
    trains: str = "cohort"  # "cohort": loss_grad over [K, ...] blocks, any backend;
    # "client_by_client": trains itself per client (sklearn estimators, engine/estimators.py);
    # "fitted_members": no parameters; fits members, soft-votes (models/ensemble.py)
    fused_step: bool = False  # has sgd_step(W, X, y, mask, lr, workspace) taking a whole step
    # has sgd_steps(W, x, y, batches, lr, correction, workspace) taking every local step at once
    fused_steps: bool = False
    # the fused steps only pay in runs with enough local training to cover loading them (numba):
    # the engine takes loss_grad in a shorter run (flcli.engine.compiled). False: always fused
    fused_for_long_runs: bool = False
    distillable: bool = False  # has distill_loss_grad(w, X, targets, temperature) (FedDF's student)
    exact_log_proba: bool = False  # has log_proba(w, X) computed from logits
    # has head_slice() -> slice of the flat vector holding the last layer (the head of head/body
    # methods: FedPer, LG-FedAvg, FedRep, FedBABU)
    splits_head: bool = False
    # each client's step is heavy (milliseconds: a deep model's): the engine gives a thread as few
    # clients as one, where a light model's chunks need many to pay for the thread
    heavy_clients: bool = False

    def __post_init__(self):
        if self.trains not in TRAINS:
            raise FLError(
                f"Capabilities(trains={self.trains!r}): trains is one of {', '.join(TRAINS)}"
            )

    @property
    def parametric(self) -> bool:
        return self.trains != "fitted_members"


PLAIN = Capabilities()


@dataclass(frozen=True)
class Batches:
    """Which rows of x the local steps of a chunk of K clients use (sgd_steps).

    Client k's rows are rows[starts[k]:]: its orders of its sizes[k] rows, one epoch after
    another. It walks them in batches of batch_size (an epoch's last batch is the rest of the
    epoch, so it may be short) and takes steps[k] steps."""

    rows: np.ndarray  # [R] int64 rows of x
    starts: np.ndarray  # [K] int64
    sizes: np.ndarray  # [K] int64
    steps: np.ndarray  # [K] int64
    batch_size: int


@dataclass(frozen=True)
class LinearCorrection:
    """A gradient correction given as data, pull (w - anchor) + shift[k] for client k, so that a
    compiled step applies it itself (FedProx's proximal pull, SCAFFOLD's control variates,
    FedDyn's regularizer)."""

    pull: float  # 0 for none
    anchor: np.ndarray  # [P]
    shift: np.ndarray | None = None  # [K, P]


class Model(Protocol):
    """A model of the "cohort" kind; the module docstring lists what the other kinds have instead.

    Optional members, each required by the capability that declares it: sgd_step (fused_step),
    sgd_steps (fused_steps), distill_loss_grad (distillable), log_proba (exact_log_proba)."""

    task: str  # "classification" or "regression"
    num_params: int
    capabilities: Capabilities  # optional: absent means Capabilities()

    def init(self, rng: np.random.Generator) -> np.ndarray:
        """Initial parameters, shape [P]."""

    def loss_grad(
        self,
        W: np.ndarray,
        X: np.ndarray,
        y: np.ndarray,
        mask: np.ndarray,
        out=None,
        scale: float = 1.0,
        workspace=None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean loss over each client's masked batch, [K], and scale x its gradient, [K, P].

        The engine reuses across local steps the buffer `out` the gradient is written into and a
        Workspace of scratch arrays (for models with large temporaries), and passes its learning
        rate as scale, which the model applies where it is cheapest."""

    def predict_proba(self, w: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Class probabilities [N, C] of one parameter vector w [P] on inputs X [N, D]
        (classification only)."""

    def predict(self, w: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Predicted classes [N] (integers), or real targets [N] for regression."""


def capabilities_of(model) -> Capabilities:
    """What the model declares it can do; Capabilities() for a class that declares nothing."""
    return getattr(model, "capabilities", PLAIN)


def core_members(trains: str, task) -> list[str]:
    """What every model that trains this way must have for its task (fitted members are always
    classifiers)."""
    regression = task == "regression" and trains != "fitted_members"
    return [m for m in REQUIRED[trains] if not (regression and m in CLASSIFICATION_ONLY)]


def added_members(capabilities: Capabilities) -> dict[str, str]:
    """The methods the capability flags a model declares add, by flag."""
    return {flag: member for flag, member in ADDED_BY.items() if getattr(capabilities, flag)}


def needs(capabilities: Capabilities, task) -> str:
    """'a model needs task, num_params, ...', the second half of check_model's error."""
    kind = "a regression model" if task == "regression" else "a model"
    if capabilities.trains != "cohort":
        kind += f" with trains={capabilities.trains!r}"
    text = f"{kind} needs {', '.join(core_members(capabilities.trains, task))}"
    added = [f"{flag}=True adds {m}" for flag, m in added_members(capabilities).items()]
    return text + (f", and {', '.join(added)}" if added else "")


M = TypeVar("M")


def check_model(model: M, name: str) -> M:
    """The model itself, or FLError naming, in one line, every member it lacks for what it
    declares and every member of the wrong kind (name is how the user named it: '--model X')."""
    capabilities = capabilities_of(model)
    if not isinstance(capabilities, Capabilities):
        raise FLError(
            f"{name}: its capabilities is {capabilities!r}, not a flcli.models.base.Capabilities "
            f"({DOCS})"
        )
    task = getattr(model, "task", None)
    required = [*core_members(capabilities.trains, task), *added_members(capabilities).values()]
    missing = [member for member in required if not hasattr(model, member)]
    problems = [f"lacks {', '.join(missing)}; {needs(capabilities, task)}"] if missing else []
    problems += [
        f"its {member} is not callable"
        for member in required
        if member not in missing
        and member not in ATTRIBUTES
        and not callable(getattr(model, member))
    ]
    if "task" not in missing and task not in TASKS:
        problems.append(f"its task is {task!r}, not 'classification' or 'regression'")
    elif task == "regression" and not capabilities.parametric:
        problems.append("its task is 'regression', but fitted members are classifiers")
    if "num_params" in required and "num_params" not in missing:
        size = model.num_params
        if not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 1:
            problems.append(f"its num_params is {size!r}, not a positive int")
    if problems:
        joint = " " if missing else ": "
        raise FLError(f"{name}{joint}{'; '.join(problems)} ({DOCS})")
    return model


def log_probabilities(model, w, x):
    """[N, C] float64 log class probabilities: the model's own log_proba, computed from its logits
    (a probability that underflows to 0 would cap a loss, or make -inf), else log predict_proba."""
    import numpy as np

    if capabilities_of(model).exact_log_proba:
        return model.log_proba(w, x).astype(np.float64, copy=False)
    return np.log(np.maximum(model.predict_proba(w, x).astype(np.float64, copy=False), 1e-300))
