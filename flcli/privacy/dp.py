"""Client-level differential privacy: DP-FedAvg (McMahan, Ramage, Talwar, Zhang 2018, "Learning
Differentially Private Recurrent Language Models"), with adaptive clipping (Andrew, Thakkar,
McMahan, Ramaswamy 2021, "Differentially Private Learning with Adaptive Clipping").

Each round every client is sampled independently with probability q (Poisson sampling); each
sampled client's update is clipped to L2 norm C; the server adds Gaussian noise of std z C to the
SUM and divides by the fixed expected cohort size qN (not by the number that came):

    delta_t = (sum_k delta_k min(1, C / ||delta_k||) + N(0, z^2 C^2 I)) / (q N)

One round is then the Poisson-subsampled Gaussian mechanism with noise multiplier z on the
add/remove-one-client relation; epsilon after t rounds at delta is what Google's dp-accounting
library (RDP or PLD accountant) returns for that event composed t times.

Adaptive clipping: each client also reports b_k - 1/2, with b_k = 1[||delta_k|| <= C] (centred, so
that one client moves the sum by 1/2: the sensitivity Thm. 1 assumes); the server updates

    b = (sum_k (b_k - 1/2) + N(0, sigma_b^2)) / (q N) + 1/2,   C <- C exp(-eta (b - gamma))

so C tracks the gamma-quantile of the update norms. To keep the total noise multiplier z for the
pair of queries, the updates get z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2) (Andrew et al., Thm. 1).
"""

import contextlib
import functools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from flcli.errors import FLError
from flcli.rng import Purpose, hash_bits, rng

ACCOUNTANTS = ("rdp", "pld")


@dataclass(frozen=True)
class DPSpec:
    """What DP-FedAvg needs each round. clip is None for adaptive clipping."""

    noise_multiplier: float  # z: the total noise multiplier that the accounting uses
    sampling_rate: float  # q
    expected_clients: float  # q N, the fixed denominator
    clip: float | None = None
    initial_clip: float = 0.1  # adaptive: C_0 (Andrew et al.'s default)
    target_quantile: float = 0.5  # adaptive: gamma
    clip_lr: float = 0.2  # adaptive: eta
    count_noise: float | None = None  # adaptive: sigma_b (default q N / 20, as in the paper)

    @property
    def adaptive(self) -> bool:
        return self.clip is None

    @property
    def count_std(self) -> float:
        return self.expected_clients / 20 if self.count_noise is None else self.count_noise

    @property
    def update_noise_multiplier(self) -> float:
        """The noise multiplier of the update sum: z, or z_delta with adaptive clipping."""
        z = self.noise_multiplier
        if not self.adaptive or z == 0:
            return z
        if z >= 2 * self.count_std:
            raise FLError(
                f"adaptive clipping with noise multiplier z={z:g} needs z below "
                f"2 sigma_b = {2 * self.count_std:g} (sigma_b = expected clients per round / 20); "
                "sample more clients per round or give a fixed --dp-clip"
            )
        return (z**-2 - (2 * self.count_std) ** -2) ** -0.5


def poisson_sample(seed: int, round: int, num_clients: int, rate: float) -> np.ndarray:
    """The ids of the clients sampled this round, each independently with probability rate."""
    clients = np.arange(num_clients)
    uniform = (hash_bits(seed, Purpose.SAMPLE, round, clients, 0) >> np.uint64(11)) * 2.0**-53
    return clients[uniform < rate]


def clip_updates(deltas: np.ndarray, bound: float) -> tuple[np.ndarray, np.ndarray]:
    """Every row scaled to L2 norm at most bound; returns (clipped [K, P], norms [K])."""
    deltas = np.asarray(deltas, dtype=np.float64)
    norms = np.linalg.norm(deltas, axis=1)
    scale = np.minimum(1.0, bound / np.maximum(norms, 1e-300))
    return deltas * scale[:, None], norms


def noised_mean(
    clipped_sum: np.ndarray, clip: float, spec: DPSpec, seed: int, round: int
) -> np.ndarray:
    """(sum + N(0, (z C)^2 I)) / (q N): the private mean of the round's clipped updates."""
    noise = rng(seed, Purpose.NOISE, round, 0).standard_normal(clipped_sum.shape)
    return (clipped_sum + spec.update_noise_multiplier * clip * noise) / spec.expected_clients


