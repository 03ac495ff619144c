"""Systems heterogeneity as in the FedProx paper (Li et al. 2020, section 5.2): a fraction P of the
round's clients are stragglers that do only a uniformly random number of local steps below their
full budget, between 1 and budget - 1.

Client k's draws come from rng(seed, STRAGGLE, round, k): which clients straggle is the P share with
the smallest draw u_k, and a straggler's step count comes from its own stream after u_k.
"""

import numpy as np

from flcli.numbers import round_half_up
from flcli.rng import Purpose, rng


def straggler_budgets(
    seed: int, round: int, ids: np.ndarray, full_steps: np.ndarray, fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """([K] step budgets, [K] whether each client straggles). A client whose full budget is one
    step cannot do less and is not slowed."""
    streams = [rng(seed, Purpose.STRAGGLE, round, client) for client in ids]
    draws = np.array([stream.random() for stream in streams])
    chosen = np.argsort(draws, kind="stable")[: round_half_up(fraction * len(ids))]
    budgets = np.array(full_steps, dtype=np.int64)
    straggling = np.zeros(len(ids), dtype=bool)
    for k in chosen:
        if full_steps[k] > 1:
            budgets[k] = streams[k].integers(1, full_steps[k])
            straggling[k] = True
    return budgets, straggling
