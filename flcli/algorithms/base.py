"""The shape of an algorithm, in the spirit of fedjax: a factory closes over hyperparameters and
returns pure functions over explicit state.

- server_init(params, num_clients) -> ServerState: the state the server keeps. ALL run state lives
  here (the global model, server optimizer moments, per-client state such as SCAFFOLD's control
  variates), as NumPy arrays, so a checkpoint captures it and a resumed run is exact.
- client_work(state, ids) -> LocalWork: what the sampled clients get besides the global model: an
  optional gradient correction used in every local step, linear as data (pull (w - w_t) +
  shift[k]) or any as a picklable module-level function bound with functools.partial (so a process
  backend can ship it) with its per-client inputs.
- server_update(state, updates) -> ServerState: the next state from what the clients sent back
  (per-client state of the participants is updated here too).
- local_spec(spec) -> LocalSpec: the local training the algorithm wants (FedSGD: one full batch).
- personalize (optional): after the server update, trains personal models of the round's clients
  (Ditto, FedAvgLU); gets a `train` callable that runs the backend on the cohort.
- personalize_new (optional): (state, ids, train, losses) -> [K, P], the personal models of
  clients that never trained (fl partition --new-clients) by the algorithm's own rule (IFCA picks
  the cluster model of lowest loss, FedPer trains a head on the global body); train runs on the
  new clients' training rows, losses(models [M, P]) -> [K, M] is each new client's mean loss on
  them under each model. Without it a new client fine-tunes the whole global model.
- prepare (optional): before local training, (state, ids, work, train) -> LocalWork: a first
  phase of local training whose result sets the main phase's work (FedRep trains the head first).
- keep (optional): (state, ids, local models [K, P]) -> ServerState: what the clients keep of
  their local models (FedPer's heads, LG-FedAvg's bodies), from the models themselves, before
  anything is sent; sends ([P] bool): the coordinates a client sends (the others' deltas are 0,
  so the uplink, DP and robust rules see only the shared part).
- carried (optional): (state, ids, carry [K, P]) -> ServerState: what the clients keep of
  LocalWork.carry, a second per-client vector their own local step (LocalWork.step) updated
  alongside the model (APFL's personal models).
- candidates and choose (optional, clustered FL such as IFCA): before local training each sampled
  client scores the models candidates(state) -> [M, P] by its loss on its own training rows, and
  choose(state, ids, losses [K, M]) -> ServerState records what the clients chose. A per-client
  int array extra["cluster"] [N] (0 until assigned) is logged as clients.csv's `cluster` and
  rounds.csv's `clusters` (the number of distinct clusters clients are in).

The factory's keyword parameters are its hyperparameters (scikit-learn's rule: the signature is
the schema): their defaults are the algorithm's defaults, and an `Annotated[float, Hyper(...)]`
gives each its help text and constraint. A module describes its algorithm in an AlgorithmSpec
next to the code (paper, when to use it, what it reads of single clients), and the registry is the
list of those specs; a user's file gives a factory or a spec (see docs/api.md).

The ceiling of this design: a client's local step is plain SGD plus an additive gradient
correction (LocalWork.pull and shift, or LocalWork.correction), which is what keeps a whole cohort
in one vectorized step. An
algorithm that needs its own client optimizer (local momentum or Adam, MOON's contrastive term)
needs an engine change, not only a new file.
"""

import inspect
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flcli.algorithms.aggregate import weighted_mean
from flcli.algorithms.work import LocalSpec, LocalWork
from flcli.errors import FLError
from flcli.options import Check, as_declared, describe_type, of_type

# (vectors [K, P], weights [K]) -> [P]: how the server may combine what the clients sent
Aggregate = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ServerState:
    params: np.ndarray  # the global model, [P]
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # moments, per-client state
    # the uplink stages' state, as <stage>_<key> (flcli.engine.uplink): not the algorithm's
    uplink: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class ClientUpdates:
    """What the sampled clients send back in one round (dropped stragglers are left out)."""

    ids: np.ndarray  # [K] client ids
    deltas: np.ndarray  # [K, P] local model minus the global model it started from
    num_samples: np.ndarray  # [K] training samples each client holds
    num_steps: np.ndarray  # [K] local steps each client took
    losses: np.ndarray | None = None  # [K] global model's loss on each client's data (q-FFL)
    # asynchronous rounds (Algorithm.buffer_size): each update's local model [K, P] and staleness
    # [K] (server updates since the model it started from)
    params: np.ndarray | None = None
    staleness: np.ndarray | None = None
    # The server's only way to combine per-client vectors: the weighted mean by default; a robust
    # rule, a secure sum or a noised DP mean when the run asks for one (flcli.engine.uplink).
    # Server updates call updates.aggregate(vectors, weights) wherever the paper averages.
    aggregate: Aggregate = weighted_mean


@dataclass(frozen=True)
class Context:
    """What a run gives an algorithm beyond its hyperparameters."""

    model: object
    num_clients: int
    lr: float  # the clients' learning rate
    x_proxy: np.ndarray | None = None  # FedDF's unlabeled proxy set
    seed: int = 0  # the run's --seed, for an algorithm's own addressed randomness (flcli.rng)
    local_epochs: int = 1  # the run's --local-epochs (a new client's budget, personalize_new)


