"""The uplink's last stage (flcli.engine.uplink): how the server combines the updates that
arrived. It sets Message.aggregate, which every algorithm's server update calls where its paper
averages (ClientUpdates.aggregate). One of:

- WeightedMean: the sample-weighted mean, the algorithm's own rule;
- RobustMean: a robust rule by name (flcli.algorithms.robust_rules);
- SecureMean: the weighted mean from a secure sum (flcli.privacy.secagg) of the weighted updates
  and their weights;
- NoisedMean: DP-FedAvg's noised sum of the clipped updates over the fixed expected cohort
  (flcli.privacy.dp), the sum secure or not. It reaches the server update even when nobody
  arrived: the mechanism must not reveal that the cohort was empty.
"""

import math
from dataclasses import dataclass, replace

import numpy as np

from flcli.algorithms import robust
from flcli.algorithms.aggregate import weighted_mean
from flcli.algorithms.robust_rules import ROBUST_RULES, aggregators
from flcli.engine.stages import Message, Stage, State
from flcli.errors import FLError, RunFailed
from flcli.privacy import dp as dpfedavg
from flcli.privacy.options import parse_clip
from flcli.privacy.secagg import secure_sum, secure_word_sum


def byzantine_count(fraction: float, clients: int) -> int:
    return math.ceil(fraction * clients - 1e-9)


def secure_total(message: Message, vectors: np.ndarray, seed: int) -> np.ndarray:
    """The sum of the arrived clients' vectors through the protocol, whose key exchange the whole
    sampled cohort took part in; its bytes join the message's traffic."""
    full = np.zeros((len(message.ids), vectors.shape[1]))
    full[message.alive] = vectors
    result = secure_sum(full, message.alive, message.threshold, seed, message.round, message.ids)
    message.traffic.append((result.bytes_up, result.bytes_down))
    return result.total


def secure_code_sum(message: Message, weights: np.ndarray, seed: int) -> tuple[np.ndarray, int]:
    """(sum_k w_k codes_k [d], W = sum_k w_k) over the arrived clients, exact integers, through the
    protocol in Z_{2^b}: each client scales its codes by its integer weight (its sample count) and
    appends the weight as one more word; b is the fewest bits that hold +-largest code * W."""
    codes = message.codes
    K, d = codes.codes.shape
    weight = int(weights.sum())
    bits = (codes.largest * max(weight, 1)).bit_length() + 1
    if bits > 64:
        raise RunFailed(
            f"secure aggregation in round {message.round}: the weighted codes need {bits} bits, "
            "beyond the 64 of the masks' words; use fewer --compress bits or fewer clients"
        )
    words = np.zeros((K, d + 1), dtype=np.int64)
    words[message.alive, :d] = weights[:, None] * codes.codes[message.alive]
    words[message.alive, d] = weights
    result = secure_word_sum(
        words.view(np.uint64),
        message.alive,
        message.threshold,
        seed,
        message.round,
        message.ids,
        word_bits=bits,
        label=b" codes",
    )
    message.traffic.append((result.bytes_up, result.bytes_down))
    total = result.total.view(np.int64)
    if bits < 64:  # the two's complement of a b-bit word
        total = np.where(total >= 1 << (bits - 1), total - (1 << bits), total)
    return total[:d], int(total[d])


@dataclass(frozen=True)
class WeightedMean(Stage):
    name = "aggregate"

    def apply(self, message: Message, state: State) -> tuple[Message, State]:
        return replace(message, aggregate=weighted_mean), state


