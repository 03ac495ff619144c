"""The round loop: sample, broadcast, train locally, aggregate, evaluate; one record per round.

The loop never prints and never writes files: it yields a RoundResult per round (round 0 is the
initial model) and the caller logs, checkpoints and draws progress.
"""

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from flcli.algorithms.base import Algorithm, ClientUpdates, ServerState
from flcli.config import TrainConfig
from flcli.data.store import Partition
from flcli.engine.backends import make_backend
from flcli.engine.evaluate import evaluate
from flcli.engine.local import Cohort, LocalSpec
from flcli.errors import RunFailed
from flcli.rng import Purpose, rng


@dataclass(frozen=True)
class RoundResult:
    record: dict  # one row of rounds.csv
    state: ServerState  # the server state after this round


def sample_clients(seed: int, round: int, num_clients: int, cohort_size: int) -> np.ndarray:
    chosen = rng(seed, Purpose.SAMPLE, round).choice(num_clients, cohort_size, replace=False)
    return np.sort(chosen)


def run_rounds(
    partition: Partition,
    model,
    algorithm: Algorithm,
    config: TrainConfig,
    resume_from: RoundResult | None = None,
) -> Iterator[RoundResult]:
    """Yield round 0 (the initial model) and every round up to config.rounds, or continue after
    resume_from (the last round a previous run completed)."""
    train_cohort = make_backend(config.backend, config.jobs, config.ray_address)
    spec = LocalSpec(config.local_epochs, config.batch_size, config.lr)
    cohort_size = config.cohort_size(partition.num_clients)
    bytes_per_model = model.num_params * 8

    def measure(state: ServerState, round: int, clients: int, totals: dict) -> dict:
        test_loss, test_accuracy = evaluate(model, state.params, partition.x_test, partition.y_test)
        train_loss, _ = evaluate(model, state.params, partition.x_train, partition.y_train)
        if not (math.isfinite(train_loss) and np.isfinite(state.params).all()):
            raise RunFailed(
                f"training diverged at round {round} (loss {train_loss}); "
                f"try a smaller --lr, e.g. {config.lr / 10:g}"
            )
        return {
            "round": round,
            "test_accuracy": test_accuracy,
            "test_loss": test_loss,
            "train_loss": train_loss,
            "clients": clients,
            **totals,
        }

    if resume_from is None:
        state = algorithm.server_init(model.init(rng(config.seed, Purpose.INIT)))
        totals = {"bytes_up": 0, "bytes_down": 0, "elapsed_s": 0.0}
        result = RoundResult(measure(state, 0, 0, totals), state)
        yield result
    else:
        result = resume_from
    state, record = result.state, result.record
    totals = {key: record[key] for key in ("bytes_up", "bytes_down", "elapsed_s")}
    clock = time.perf_counter() - totals["elapsed_s"]
    for round in range(record["round"] + 1, config.rounds + 1):
        ids = sample_clients(config.seed, round, partition.num_clients, cohort_size)
        cohort = Cohort.of(ids, partition.offsets)
        local = train_cohort(
            model,
            partition.x_train,
            partition.y_train,
            cohort,
            state.params,
            spec,
            config.seed,
            round,
            correction=algorithm.correction,
        )
        updates = ClientUpdates(
            ids=ids,
            deltas=local.params - state.params,
            num_samples=cohort.sizes,
            num_steps=local.num_steps,
        )
        state = algorithm.server_update(state, updates)
        totals["bytes_down"] += len(ids) * bytes_per_model
        totals["bytes_up"] += len(ids) * bytes_per_model
        totals["elapsed_s"] = time.perf_counter() - clock
        yield RoundResult(measure(state, round, len(ids), dict(totals)), state)
