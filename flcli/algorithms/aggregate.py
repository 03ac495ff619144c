"""Aggregation as plain NumPy functions."""

import numpy as np


def weighted_mean(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_k weights_k vectors_k / sum_k weights_k over the first axis of vectors [K, P]."""
    weights = np.asarray(weights, dtype=vectors.dtype)  # keeps float32 runs in float32
    return weights @ vectors / weights.sum()


def scatter(table: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A copy of the per-client table [N, ...] with the rows of clients `ids` replaced."""
    table = table.copy()
    table[ids] = rows
    return table
