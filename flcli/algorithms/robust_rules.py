"""The robust rules --aggregator names, one entry each: its description (`fl train --help` and the
errors list the names of this table), how it combines the arrived updates given the f Byzantine
clients it tolerates, the largest f that n arrivals allow it, and the clients per round it needs
to tolerate f (checked against the cohort before the run starts).

The rules are the functions of flcli.algorithms.robust, imported when one first runs: this table
imports no NumPy, so that `fl --help` stays quick.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass

MEAN = "the sample-weighted mean (the algorithm's own rule)"


def robust():
    return importlib.import_module("flcli.algorithms.robust")


@dataclass(frozen=True)
class RobustRule:
    description: str
    combine: Callable  # (vectors [K, P], weights [K], f) -> [P]
    fewest: int = 1  # arrivals it runs on; a round with fewer (dropouts) takes their median
    largest_f: Callable[[int], int] = lambda arrivals: arrivals
    needs: Callable[[int], int] = lambda f: 0


ROBUST_RULES = {
    "median": RobustRule(
        "coordinate-wise median (Yin et al. 2018)",
        lambda vectors, weights, f: robust().coordinate_median(vectors),
    ),
    "trimmed-mean": RobustRule(
        "coordinate-wise mean without the f largest and f smallest (Yin et al. 2018)",
        lambda vectors, weights, f: robust().trimmed_mean(vectors, f),
        largest_f=lambda arrivals: (arrivals - 1) // 2,
    ),
    "krum": RobustRule(
        "the update closest to its K-f-2 nearest neighbours (Blanchard et al. 2017)",
        lambda vectors, weights, f: robust().krum(vectors, f),
        fewest=3,
        largest_f=lambda arrivals: (arrivals - 3) // 2,
        needs=lambda f: 2 * f + 3,
    ),
    "multi-krum": RobustRule(
        "the mean of the K-f updates with the best Krum scores (Blanchard et al. 2017)",
        lambda vectors, weights, f: robust().multi_krum(vectors, f),
        fewest=3,
        largest_f=lambda arrivals: (arrivals - 3) // 2,
        needs=lambda f: 2 * f + 3,
    ),
    "bulyan": RobustRule(
        "iterated Krum, then a trimmed mean around the median (El Mhamdi et al. 2018)",
        lambda vectors, weights, f: robust().bulyan(vectors, f),
        fewest=3,
        largest_f=lambda arrivals: (arrivals - 3) // 4,
        needs=lambda f: 4 * f + 3,
    ),
    "geomed": RobustRule(
        "geometric median by smoothed Weiszfeld (RFA, Pillutla et al. 2022)",
        lambda vectors, weights, f: robust().geometric_median(vectors, weights),
    ),
    "majority": RobustRule(
        "signSGD's majority vote of the clients' signs, for --compress sign (Bernstein et al. "
        "2018, 2019)",
        lambda vectors, weights, f: robust().majority_vote(vectors),
    ),
}


def aggregators() -> dict[str, str]:
    """--aggregator's choices and their descriptions: the algorithm's own mean, or a robust rule."""
    return {"mean": MEAN, **{name: rule.description for name, rule in ROBUST_RULES.items()}}


def spelled_out(names) -> str:
    """["a", "b", "c"] -> "a, b or c"."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
