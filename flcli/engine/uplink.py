"""The uplink: what happens to the sampled clients' updates on their way into the server update,
as an ordered list of stages (flcli.engine.stages, flcli.engine.aggregates). Each round:

0. sample: a fixed-size cohort, or with DP each client independently with probability q;
1. attack: malicious clients (fixed for the run) replace their update (labelflip acts earlier,
   on their training labels: see training_labels);
2. dropout: each sampled client fails with probability --dropout; its update never arrives;
3. secagg: secure aggregation's threshold; a round with fewer survivors aborts, nobody arrives;
3b. compress: each update is sent compressed (--compress, flcli.compression; under --secure-agg as
   integer codes on a grid shared by the round, which the secure sum adds), with error feedback
   if asked; the server decodes it, and the message's exact bits are what the round counts;
4. dp: every update is clipped to norm C (on the client);
5. aggregate: the server's combination of the updates that arrived (ClientUpdates.aggregate), which
   every algorithm's server update calls where its paper averages: the weighted mean, a robust rule
   (--aggregator), a secure sum (--secure-agg), or DP's noised mean over a secure sum or not.

Sampling makes the cohort before local training; the other stages pass each round's Message from
one to the next, and the ones the options do not ask for are left out. A stage's state (DP's
clipping norm, which adaptive clipping moves) lives in ServerState.uplink as <stage>_<key>
(dp_clip), apart from the algorithm's ServerState.extra, so that a checkpoint holds it.

A round where nobody arrives keeps the model, except under DP, where the noise is still added.
"""

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from flcli import compression
from flcli.algorithms.base import Aggregate, ClientUpdates
from flcli.engine.aggregates import NoisedMean, RobustMean, UniformWeights, aggregate_stage
from flcli.engine.attacks import malicious_clients
from flcli.engine.stages import (
    Attack,
    Compress,
    DPClip,
    Dropout,
    FixedSample,
    Message,
    PoissonSample,
    SecAggThreshold,
    Stage,
    State,
)
from flcli.errors import FLError
from flcli.privacy import dp as dpfedavg
from flcli.privacy.options import parse_clip

# The stages whose options check_uplink_options checks, in the order of the pipeline.
CHECKED: tuple[type[Stage], ...] = (
    Attack,
    Dropout,
    SecAggThreshold,
    Compress,
    DPClip,
    NoisedMean,
    RobustMean,
)


@dataclass
class Delivery:
    """What reached the server in one round."""

    updates: ClientUpdates | None  # None: nothing to aggregate, the model stays
    state: State  # the uplink's state after the round (ServerState.uplink)
    counts: dict[str, int]  # the round's values of Uplink.counts
    messages_up: int  # plain updates that arrived (0 under secure aggregation)
    payload_up: int | None  # their exact bytes when compressed; None: dense messages
    # (up, down) bytes of each secure aggregation, instead of the plain updates; filled in when
    # the server update calls the aggregate, so read it after that
    traffic: list[tuple[int, int]]

    @property
    def bytes_up(self) -> int:
        return sum(up for up, _ in self.traffic)

    @property
    def bytes_down(self) -> int:
        return sum(down for _, down in self.traffic)


