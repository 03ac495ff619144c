"""Malicious clients: a fraction of all clients, fixed for the run by the seed, that send bad
updates (signflip, gaussian, scale) or train on flipped labels (labelflip).

- signflip: sends -s * delta (s = strength, default 4, as in Xie et al. 2019, "Zeno"); s = 1 is the
  plain sign flip.
- gaussian: sends N(0, s^2 I) instead of its update (default s = 1; Blanchard et al. 2017).
- scale: sends s * delta (default s = 10), the boosting of Bhagoji et al. 2019.
- labelflip: trains honestly on labels y -> C - 1 - y (Fang et al. 2020, Tolpegin et al. 2020).

Which clients are malicious depends only on (seed, ATTACK); a gaussian attacker's noise only on
(seed, ATTACK, round, client).
"""

import numpy as np

from flcli.errors import FLError
from flcli.numbers import round_half_up
from flcli.rng import Purpose, rng

ATTACKS = {
    "signflip": "sends -s x its update (default s = 4)",
    "gaussian": "sends Gaussian noise of std s instead of its update (default s = 1)",
    "scale": "sends s x its update (default s = 10)",
    "labelflip": "trains on flipped labels y -> C-1-y",
}
DEFAULT_STRENGTH = {"signflip": 4.0, "gaussian": 1.0, "scale": 10.0, "labelflip": 0.0}


def check_attack(kind: str) -> None:
    if kind not in ATTACKS:
        raise FLError(f"unknown --attack {kind!r}; choose one of: {', '.join(ATTACKS)}")


def malicious_clients(seed: int, num_clients: int, fraction: float) -> np.ndarray:
    """The sorted ids of fraction x num_clients malicious clients (rounded half up, like the
    cohort's size), fixed for the run."""
    count = round_half_up(fraction * num_clients)
    chosen = rng(seed, Purpose.ATTACK).choice(num_clients, count, replace=False)
    return np.sort(chosen)


def attack_updates(
    kind: str,
    deltas: np.ndarray,
    ids: np.ndarray,
    malicious: np.ndarray,
    seed: int,
    round: int,
    strength: float | None = None,
) -> np.ndarray:
    """The updates as sent: rows of deltas [K, P] whose client id is in malicious are replaced
    according to the attack; the honest rows are untouched."""
    check_attack(kind)
    s = DEFAULT_STRENGTH[kind] if strength is None else strength
    bad = np.isin(ids, malicious)
    sent = np.array(deltas, dtype=np.float64, copy=True)
    if kind == "signflip":
        sent[bad] *= -s
    elif kind == "scale":
        sent[bad] *= s
    elif kind == "gaussian":
        for row in np.flatnonzero(bad):
            sent[row] = s * rng(seed, Purpose.ATTACK, round, ids[row]).standard_normal(
                sent.shape[1]
            )
    return sent


def flip_labels(
    y: np.ndarray, offsets: np.ndarray, malicious: np.ndarray, num_classes: int
) -> np.ndarray:
    """A copy of the training labels where every malicious client's rows have y -> C - 1 - y."""
    flipped = np.array(y, copy=True)
    for client in malicious:
        rows = slice(offsets[client], offsets[client + 1])
        flipped[rows] = num_classes - 1 - flipped[rows]
    return flipped
