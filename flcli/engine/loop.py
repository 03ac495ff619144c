"""The round loop: sample, broadcast, train locally, aggregate, evaluate; one record per round.

The loop never prints and never writes files: it yields a RoundResult per round (round 0 is the
initial model) and the caller logs, checkpoints and draws progress.
"""

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from flcli.algorithms.base import Algorithm, ServerState
from flcli.config import TrainConfig
from flcli.data.store import Partition
from flcli.engine.backends import BACKENDS
from flcli.engine.evaluate import evaluate
from flcli.engine.local import Cohort, LocalSpec
from flcli.engine.uplink import (
    build_uplink,
    deliver,
    epsilon_after,
    initial_clip,
    sample,
    training_labels,
)
from flcli.errors import RunFailed
from flcli.rng import Purpose, rng


@dataclass(frozen=True)
class RoundResult:
    record: dict  # one row of rounds.csv
    state: ServerState  # the server state after this round


def run_rounds(
    partition: Partition,
    model,
    algorithm: Algorithm,
    config: TrainConfig,
    resume_from: RoundResult | None = None,
) -> Iterator[RoundResult]:
    """Yield round 0 (the initial model) and every round up to config.rounds, or continue after
    resume_from (the last round a previous run completed)."""
    train_cohort = BACKENDS[config.backend]
    spec = LocalSpec(config.local_epochs, config.batch_size, config.lr)
    bytes_per_model = model.num_params * 8
    uplink = build_uplink(config, partition.num_clients)
    x = partition.x_train
    y = training_labels(uplink, partition.y_train, partition.offsets, partition.num_classes)

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
        state = replace(state, extra={**state.extra, **initial_clip(uplink)})
        totals = {"bytes_up": 0, "bytes_down": 0, "elapsed_s": 0.0}
        extra_columns = dict.fromkeys(uplink.columns, 0)
        result = RoundResult({**measure(state, 0, 0, totals), **extra_columns}, state)
        yield result
    else:
        result = resume_from
    state, record = result.state, result.record
    totals = {key: record[key] for key in ("bytes_up", "bytes_down", "elapsed_s")}
    clock = time.perf_counter() - totals["elapsed_s"]
    for round in range(record["round"] + 1, config.rounds + 1):
        ids = sample(uplink, round)
        cohort = Cohort.of(ids, partition.offsets)
        params = np.empty((0, model.num_params))
        steps = np.zeros(0, dtype=np.int64)
        if len(ids):
            local = train_cohort(
                model, x, y, cohort, state.params, spec, config.seed, round, algorithm.correction
            )
            params, steps = local.params, local.num_steps
        uplink_state = {key: state.extra[key] for key in initial_clip(uplink)}
        delivery = deliver(
            uplink, round, ids, cohort.sizes, params - state.params, steps, uplink_state
        )
        if delivery.updates is not None:
            state = algorithm.server_update(state, delivery.updates)
        state = replace(state, extra={**state.extra, **delivery.extra})
        totals["bytes_down"] += len(ids) * bytes_per_model
        if delivery.traffic:
            totals["bytes_up"] += sum(up for up, _ in delivery.traffic)
            totals["bytes_down"] += sum(down for _, down in delivery.traffic)
        else:
            totals["bytes_up"] += delivery.arrived * bytes_per_model
        totals["elapsed_s"] = time.perf_counter() - clock
        record = measure(state, round, delivery.arrived, dict(totals))
        if uplink.dp is not None:
            record["epsilon"] = epsilon_after(uplink, round)
        if "dropped" in uplink.columns:
            record["dropped"] = delivery.dropped
        yield RoundResult(record, state)