def in_dtype_of_vectors(rule: Aggregate) -> Aggregate:
    """The rule, returning the dtype it was given (a float32 run stays float32)."""

    def aggregate(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return rule(vectors, weights).astype(vectors.dtype, copy=False)

    return aggregate


@dataclass(frozen=True)
class Uplink:
    """The run's privacy, robustness and fault stages, resolved against the partition."""

    sampler: FixedSample | PoissonSample
    stages: tuple[Stage, ...]  # attack, dropout, secagg, dp, aggregate: those the run asks for
    dp: dpfedavg.DPSpec | None = None
    dp_delta: float = 0.0
    dp_accountant: str = "rdp"

    def __post_init__(self) -> None:
        stateful = zip(self.stages, self.state_names, strict=True)
        named = [stage.name for stage, keys in stateful if keys]
        if len(set(named)) != len(named):
            raise ValueError(f"stages with state need names of their own, not {named}")

    @cached_property
    def state_names(self) -> tuple[dict[str, str], ...]:
        """Each stage's state keys, mapped to their names in ServerState.uplink (worked out once:
        an error-feedback stage's initial state is a clients-by-parameters array)."""
        return tuple(
            {key: f"{stage.name}_{key}" for key in stage.initial_state()} for stage in self.stages
        )

    @property
    def counts(self) -> list[str]:
        """The count columns this run adds to rounds.csv (epsilon comes from the accounting)."""
        return list(dict.fromkeys(name for stage in self.stages for name in stage.counts))

    def sample(self, round: int) -> np.ndarray:
        return self.sampler.sample(round)

    def training_labels(self, y: np.ndarray, offsets: np.ndarray, num_classes) -> np.ndarray:
        """The labels the clients train on: flipped for label-flipping attackers."""
        for stage in self.stages:
            y = stage.training_labels(y, offsets, num_classes)
        return y

    def initial_state(self) -> State:
        """ServerState.uplink before the first round."""
        return {
            f"{stage.name}_{key}": value
            for stage in self.stages
            for key, value in stage.initial_state().items()
        }

    def deliver(
        self, round: int, updates: ClientUpdates, sent: np.ndarray, uplink_state: State
    ) -> Delivery:
        """Run the round's updates through the stages. updates holds the whole sampled cohort;
        sent [K] marks the clients that send theirs (the loop leaves out dropped stragglers).
        The updates that arrive reach the server update with the aggregate."""
        message = Message(round, updates.ids, updates.deltas, np.asarray(sent, dtype=bool))
        state: State = {}
        for stage, keys in zip(self.stages, self.state_names, strict=True):
            missing = [name for name in keys.values() if name not in uplink_state]
            if missing:
                raise FLError(
                    f"the server state lacks the uplink's {', '.join(missing)} (a checkpoint of "
                    "an older flcli?); start the run over in a new --out"
                )
            own = {key: uplink_state[name] for key, name in keys.items()}
            message, own = stage.apply(message, own)
            state.update({keys[key]: value for key, value in own.items()})
        alive = message.alive
        arrivals = None
        if alive.any() or message.release_empty:
            arrived = slice(None) if alive.all() else alive  # no [K, P] copy when all arrive
            arrivals = ClientUpdates(
                ids=updates.ids[arrived],
                deltas=message.deltas[arrived],
                num_samples=updates.num_samples[arrived],
                num_steps=updates.num_steps[arrived],
                losses=None if updates.losses is None else updates.losses[arrived],
                aggregate=in_dtype_of_vectors(message.aggregate),
            )
        counts = {name: getattr(message, name) for name in self.counts}
        messages_up = int(alive.sum()) if message.plain else 0
        payload_up = None
        if message.bits is not None:
            payload_up = int(np.ceil(message.bits[alive] / 8).sum()) if message.plain else 0
        return Delivery(arrivals, state, counts, messages_up, payload_up, message.traffic)

    def accountant(self) -> dpfedavg.RunAccountant:
        """A run's accounting of DP: the epsilon spent after each round."""
        spec = self.dp
        return dpfedavg.RunAccountant(
            spec.sampling_rate, spec.noise_multiplier, self.dp_delta, self.dp_accountant
        )

    def dp_record(self) -> dict:
        """DP's resolved values, as run.json keeps them: the noise multiplier (the one
        --dp-epsilon calibrated), delta, the sampling rate and the accountant."""
        record = {
            "noise_multiplier": self.dp.noise_multiplier,
            "delta": self.dp_delta,
            "sampling_rate": self.dp.sampling_rate,
            "accountant": self.dp_accountant,
        }
        if self.dp.adaptive:
            record["update_noise_multiplier"] = self.dp.update_noise_multiplier
        return record


def check_uplink_options(config) -> None:
    """FLError on a bad value or combination of the uplink's options (nothing of the partition
    needed)."""
    for stage in CHECKED:
        stage.check_options(config)


def default_delta(num_clients: int) -> float:
    """DP's delta unless --dp-delta: well below 1 / clients, as it must be (at delta ~ 1/N a
    mechanism may publish one client's whole data and still count as private; Dwork and Roth
    2014, section 2.3)."""
    return min(1e-5, num_clients**-1.1)


def dp_spec(config, num_clients: int, cohort_size: int, delta: float) -> dpfedavg.DPSpec | None:
    """DP-FedAvg's parameters, the noise calibrated to --dp-epsilon if given; None without DP."""
    clip = parse_clip(config.dp_clip)
    if clip is None:
        return None
    q = cohort_size / num_clients
    z = config.dp_noise
    if z is None:
        z = dpfedavg.noise_for_epsilon(
            q, config.rounds, config.dp_epsilon, delta, config.dp_accountant
        )
    spec = dpfedavg.DPSpec(
        noise_multiplier=z,
        sampling_rate=q,
        expected_clients=float(cohort_size),
        clip=None if clip == "adaptive" else clip,
    )
    _ = spec.update_noise_multiplier  # adaptive clipping's noise split must exist
    return spec


def compress_stage(config, num_clients: int, num_params: int) -> Compress | None:
    if config.compress is None:
        return None
    spec = compression.parse(config.compress, "--compress")
    return Compress(
        spec, config.seed, config.error_feedback, num_clients, num_params, config.secure_agg
    )


def build_uplink(config, num_clients: int, cohort_size: int, num_params: int = 0) -> Uplink:
    """Resolve the options against the partition (num_params: the model's, which error
    feedback's table needs); FLError on combinations it cannot run."""
    seed = config.seed
    delta = config.dp_delta if config.dp_delta is not None else default_delta(num_clients)
    if config.dp_clip is not None and delta >= 1 / num_clients:
        raise FLError(
            f"--dp-delta {delta:g} is not below 1/clients = {1 / num_clients:g}: at such a delta "
            f"one client's whole data may leak; use at most {default_delta(num_clients):.2g}"
        )
    dp = dp_spec(config, num_clients, cohort_size, delta)
    if dp is None:
        sampler = FixedSample(seed, num_clients, cohort_size)
    else:
        sampler = PoissonSample(seed, num_clients, dp.sampling_rate)
    attack = None
    if config.attack is not None:
        malicious = malicious_clients(seed, num_clients, config.malicious)
        attack = Attack(seed, config.attack, config.malicious, malicious, config.attack_strength)
    stages = (
        attack,
        Dropout(seed, config.dropout) if config.dropout > 0 else None,
        SecAggThreshold(config.secagg_threshold) if config.secure_agg else None,
        compress_stage(config, num_clients, num_params),
        DPClip(dp, seed) if dp is not None else None,
        aggregate_stage(config, dp),
        UniformWeights() if config.server_weighting == "uniform" and dp is None else None,
    )
    stages = tuple(stage for stage in stages if stage is not None)
    for stage in stages:
        stage.check(num_clients, cohort_size)
    return Uplink(sampler, stages, dp, delta, config.dp_accountant)
