"""What a round produces: the round kinds' Trained, and the round loop's RoundResult."""

from dataclasses import dataclass

import numpy as np

from flcli.algorithms.base import ServerState


@dataclass(frozen=True)
class RoundResult:
    record: dict  # one row of rounds.csv
    state: ServerState  # the server state after this round
    clients: dict[str, np.ndarray] | None = None  # the round's rows of clients.csv, by column


@dataclass(frozen=True)
class Trained:
    """What one round did: the new state, and what it sent."""

    state: ServerState
    bytes_up: int
    bytes_down: int
    counts: dict[str, int]  # extra rounds.csv columns of the round (e.g. dropped)
    personal: np.ndarray | None = None  # the cohort's personal models [K, P], if any
    seconds: float = 0.0  # simulated seconds the round took (flcli.system)
    ids: np.ndarray | None = None  # the clients whose updates made the round, if not the sample
