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


def hash_bits(seed: int, purpose: Purpose, round: int, client, counter) -> np.ndarray:
    """Counter-based random bits (uint64) addressed by (seed, purpose, round, client, counter).

    The vectorized twin of rng() for streams that are needed for many clients at once (the
    per-epoch shuffles): each value depends only on its own address, so it can be computed for a
    whole cohort in one NumPy expression. client and counter broadcast.
    """
    with np.errstate(over="ignore"):
        z = _mix(np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF) + np.uint64(0x9E3779B97F4A7C15))
        z = _mix(z ^ np.uint64((int(purpose) << 32) | (int(round) & 0xFFFFFFFF)))
        z = _mix(z ^ np.asarray(client, dtype=np.uint64))
        return _mix(z ^ np.asarray(counter, dtype=np.uint64))