@dataclass(frozen=True)
class RobustMean(Stage):
    """--aggregator: a rule of flcli.algorithms.robust_rules tolerating a fraction of each
    round's arrivals (with fewer arrivals than the cohort, f shrinks to what they allow)."""

    name = "aggregate"
    rule: str
    byzantine: float

    @staticmethod
    def check_options(config) -> None:
        """--aggregator and --byzantine; DP and secure aggregation need the plain mean."""
        names = aggregators()
        if config.aggregator not in names:
            raise FLError(
                f"unknown --aggregator {config.aggregator!r}; choose one of: {', '.join(names)}"
            )
        robust_rule = config.aggregator != "mean"
        if robust_rule and parse_clip(config.dp_clip) is not None:
            raise FLError(
                f"--aggregator {config.aggregator} with DP: the privacy accounting holds for the "
                "noised mean only; drop --aggregator or --dp-clip"
            )
        if robust_rule and config.secure_agg:
            raise FLError(
                f"--aggregator {config.aggregator} with --secure-agg: the server sees only the "
                "sum of the updates; drop one of them"
            )
        sign = config.compress is not None and config.compress.strip() == "sign"
        if config.aggregator == "majority" and not sign:
            raise FLError(
                "--aggregator majority votes with the clients' signs; give --compress sign "
                f"(not {config.compress}) or another --aggregator"
            )
        byzantine = config.byzantine
        if byzantine is not None and not robust_rule:
            raise FLError(
                f"--byzantine {byzantine} is what a robust --aggregator tolerates; give one (e.g. "
                "--aggregator krum) or drop --byzantine"
            )
        if byzantine is not None and not 0 <= byzantine < 0.5:
            raise FLError(f"--byzantine {byzantine} must be in [0, 0.5), e.g. 0.2")
        if robust_rule and config.malicious is not None and config.malicious >= 0.5:
            raise FLError(
                f"--malicious {config.malicious} with --aggregator {config.aggregator}: no robust "
                "aggregator tolerates half the clients or more; use --malicious below 0.5"
            )

    def check(self, num_clients: int, cohort_size: int) -> None:
        f = byzantine_count(self.byzantine, cohort_size)
        needs = ROBUST_RULES[self.rule].needs(f)
        if cohort_size < needs:
            raise FLError(
                f"--aggregator {self.rule} tolerating f={f} of {cohort_size} clients per round "
                f"needs at least {needs}; sample more clients or lower --byzantine"
            )

    def apply(self, message: Message, state: State) -> tuple[Message, State]:
        return replace(message, aggregate=self.combine), state

    def combine(self, vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
        rule, arrivals = ROBUST_RULES[self.rule], len(vectors)
        if arrivals < rule.fewest:
            return robust.coordinate_median(vectors)
        f = min(byzantine_count(self.byzantine, arrivals), rule.largest_f(arrivals))
        return rule.combine(vectors, weights, f)


@dataclass(frozen=True)
class SecureMean(Stage):
    """The weighted mean, of which the server sees only the secure sum (after SecAggThreshold,
    which sets each round's threshold)."""

    name = "aggregate"
    seed: int

    def apply(self, message: Message, state: State) -> tuple[Message, State]:
        def aggregate(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
            weights = np.asarray(weights, dtype=np.float64)
            codes = message.codes
            on_grid = codes is not None and np.array_equal(vectors, message.deltas[message.alive])
            whole = np.array_equal(weights, np.round(weights)) and np.all(weights >= 0)
            if on_grid and whole:  # else (other vectors or weights) the dense fixed-point sum
                total, weight = secure_code_sum(message, weights.astype(np.int64), self.seed)
                return codes.decode(total, weight) / weight
            weighted = np.hstack([weights[:, None] * vectors, weights[:, None]])
            total = secure_total(message, weighted, self.seed)
            return total[:-1] / total[-1]

        return replace(message, aggregate=aggregate), state


@dataclass(frozen=True)
class NoisedMean(Stage):
    """DP-FedAvg's release, (sum + N(0, (z C)^2 I)) / (q N), with C the norm DPClip clipped the
    round's updates to; the sum is a secure one after SecAggThreshold when `secure`."""

    name = "aggregate"
    spec: dpfedavg.DPSpec
    seed: int
    secure: bool = False

    @staticmethod
    def check_options(config) -> None:
        """--dp-noise or --dp-epsilon, --dp-delta and --dp-accountant, which need --dp-clip."""
        dp = parse_clip(config.dp_clip) is not None
        if config.dp_noise is not None and config.dp_epsilon is not None:
            raise FLError("give --dp-noise or --dp-epsilon, not both")
        if dp and config.dp_noise is None and config.dp_epsilon is None:
            raise FLError("--dp-clip needs --dp-noise Z (noise multiplier) or --dp-epsilon E")
        for flag, value in (
            ("--dp-noise", config.dp_noise),
            ("--dp-epsilon", config.dp_epsilon),
            ("--dp-delta", config.dp_delta),
        ):
            if value is not None and not dp:
                raise FLError(f"{flag} needs --dp-clip C (a norm, or 'adaptive')")
        if config.dp_noise is not None and not config.dp_noise >= 0:
            raise FLError(f"--dp-noise {config.dp_noise} must be >= 0, e.g. 1.0")
        if config.dp_epsilon is not None and not config.dp_epsilon > 0:
            raise FLError(f"--dp-epsilon {config.dp_epsilon} must be > 0, e.g. 2")
        if config.dp_delta is not None and not 0 < config.dp_delta < 1:
            raise FLError(f"--dp-delta {config.dp_delta} must be in (0, 1), e.g. 1e-5")
        if config.dp_accountant not in dpfedavg.ACCOUNTANTS:
            raise FLError(f"--dp-accountant {config.dp_accountant!r}: choose rdp or pld")

    def apply(self, message: Message, state: State) -> tuple[Message, State]:
        def aggregate(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
            if self.secure and len(vectors):
                total = secure_total(message, vectors, self.seed)
            else:
                total = vectors.sum(axis=0) if len(vectors) else np.zeros(vectors.shape[1])
            return dpfedavg.noised_mean(total, message.clip, self.spec, self.seed, message.round)

        return replace(message, aggregate=aggregate, release_empty=True), state


def aggregate_stage(config, dp: dpfedavg.DPSpec | None) -> Stage:
    """The run's aggregate: DP's noised mean, else the secure mean, else the --aggregator."""
    if dp is not None:
        return NoisedMean(dp, config.seed, secure=config.secure_agg)
    if config.secure_agg:
        return SecureMean(config.seed)
    if config.aggregator == "mean":
        return WeightedMean()
    byzantine = config.byzantine
    if byzantine is None:
        byzantine = config.malicious if config.malicious is not None else 0.1
    return RobustMean(config.aggregator, byzantine)


@dataclass(frozen=True)
class UniformWeights(Stage):
    """--server-weighting uniform: whatever weights the server update passes to the aggregate
    (the clients' sample counts, in most algorithms), every arriving client counts once, as the
    SCAFFOLD and FedOpt papers average. Comes after the aggregate stage it wraps; DP's noised mean
    weighs the clients equally already, so a DP run has no such stage."""

    name = "weighting"

    def apply(self, message: Message, state: State) -> tuple[Message, State]:
        combine = message.aggregate

        def aggregate(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
            return combine(vectors, np.ones(len(vectors)))

        return replace(message, aggregate=aggregate), state
