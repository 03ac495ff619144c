"""Counts from fractions, shared by the config and the engine (and importing neither)."""

import math


def round_half_up(value: float) -> int:
    """A count from a fraction: 2.5 -> 3 (round() gives 2, and 1.5 -> 2 as well)."""
    return math.floor(value + 0.5)
