"""The round loop of models without parameters to average (flcli.models.ensemble): sample clients,
each fits its estimator from scratch on its shard, the server combines the fitted members
(flcli.algorithms.base.EnsembleAlgorithm: feddist distills them into a student, fedbag lets them
vote), evaluate; one RoundResult per round with the columns of flcli.engine.loop.

A client fits once per round, so --local-epochs, --batch-size and --backend do not apply. A member
is determined by (seed, round, client), its random_state drawn from rng(seed, SHUFFLE, round,
client); members are therefore refitted when needed, never stored: a resumed run refits the voters
of the checkpointed state and continues as if never stopped.

bytes_up counts the members' serialized size (measured in memory, nothing is written); bytes_down
is 0, since a client fits from scratch and needs nothing from the server.
"""

import math
import pickle
import time
from collections.abc import Iterator

import numpy as np
from threadpoolctl import threadpool_limits

from flcli.config import TrainConfig
from flcli.data.store import Partition
from flcli.engine.evaluate import round_rows
from flcli.engine.loop import RoundResult, build_algorithm, training_data
from flcli.engine.stages import sample_clients
from flcli.errors import RunFailed
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


def run_ensemble_rounds(
    partition: Partition, model, config: TrainConfig, resume_from: RoundResult | None = None
) -> Iterator[RoundResult]:
    """Yield round 0 (the untrained global model) and every round up to config.rounds, or
    continue after resume_from."""
    partition, x_proxy = training_data(partition.astype(config.dtype), config)
    algorithm = build_algorithm(partition, model, config, x_proxy)
    cohort_size = config.cohort_size(partition.num_clients)
    members = Members(model, partition, config.seed)

    def global_model(state):
        """(model, w) of the global model: the student and its parameters, or the ensemble
        and its voting members."""
        pairs = algorithm.voters(state)
        if pairs is None:
            members.keep([])
            return algorithm.student, state.params
        voting = [members.get(client, round) for client, round in pairs]
        members.keep(pairs)
        return model, voting

    def measure(state, round, ids, totals) -> tuple[dict, dict]:
        record, clients = round_rows(*global_model(state), partition, round, ids, totals)
        if not math.isfinite(record["train_loss"]):
            raise RunFailed(
                f"distillation diverged at round {round}; try a smaller --lr, e.g. "
                f"{config.lr / 10:g}"
            )
        return record, clients

    if resume_from is None:
        with threadpool_limits(limits=1):
            state = algorithm.server_init(rng(config.seed, Purpose.INIT), partition.num_clients)
            totals = {"bytes_up": 0, "bytes_down": 0, "elapsed_s": 0.0}
            record, clients = measure(state, 0, np.arange(partition.num_clients), totals)
        yield RoundResult(record, state, clients)
    else:
        state, record = resume_from.state, resume_from.record
    totals = {key: record[key] for key in ("bytes_up", "bytes_down", "elapsed_s")}
    clock = time.perf_counter() - totals["elapsed_s"]
    for round in range(record["round"] + 1, config.rounds + 1):
        ids = sample_clients(config.seed, round, partition.num_clients, cohort_size)
        with threadpool_limits(limits=1):  # small fits on 2 shared cores: threads only contend
            fitted = [members.get(client, round) for client in ids]
            state = algorithm.server_update(state, round, ids, fitted)
            totals["bytes_up"] += sum(len(pickle.dumps(member)) for member in fitted)
            del fitted
            totals["elapsed_s"] = time.perf_counter() - clock
            record, clients = measure(state, round, ids, dict(totals))
        yield RoundResult(record, state, clients)
