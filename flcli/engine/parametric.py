"""A round of a model with a flat parameter vector: broadcast, local steps on the run's backend,
the uplink (attacks, faults, DP, secure or robust aggregation), the server update, personal
models, evaluation."""

import functools
import math
from dataclasses import dataclass, replace

import numpy as np

from flcli.algorithms.base import ClientUpdates, ServerState
from flcli.algorithms.work import LocalSpec, LocalWork, steps_per_epoch
from flcli.engine.blas import one_blas_thread
from flcli.engine.clock import plan_round, round_seconds, sample_available
from flcli.engine.evaluate import client_scores, distribution, personal_scores, round_rows
from flcli.engine.local import Cohort, CohortResult
from flcli.engine.outcome import Trained
from flcli.engine.stragglers import straggler_budgets
from flcli.rng import Purpose, rng


class ParametricRounds:
    def __init__(self, parts):
        self.parts = parts
        config, data = parts.config, parts.partition
        self.config, self.data, self.model, self.algorithm = (
            config,
            data,
            parts.model,
            parts.algorithm,
        )
        self.uplink = parts.uplink
        self.y_local = self.uplink.training_labels(data.y_train, data.offsets, data.num_classes)
        self.base_spec = LocalSpec(config.local_epochs, config.batch_size, config.lr)
        spec = self.algorithm.local_spec(self.base_spec)
        # every local step is this wide: no wider than the largest shard (FedSGD asks for a shard)
        largest_shard = int(np.diff(data.offsets).max())
        self.spec = replace(spec, batch_size=min(spec.batch_size, largest_shard))
        message = self.model.num_params * np.dtype(config.dtype).itemsize
        self.bytes_per_message = message * self.algorithm.models_per_message
        self.system = parts.system
        self.over_select = config.over_select or 1.0
        self.wait = 0.0  # seconds the round being sampled waits for an available client
        self.broadcast = Broadcast.of(config, self.model.num_params, self.bytes_per_message)
        self.accountant = None if self.uplink.dp is None else self.uplink.accountant()

    @property
    def counts(self) -> list[str]:
        """The count columns each round adds to rounds.csv."""
        return self.uplink.counts

    def sample(self, round: int, now: float) -> np.ndarray:
        ids, self.wait = sample_available(self.uplink, self.system, round, now, self.over_select)
        return ids

    def timed(self, cohort: Cohort, work: LocalWork, straggling: np.ndarray):
        """The cohort, its work and its straggling flags cut to the clients kept under
        over-selection, their budgets cut by the deadline, and which of them send."""
        config = self.config
        sent = ~straggling if config.drop_stragglers else np.ones(len(cohort.ids), dtype=bool)
        if config.round_deadline is None and self.over_select == 1:
            return cohort, work, sent
        full = work.step_counts(cohort.sizes, self.spec.batch_size, self.spec.epochs)
        keep = getattr(self.uplink.sampler, "cohort_size", len(cohort.ids))
        plan = plan_round(
            self.system,
            cohort.ids,
            full,
            self.spec.batch_size,
            self.bytes_per_message,
            min(keep, len(cohort.ids)),
            config.round_deadline,
            partial=not config.drop_stragglers,
        )
        work = replace(work.chunk(plan.index), max_steps=plan.budgets)
        return cohort.chunk(plan.index), work, sent[plan.index] & plan.sent

    def initial_state(self) -> ServerState:
        initial = self.model.init(rng(self.config.seed, Purpose.INIT))
        state = self.algorithm.server_init(initial, self.data.num_clients)
        return replace(state, uplink=self.uplink.initial_state())

    def fit(self, cohort: Cohort, w: np.ndarray, spec: LocalSpec, round: int, work) -> CohortResult:
        if not len(cohort.ids):  # DP's Poisson sampling can sample nobody
            return CohortResult(np.empty((0, w.size), w.dtype), np.zeros(0, dtype=np.int64))
        x = self.data.x_train
        seed = self.config.seed
        return self.parts.trainer(self.model, x, self.y_local, cohort, w, spec, seed, round, work)

    def client_work(self, state: ServerState, round: int, cohort: Cohort):
        """The algorithm's local work for the cohort, with stragglers' smaller step budgets, and
        which clients straggle."""
        work = self.algorithm.client_work(state, cohort.ids)
        if self.algorithm.prepare is not None:
            train_first = self.trainer_for(cohort, round)
            work = self.algorithm.prepare(state, cohort.ids, work, train_first)
        straggling = np.zeros(len(cohort.ids), dtype=bool)
        if self.config.stragglers > 0:
            full = steps_per_epoch(cohort.sizes, self.spec.batch_size) * self.spec.epochs
            budgets, straggling = straggler_budgets(
                self.config.seed, round, cohort.ids, full, self.config.stragglers
            )
            work = replace(work, max_steps=budgets)
        return work, straggling

    def chosen(self, state: ServerState, cohort: Cohort) -> ServerState:
        """The state after the sampled clients chose among the algorithm's candidate models by
        their loss on their own training rows (IFCA); the state itself for other algorithms."""
        if self.algorithm.choose is None:
            return state
        x, y = self.data.x_train, self.y_local
        losses = np.stack(
            [
                client_scores(self.model, w, x, y, cohort.starts, cohort.sizes)[0]
                for w in self.algorithm.candidates(state)
            ],
            axis=1,
        ).reshape(len(cohort.ids), -1)
        return self.algorithm.choose(state, cohort.ids, losses)

    def train(self, state: ServerState, round: int, sampled: np.ndarray) -> Trained:
        sampled_cohort = Cohort.of(sampled, self.data.offsets)
        state = self.chosen(state, sampled_cohort)
        work, straggling = self.client_work(state, round, sampled_cohort)
        cohort, work, sent = self.timed(sampled_cohort, work, straggling)
        ids = cohort.ids
        losses = None
        if self.algorithm.needs_client_losses:
            x, y = self.data.x_train, self.y_local
            losses, _ = client_scores(self.model, state.params, x, y, cohort.starts, cohort.sizes)
        start = self.broadcast.model(state.params, round)
        local = self.fit(cohort, start, self.spec, round, work)
        deltas = local.params - start
        holding = state
        if self.algorithm.keep is not None:
            holding = self.algorithm.keep(state, ids, local.params)
        if self.algorithm.carried is not None and local.carry is not None:
            holding = self.algorithm.carried(holding, ids, local.carry)
        if self.algorithm.sends is not None:
            deltas[:, ~self.algorithm.sends] = 0  # what stays on the client is not sent
        updates = ClientUpdates(
            ids=ids,
            deltas=deltas,
            num_samples=cohort.sizes,
            num_steps=local.num_steps,
            losses=losses,
        )
        # The server's sums over clients (BLAS products such as weights @ deltas) are split
        # across BLAS threads: one thread, so that the model's last bits do not depend on cores.
        with one_blas_thread():
            delivery = self.uplink.deliver(round, updates, sent, state.uplink)
            new_state = holding
            if delivery.updates is not None:
                new_state = self.algorithm.server_update(holding, delivery.updates)
        personal = None
        if self.algorithm.personalize is not None:
            new_state, personal = self.personalize(state, new_state, cohort, round)
        new_state = replace(new_state, uplink=delivery.state)
        down = len(sampled) * self.broadcast.bytes_per_client + delivery.bytes_down
        up = delivery.messages_up * self.bytes_per_message + delivery.bytes_up
        if delivery.payload_up is not None:
            up = delivery.payload_up + delivery.bytes_up
        batch, deadline = self.spec.batch_size, self.config.round_deadline
        seconds = self.wait + round_seconds(
            self.system, ids, local.num_steps, batch, sent, down, up, deadline
        )
        kept = None if len(ids) == len(sampled) else ids
        return Trained(new_state, up, down, delivery.counts, personal, seconds, kept)

    def trainer_for(self, cohort: Cohort, round: int):
        """(anchor, work, epochs) -> the cohort's local training from anchor for that many
        epochs: what an algorithm's prepare and personalize steps train with."""

        def train(anchor, work: LocalWork, epochs: int):
            return self.fit(cohort, anchor, replace(self.base_spec, epochs=epochs), round, work)

        return train

    def personalize(self, before: ServerState, after: ServerState, cohort: Cohort, round: int):
        train_personal = self.trainer_for(cohort, round)
        return self.algorithm.personalize(before, after, cohort.ids, train_personal)

    def measure(self, state, round, ids, personal, totals, train_clients=None):
        """(the rounds.csv row, the clients.csv columns) of an evaluated round; train_clients:
        the clients whose training rows give train_loss (None: all)."""
        data, w = self.data, state.params
        record, clients = round_rows(self.model, w, data, round, ids, totals, train_clients)
        if self.algorithm.personalize is not None:
            record.update(self.personal_record(state, round, ids, personal, clients))
        if "cluster" in state.extra:  # clustered FL: each client's cluster
            clients["cluster"] = state.extra["cluster"][ids]
        record.update(self.every_round(state, round))
        return record, clients

    def every_round(self, state: ServerState, round: int) -> dict:
        """The columns a round logs whether it is evaluated or not: the number of clusters
        (clustered FL) and DP's epsilon."""
        columns = {}
        if "cluster" in state.extra:
            columns["clusters"] = len(np.unique(state.extra["cluster"]))
        if self.accountant is not None:
            columns["epsilon"] = self.accountant.epsilon_after(round)
        return columns

    def personal_record(self, state, round, ids, personal, clients: dict) -> dict:
        """personal_accuracy (each client's personal model on its local test split, also written
        into clients) and its distribution over the cohort; global_client_test_accuracy, the
        global model on the same local test splits (what personalization is measured against);
        with new clients, new_client_accuracy."""
        data = self.data
        if personal is None:  # round 0: nothing personalized yet
            personal = np.broadcast_to(state.params, (len(ids), state.params.size))
        offsets = data.client_test_offsets
        starts, sizes = offsets[ids], offsets[ids + 1] - offsets[ids]
        x, y = data.x_client_test, data.y_client_test
        correct = personal_scores(self.model, personal, x, y, starts, sizes)
        shared = personal_scores(
            self.model, np.broadcast_to(state.params, personal.shape), x, y, starts, sizes
        )
        tested = sizes.sum()  # 0 in a round that sampled nobody (DP's Poisson sampling)
        record = {
            "personal_accuracy": float(correct.sum() / tested) if tested else math.nan,
            "global_client_test_accuracy": float(shared.sum() / tested) if tested else math.nan,
        }
        clients["personal_accuracy"] = correct / np.maximum(sizes, 1)
        tested_clients = sizes > 0
        accuracy = correct[tested_clients] / sizes[tested_clients]
        record.update(distribution(accuracy, "personal_accuracy"))
        if data.new_test_offsets is not None:
            record["new_client_accuracy"] = self.new_client_accuracy(state, round)
        return record

    def new_client_accuracy(self, state: ServerState, round: int) -> float:
        """How well clients that never trained (fl partition --new-clients) personalize: each
        new client makes its personal model by the algorithm's own rule (personalize_new, from
        the state on its training rows: IFCA picks a cluster, FedPer trains a head on the global
        body, Per-FedAvg takes one step) and is scored on its local test rows; the mean of those
        accuracies over the new clients that have test rows. An algorithm without such a rule
        (a user's) fine-tunes the whole global model by plain SGD, for its --algo-arg
        personal_epochs or finetune_epochs when given, else 1 epoch. Computed at every evaluated
        round."""
        data, config = self.data, self.config
        offsets = data.new_offsets
        sizes = np.diff(offsets)
        # addresses no training client has, so their shuffles are their own
        ids = data.num_clients + np.arange(len(sizes), dtype=np.int64)
        cohort = Cohort(ids=ids, starts=offsets[:-1], sizes=sizes)
        batch = min(self.base_spec.batch_size, int(sizes.max()))
        x = data.x_new.astype(data.x_train.dtype, copy=False)

        def train(anchor, work: LocalWork, epochs: int):
            spec = replace(self.base_spec, epochs=epochs, batch_size=batch)
            return self.parts.trainer(
                self.model, x, data.y_new, cohort, anchor, spec, config.seed, round, work
            )

        def losses(models: np.ndarray) -> np.ndarray:
            scores = [
                client_scores(self.model, w, x, data.y_new, offsets[:-1], sizes)[0] for w in models
            ]
            return np.stack(scores, axis=1)

        if self.algorithm.personalize_new is not None:
            personal = self.algorithm.personalize_new(state, ids, train, losses)
        else:
            args = config.algo_args
            epochs = int(args.get("personal_epochs") or args.get("finetune_epochs") or 1)
            personal = train(state.params, LocalWork(), epochs).params
        test = data.new_test_offsets
        test_sizes = np.diff(test)
        x_test = data.x_new_test.astype(data.x_train.dtype, copy=False)
        correct = personal_scores(
            self.model, personal, x_test, data.y_new_test, test[:-1], test_sizes
        )
        tested = test_sizes > 0
        return float(np.mean(correct[tested] / test_sizes[tested])) if tested.any() else math.nan


