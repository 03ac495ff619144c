"""Byzantine-robust aggregators: plain NumPy functions over the clients' updates X [K, P].

Each returns one vector [P] meant to replace the (weighted) mean of the updates. `f` is the number
of Byzantine clients the rule is built to tolerate in a cohort of K.

- coordinate_median, trimmed_mean: Yin, Chen, Ramchandran, Bartlett 2018, "Byzantine-Robust
  Distributed Learning: Towards Optimal Statistical Rates".
- krum, multi_krum: Blanchard, El Mhamdi, Guerraoui, Stainer 2017, "Machine Learning with
  Adversaries: Byzantine Tolerant Gradient Descent".
- bulyan: El Mhamdi, Guerraoui, Rouault 2018, "The Hidden Vulnerability of Distributed Learning
  in Byzantium".
- geometric_median: Pillutla, Kakade, Harchaoui 2022, "Robust Aggregation for Federated Learning"
  (RFA, smoothed Weiszfeld).
"""

import numpy as np

from flcli.errors import FLError


def mean(X: np.ndarray) -> np.ndarray:
    """The plain (unweighted) mean: one Byzantine client can move it anywhere."""
    return np.asarray(X, dtype=np.float64).mean(axis=0)


def coordinate_median(X: np.ndarray) -> np.ndarray:
    """Coordinate-wise median (Yin et al. 2018): out_j = median_k X[k, j]."""
    return np.median(np.asarray(X, dtype=np.float64), axis=0)


def majority_vote(X: np.ndarray) -> np.ndarray:
    """signSGD with majority vote (Bernstein et al. 2018, "signSGD: Compressed Optimisation for
    Non-Convex Problems", Algorithm 3; Bernstein et al. 2019, "signSGD with Majority Vote is
    Communication Efficient and Fault Tolerant"): out_j = a sign(sum_k sign X[k, j]), one vote per
    client whatever its weight, 0 on a tie. The scale a is the mean over the clients of their
    mean |X[k, j]|, which for scaled-sign messages (--compress sign) is the mean of their scales
    ||x_k||_1 / P: the step the papers' learning rate gives the vote, set from the round."""
    X = np.asarray(X, dtype=np.float64)
    return np.abs(X).mean() * np.sign(np.sign(X).sum(axis=0))


def trimmed_mean(X: np.ndarray, f: int) -> np.ndarray:
    """Coordinate-wise trimmed mean (Yin et al. 2018): in every coordinate drop the f largest and
    the f smallest values and average the K - 2f left."""
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    if f < 0 or 2 * f >= n:
        raise FLError(f"trimmed-mean of {n} clients cannot trim {f} from each side; need K > 2f")
    return np.sort(X, axis=0)[f : n - f].mean(axis=0)


def krum_scores(X: np.ndarray, f: int) -> np.ndarray:
    """Krum's score of every update: the sum of squared distances to its K - f - 2 nearest other
    updates (Blanchard et al. 2017)."""
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    if n <= 2 * f + 2:
        raise FLError(f"krum needs more than 2f+2 = {2 * f + 2} clients per round, got {n}")
    return nearest_distance_sums(X, n - f - 2)


def nearest_distance_sums(X: np.ndarray, neighbours: int) -> np.ndarray:
    """For every row of X, the sum of squared distances to its `neighbours` nearest other rows."""
    X = X - X.mean(axis=0)  # ||x||^2 + ||y||^2 - 2 x.y cancels badly far from the origin
    squared = (X * X).sum(axis=1)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2 * X @ X.T, 0.0)
    np.fill_diagonal(distances, np.inf)
    return np.sort(distances, axis=1)[:, :neighbours].sum(axis=1)


def krum(X: np.ndarray, f: int) -> np.ndarray:
    """Krum (Blanchard et al. 2017): the update with the smallest score, i.e. the one closest to
    its K - f - 2 nearest neighbours; tolerates f Byzantine clients when K > 2f + 2."""
    return np.asarray(X, dtype=np.float64)[np.argmin(krum_scores(X, f))].copy()


def multi_krum(X: np.ndarray, f: int, m: int | None = None) -> np.ndarray:
    """Multi-Krum (Blanchard et al. 2017): the mean of the m updates with the smallest Krum scores
    (m = K - f by default; m = 1 is Krum)."""
    X = np.asarray(X, dtype=np.float64)
    m = len(X) - f if m is None else m
    if not 1 <= m <= len(X):
        raise FLError(f"multi-krum's m {m} must be between 1 and the {len(X)} clients")
    chosen = np.argsort(krum_scores(X, f), kind="stable")[:m]
    return X[chosen].mean(axis=0)


def bulyan(X: np.ndarray, f: int) -> np.ndarray:
    """Bulyan (El Mhamdi et al. 2018), needs K >= 4f + 3.

    1. Select theta = K - 2f updates by applying Krum again and again, each time removing the
       chosen update from the candidates.
    2. In every coordinate, average the beta = theta - 2f selected values closest to their median.
    """
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    if n < 4 * f + 3:
        raise FLError(
            f"bulyan tolerating f={f} Byzantine clients needs at least 4f+3 = {4 * f + 3} "
            f"clients per round, got {n}; sample more clients or lower --byzantine"
        )
    theta = n - 2 * f
    remaining = list(range(n))
    selected = []
    for _ in range(theta):
        # Krum over the candidates left: n - f - 2 nearest neighbours of the current set (at
        # least one, as the set shrinks towards 2f + 1).
        neighbours = max(1, min(len(remaining) - f - 2, len(remaining) - 1))
        scores = nearest_distance_sums(X[remaining], neighbours) if len(remaining) > 1 else [0]
        best = remaining[int(np.argmin(scores))]
        selected.append(best)
        remaining.remove(best)
    chosen = X[selected]  # [theta, P]
    beta = theta - 2 * f
    median = np.median(chosen, axis=0)
    closest = np.argsort(np.abs(chosen - median), axis=0, kind="stable")[:beta]
    return np.take_along_axis(chosen, closest, axis=0).mean(axis=0)


def geometric_median(
    X: np.ndarray,
    weights: np.ndarray | None = None,
    smoothing: float = 1e-6,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> np.ndarray:
    """The weighted geometric median argmin_v sum_k a_k max(nu, ||v - X_k||) by the smoothed
    Weiszfeld algorithm of RFA (Pillutla et al. 2022):

        beta_k = a_k / max(nu, ||v - X_k||),   v <- sum_k beta_k X_k / sum_k beta_k

    starting from the weighted mean, until v moves less than tol (relative) or max_iter.
    """
    X = np.asarray(X, dtype=np.float64)
    a = np.ones(len(X)) if weights is None else np.asarray(weights, dtype=np.float64)
    a = a / a.sum()
    v = a @ X
    for _ in range(max_iter):
        beta = a / np.maximum(smoothing, np.linalg.norm(X - v, axis=1))
        new = beta @ X / beta.sum()
        moved = np.linalg.norm(new - v)
        v = new
        if moved <= tol * max(1.0, np.linalg.norm(v)):
            break
    return v
