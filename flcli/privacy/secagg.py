"""Secure aggregation (Bonawitz et al. 2017, "Practical Secure Aggregation for Privacy-Preserving
Machine Learning"), simulated on one machine with real cryptography (the `cryptography` package).

The server learns the sum of the surviving clients' vectors x_u and nothing else about any x_u.
For a cohort U (client ids, ordered) and a round:

0. AdvertiseKeys: each u has an X25519 key pair (s_u^SK, s_u^PK) and sends s_u^PK.
1. ShareKeys: each u draws a self-mask seed b_u and Shamir-shares s_u^SK and b_u among U with
   threshold t (the shares travel to the other clients through the server).
2. MaskedInputCollection: each u computes s_uv = KA(s_u^SK, s_v^PK) (X25519, then HKDF-SHA256),
   encodes x_u in fixed point modulo 2^64 and sends

       y_u = enc(x_u) + PRG(b_u) + sum_{v > u} PRG(s_uv) - sum_{v < u} PRG(s_uv)   (mod 2^64)

   with PRG = the ChaCha20 key stream. Clients that fail mid-round send nothing from here on.
3. Unmasking: if fewer than t clients sent y_u the round aborts. Otherwise every survivor sends
   its shares of b_u for each survivor and of s_v^SK for each dropped v; the server rebuilds them,
   adds the y_u and removes sum_u PRG(b_u) and the dropped clients' pairwise masks, which leaves
   sum_u enc(x_u), decoded back to floats.

Simulation notes: the key pairs and seeds come from addressed randomness (seed, SECAGG, round,
client) instead of the operating system so that runs repeat; the authenticated-encryption channel
for the shares and the signatures of the actively secure variant are left out (they do not change
what is computed), but their bytes are counted as sent. The masks cancel exactly modulo 2^64, so
the result is the plain sum up to the fixed-point rounding (at most K * step / 2 per coordinate;
the step is 2^-32, coarser beyond 2,047 clients so that the sum never overflows).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from flcli.errors import RunFailed
from flcli.privacy import shamir
from flcli.rng import Purpose, rng

if TYPE_CHECKING:  # cryptography is imported by the runs that use it (20 ms of start-up)
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

KEY_BYTES = 32
WORD_BYTES = 8  # one coordinate modulo 2^64
ENCRYPTION_OVERHEAD = 28  # AES-GCM nonce and tag around each pair of shares in the real protocol


class SecAggAborted(RunFailed):
    """Fewer clients than the threshold survived: the server cannot unmask the sum."""


@dataclass(frozen=True)
class FixedPoint:
    """x -> round(clip(x, -bound, bound) * 2^fraction_bits) as a two's-complement word mod 2^64.

    The quantization step is 2^-fraction_bits; a sum of K words decodes exactly as long as
    K * bound * 2^fraction_bits < 2^63.
    """

    fraction_bits: int = 32
    bound: float = 2.0**20

    @property
    def step(self) -> float:
        return 2.0**-self.fraction_bits

    @classmethod
    def for_cohort(cls, clients: int) -> FixedPoint:
        """The finest step whose sum over this many clients cannot overflow: 2^-32 up to 2,047
        clients, one bit coarser at each doubling beyond."""
        bits = min(32, 63 - 20 - clients.bit_length())
        return cls(fraction_bits=bits, bound=2.0**20)

    def max_clients(self) -> int:
        return int(2.0**63 / (self.bound * 2.0**self.fraction_bits)) - 1

    def encode(self, x: np.ndarray) -> np.ndarray:
        clipped = np.clip(np.asarray(x, dtype=np.float64), -self.bound, self.bound)
        return np.rint(clipped * 2.0**self.fraction_bits).astype(np.int64).view(np.uint64)

    def decode(self, words: np.ndarray) -> np.ndarray:
        return np.asarray(words, dtype=np.uint64).view(np.int64) * self.step


@dataclass(frozen=True)
class SecAggResult:
    total: np.ndarray  # [P] the sum of the surviving clients' vectors
    survivors: np.ndarray  # [K] bool
    bytes_up: int  # everything the clients sent: keys, shares, masked vectors, unmasking shares
    bytes_down: int  # everything the server relayed: the key list and the shares


def protocol_traffic(
    cohort: int, survivors: int, length: int, aborted: bool, word_bits: int = 8 * WORD_BYTES
) -> tuple[int, int]:
    """(bytes up, bytes down) of one run of the protocol on vectors of `length` words of word_bits
    bits each (packed): public keys, encrypted shares, masked vectors and, unless it aborted, the
    unmasking shares."""
    pair_of_shares = 2 * shamir.SHARE_BYTES + ENCRYPTION_OVERHEAD
    up = (
        cohort * KEY_BYTES
        + cohort * (cohort - 1) * pair_of_shares
        + survivors * -(-length * word_bits // 8)
    )
    down = cohort * cohort * KEY_BYTES + cohort * (cohort - 1) * pair_of_shares
    if not aborted:
        up += survivors * (cohort - 1) * shamir.SHARE_BYTES
    return up, down


def prg(key: bytes, length: int, context: bytes) -> np.ndarray:
    """length uint64 words of the ChaCha20 key stream under HKDF-SHA256(key, info=context)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    stream_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=context).derive(key)
    encryptor = Cipher(algorithms.ChaCha20(stream_key, bytes(16)), mode=None).encryptor()
    return np.frombuffer(encryptor.update(bytes(WORD_BYTES * length)), dtype=np.uint64)


def pairwise_mask(
    own: X25519PrivateKey, other_public: bytes, length: int, label: bytes = b""
) -> np.ndarray:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    shared = own.exchange(X25519PublicKey.from_public_bytes(other_public))
    return prg(shared, length, b"flcli secagg pairwise mask" + label)


