"""A round of a model without parameters to average (flcli.models.ensemble): each sampled client
fits its estimator from scratch on its shard, the server combines the fitted members
(flcli.algorithms.base.EnsembleAlgorithm: feddist distills them into a student, fedbag lets them
vote), evaluate.

A client fits once per round, so --local-epochs, --batch-size and --backend do not apply. A member
is determined by (seed, round, client), its random_state drawn from rng(seed, SHUFFLE, round,
client); members are therefore refitted when needed, never stored: a resumed run refits the voters
of the checkpointed state and continues as if never stopped.

bytes_up counts the members' serialized size (measured in memory, nothing is written); bytes_down
is 0, since a client fits from scratch and needs nothing from the server.
"""

import pickle

import numpy as np
from threadpoolctl import threadpool_limits

from flcli.algorithms.base import ServerState
from flcli.data.store import Partition
from flcli.engine.evaluate import round_rows
from flcli.engine.outcome import Trained
from flcli.rng import Purpose, rng


class Members:
    """Fitted members by (client, round); keeps only those still needed."""

    def __init__(self, model, partition: Partition, seed: int):
        self.model = model
        self.partition = partition
        self.seed = seed
        self.fitted: dict[tuple[int, int], object] = {}

    def get(self, client: int, round: int):
        key = (int(client), int(round))
        if key not in self.fitted:
            start, stop = self.partition.offsets[client : client + 2]
            random_state = int(rng(self.seed, Purpose.SHUFFLE, round, client).integers(2**31 - 1))
            x, y = self.partition.x_train[start:stop], self.partition.y_train[start:stop]
            self.fitted[key] = self.model.fit(x, y, random_state)
        return self.fitted[key]

    def keep(self, pairs) -> None:
        wanted = {(int(client), int(round)) for client, round in pairs}
        self.fitted = {key: m for key, m in self.fitted.items() if key in wanted}


class FittedRounds:
    def __init__(self, parts):
        self.model, self.algorithm = parts.model, parts.algorithm
        self.data, self.seed = parts.partition, parts.config.seed
        self.members = Members(self.model, self.data, self.seed)
        self.uplink = parts.uplink
        self.system = parts.system

    @property
    def counts(self) -> list[str]:
        return self.uplink.counts

    def sample(self, round: int, now: float) -> np.ndarray:
        ids = self.uplink.sample(round)
        return ids[self.system.available(now)[ids]]

    def initial_state(self) -> ServerState:
        with threadpool_limits(limits=1):
            return self.algorithm.server_init(rng(self.seed, Purpose.INIT), self.data.num_clients)

    def global_model(self, state: ServerState):
        """(model, w) of the global model: the student and its parameters, or the ensemble and
        its voting members."""
        pairs = self.algorithm.voters(state)
        if pairs is None:
            self.members.keep([])
            return self.algorithm.student, state.params
        voting = [self.members.get(client, round) for client, round in pairs]
        self.members.keep(pairs)
        return self.model, voting

    def train(self, state: ServerState, round: int, ids: np.ndarray) -> Trained:
        with threadpool_limits(limits=1):  # small fits on 2 shared cores: threads only contend
            fitted = [self.members.get(client, round) for client in ids]
            state = self.algorithm.server_update(state, round, ids, fitted)
        sizes = [len(pickle.dumps(member)) for member in fitted]
        offsets = self.data.offsets
        rows = offsets[ids + 1] - offsets[ids]
        busy = self.system.seconds(ids, rows, 0, sizes)  # one pass over the shard: the fit
        seconds = float(busy.max()) if len(ids) else 0.0
        return Trained(state, sum(sizes), 0, {}, seconds=seconds)

    def measure(self, state, round, ids, personal, totals, train_clients=None):
        with threadpool_limits(limits=1):
            model, w = self.global_model(state)
            return round_rows(model, w, self.data, round, ids, totals, train_clients)

    def every_round(self, state: ServerState, round: int) -> dict:
        return {}
