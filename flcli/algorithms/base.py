"""The shape of an algorithm, in the spirit of fedjax: a factory closes over hyperparameters and
returns pure functions over explicit state.

- server_init(params) -> ServerState: the state the server keeps (the global model and, for
  server optimizers, their moments).
- server_update(state, updates) -> ServerState: the next state from the clients' updates.
- correction (optional): a picklable function (W [K, P], anchor [P]) -> [K, P] added to the
  gradient in every local step (FedProx's mu (w - w_global), for instance).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from flcli.algorithms.aggregate import weighted_mean

# (vectors [K, P], weights [K]) -> [P]: how the server may combine what the clients sent
Aggregate = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ServerState:
    params: np.ndarray  # the global model, [P]
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # optimizer moments etc.


@dataclass(frozen=True)
class ClientUpdates:
    """What the sampled clients send back in one round."""

    ids: np.ndarray  # [K] client ids
    deltas: np.ndarray  # [K, P] local model minus the global model it started from
    num_samples: np.ndarray  # [K] training samples each client holds
    num_steps: np.ndarray  # [K] local steps each client took
    # The server's only way to combine per-client vectors: the weighted mean by default; a robust
    # rule, a secure sum or a noised DP mean when the run asks for one (flcli.engine.uplink).
    # Server updates call updates.aggregate(vectors, weights) wherever the paper averages.
    aggregate: Aggregate = weighted_mean


Correction = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Algorithm:
    name: str
    server_init: Callable[[np.ndarray], ServerState]
    server_update: Callable[[ServerState, ClientUpdates], ServerState]
    correction: Correction | None = None