def next_clip(clip: float, norms: np.ndarray, spec: DPSpec, seed: int, round: int) -> float:
    """Adaptive clipping's geometric update from the noised fraction of unclipped updates."""
    centred = float(np.sum(norms <= clip)) - len(norms) / 2  # each client adds +1/2 or -1/2
    noise = spec.count_std * rng(seed, Purpose.NOISE, round, 1).standard_normal()
    fraction = (centred + noise) / spec.expected_clients + 0.5
    return clip * math.exp(-spec.clip_lr * (fraction - spec.target_quantile))


@contextlib.contextmanager
def quiet_accountant() -> Iterator[None]:
    """dp-accounting logs (through absl) every RDP order it skips; a run has no use for that."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def round_event(sampling_rate: float, noise_multiplier: float, rounds: int):
    """The DpEvent of `rounds` rounds of DP-FedAvg."""
    import dp_accounting  # lazily, like every use here: it imports scipy, which plain runs skip

    one = dp_accounting.PoissonSampledDpEvent(
        sampling_rate, dp_accounting.GaussianDpEvent(noise_multiplier)
    )
    return dp_accounting.SelfComposedDpEvent(one, rounds)


PLD_DISCRETIZATION = 1e-4  # the PLD accountant's interval of privacy losses (its default)


def make_accountant(kind: str):
    if kind not in ACCOUNTANTS:
        raise FLError(f"unknown --dp-accountant {kind!r}; choose one of: {', '.join(ACCOUNTANTS)}")
    from dp_accounting import pld, rdp

    if kind == "rdp":
        return rdp.RdpAccountant()
    return pld.PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)


@contextlib.contextmanager
def accounting(accountant: str, noise_multiplier: float) -> Iterator[None]:
    """dp-accounting at work: its logs quiet, running out of memory a one-line FLError."""
    try:
        with quiet_accountant():
            yield
    except MemoryError:  # PLD discretizes the privacy loss, which is huge at a tiny noise
        raise FLError(
            f"--dp-accountant {accountant} cannot account noise multiplier {noise_multiplier:.3g} "
            "in this machine's memory; use --dp-accountant rdp, or more noise"
        ) from None


def epsilon(
    sampling_rate: float, noise_multiplier: float, rounds: int, delta: float, accountant="rdp"
) -> float:
    """The epsilon spent at delta after `rounds` rounds (0 before the first, inf without noise),
    by a fresh accountant. A run's rounds ask RunAccountant, which gives the same numbers."""
    if rounds == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    with accounting(accountant, noise_multiplier):
        ledger = make_accountant(accountant)
        ledger.compose(round_event(sampling_rate, noise_multiplier, rounds))
        return float(ledger.get_epsilon(delta))


class RdpRounds:
    """Epsilon after t rounds by RDP. At every order, the RDP of t identical rounds is t times
    that of one round, which is what RdpAccountant computes for SelfComposedDpEvent(round, t);
    one round's RDP, the costly part, is worked out once."""

    def __init__(self, sampling_rate: float, noise_multiplier: float, delta: float):
        self.event = round_event(sampling_rate, noise_multiplier, 1)
        self.delta = delta

    @functools.cached_property
    def one_round(self):
        accountant = make_accountant("rdp")
        accountant.compose(self.event)
        return accountant

    def epsilon_after(self, rounds: int) -> float:
        from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon

        orders, one_round = self.one_round.orders, self.one_round.rdp
        return float(compute_epsilon(orders, rounds * one_round, self.delta)[0])