# train(w_anchor [P], work, epochs) -> CohortResult, on the round's cohort and backend
Train = Callable[[np.ndarray, LocalWork, int], object]
# personalize(state before the round, state after it, ids, train) -> (state, personal models)
Personalize = Callable[[ServerState, ServerState, np.ndarray, Train], tuple]
# personalize_new(state, new clients' ids, train, losses) -> their personal models [K, P];
# losses(models [M, P]) -> [K, M], each new client's mean loss on its training rows
PersonalizeNew = Callable[[ServerState, np.ndarray, Train, Callable], np.ndarray]


def as_new_clients(personalize_new: PersonalizeNew) -> Personalize:
    """personalize for an algorithm whose round's clients personalize as new clients do: by its
    personalize_new rule from the global model after the round."""

    def personalize(before: ServerState, after: ServerState, ids: np.ndarray, train: Train):
        return after, personalize_new(after, ids, train, None)

    return personalize


def no_work(state: ServerState, ids: np.ndarray) -> LocalWork:
    return LocalWork()


def same_spec(spec: LocalSpec) -> LocalSpec:
    return spec


def plain_init(params: np.ndarray, num_clients: int) -> ServerState:
    return ServerState(params=params.copy())


@dataclass(frozen=True)
class Algorithm:
    name: str
    server_init: Callable[[np.ndarray, int], ServerState]
    server_update: Callable[[ServerState, ClientUpdates], ServerState]
    client_work: Callable[[ServerState, np.ndarray], LocalWork] = no_work
    local_spec: Callable[[LocalSpec], LocalSpec] = same_spec
    personalize: Personalize | None = None
    personalize_new: PersonalizeNew | None = None
    prepare: Callable[[ServerState, np.ndarray, LocalWork, Train], LocalWork] | None = None
    keep: Callable[[ServerState, np.ndarray, np.ndarray], ServerState] | None = None
    sends: np.ndarray | None = None  # [P] bool: the coordinates a client sends (None: all)
    candidates: Callable[[ServerState], np.ndarray] | None = None
    # (state, ids, trained LocalWork.carry [K, P]) -> ServerState: what the clients keep of the
    # carry their local steps updated (APFL's personal models), before anything is sent
    carried: Callable[[ServerState, np.ndarray, np.ndarray], ServerState] | None = None
    choose: Callable[[ServerState, np.ndarray, np.ndarray], ServerState] | None = None
    needs_client_losses: bool = False
    models_per_message: int = 1  # SCAFFOLD sends a control variate with each model
    # asynchronous (flcli.engine.asynchronous): the server updates on every buffer_size arrivals
    # of clients training concurrently; None: synchronous rounds
    buffer_size: int | None = None


@dataclass(frozen=True)
class EnsembleAlgorithm:
    """An algorithm over fitted estimators without parameters to average (flcli.models.ensemble):
    each round the sampled clients fit members from scratch on their shards, and

    - server_init(init_rng, num_clients) -> ServerState;
    - server_update(state, round, ids, members) -> ServerState, members being the round's fitted
      estimators in the order of ids;
    - voters(state) -> [M, 2] (client, round) of the members whose soft vote is the global model,
      or None when the global model is the parametric `student` with parameters state.params.

    The state holds arrays only (so checkpoint.npz captures it); a member is a deterministic
    function of (client, round), so voters are refitted on resume rather than pickled.
    """

    name: str
    server_init: Callable[[np.random.Generator, int], ServerState]
    server_update: Callable[[ServerState, int, np.ndarray, list], ServerState]
    voters: Callable[[ServerState], np.ndarray | None]
    student: object | None = None


@dataclass(frozen=True)
class Hyper:
    """What the help and the checks say of a hyperparameter: Annotated[float, Hyper(...)].

    flag: its command-line alias (default --name-with-dashes); default_from: a TrainConfig field
    whose value it takes when not given (Ditto's personal epochs default to --local-epochs)."""

    help: str
    check: Check | None = None
    flag: str | None = None
    default_from: str | None = None


@dataclass(frozen=True)
class Hyperparameter:
    name: str
    default: Any  # inspect.Parameter.empty when the factory gives none: it must be given
    kind: Any  # the annotated type (None: not annotated and no default, any value goes)
    about: Hyper

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    @property
    def flag(self) -> str:
        return self.about.flag or "--" + self.name.replace("_", "-")


def annotation_of(factory: Callable, parameter: inspect.Parameter) -> Any:
    """A parameter's annotation, evaluated one by one (a module with `from __future__ import
    annotations` holds strings, some of which name what it imports only for type checkers);
    None when it cannot be evaluated: the value is then not type-checked."""
    hint = parameter.annotation
    if not isinstance(hint, str):
        return hint
    namespace = getattr(factory, "__globals__", {})
    try:
        return eval(hint, dict(namespace), {"Annotated": typing.Annotated})  # noqa: S307
    except Exception:  # a name only a type checker sees: leave the value unchecked
        return None


