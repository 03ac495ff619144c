"""Aggregation as plain NumPy functions."""

import numpy as np


def weighted_mean(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_k weights_k vectors_k / sum_k weights_k over the first axis of vectors [K, P]."""
    weights = np.asarray(weights, dtype=vectors.dtype)  # keeps float32 runs in float32
    return weights @ vectors / weights.sum()
