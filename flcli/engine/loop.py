"""The round loop: sample, broadcast, train locally, aggregate, evaluate; one record per round.

The loop never prints and never writes files: it yields a RoundResult per round (round 0 is the
initial model) and the caller logs, checkpoints and draws progress.
"""

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from flcli.algorithms.base import Algorithm, ClientUpdates, Context, ServerState
from flcli.algorithms.registry import algorithm_info, make_algorithm
from flcli.config import TrainConfig
from flcli.data.holdout import hold_out_proxy
from flcli.data.store import Partition
from flcli.engine.backends import trainer_for
from flcli.engine.blas import one_blas_thread
from flcli.engine.evaluate import client_scores, personal_scores, round_rows
from flcli.engine.local import Cohort, CohortResult, LocalSpec, LocalWork, steps_per_epoch
from flcli.engine.stragglers import straggler_budgets
from flcli.engine.uplink import build_uplink
from flcli.errors import FLError, RunFailed
from flcli.privacy.options import refuse_for_model
from flcli.rng import Purpose, rng


@dataclass(frozen=True)
class RoundResult:
    record: dict  # one row of rounds.csv
    state: ServerState  # the server state after this round
    clients: dict[str, np.ndarray] | None = None  # the round's rows of clients.csv, by column


def training_data(partition: Partition, config: TrainConfig) -> tuple[Partition, np.ndarray | None]:
    """What the clients train on and FedDF's proxy set (rows held out of every client's shard;
    train_loss and the client metrics are then measured on what the clients keep)."""
    x_proxy = None
    if config.proxy_fraction is not None:
        partition, x_proxy = hold_out_proxy(partition, config.proxy_fraction, config.seed)
    return partition, x_proxy


def build_algorithm(partition: Partition, model, config: TrainConfig, x_proxy=None) -> Algorithm:
    if algorithm_info(config.algo).personalizes and model.task == "regression":
        raise FLError(
            f"--algo {config.algo} scores personal models by their accuracy, so it needs a "
            "classification partition; this one is regression: choose another --algo"
        )
    if algorithm_info(config.algo).personalizes and not partition.has_client_test:
        raise FLError(
            f"--algo {config.algo} scores personal models on clients' local test splits, which "
            "this partition lacks; re-create it with fl partition ... --client-test-fraction 0.2"
        )
    refuse_for_model(config, model)
    refusal = algorithm_info(config.algo).refuses_estimators
    if refusal and getattr(model, "trains_client_by_client", False):
        raise FLError(
            f"--algo {config.algo} {refusal}; use a NumPy model (e.g. --model softmax) or "
            "another --algo (e.g. fedavg)"
        )
    if not getattr(model, "parametric", True) and config.stragglers:
        raise FLError(
            f"--stragglers applies to models trained in local steps; --model {model.name} is "
            "fitted once per round, so drop --stragglers"
        )
    context = Context(model, partition.num_clients, config.lr, x_proxy)
    return make_algorithm(config.algo, config.hyperparameters(), context)