class PldRounds:
    """Epsilon after t rounds by PLD: the privacy loss distribution of one round self-composed t
    times, as PLDAccountant composes SelfComposedDpEvent(round, t); one round's distribution, the
    costly part, is worked out once. (Composing each round onto the last one's distribution
    instead is faster but rounds differently: up to 2e-10 relative after 30 rounds.)"""

    def __init__(self, sampling_rate: float, noise_multiplier: float, delta: float):
        self.sampling_rate = sampling_rate
        self.noise_multiplier = noise_multiplier
        self.delta = delta

    @functools.cached_property
    def one_round(self):
        from dp_accounting.pld import privacy_loss_distribution

        return privacy_loss_distribution.from_gaussian_mechanism(
            standard_deviation=self.noise_multiplier,
            value_discretization_interval=PLD_DISCRETIZATION,
            sampling_prob=self.sampling_rate,
        )

    def epsilon_after(self, rounds: int) -> float:
        from dp_accounting.pld import privacy_loss_distribution

        # PLDAccountant composes onto its identity distribution; so does this, for its bits
        start = privacy_loss_distribution.identity(PLD_DISCRETIZATION)
        composed = start.compose(self.one_round.self_compose(rounds))
        return float(composed.get_epsilon_for_delta(self.delta))


class RunAccountant:
    """The epsilon one run has spent after each of its rounds, the same numbers as
    epsilon(sampling_rate, noise_multiplier, rounds, delta, accountant) to the last bit. Every
    round of a run is the same event (q and the total noise multiplier z are fixed for the run;
    adaptive clipping splits z between its two queries but keeps it), so the accounting of one
    round is done once per run, on first use (a resumed run does it again), not once a round."""

    def __init__(
        self, sampling_rate: float, noise_multiplier: float, delta: float, accountant="rdp"
    ):
        make_accountant(accountant)  # an unknown name fails here
        self.accountant, self.noise_multiplier = accountant, noise_multiplier
        composition = RdpRounds if accountant == "rdp" else PldRounds
        self.composition = composition(sampling_rate, noise_multiplier, delta)

    def epsilon_after(self, rounds: int) -> float:
        """The epsilon spent at delta after `rounds` rounds (0 before the first, inf without
        noise)."""
        if rounds == 0:
            return 0.0
        if self.noise_multiplier == 0:
            return math.inf
        with accounting(self.accountant, self.noise_multiplier):
            return self.composition.epsilon_after(rounds)


PLD_SMALLEST_NOISE = 0.05  # PLD's calibration searches no lower (its memory grows without bound)


@functools.lru_cache(maxsize=32)  # a sweep calibrates the same budget for many runs
def noise_for_epsilon(
    sampling_rate: float, rounds: int, target_epsilon: float, delta: float, accountant="rdp"
) -> float:
    """The smallest noise multiplier whose `rounds` rounds spend at most target_epsilon
    (dp-accounting's calibration: Brent's method on the accountant).

    PLD is searched below the RDP noise, which spends at least as much by PLD's tighter count:
    PLD at a tiny noise multiplier needs more memory than any machine has."""
    import dp_accounting

    if not target_epsilon > 0:
        raise FLError(f"--dp-epsilon {target_epsilon} must be > 0, e.g. 2")
    make_accountant(accountant)
    bracket = dp_accounting.LowerEndpointAndGuess(1e-3, 1.0)
    if accountant == "pld":
        upper = noise_for_epsilon(sampling_rate, rounds, target_epsilon, delta, "rdp")
        if upper / 2 < PLD_SMALLEST_NOISE:  # within budget by PLD too, which counts tighter
            return upper
        lower = upper / 2
        while lower / 2 >= PLD_SMALLEST_NOISE and (
            epsilon(sampling_rate, lower, rounds, delta, "pld") <= target_epsilon
        ):
            upper, lower = lower, lower / 2
        bracket = dp_accounting.ExplicitBracketInterval(lower, upper)
    try:
        with quiet_accountant():
            z = dp_accounting.calibrate_dp_mechanism(
                lambda: make_accountant(accountant),
                lambda noise: round_event(sampling_rate, noise, rounds),
                target_epsilon,
                delta,
                bracket_interval=bracket,
                tol=1e-6,
            )
            # Brent's method stops within tol of the root, on either side: step up into budget.
            while epsilon(sampling_rate, z, rounds, delta, accountant) > target_epsilon:
                z *= 1 + 1e-6
    except (dp_accounting.mechanism_calibration.NoBracketIntervalFoundError, ValueError):
        raise FLError(
            f"--dp-epsilon {target_epsilon}: no noise multiplier found for this budget "
            f"({rounds} rounds, sampling rate {sampling_rate:g}, delta {delta:g}); give the noise "
            "itself with --dp-noise Z, or a smaller --dp-epsilon"
        ) from None
    return float(z)
