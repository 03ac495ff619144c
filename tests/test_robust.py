import numpy as np
import pytest

from flcli.algorithms import robust
from flcli.errors import FLError

LINE = np.array([[0.0], [1.0], [1.5], [3.0], [4.0], [100.0], [200.0]])


def test_coordinate_median_and_mean_by_hand():
    X = np.array([[1.0, 5.0], [3.0, 1.0], [2.0, 9.0], [10.0, 0.0]])
    assert np.array_equal(robust.coordinate_median(X), [2.5, 3.0])
    assert np.array_equal(robust.mean(X), [4.0, 3.75])


def test_trimmed_mean_drops_f_from_each_side_of_every_coordinate():
    X = np.array([[0.0, 7.0], [10.0, 1.0], [1.0, 2.0], [2.0, 3.0], [-50.0, 4.0]])
    # column 0 sorted: -50 0 1 2 10 -> mean(0, 1, 2); column 1: 1 2 3 4 7 -> mean(2, 3, 4)
    assert np.array_equal(robust.trimmed_mean(X, 1), [1.0, 3.0])
    assert np.array_equal(robust.trimmed_mean(X, 0), X.mean(axis=0))
    with pytest.raises(FLError, match="K > 2f"):
        robust.trimmed_mean(X, 3)


def test_krum_scores_by_hand_and_krum_picks_the_honest_centre():
    # K = 7, f = 2: each score sums the K - f - 2 = 3 smallest squared distances to others.
    scores = robust.krum_scores(LINE, 2)
    assert np.allclose(scores[:5], [12.25, 5.25, 4.75, 7.25, 16.25], rtol=1e-12, atol=0)
    assert scores[5] == pytest.approx(96.0**2 + 97.0**2 + 98.5**2, rel=1e-12)
    assert np.array_equal(robust.krum(LINE, 2), [1.5])
    # multi-krum m=2: the two best scores are 4.75 (x=1.5) then 5.25 (x=1)
    assert np.array_equal(robust.multi_krum(LINE, 2, m=2), [1.25])
    assert np.allclose(robust.multi_krum(LINE, 2), [1.9])  # m = K - f: the 5 honest points


def test_krum_scores_do_not_move_with_the_origin():
    X = np.random.default_rng(0).normal(0, 1e-3, size=(7, 100))
    # 1e8 + X itself holds X to ~1e-8 only: hence 1e-3, not machine precision
    assert np.allclose(robust.krum_scores(X + 1e8, 1), robust.krum_scores(X, 1), rtol=1e-3, atol=0)


def test_krum_needs_more_than_2f_plus_2_clients():
    with pytest.raises(FLError, match="2f\\+2"):
        robust.krum(LINE[:6], 2)


def test_krum_ignores_a_cluster_of_outliers_in_many_dimensions():
    generator = np.random.default_rng(0)
    honest = generator.normal(0, 0.1, size=(8, 50)) + 1.0
    byzantine = np.full((2, 50), -40.0) + generator.normal(0, 0.01, size=(2, 50))
    chosen = robust.krum(np.vstack([honest, byzantine]), 2)
    assert any(np.array_equal(chosen, row) for row in honest)


def test_bulyan_by_hand():
    # f = 1, K = 7: iterated Krum selects x = 2, 3, 1, 4, 0 (theta = 5), then each coordinate
    # averages the beta = 3 selected values closest to their median 2: (1 + 2 + 3) / 3.
    X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0], [1000.0]])
    assert np.array_equal(robust.bulyan(X, 1), [2.0])
    X[6] = -1e6
    assert np.array_equal(robust.bulyan(X, 1), [2.0])


def test_bulyan_requires_4f_plus_3_clients():
    with pytest.raises(FLError, match="4f\\+3 = 7"):
        robust.bulyan(np.zeros((6, 3)), 1)


def test_geometric_median_satisfies_the_optimality_condition():
    generator = np.random.default_rng(1)
    X = generator.normal(size=(9, 4))
    v = robust.geometric_median(X, smoothing=1e-12, max_iter=10_000, tol=1e-14)
    unit = (v - X) / np.linalg.norm(v - X, axis=1, keepdims=True)
    assert np.linalg.norm(unit.sum(axis=0)) < 1e-6  # the gradient of sum_k ||v - x_k||
    assert np.linalg.norm(v - X.mean(axis=0)) > 1e-3  # not the mean


def test_geometric_median_barely_moves_when_one_point_goes_to_infinity():
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5]])
    near = robust.geometric_median(X)
    X[0] = [1e6, -1e6]
    far = robust.geometric_median(X)
    assert np.linalg.norm(far - near) < 0.5
    assert np.abs(robust.mean(X)).max() > 1e5
