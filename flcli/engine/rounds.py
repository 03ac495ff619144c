"""The round loop: sample, train, aggregate, evaluate; one record per round.

One driver for every kind of model. It holds what all runs share (round 0 or the resumed round,
the byte and time totals, the divergence check) and hands each round to the run's round kind:
ParametricRounds (a flat parameter vector trained in local steps: flcli.engine.parametric),
FittedRounds (estimators fitted once per round and combined: flcli.engine.fitted) or
AsynchronousRounds (one server update of an asynchronous algorithm per round:
flcli.engine.asynchronous).

The loop never prints and never writes files: it yields a RoundResult per round (round 0 is the
initial model) and the caller logs, checkpoints and draws progress.
"""

import math
import time
from collections.abc import Iterator

import numpy as np

from flcli.algorithms.base import ServerState
from flcli.engine.asynchronous import AsynchronousRounds
from flcli.engine.evalplan import EVALUATED, EvaluationPlan, is_evaluated, unevaluated_record
from flcli.engine.fitted import FittedRounds
from flcli.engine.health import advice
from flcli.engine.outcome import RoundResult
from flcli.engine.parametric import ParametricRounds
from flcli.errors import RunFailed
from flcli.models.base import capabilities_of

TOTALS = ("bytes_up", "bytes_down", "elapsed_s", "sim_time_s")


def round_kind(parts):
    """The round kind of the run: asynchronous when the algorithm buffers arrivals, else by the
    model's capability."""
    if getattr(parts.algorithm, "buffer_size", None) is not None:
        return AsynchronousRounds(parts)
    if capabilities_of(parts.model).parametric:
        return ParametricRounds(parts)
    return FittedRounds(parts)


def check_finite(record: dict, state: ServerState, round: int, lr: float) -> None:
    """RunFailed when the model diverged: its train loss (at an evaluated round) or its
    parameters are not finite."""
    train_loss = record["train_loss"]
    measured = is_evaluated(record)
    if (math.isfinite(train_loss) or not measured) and np.isfinite(state.params).all():
        return
    found = f"loss {train_loss}" if measured else "parameters not finite"
    raise RunFailed(f"training diverged at round {round} ({found}); {advice(lr)}")


def run_rounds(parts, resume_from: RoundResult | None = None) -> Iterator[RoundResult]:
    """Yield round 0 (the initial model) and every round up to the config's rounds, or continue
    after resume_from (the last round a previous run completed). Rounds the config does not
    evaluate (--eval-every) yield a row without metrics (flcli.engine.evalplan)."""
    kind, config = round_kind(parts), parts.config
    plan = EvaluationPlan.of(config, parts.partition.num_clients)
    if resume_from is None:
        state = kind.initial_state()
        totals = dict.fromkeys(TOTALS, 0)
        totals["elapsed_s"] = totals["sim_time_s"] = 0.0
        everyone = np.arange(parts.partition.num_clients)
        record, clients = kind.measure(state, 0, everyone, None, totals, plan.train_clients(0))
        check_finite(record, state, 0, config.lr)
        record.update(dict.fromkeys(kind.counts, 0))
        if plan.marks_rounds:
            record[EVALUATED] = 1
        resume_from = RoundResult(record, state, clients)
        yield resume_from
    state, record = resume_from.state, resume_from.record
    totals = {key: record.get(key, 0) for key in TOTALS}  # runs before the clock lack sim_time_s
    clock = time.perf_counter() - totals["elapsed_s"]
    for round in range(record["round"] + 1, config.rounds + 1):
        ids = kind.sample(round, totals["sim_time_s"])
        trained = kind.train(state, round, ids)
        state = trained.state
        ids = ids if trained.ids is None else trained.ids
        totals["bytes_up"] += trained.bytes_up
        totals["bytes_down"] += trained.bytes_down
        totals["sim_time_s"] += trained.seconds
        totals["elapsed_s"] = time.perf_counter() - clock
        if plan.evaluates(round):
            train_clients = plan.train_clients(round)
            record, clients = kind.measure(
                state, round, ids, trained.personal, dict(totals), train_clients
            )
            if plan.marks_rounds:
                record[EVALUATED] = 1
        else:
            logged = {"round": round, "clients": len(ids), **totals}
            record = unevaluated_record(record, {**logged, **kind.every_round(state, round)})
            clients = None
        check_finite(record, state, round, config.lr)
        record.update(trained.counts)
        yield RoundResult(record, state, clients)
