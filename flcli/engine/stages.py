"""The stages of the uplink (flcli.engine.uplink) up to the aggregate (flcli.engine.aggregates).

A stage is a frozen dataclass of its options. It checks them twice: alone (check_options, when
the config is built) and against the partition (check, when the run is built). Each round it takes
the Message the stage before it left and its own state, and returns both, next.
"""

import math
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np

from flcli.algorithms.aggregate import weighted_mean
from flcli.algorithms.base import Aggregate
from flcli.engine.attacks import attack_updates, check_attack, flip_labels
from flcli.engine.dropout import survivors
from flcli.errors import FLError
from flcli.privacy import dp as dpfedavg
from flcli.privacy.options import parse_clip
from flcli.privacy.secagg import protocol_traffic
from flcli.rng import Purpose, rng

State = dict[str, np.ndarray]


@dataclass(frozen=True)
class Message:
    """One round's updates on their way up, as the stages so far have left them."""

    round: int
    ids: np.ndarray  # [K] the sampled cohort
    deltas: np.ndarray  # [K, P] the updates as the server receives them (attacked, clipped)
    alive: np.ndarray  # [K] bool: whose update still arrives
    # (up, down) bytes of each secure aggregation; the secure sums append theirs when the server
    # update calls the aggregate, so a Delivery's byte counts are read after that
    traffic: list[tuple[int, int]] = field(default_factory=list)
    plain: bool = True  # the updates travel as plain messages (not under secure aggregation)
    threshold: int | None = None  # survivors the round's secure sum needs to unmask
    clip: float | None = None  # the norm DP clipped the updates to (the noise's scale)
    aggregate: Aggregate = weighted_mean  # how the server update combines the arrived vectors
    release_empty: bool = False  # an empty round still reaches the server update (DP's noise)

    @property
    def dropped(self) -> int:
        """Sampled clients whose update does not arrive."""
        return len(self.ids) - int(self.alive.sum())


class Stage:
    """One step of the uplink. Subclasses are frozen dataclasses of their options."""

    name: ClassVar[str]  # its state's keys are <name>_<key> in ServerState.uplink
    counts: ClassVar[tuple[str, ...]] = ()  # Message properties it logs as rounds.csv columns

    @staticmethod
    def check_options(config) -> None:
        """FLError on a bad value or combination of the config's options it reads."""

    def check(self, num_clients: int, cohort_size: int) -> None:
        """FLError on options a partition of num_clients clients, cohort_size per round, cannot
        run."""

    def initial_state(self) -> State:
        return {}

    def training_labels(self, y: np.ndarray, offsets: np.ndarray, num_classes) -> np.ndarray:
        """The labels the clients train on (before the round's updates exist)."""
        return y

    def apply(self, message: Message, state: State) -> tuple[Message, State]:
        """The message as this stage passes it on, and the stage's state after the round (its
        keys as initial_state has them, without the stage's name)."""
        raise NotImplementedError


def sample_clients(seed: int, round: int, num_clients: int, cohort_size: int) -> np.ndarray:
    """A fixed-size sample without replacement, sorted."""
    chosen = rng(seed, Purpose.SAMPLE, round).choice(num_clients, cohort_size, replace=False)
    return np.sort(chosen)


@dataclass(frozen=True)
class FixedSample:
    """The cohort: cohort_size clients without replacement."""

    seed: int
    num_clients: int
    cohort_size: int

    def sample(self, round: int) -> np.ndarray:
        return sample_clients(self.seed, round, self.num_clients, self.cohort_size)


@dataclass(frozen=True)
class PoissonSample:
    """The cohort under DP: each client independently with probability rate (what the privacy
    accounting assumes)."""

    seed: int
    num_clients: int
    rate: float

    def sample(self, round: int) -> np.ndarray:
        return dpfedavg.poisson_sample(self.seed, round, self.num_clients, self.rate)


