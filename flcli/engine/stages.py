"""The stages of the uplink (flcli.engine.uplink) up to the aggregate (flcli.engine.aggregates).

A stage is a frozen dataclass of its options. It checks them twice: alone (check_options, when
the config is built) and against the partition (check, when the run is built). Each round it takes
the Message the stage before it left and its own state, and returns both, next.
"""

import math
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np

from flcli import compression
from flcli.algorithms.aggregate import weighted_mean
from flcli.algorithms.base import Aggregate
from flcli.engine.attacks import attack_updates, check_attack, flip_labels
from flcli.engine.cohort import default_threads
from flcli.engine.dropout import survivors
from flcli.errors import FLError
from flcli.privacy import dp as dpfedavg
from flcli.privacy.options import parse_clip
from flcli.privacy.secagg import protocol_traffic, secure_word_sum
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
    bits: np.ndarray | None = None  # [K] each compressed message's exact size; None: dense
    codes: compression.Codes | None = None  # the integer codes, under secure aggregation

    @property
    def dropped(self) -> int:
        """Sampled clients whose update does not arrive."""
        return len(self.ids) - int(self.alive.sum())

    @property
    def dense_bytes(self) -> int:
        """What the arrived updates would take as dense vectors of the run's float type (the
        denominator of the compression ratio)."""
        return int(self.alive.sum()) * self.deltas.shape[1] * self.deltas.dtype.itemsize


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


FEEDBACKS = ("ef", "ef21")


def check_secure(config, spec: compression.Compressor) -> None:
    """--compress with --secure-agg: a quantizer whose codes the masked sum adds, no DP, no ef21."""
    if spec.kind not in compression.SECURE:
        raise FLError(
            f"--compress {config.compress} with --secure-agg: only the quantizers' integer codes "
            f"add up in the masks' field; give one of {', '.join(compression.SECURE)} (e.g. "
            "qsgd:bits=4 or hadamard+qsgd:bits=4) or drop --secure-agg"
        )
    if parse_clip(config.dp_clip) is not None:
        raise FLError(
            f"--compress {config.compress} with --secure-agg and DP: clipping after the "
            "quantizer moves the updates off the shared grid; drop --dp-clip or --compress"
        )
    if config.error_feedback == "ef21":
        raise FLError(
            "--error-feedback ef21 with --secure-agg: the server would add each client's "
            "estimate g_i, which only the secure sum may reveal; use --error-feedback ef"
        )


