"""The uplink: what happens to the sampled clients' updates on their way into the server update.

In order, each round:
1. sampling: a fixed-size cohort, or with DP each client independently with probability q;
2. attacks: malicious clients (fixed for the run) replace their update (labelflip acts earlier,
   on their training labels: see training_labels);
3. faults: each sampled client fails with probability --dropout; its update never arrives;
4. DP: every update is clipped to norm C (on the client);
5. the server's aggregate (ClientUpdates.aggregate), which every algorithm's server update calls
   where its paper averages: the weighted mean, a robust rule (--aggregator), a secure sum
   (--secure-agg, flcli.privacy.secagg), and with DP the noised sum over the fixed denominator
   (flcli.privacy.dp). A secure aggregation that aborts counts as a round where nobody arrived.

A round where nobody arrives keeps the model, except under DP, where the noise is still added
(the mechanism must not reveal that the cohort was empty).
"""

import math
from dataclasses import dataclass, field

import numpy as np

from flcli.algorithms import robust
from flcli.algorithms.aggregate import weighted_mean
from flcli.algorithms.base import Aggregate, ClientUpdates
from flcli.engine.attacks import attack_updates, flip_labels, malicious_clients
from flcli.engine.dropout import survivors
from flcli.errors import FLError
from flcli.privacy import dp as dpfedavg
from flcli.privacy.secagg import protocol_traffic, secure_sum
from flcli.rng import Purpose, rng


@dataclass(frozen=True)
class Uplink:
    """The run's privacy, robustness and fault settings, resolved against the partition."""

    seed: int
    num_clients: int
    cohort_size: int
    dp: dpfedavg.DPSpec | None = None
    dp_delta: float = 0.0
    dp_accountant: str = "rdp"
    secure_agg: bool = False
    secagg_threshold: int | None = None  # None: a majority of each round's cohort
    aggregator: str = "mean"
    byzantine: float = 0.0
    attack: str | None = None
    malicious: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    attack_strength: float | None = None
    dropout: float = 0.0

    @property
    def counts(self) -> list[str]:
        """The count columns this run adds to rounds.csv (epsilon comes from the accounting)."""
        return ["dropped"] if self.dropout > 0 or self.secure_agg else []

    def sample(self, round: int) -> np.ndarray:
        return sample(self, round)

    def initial_state(self) -> dict[str, np.ndarray]:
        return initial_extra(self)

    def training_labels(self, y, offsets, num_classes) -> np.ndarray:
        return training_labels(self, y, offsets, num_classes)

    def epsilon_after(self, round: int) -> float:
        return epsilon_after(self, round)

    def deliver(self, round, updates, sent, state) -> "Delivery":
        return deliver(self, round, updates, sent, state)

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

    def threshold(self, cohort: int) -> int | None:
        """The survivors a round of `cohort` sampled clients needs to unmask its secure sum (the
        cohort is random under DP, so the default majority is of each round's own)."""
        if not self.secure_agg:
            return None
        return self.secagg_threshold or cohort // 2 + 1


def byzantine_count(fraction: float, clients: int) -> int:
    return math.ceil(fraction * clients - 1e-9)


def default_delta(num_clients: int) -> float:
    """DP's delta unless --dp-delta: well below 1 / clients, as it must be (at delta ~ 1/N a
    mechanism may publish one client's whole data and still count as private; Dwork and Roth
    2014, section 2.3)."""
    return min(1e-5, num_clients**-1.1)