@dataclass(frozen=True)
class Attack(Stage):
    """Malicious clients (fixed for the run) replace their update; label flippers train on
    flipped labels instead (flcli.engine.attacks)."""

    name = "attack"
    seed: int
    kind: str
    fraction: float  # --malicious
    malicious: np.ndarray  # the malicious clients' ids
    strength: float | None = None

    @staticmethod
    def check_options(config) -> None:
        if config.attack is not None:
            check_attack(config.attack)
        if (config.attack is None) != (config.malicious is None):
            raise FLError(
                "--attack and --malicious F go together (e.g. --attack signflip --malicious 0.2)"
            )
        if config.malicious is not None and not 0 < config.malicious < 1:
            raise FLError(f"--malicious {config.malicious} must be a fraction in (0, 1), e.g. 0.2")
        strength = config.attack_strength
        if strength is None:
            return
        # a negative signflip or scale strength would turn the attack into help
        if config.attack is None or config.attack == "labelflip":
            raise FLError(
                f"--attack-strength {strength} applies to --attack signflip, gaussian or scale "
                "only; drop it"
            )
        if not 0 < strength < math.inf:
            raise FLError(f"--attack-strength {strength} must be > 0, e.g. 4")

    def check(self, num_clients: int, cohort_size: int) -> None:
        if not len(self.malicious):
            raise FLError(
                f"--malicious {self.fraction} of {num_clients} clients is no attacker; give "
                f"at least {1 / num_clients:.2g}"
            )

    def training_labels(self, y: np.ndarray, offsets: np.ndarray, num_classes) -> np.ndarray:
        if self.kind != "labelflip":
            return y
        return flip_labels(y, offsets, self.malicious, num_classes)

    def apply(self, message: Message, state: State) -> tuple[Message, State]:
        if self.kind == "labelflip":
            return message, state
        sent = attack_updates(
            self.kind,
            message.deltas,
            message.ids,
            self.malicious,
            self.seed,
            message.round,
            self.strength,
        )
        return replace(message, deltas=sent.astype(message.deltas.dtype, copy=False)), state


@dataclass(frozen=True)
class Dropout(Stage):
    """Each sampled client fails with probability `probability`; its update never arrives."""

    name = "dropout"
    counts = ("dropped",)
    seed: int
    probability: float

    @staticmethod
    def check_options(config) -> None:
        if not 0 <= config.dropout < 1:
            raise FLError(f"--dropout {config.dropout} must be in [0, 1), e.g. 0.1")

    def apply(self, message: Message, state: State) -> tuple[Message, State]:
        came = survivors(self.seed, message.round, message.ids, self.probability)
        return replace(message, alive=message.alive & came), state


@dataclass(frozen=True)
class SecAggThreshold(Stage):
    """Secure aggregation's unmasking threshold: a round with fewer survivors aborts after the
    masked inputs were sent, and nobody arrives. The updates no longer travel in the clear."""

    name = "secagg"
    counts = ("dropped",)
    threshold: int | None = None  # None: a majority of each round's cohort (random under DP)

    @staticmethod
    def check_options(config) -> None:
        if config.secagg_threshold is None:
            return
        if not config.secure_agg:
            raise FLError("--secagg-threshold needs --secure-agg")
        if config.secagg_threshold < 2:
            raise FLError(f"--secagg-threshold {config.secagg_threshold} must be at least 2")

    def check(self, num_clients: int, cohort_size: int) -> None:
        if cohort_size < 2:
            raise FLError(
                f"--secure-agg with {cohort_size} client per round: the sum of one update is the "
                "update itself; sample at least 2 clients per round"
            )
        if self.threshold is not None and self.threshold > cohort_size:
            raise FLError(
                f"--secagg-threshold {self.threshold} is larger than the {cohort_size} clients "
                f"sampled per round; use at most {cohort_size}"
            )
        if self.threshold is not None and self.threshold <= cohort_size // 2:
            raise FLError(
                f"--secagg-threshold {self.threshold} of {cohort_size} clients per round: a "
                "minority of them could unmask single updates; use a majority, at least "
                f"{cohort_size // 2 + 1}"
            )

    def apply(self, message: Message, state: State) -> tuple[Message, State]:
        cohort, alive = len(message.ids), message.alive
        threshold = self.threshold or cohort // 2 + 1
        if cohort and alive.sum() < threshold:
            # keys, shares and masked vectors (with the weight column) were sent before the abort
            length = message.deltas.shape[1] + 1
            message.traffic.append(protocol_traffic(cohort, int(alive.sum()), length, True))
            alive = np.zeros(cohort, dtype=bool)
        return replace(message, alive=alive, threshold=threshold, plain=False), state


@dataclass(frozen=True)
class DPClip(Stage):
    """DP-FedAvg's clipping of every update to norm C on the client; adaptive clipping moves C
    after each round from the noised count of unclipped updates that arrived (flcli.privacy.dp).
    C is the stage's state."""

    name = "dp"
    spec: dpfedavg.DPSpec
    seed: int

    @staticmethod
    def check_options(config) -> None:
        parse_clip(config.dp_clip)

    def initial_state(self) -> State:
        return {"clip": np.array(self.spec.initial_clip if self.spec.adaptive else self.spec.clip)}

    def apply(self, message: Message, state: State) -> tuple[Message, State]:
        clip = float(state["clip"])
        clipped, norms = dpfedavg.clip_updates(message.deltas, clip)
        if self.spec.adaptive:
            arrived = norms[message.alive]
            moved = dpfedavg.next_clip(clip, arrived, self.spec, self.seed, message.round)
            state = {"clip": np.array(moved)}
        deltas = clipped.astype(message.deltas.dtype, copy=False)
        return replace(message, deltas=deltas, clip=clip), state