@dataclass(frozen=True)
class Compress(Stage):
    """--compress: each client sends C(update) (flcli.compression), the server decodes it; the
    message's exact bits replace the dense size. With --error-feedback the stage keeps a [N, P]
    table in its state (N P floats of the run's dtype, e.g. 100 x 650 x 8 bytes = 0.5 MB for
    softmax on digits), updated only for clients whose message arrives:

    - ef (Seide et al. 2014; Karimireddy et al. 2019, Algorithm 2): p = x + e_i, send C(p),
      e_i <- p - C(p); the server receives C(p). The identity sent + residual = x + old residual
      holds exactly.
    - ef21 (Richtarik et al. 2021, "EF21"): the client and the server both hold g_i; the client
      sends c = C(x - g_i), both set g_i <- g_i + c, and the server takes g_i as the client's
      update (with partial participation, the g_i of the clients that arrived).
    """

    name = "compress"
    counts = ("dense_bytes",)
    spec: compression.Compressor
    seed: int
    feedback: str | None = None
    num_clients: int = 0
    num_params: int = 0
    secure: bool = False  # under --secure-agg: the shared grid, whose codes the secure sum adds

    @staticmethod
    def check_options(config) -> None:
        if config.compress is not None:
            spec = compression.parse(config.compress, "--compress")
            if config.secure_agg:
                check_secure(config, spec)
        feedback = config.error_feedback
        if feedback is None:
            return
        if feedback not in FEEDBACKS:
            raise FLError(f"--error-feedback {feedback!r} is not one of: ef, ef21")
        if config.compress is None:
            raise FLError(
                f"--error-feedback {feedback} feeds back what --compress leaves out; give "
                "--compress (e.g. topk:fraction=0.01) or drop --error-feedback"
            )
        if feedback == "ef21" and parse_clip(config.dp_clip) is not None:
            raise FLError(
                "--error-feedback ef21 with DP: the server adds each client's estimate g_i, "
                "which only the noised sum may reveal; use --error-feedback ef"
            )

    @property
    def key(self) -> str:
        return "residual" if self.feedback == "ef" else "estimate"

    def initial_state(self) -> State:
        if self.feedback is None:
            return {}
        return {self.key: np.zeros((self.num_clients, self.num_params))}

    def apply(self, message: Message, state: State) -> tuple[Message, State]:
        unique = len(np.unique(message.ids)) == len(message.ids)  # table rows written at once
        if compression.compiled() is not None and not self.secure and unique:
            return self.apply_in_blocks(message, state)
        x = np.asarray(message.deltas, dtype=np.float64)
        float_bits = 8 * message.deltas.dtype.itemsize
        ids, alive = message.ids, message.alive
        memory = state[self.key][ids] if self.feedback else 0.0
        if self.feedback == "ef":
            memory += x  # the table's rows are a copy: it becomes p = x + e_i
            source = memory
        elif self.feedback == "ef21":
            source = x - memory
        else:
            source = x  # compress() does not write into its input
        codes = None
        if self.secure:
            sent, codes = self.on_shared_grid(message, source)
            bits = None
        else:
            sent, bits = compression.compress(
                self.spec, source, self.seed, message.round, ids, float_bits
            )
        received = sent
        if self.feedback is not None:
            table = state[self.key]  # updated in place: no copy of the [N, P] table each round
            if self.feedback == "ef":
                source -= sent
                arrived = source
            else:
                received = np.add(memory, sent, out=sent if bits is not None else None)
                arrived = received
            if alive.all():  # no [K, P] copy of the rows that arrived
                table[ids] = arrived
            else:
                table[ids[alive]] = arrived[alive]
            state = {self.key: table}
        deltas = received.astype(message.deltas.dtype, copy=False)
        return replace(message, deltas=deltas, bits=bits, codes=codes), state

    def apply_in_blocks(self, message: Message, state: State) -> tuple[Message, State]:
        """apply() through flcli.compression_kernels, block of rows by block of rows on every
        core, each block's error-feedback read, compression and write-back while it is in cache
        (the table's rows read and written in place); the same sums and differences."""
        x = message.deltas
        ids, alive = np.asarray(message.ids, dtype=np.int64), np.asarray(message.alive)
        float_bits = 8 * x.dtype.itemsize
        table = state[self.key] if self.feedback else None
        received = np.empty(x.shape, dtype=x.dtype)

        def block(rows: slice) -> None:
            own, target = np.asarray(x[rows], dtype=np.float64), received[rows]
            sent = target if x.dtype == np.float64 else np.empty(own.shape)
            where = (self.seed, message.round, ids[rows], float_bits, sent)
            if table is None:
                compression.compress_into(self.spec, own, *where)
            else:
                fed = (table, alive[rows], self.feedback)
                compression.compress_fed_back(self.spec, own, *fed, *where)
            if sent is not target:
                target[...] = sent

        K, P = x.shape
        compression.over_blocks(block, self.spec, K, P, default_threads())
        bits = np.full(K, compression.sent_bits(self.spec, P, float_bits), dtype=np.int64)
        state = state if table is None else {self.key: table}
        return replace(message, deltas=received, bits=bits, codes=None), state

    def on_shared_grid(self, message: Message, x: np.ndarray):
        """(the decoded updates [K, P], their Codes) on the round's shared grid, whose scale a
        secure sum of the survivors' one-hot exponents finds (its bytes join the traffic)."""
        rotated, signs = compression.shared_rotation(self.spec, x, self.seed, message.round)
        rotated, positions = compression.shared_selection(
            self.spec, rotated, self.seed, message.round
        )
        alive = message.alive
        exponent = compression.EXPONENTS[0]
        if alive.any():
            onehot = compression.exponent_histogram(compression.exponents(self.spec.kind, rotated))
            found = secure_word_sum(
                onehot,
                alive,
                message.threshold,
                self.seed,
                message.round,
                message.ids,
                word_bits=len(message.ids).bit_length(),
                label=b" grid",
            )
            message.traffic.append((found.bytes_up, found.bytes_down))
            exponent = compression.largest_exponent(found.total)
        codes = compression.grid_codes(
            self.spec, rotated, exponent, self.seed, message.round, message.ids
        )
        codes = replace(codes, width=x.shape[1], signs=signs, positions=positions)
        return codes.placed(codes.offset + codes.step * codes.codes.astype(np.float64)), codes


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