def self_mask(seed: bytes, length: int, label: bytes = b"") -> np.ndarray:
    return prg(seed, length, b"flcli secagg self mask" + label)


@dataclass(frozen=True)
class ClientSecrets:
    key: X25519PrivateKey
    public: bytes
    self_seed: bytes
    key_shares: list[tuple[int, int]]  # share j goes to the j-th client of the cohort
    seed_shares: list[tuple[int, int]]


def private_key(raw: bytes) -> X25519PrivateKey:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    return X25519PrivateKey.from_private_bytes(raw)


def client_secrets(seed: int, round: int, client: int, threshold: int, cohort: int):
    generator = rng(seed, Purpose.SECAGG, round, client)
    key = private_key(generator.bytes(KEY_BYTES))
    self_seed = generator.bytes(KEY_BYTES)
    raw_key = key.private_bytes_raw()
    return ClientSecrets(
        key=key,
        public=key.public_key().public_bytes_raw(),
        self_seed=self_seed,
        key_shares=shamir.share(int.from_bytes(raw_key, "big"), threshold, cohort, generator),
        seed_shares=shamir.share(int.from_bytes(self_seed, "big"), threshold, cohort, generator),
    )


def masked_input(
    position: int, words: np.ndarray, secrets: list[ClientSecrets], label: bytes = b""
) -> np.ndarray:
    """What client `position` of the cohort sends: its words + PRG(b_u) +- its pairwise masks
    (mod 2^64; the caller reduces to its field)."""
    own = secrets[position]
    y = words + self_mask(own.self_seed, len(words), label)
    for other, theirs in enumerate(secrets):
        if other != position:
            mask = pairwise_mask(own.key, theirs.public, len(words), label)
            y = y + mask if other > position else y - mask
    return y


def secure_sum(
    vectors: np.ndarray,
    survived: np.ndarray,
    threshold: int,
    seed: int,
    round: int,
    ids: np.ndarray,
    fixed: FixedPoint | None = None,
) -> SecAggResult:
    """Run the protocol for a cohort (ids, ascending) whose clients hold vectors [K, P]; the
    clients with survived False fail after ShareKeys. Raises SecAggAborted below threshold."""
    vectors = np.asarray(vectors, dtype=np.float64)
    K, P = vectors.shape
    fixed = fixed or FixedPoint.for_cohort(K)
    if fixed.max_clients() < K:
        raise ValueError(f"{K} clients overflow the fixed-point sum; lower the bound")
    outside = ~(np.abs(vectors) <= fixed.bound)  # NaN is outside too
    if outside.any():
        raise RunFailed(
            f"secure aggregation in round {round}: a client's vector reaches "
            f"{np.abs(vectors[outside]).max():.3g}, beyond the +-{fixed.bound:.3g} that the "
            "fixed-point sum carries (without DP, updates are weighted by sample counts); "
            "lower --lr or rescale the data (e.g. standardize a regression target)"
        )
    words = fixed.encode(vectors)
    result = secure_word_sum(words, survived, threshold, seed, round, ids)
    return replace(result, total=fixed.decode(result.total))


def secure_word_sum(
    words: np.ndarray,
    survived: np.ndarray,
    threshold: int,
    seed: int,
    round: int,
    ids: np.ndarray,
    word_bits: int = 8 * WORD_BYTES,
    label: bytes = b"",
) -> SecAggResult:
    """The protocol on integer words [K, P] (uint64) in the field Z_{2^word_bits}: each client
    sends its words plus its masks modulo 2^word_bits (packed, word_bits bits a word, as the
    traffic counts them), and the total is the survivors' sum modulo 2^word_bits, exactly. As
    2^word_bits divides 2^64, masking modulo 2^64 and reducing at the end is the same arithmetic.
    label keeps the masks of different sums in one round apart (no mask is used twice)."""
    words = np.asarray(words, dtype=np.uint64)
    survived = np.asarray(survived, dtype=bool)
    K, P = words.shape
    if not 1 <= threshold <= K:
        raise ValueError(f"threshold {threshold} must be between 1 and the cohort's {K} clients")
    if not 1 <= word_bits <= 64:
        raise ValueError(f"word_bits {word_bits} must be in [1, 64]")
    secrets = [client_secrets(seed, round, int(c), threshold, K) for c in ids]
    alive = np.flatnonzero(survived)
    dropped = np.flatnonzero(~survived)
    if len(alive) < threshold:
        raise SecAggAborted(
            f"secure aggregation aborted in round {round}: {len(alive)} of {K} clients survived, "
            f"below the threshold {threshold}; lower --secagg-threshold or --dropout"
        )
    field = np.uint64((1 << word_bits) - 1)
    total = np.zeros(P, dtype=np.uint64)
    for u in alive:
        total += masked_input(u, words[u], secrets, label) & field
    helpers = alive[:threshold]
    for u in alive:
        points = [secrets[u].seed_shares[h] for h in helpers]
        seed_u = shamir.reconstruct(points).to_bytes(KEY_BYTES, "big")
        total -= self_mask(seed_u, P, label)
    for v in dropped:
        points = [secrets[v].key_shares[h] for h in helpers]
        raw = shamir.reconstruct(points).to_bytes(KEY_BYTES, "big")
        key_v = private_key(raw)
        for u in alive:
            mask = pairwise_mask(key_v, secrets[u].public, P, label)  # = s_uv, by symmetry
            total = total - mask if v > u else total + mask
    up, down = protocol_traffic(K, len(alive), P, aborted=False, word_bits=word_bits)
    return SecAggResult(total=total & field, survivors=survived, bytes_up=up, bytes_down=down)