def run_rounds(
    partition: Partition,
    model,
    config: TrainConfig,
    resume_from: RoundResult | None = None,
) -> Iterator[RoundResult]:
    """Yield round 0 (the initial model) and every round up to config.rounds, or continue after
    resume_from (the last round a previous run completed). Models without parameters to average
    run in flcli.engine.ensembles instead."""
    if not getattr(model, "parametric", True):
        from flcli.engine.ensembles import run_ensemble_rounds

        yield from run_ensemble_rounds(partition, model, config, resume_from)
        return
    partition, x_proxy = training_data(partition.astype(config.dtype), config)
    algorithm = build_algorithm(partition, model, config, x_proxy)
    train = trainer_for(model, config.backend, config.jobs, config.ray_address)
    uplink = build_uplink(config, partition.num_clients, config.cohort_size(partition.num_clients))
    x, y = partition.x_train, partition.y_train
    y_local = uplink.training_labels(y, partition.offsets, partition.num_classes)  # labelflip

    def fit(cohort: Cohort, w: np.ndarray, spec: LocalSpec, round: int, work) -> CohortResult:
        if not len(cohort.ids):  # DP's Poisson sampling can sample nobody
            return CohortResult(np.empty((0, w.size), w.dtype), np.zeros(0, dtype=np.int64))
        return train(model, x, y_local, cohort, w, spec, config.seed, round, work)

    base_spec = LocalSpec(config.local_epochs, config.batch_size, config.lr)
    spec = algorithm.local_spec(base_spec)
    # the width of every local step: no wider than the largest shard (FedSGD asks for a whole shard)
    largest_shard = int(np.diff(partition.offsets).max())
    spec = replace(spec, batch_size=min(spec.batch_size, largest_shard))
    bytes_per_message = model.num_params * np.dtype(config.dtype).itemsize
    bytes_per_message *= algorithm.models_per_message

    def measure(state, round, ids, personal, totals) -> tuple[dict, dict]:
        record, clients = round_rows(model, state.params, partition, round, ids, totals)
        train_loss = record["train_loss"]
        if not (math.isfinite(train_loss) and np.isfinite(state.params).all()):
            raise RunFailed(
                f"training diverged at round {round} (loss {train_loss}); "
                f"try a smaller --lr, e.g. {config.lr / 10:g}"
            )
        if algorithm.personalize is not None:
            offsets = partition.client_test_offsets
            starts, sizes = offsets[ids], offsets[ids + 1] - offsets[ids]
            correct = personal_scores(
                model, personal, partition.x_client_test, partition.y_client_test, starts, sizes
            )
            tested = sizes.sum()  # 0 in a round that sampled nobody (DP's Poisson sampling)
            record["personal_accuracy"] = float(correct.sum() / tested) if tested else math.nan
            clients["personal_accuracy"] = correct / np.maximum(sizes, 1)
        if uplink.dp is not None:
            record["epsilon"] = uplink.epsilon_after(round)
        return record, clients

    if resume_from is None:
        initial = model.init(rng(config.seed, Purpose.INIT))
        state = algorithm.server_init(initial, partition.num_clients)
        state = replace(state, uplink=uplink.initial_state())
        everyone = np.arange(partition.num_clients)
        totals = {"bytes_up": 0, "bytes_down": 0, "elapsed_s": 0.0}
        personal = np.tile(state.params, (len(everyone), 1))  # nothing personalized yet
        record, clients = measure(state, 0, everyone, personal, totals)
        record.update(dict.fromkeys(uplink.counts, 0))
        result = RoundResult(record, state, clients)
        yield result
    else:
        result = resume_from
    state, record = result.state, result.record
    totals = {key: record[key] for key in ("bytes_up", "bytes_down", "elapsed_s")}
    clock = time.perf_counter() - totals["elapsed_s"]
    for round in range(record["round"] + 1, config.rounds + 1):
        ids = uplink.sample(round)
        cohort = Cohort.of(ids, partition.offsets)
        work = algorithm.client_work(state, ids)
        straggling = np.zeros(len(ids), dtype=bool)
        if config.stragglers > 0:
            full = steps_per_epoch(cohort.sizes, spec.batch_size) * spec.epochs
            budgets, straggling = straggler_budgets(
                config.seed, round, ids, full, config.stragglers
            )
            work = replace(work, max_steps=budgets)
        losses = None
        if algorithm.needs_client_losses:
            losses, _ = client_scores(model, state.params, x, y_local, cohort.starts, cohort.sizes)
        local = fit(cohort, state.params, spec, round, work)
        updates = ClientUpdates(
            ids=ids,
            deltas=local.params - state.params,
            num_samples=cohort.sizes,
            num_steps=local.num_steps,
            losses=losses,
        )
        sent = ~straggling if config.drop_stragglers else np.ones(len(ids), dtype=bool)
        # The server's sums over clients (BLAS products such as weights @ deltas) are split
        # across BLAS threads: one thread, so that the model's last bits do not depend on cores.
        with one_blas_thread():
            delivery = uplink.deliver(round, updates, sent, state.uplink)
            new_state = state
            if delivery.updates is not None:
                new_state = algorithm.server_update(state, delivery.updates)
        personal = None
        if algorithm.personalize is not None:

            def train_personal(anchor, personal_work: LocalWork, epochs: int, at=(cohort, round)):
                personal_spec = replace(base_spec, epochs=epochs)
                return fit(at[0], anchor, personal_spec, at[1], personal_work)

            new_state, personal = algorithm.personalize(state, new_state, ids, train_personal)
        state = replace(new_state, uplink=delivery.state)
        totals["bytes_down"] += len(ids) * bytes_per_message + delivery.bytes_down
        totals["bytes_up"] += delivery.messages_up * bytes_per_message + delivery.bytes_up
        totals["elapsed_s"] = time.perf_counter() - clock
        record, clients = measure(state, round, ids, personal, dict(totals))
        record.update(delivery.counts)
        yield RoundResult(record, state, clients)
