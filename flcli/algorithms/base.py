"""The shape of an algorithm, in the spirit of fedjax: a factory closes over hyperparameters and
returns pure functions over explicit state.

- server_init(params, num_clients) -> ServerState: the state the server keeps. ALL run state lives
  here (the global model, server optimizer moments, per-client state such as SCAFFOLD's control
  variates), as NumPy arrays, so a checkpoint captures it and a resumed run is exact.
- client_work(state, ids) -> LocalWork: what the sampled clients get besides the global model: an
  optional gradient correction used in every local step (a picklable module-level function bound
  with functools.partial, so a process backend can ship it) and its per-client inputs.
- server_update(state, updates) -> ServerState: the next state from what the clients sent back
  (per-client state of the participants is updated here too).
- local_spec(spec) -> LocalSpec: the local training the algorithm wants (FedSGD: one full batch).
- personalize (optional): after the server update, trains personal models of the round's clients
  (Ditto, FedAvgLU); gets a `train` callable that runs the backend on the cohort.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from flcli.algorithms.aggregate import weighted_mean
from flcli.engine.local import LocalSpec, LocalWork

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


# train(w_anchor [P], work, epochs) -> CohortResult, on the round's cohort and backend
Train = Callable[[np.ndarray, LocalWork, int], object]
# personalize(state before the round, state after it, ids, train) -> (state, personal models)
Personalize = Callable[[ServerState, ServerState, np.ndarray, Train], tuple]


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
    needs_client_losses: bool = False
    models_per_message: int = 1  # SCAFFOLD sends a control variate with each model


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