def build_uplink(config, num_clients: int) -> Uplink:
    """Resolve the options against the partition; FLError on combinations it cannot run."""
    cohort = config.cohort_size(num_clients)
    spec = None
    delta = config.dp_delta if config.dp_delta is not None else default_delta(num_clients)
    if config.dp_clip is not None:
        q = cohort / num_clients
        z = config.dp_noise
        if z is None:
            z = dpfedavg.noise_for_epsilon(
                q, config.rounds, config.dp_epsilon, delta, config.dp_accountant
            )
        adaptive = config.dp_clip == "adaptive"
        spec = dpfedavg.DPSpec(
            noise_multiplier=z,
            sampling_rate=q,
            expected_clients=float(cohort),
            clip=None if adaptive else float(config.dp_clip),
        )
        _ = spec.update_noise_multiplier  # adaptive clipping's noise split must exist
    if config.secure_agg:
        if cohort < 2:
            raise FLError(
                f"--secure-agg with {cohort} client per round: the sum of one update is the "
                "update itself; sample at least 2 clients per round"
            )
        threshold = config.secagg_threshold
        if threshold is not None and threshold > cohort:
            raise FLError(
                f"--secagg-threshold {threshold} is larger than the {cohort} clients sampled per "
                f"round; use at most {cohort}"
            )
    byzantine = config.byzantine
    if byzantine is None:
        byzantine = config.malicious if config.malicious is not None else 0.1
    f = byzantine_count(byzantine, cohort)
    needs = {"krum": 2 * f + 3, "multi-krum": 2 * f + 3, "bulyan": 4 * f + 3}
    if cohort < needs.get(config.aggregator, 0):
        raise FLError(
            f"--aggregator {config.aggregator} tolerating f={f} of {cohort} clients per round "
            f"needs at least {needs[config.aggregator]}; sample more clients or lower --byzantine"
        )
    malicious = np.zeros(0, dtype=np.int64)
    if config.attack is not None:
        malicious = malicious_clients(config.seed, num_clients, config.malicious)
        if not len(malicious):
            raise FLError(
                f"--malicious {config.malicious} of {num_clients} clients is no attacker; give "
                f"at least {1 / num_clients:.2g}"
            )
    return Uplink(
        seed=config.seed,
        num_clients=num_clients,
        cohort_size=cohort,
        dp=spec,
        dp_delta=delta,
        dp_accountant=config.dp_accountant,
        secure_agg=config.secure_agg,
        secagg_threshold=config.secagg_threshold,
        aggregator=config.aggregator,
        byzantine=byzantine,
        attack=config.attack,
        malicious=malicious,
        attack_strength=config.attack_strength,
        dropout=config.dropout,
    )


def sample_clients(seed: int, round: int, num_clients: int, cohort_size: int) -> np.ndarray:
    """A fixed-size sample without replacement, sorted."""
    chosen = rng(seed, Purpose.SAMPLE, round).choice(num_clients, cohort_size, replace=False)
    return np.sort(chosen)


def sample(uplink: Uplink, round: int) -> np.ndarray:
    """The round's cohort: Poisson sampling at rate q under DP (what the accounting assumes),
    otherwise a fixed-size sample."""
    if uplink.dp is not None:
        return dpfedavg.poisson_sample(
            uplink.seed, round, uplink.num_clients, uplink.dp.sampling_rate
        )
    return sample_clients(uplink.seed, round, uplink.num_clients, uplink.cohort_size)


def training_labels(uplink: Uplink, y: np.ndarray, offsets: np.ndarray, num_classes) -> np.ndarray:
    """The labels the clients train on: flipped for label-flipping attackers."""
    if uplink.attack != "labelflip":
        return y
    return flip_labels(y, offsets, uplink.malicious, num_classes)


def initial_extra(uplink: Uplink) -> dict[str, np.ndarray]:
    """Server state the uplink keeps across rounds, in ServerState.extra so that a checkpoint
    holds it (DP's current clipping norm, which adaptive clipping moves)."""
    if uplink.dp is None:
        return {}
    clip = uplink.dp.initial_clip if uplink.dp.adaptive else uplink.dp.clip
    return {"dp_clip": np.array(clip)}


def epsilon_after(uplink: Uplink, rounds: int) -> float:
    spec = uplink.dp
    return dpfedavg.epsilon(
        spec.sampling_rate, spec.noise_multiplier, rounds, uplink.dp_delta, uplink.dp_accountant
    )


@dataclass
class Delivery:
    """What reached the server in one round."""

    updates: ClientUpdates | None  # None: nothing to aggregate, the model stays
    state: dict[str, np.ndarray]  # the uplink's server state after the round
    counts: dict[str, int]  # the round's values of Uplink.counts
    messages_up: int  # plain updates that arrived (0 under secure aggregation)
    # (up, down) bytes of each secure aggregation, instead of the plain updates; filled in when
    # the server update calls the aggregate, so read it after that
    traffic: list[tuple[int, int]]

    @property
    def bytes_up(self) -> int:
        return sum(up for up, _ in self.traffic)

    @property
    def bytes_down(self) -> int:
        return sum(down for _, down in self.traffic)


