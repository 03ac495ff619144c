"""Whether a run is learning: warnings read from its rounds.csv records alone.

A NaN or infinite loss stops a run (flcli.engine.rounds.check_finite); a run that goes the wrong
way without overflowing only gets a warning, because a loss above its start is not proof of
failure: with lr 0.01, FedProx on Synthetic(alpha, beta) climbs above log(10) in each of its
first 5 rounds while its accuracy rises, and learns from round 6 on. So each check asks for
more than "above the start", and for a score (test accuracy, or R²) that did not gain over the
RISING rounds that the check looks at:

- rising: the global train loss is above its round-0 value in each of the last RISING rounds and
  went up in every one of them (RISING rounds in a row), and the score is no higher than RISING
  rounds before;
- chance: the test accuracy has been at or below chance (1 / classes) for RISING rounds, is no
  higher than RISING rounds before, and the train loss is not below its round-0 value: nothing
  was learnt (FedAvg dropping 90% stragglers stays below chance for 10 rounds, but gains).

Each check fires once, at the first round it holds. The outcome depends on the records only, so
every backend and a resumed run give the same warnings. Only evaluated rounds count (with
--eval-every K, "RISING rounds" are RISING evaluated rounds); the others have no loss to read.
"""

from collections.abc import Sequence

from flcli.engine.evalplan import is_evaluated

RISING = 5  # rounds


def advice(lr: float | None, private: bool = False) -> str:
    """What to change: the learning rate (lr None: the model has none), and with DP the noise."""
    change = (
        "check the model's arguments" if lr is None else f"try a smaller --lr, e.g. {lr / 10:g}"
    )
    return change + (
        ", or less DP noise (a larger --dp-epsilon or a smaller --dp-noise)" if private else ""
    )


SCORES = ("test_accuracy", "test_r2")  # higher is better


def gained(rows: Sequence[dict], i: int) -> bool:
    """Whether the score of rows[i] is higher than RISING rounds before (False without one)."""
    score = next((name for name in SCORES if name in rows[i]), None)
    return score is not None and rows[i][score] > rows[i - RISING][score]


def loss_rising(rows: Sequence[dict], i: int) -> bool:
    """Whether the train loss rose in each of the RISING rounds up to rows[i], staying above
    round 0's, while the score did not gain."""
    if i < RISING:
        return False
    start = rows[0]["train_loss"]
    window = [rows[j]["train_loss"] for j in range(i - RISING, i + 1)]
    above = all(loss > start for loss in window[1:])
    climbing = all(b > a for a, b in zip(window, window[1:], strict=False))
    return above and climbing and not gained(rows, i)


def at_chance(rows: Sequence[dict], i: int, num_classes: int | None) -> bool:
    """Whether the test accuracy was at or below 1 / num_classes in each of the RISING rounds up
    to rows[i] without gaining, with rows[i]'s train loss not below round 0's."""
    if not num_classes or i < RISING or "test_accuracy" not in rows[i]:
        return False
    chance = 1 / num_classes
    accuracies = [rows[j]["test_accuracy"] for j in range(i - RISING + 1, i + 1)]
    stuck = all(a <= chance for a in accuracies) and not gained(rows, i)
    return stuck and rows[i]["train_loss"] >= rows[0]["train_loss"]


class LearningCheck:
    """Reads the records as they come (observe each index once, in order) and keeps the warnings
    found so far: one per check, at the first evaluated round it holds."""

    def __init__(self, num_classes: int | None, lr: float | None, private: bool = False):
        self.num_classes = num_classes
        self.lr = lr
        self.private = private  # DP noise may be what stops the run learning
        self.warnings: list[str] = []
        self.fired: set[str] = set()
        self.evaluated: list[dict] = []  # the evaluated rows observed so far

    def observe(self, rows: Sequence[dict], i: int) -> list[str]:
        """The warnings that round rows[i] adds (usually none; none at a round not evaluated)."""
        if not is_evaluated(rows[i]):
            return []
        self.evaluated.append(rows[i])
        return self.check(self.evaluated, len(self.evaluated) - 1)

    def check(self, rows: Sequence[dict], i: int) -> list[str]:
        """The warnings that rows[i] adds, rows being evaluated rounds only."""
        row, new = rows[i], []
        if "rising" not in self.fired and loss_rising(rows, i):
            self.fired.add("rising")
            new.append(
                f"round {row['round']}: the train loss rose {RISING} rounds in a row, to "
                f"{row['train_loss']:.4g}, above its round-0 value {rows[0]['train_loss']:.4g}; "
                f"the run is diverging: {advice(self.lr, self.private)}"
            )
        if "chance" not in self.fired and at_chance(rows, i, self.num_classes):
            self.fired.add("chance")
            new.append(
                f"round {row['round']}: test accuracy {row['test_accuracy']:.4g} has been at or "
                f"below chance (1/{self.num_classes} = {1 / self.num_classes:.3g}) for {RISING} "
                f"rounds and the train loss did not go below its round-0 value; the run is not "
                f"learning: {advice(self.lr, self.private)}"
            )
        self.warnings.extend(new)
        return new


def learning_warnings(rows: Sequence[dict], num_classes: int | None, lr: float | None) -> list[str]:
    """Every warning the records give, as a run that logged them all would have found them."""
    check = LearningCheck(num_classes, lr)
    for i in range(len(rows)):
        check.observe(rows, i)
    return check.warnings