def hyperparameters(factory: Callable) -> dict[str, Hyperparameter]:
    """The hyperparameters a factory takes: its parameters after the first (the Context)."""
    found = {}
    for parameter in list(inspect.signature(factory).parameters.values())[1:]:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        hint = annotation_of(factory, parameter)
        extras = getattr(hint, "__metadata__", ())
        about = next((e for e in extras if isinstance(e, Hyper)), Hyper(""))
        kind = typing.get_args(hint)[0] if extras else hint
        if kind is inspect.Parameter.empty:  # not annotated: the default's type, if any
            default = parameter.default
            kind = None if default in (None, inspect.Parameter.empty) else type(default)
        found[parameter.name] = Hyperparameter(parameter.name, parameter.default, kind, about)
    return found


@dataclass(frozen=True)
class AlgorithmSpec:
    """An algorithm as the registry, `fl list` and the run's checks know it.

    factory builds it for models with parameters to average; ensemble_factory for classifiers
    without them (flcli.models.ensemble); None where the algorithm cannot take such models."""

    name: str
    factory: Callable[..., "Algorithm"] | None
    paper: str = "a user's algorithm"
    use_when: str = ""
    drop_stragglers: bool = False  # what it does with stragglers unless told
    personalizes: bool = False  # needs clients' local test splits; logs personal_accuracy
    ensemble_factory: Callable[..., "EnsembleAlgorithm"] | None = None
    # What the server update reads of single clients besides updates.aggregate, if anything:
    # DP, secure aggregation and robust aggregators replace only the aggregate, so they are
    # refused for an algorithm that reads more.
    reads_clients: str | None = None
    # Why scikit-learn estimators, which train through their own fit, cannot run it, if so; or
    # why with them it only approximates its paper.
    refuses_estimators: str | None = None
    approximate_with_estimators: str | None = None
    # Why --server-weighting uniform cannot change it (it weighs the clients by its own rule)
    own_weighting: str | None = None
    holds_out_proxy: bool = False  # FedDF: a proxy_fraction of every shard is held out
    display_name: str = ""  # as figures and tables spell it (its paper's spelling); default: name
    client_state: float = 0  # model-sized vectors the server keeps per client (memory estimate)
    asynchronous: bool = False  # its Algorithm has a buffer_size: flcli.engine.asynchronous
    # Why --compress-down cannot apply, if so (clients start from models other than the one
    # broadcast, so their deltas from the compressed broadcast mean nothing to the server)
    refuses_compress_down: str | None = None

    @property
    def hyperparameters(self) -> dict[str, Hyperparameter]:
        return hyperparameters(self.factory or self.ensemble_factory)

    @property
    def display(self) -> str:
        return self.display_name or self.name

    @property
    def description(self) -> str:
        text = f"{self.paper}: {self.use_when}" if self.use_when else self.paper
        if self.factory is None:
            return text + " (models without parameters to average only)"
        if self.ensemble_factory is not None:
            return text + " (also models without parameters to average)"
        return text

    def resolve(self, given: dict[str, Any], fallback: dict[str, Any]) -> dict[str, Any]:
        """Every hyperparameter's value: given, else its default (or the config's value it
        defaults to: `fallback`), each checked; a name it does not take is one line."""
        schema = self.hyperparameters
        unknown = sorted(set(given) - set(schema))
        if unknown:
            raise FLError(
                f"--algo {self.name} takes no hyperparameter {', '.join(unknown)}; it takes: "
                f"{', '.join(schema) or 'none'}"
            )
        missing = [name for name, h in schema.items() if h.required and name not in given]
        if missing:
            raise FLError(
                f"--algo {self.name} needs {', '.join(missing)}; give --algo-arg {missing[0]}=VALUE"
            )
        values = {}
        for name, h in schema.items():
            value = given.get(name, h.default)
            if value is None and h.about.default_from is not None:
                value = fallback[h.about.default_from]
            values[name] = checked(h, value)
        return values


def checked(h: Hyperparameter, value: Any) -> Any:
    """A hyperparameter's value after its type and range checks; an int where the factory takes
    a float becomes that float (--mu 1 and --algo-arg mu=1 are one run)."""
    if h.kind is not None and not of_type(h.kind, value):
        raise FLError(f"{h.flag} {value!r} must be {describe_type(h.kind)}")
    value = as_declared(h.kind, value)
    if isinstance(value, float) and not math.isfinite(value):
        raise FLError(f"{h.flag} {value} must be a finite number")
    if h.about.check is not None and value is not None:
        h.about.check(h.flag, value)
    return value


SERVER_LR = Hyper("Server learning rate.", Check(lambda v: v > 0, "must be > 0, e.g. 1.0"))
PERSONAL_EPOCHS = Hyper(
    "Epochs of personal training.",
    Check(lambda v: isinstance(v, int) and v >= 1, "must be a positive integer, e.g. 1"),
)
STEP_SIZE_CAVEAT = (
    "its server divides by the local step --lr, which a scikit-learn estimator does not take (it "
    "steps on its own schedule): the run only approximates the paper"
)