def robust_rule(name: str, byzantine: float) -> Aggregate:
    def aggregate(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
        n = len(vectors)
        # With fewer arrivals than the rule needs for f (dropouts), f shrinks to what they allow.
        f = byzantine_count(byzantine, n)
        if name == "median":
            return robust.coordinate_median(vectors)
        if name == "geomed":
            return robust.geometric_median(vectors, weights)
        if name == "trimmed-mean":
            return robust.trimmed_mean(vectors, min(f, (n - 1) // 2))
        if n < 3:
            return robust.coordinate_median(vectors)
        if name == "bulyan":
            return robust.bulyan(vectors, min(f, (n - 3) // 4))
        f = min(f, (n - 3) // 2)
        return robust.krum(vectors, f) if name == "krum" else robust.multi_krum(vectors, f)

    return aggregate


def in_dtype_of_vectors(rule: Aggregate) -> Aggregate:
    """The rule, returning the dtype it was given (a float32 run stays float32)."""

    def aggregate(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return rule(vectors, weights).astype(vectors.dtype, copy=False)

    return aggregate


def deliver(
    uplink: Uplink,
    round: int,
    updates: ClientUpdates,
    sent: np.ndarray,
    extra: dict[str, np.ndarray],
) -> Delivery:
    """Attacks, failures, clipping, and the aggregate the server update will use. updates holds
    the whole sampled cohort; sent [K] marks the clients that send theirs (the loop leaves out
    dropped stragglers). The updates that arrive reach the server update with the aggregate."""
    seed, ids, deltas = uplink.seed, updates.ids, updates.deltas
    if uplink.attack is not None and uplink.attack != "labelflip":
        sent_deltas = attack_updates(
            uplink.attack, deltas, ids, uplink.malicious, seed, round, uplink.attack_strength
        )
        deltas = sent_deltas.astype(deltas.dtype, copy=False)
    alive = sent & survivors(seed, round, ids, uplink.dropout)
    traffic: list[tuple[int, int]] = []
    threshold = uplink.threshold(len(ids))
    if threshold is not None and len(ids) and alive.sum() < threshold:
        # the protocol aborts after the masked inputs: keys, shares and vectors were sent
        traffic.append(protocol_traffic(len(ids), int(alive.sum()), deltas.shape[1] + 1, True))
        alive = np.zeros(len(ids), dtype=bool)
    spec, new_extra = uplink.dp, {key: extra[key] for key in initial_extra(uplink)}
    if spec is not None:
        clip = float(extra["dp_clip"])
        clipped, norms = dpfedavg.clip_updates(deltas, clip)
        deltas = clipped.astype(deltas.dtype, copy=False)
        if spec.adaptive:
            new_extra["dp_clip"] = np.array(
                dpfedavg.next_clip(clip, norms[alive], spec, seed, round)
            )

    def secure(vectors: np.ndarray) -> np.ndarray:
        """The sum of the arrived clients' vectors through the protocol (the whole sampled
        cohort took part in the key exchange)."""
        full = np.zeros((len(ids), vectors.shape[1]))
        full[alive] = vectors
        result = secure_sum(full, alive, threshold, seed, round, ids)
        traffic.append((result.bytes_up, result.bytes_down))
        return result.total

    if spec is not None:

        def aggregate(vectors, weights):
            total = np.zeros(vectors.shape[1]) if len(vectors) == 0 else vectors.sum(axis=0)
            if threshold is not None and len(vectors):
                total = secure(vectors)
            return dpfedavg.noised_mean(total, clip, spec, seed, round)

    elif threshold is not None:

        def aggregate(vectors, weights):
            weights = np.asarray(weights, dtype=np.float64)
            total = secure(np.hstack([weights[:, None] * vectors, weights[:, None]]))
            return total[:-1] / total[-1]

    elif uplink.aggregator != "mean":
        aggregate = robust_rule(uplink.aggregator, uplink.byzantine)
    else:
        aggregate = weighted_mean
    arrived = int(alive.sum())
    arrivals = None
    if arrived or spec is not None:  # under DP the noise is added even to an empty round
        arrivals = ClientUpdates(
            ids=ids[alive],
            deltas=deltas[alive],
            num_samples=updates.num_samples[alive],
            num_steps=updates.num_steps[alive],
            losses=None if updates.losses is None else updates.losses[alive],
            aggregate=in_dtype_of_vectors(aggregate),
        )
    dropped = dict.fromkeys(uplink.counts, len(ids) - arrived)
    messages = 0 if threshold is not None else arrived
    return Delivery(arrivals, new_extra, dropped, messages, traffic)
