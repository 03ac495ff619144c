"""Client failures: each sampled client fails mid-round with probability P, independently, and its
update never arrives. Whether client c fails in round r depends only on (seed, DROPOUT, r, c)."""

import numpy as np

from flcli.rng import Purpose, hash_bits


def survivors(seed: int, round: int, ids: np.ndarray, probability: float) -> np.ndarray:
    """[K] bool: True for the sampled clients whose update arrives this round."""
    if probability <= 0:
        return np.ones(len(ids), dtype=bool)
    uniform = (hash_bits(seed, Purpose.DROPOUT, round, ids, 0) >> np.uint64(11)) * 2.0**-53
    return uniform >= probability
