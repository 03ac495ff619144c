"""Which rounds are evaluated (--eval-every) and on which clients' training rows train_loss is
computed (--eval-clients).

A round r is evaluated when r % K == 0 (round 0 among them) and the last round always. A round
that is not keeps its rounds.csv row: the round, the counters, epsilon and the clusters, with the
metric columns empty and `evaluated` 0; with K > 1 every row has the column `evaluated`, and with
K = 1 (the default) no row has it, as before the option.

With F < 1, train_loss is the mean loss over the training rows of ceil(F x clients) clients
drawn without replacement by (seed, EVALUATE, round): the same on every backend and on resume,
another sample each round. The test metrics, the cohort's per-client columns and clients.csv do
not depend on F.
"""

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from flcli.rng import Purpose, rng

EVALUATED = "evaluated"  # the rounds.csv column marking evaluated rounds (with --eval-every > 1)


def sample_size(fraction: float, num_clients: int) -> int:
    """ceil(fraction x num_clients), the fraction read as the decimal it was written as (0.7 of
    10 clients is 7, not ceil(7.000000000000001) = 8), at least 1."""
    return max(1, math.ceil(Fraction(repr(fraction)) * num_clients))


def evaluation_clients(seed: int, round: int, num_clients: int, fraction: float) -> np.ndarray:
    """The sorted ids of the clients whose training rows give round `round`'s train_loss."""
    count = sample_size(fraction, num_clients)
    chosen = rng(seed, Purpose.EVALUATE, round).choice(num_clients, count, replace=False)
    return np.sort(chosen)


def unevaluated_record(previous: dict, evaluated_columns: dict) -> dict:
    """The rounds.csv row of a round that was not evaluated: the columns of the previous row
    (the same set in the same order), NaN where the round measured nothing, and the columns
    every round has (round, clients, the counters, ...) from evaluated_columns."""
    record = dict.fromkeys(previous, math.nan)
    record.update(evaluated_columns)
    record[EVALUATED] = 0
    return record


def is_evaluated(record: dict) -> bool:
    """Whether a rounds.csv row holds measured metrics (a row without the column does)."""
    return record.get(EVALUATED, 1) != 0


@dataclass(frozen=True)
class EvaluationPlan:
    every: int = 1  # --eval-every K
    fraction: float = 1.0  # --eval-clients F
    last_round: int = 0
    seed: int = 0
    num_clients: int = 0

    @classmethod
    def of(cls, config, num_clients: int) -> "EvaluationPlan":
        return cls(config.eval_every, config.eval_clients, config.rounds, config.seed, num_clients)

    @property
    def marks_rounds(self) -> bool:
        """Whether rounds.csv has the column `evaluated` (only when some rounds are skipped)."""
        return self.every > 1

    def evaluates(self, round: int) -> bool:
        return round % self.every == 0 or round == self.last_round

    def train_clients(self, round: int) -> np.ndarray | None:
        """The clients whose training rows give the round's train_loss; None: every client."""
        if self.fraction >= 1:
            return None
        return evaluation_clients(self.seed, round, self.num_clients, self.fraction)
