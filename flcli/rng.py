"""Addressed randomness: every stream is named by (seed, purpose, round, client).

A client's numbers therefore do not depend on which other clients were sampled, on the backend, on
chunking, or on resuming a run half-way.
"""

from enum import IntEnum

import numpy as np


class Purpose(IntEnum):
    SPLIT = 1  # train/test split of a dataset
    PARTITION = 2  # assignment of training samples to clients
    INIT = 3  # initial global model
    SAMPLE = 4  # clients sampled in a round
    SHUFFLE = 5  # a client's minibatch order in a round
    GENERATE = 6  # synthetic datasets
    STRAGGLE = 7  # systems heterogeneity
    NOISE = 8  # privacy noise, feature noise
    ATTACK = 9  # malicious clients and their behaviour
    CLIENT_TEST = 10  # rows of a client's shard held out as its local test split
    PROXY = 11  # rows of a client's shard held out as FedDF's proxy set
    SYSTEM = 12  # a client's device: compute speed and bandwidths (flcli.system)
    NEW_CLIENTS = 13  # clients held out of training entirely (fl partition --new-clients)
    EVALUATE = 14  # the clients whose training rows estimate train_loss (--eval-clients)
    # 20+ for privacy and faults, kept apart from other additions (IntEnum aliases duplicates)
    DROPOUT = 20  # clients failing mid-round
    SECAGG = 21  # secure aggregation's simulated client keys and secret-sharing polynomials
    # 30+ for compression
    QUANTIZE = 30  # a client's stochastic rounding of its update's coordinates
    SPARSIFY = 31  # the coordinates a rand-k client sends (the seed both sides know)
    ROTATE = 32  # the random signs of a randomized Hadamard rotation


def rng(seed: int, purpose: Purpose, round: int = 0, client: int = 0) -> np.random.Generator:
    """The Generator for one (seed, purpose, round, client) address."""
    key = (int(purpose), int(round), int(client))
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))


_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer: a bijection on uint64 that scatters nearby inputs."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def prefix(seed: int, purpose: Purpose, round: int) -> np.uint64:
    """The hash state after (seed, purpose, round): hash_bits is mix(mix(prefix ^ client) ^
    counter), and the compiled compressors (flcli.compression_kernels) start from it."""
    with np.errstate(over="ignore"):
        z = _mix(np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF) + np.uint64(0x9E3779B97F4A7C15))
        return _mix(z ^ np.uint64((int(purpose) << 32) | (int(round) & 0xFFFFFFFF)))


def hash_bits(seed: int, purpose: Purpose, round: int, client, counter) -> np.ndarray:
    """Counter-based random bits (uint64) addressed by (seed, purpose, round, client, counter).

    The vectorized twin of rng() for streams that are needed for many clients at once (the
    per-epoch shuffles): each value depends only on its own address, so it can be computed for a
    whole cohort in one NumPy expression. client and counter broadcast.
    """
    with np.errstate(over="ignore"):
        z = _mix(prefix(seed, purpose, round) ^ np.asarray(client, dtype=np.uint64))
        return _mix(z ^ np.asarray(counter, dtype=np.uint64))


def _mix_in_place(z: np.ndarray, scratch: np.ndarray) -> None:
    """_mix(z) into z, with one scratch array of its shape (no other temporaries)."""
    for shift, multiplier in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        np.right_shift(z, np.uint64(shift), out=scratch)
        z ^= scratch
        z *= np.uint64(multiplier)
    np.right_shift(z, np.uint64(31), out=scratch)
    z ^= scratch


def paired_uniforms(seed: int, purpose: Purpose, round: int, clients, width: int) -> np.ndarray:
    """[K, width] uniforms in [0, 1) on a 2^-32 grid, one per (client, coordinate): the word
    hash_bits(seed, purpose, round, client, j) gives coordinate j its low 32 bits and coordinate
    half + j its high 32 bits (half = ceil(width / 2)), so one hash serves two coordinates."""
    clients = np.asarray(clients, dtype=np.uint64).reshape(-1, 1)
    half = (width + 1) // 2
    with np.errstate(over="ignore"):
        z = np.bitwise_xor(
            _mix(prefix(seed, purpose, round) ^ clients), np.arange(half, dtype=np.uint64)[None, :]
        )
        _mix_in_place(z, np.empty_like(z))
    halves = z.view(np.uint32).reshape(len(clients), half, 2)
    low = 0 if np.little_endian else 1
    out = np.empty((len(clients), 2 * half))
    np.multiply(halves[:, :, low], 2.0**-32, out=out[:, :half])
    np.multiply(halves[:, :, 1 - low], 2.0**-32, out=out[:, half:])
    return out[:, :width]