@dataclass(frozen=True)
class Broadcast:
    """What the clients receive of the global model: the model itself, or with --compress-down
    its compressed form C(w) (Caldas, Konecny, McMahan, Talwalkar 2018, "Expanding the Reach of
    Federated Learning by Reducing Client Resource Requirements": lossy compression of the
    server-to-client model). Every sampled client gets the same message, decoded the same way;
    it trains from C(w) and its update is taken from C(w), while the server keeps w exact. The
    message's randomness is addressed by the seed, the round and an address no client has, so a
    resumed run draws it again.
    """

    spec: object | None  # flcli.compression.Compressor, or None: the dense model
    seed: int
    dense_bytes: int  # a client's dense download (all the models the algorithm sends)
    model_bytes: int  # one dense model of them
    float_bits: int

    @classmethod
    def of(cls, config, num_params: int, dense_bytes: int) -> "Broadcast":
        spec = None
        if config.compress_down is not None:
            from flcli import compression

            spec = compression.parse(config.compress_down, "--compress-down")
        width = np.dtype(config.dtype).itemsize
        return cls(spec, config.seed, dense_bytes, num_params * width, 8 * width)

    def model(self, params: np.ndarray, round: int) -> np.ndarray:
        if self.spec is None:
            return params
        from flcli import compression

        decoded, _ = compression.compress(
            self.spec, params[None], self.seed, round, BROADCAST_ADDRESS, self.float_bits
        )
        return decoded[0].astype(params.dtype)

    @functools.cached_property
    def bytes_per_client(self) -> int:
        if self.spec is None:
            return self.dense_bytes
        from flcli import compression

        width = self.model_bytes * 8 // self.float_bits
        bits = compression.sent_bits(self.spec, width, self.float_bits)
        return self.dense_bytes - self.model_bytes + -(-bits // 8)


BROADCAST_ADDRESS = np.array([2**63 - 3], dtype=np.int64)  # the broadcast's: no client's id
