import numpy as np
import pytest
from scipy import stats

from flcli.errors import RunFailed
from flcli.privacy import shamir
from flcli.privacy.secagg import FixedPoint, SecAggAborted, client_secrets, masked_input, secure_sum


def updates(K=6, P=40, seed=0):
    return np.random.default_rng(seed).normal(0, 3, size=(K, P))


def test_the_secure_sum_is_the_plain_sum_within_the_quantization_step():
    x = updates()
    ids = np.array([2, 5, 7, 11, 12, 30])
    result = secure_sum(x, np.ones(6, bool), threshold=4, seed=1, round=3, ids=ids)
    step = FixedPoint().step
    assert np.abs(result.total - x.sum(axis=0)).max() <= 6 * step / 2
    assert np.abs(result.total - x.sum(axis=0)).max() > 0  # really went through fixed point


@pytest.mark.parametrize("clients", [2047, 2048, 5000])
def test_the_fixed_point_of_a_cohort_sums_all_its_clients_at_the_bound_without_overflow(clients):
    fixed = FixedPoint.for_cohort(clients)
    for value in (fixed.bound, -fixed.bound):
        words = np.full(clients, fixed.encode(np.array([value]))[0], dtype=np.uint64)
        assert fixed.decode(np.array([words.sum(dtype=np.uint64)]))[0] == clients * value
    assert fixed.step == (2.0**-32 if clients < 2048 else 2.0**-31 if clients < 4096 else 2.0**-30)


def test_dropped_clients_masks_are_removed_when_enough_survive():
    x = updates()
    survived = np.array([True, False, True, True, False, True])
    result = secure_sum(x, survived, threshold=4, seed=1, round=3, ids=np.arange(6))
    assert np.abs(result.total - x[survived].sum(axis=0)).max() <= 6 * FixedPoint().step


def test_below_the_threshold_the_round_aborts_cleanly():
    survived = np.array([True, False, True, False, False, True])
    with pytest.raises(SecAggAborted, match="3 of 6 clients survived, below the threshold 4"):
        secure_sum(updates(), survived, threshold=4, seed=1, round=3, ids=np.arange(6))
    assert issubclass(SecAggAborted, RunFailed)


@pytest.mark.parametrize("value", [2.0**21, np.nan])
def test_a_vector_beyond_the_fixed_point_range_fails_the_round_instead_of_being_clipped(value):
    x = updates()
    x[2, 7] = value
    with pytest.raises(RunFailed, match=r"round 3: a client's vector reaches (2\.1e\+06|nan)"):
        secure_sum(x, np.ones(6, bool), threshold=4, seed=1, round=3, ids=np.arange(6))


def test_traffic_counts_keys_shares_and_masked_vectors():
    K, P = 6, 40
    survived = np.array([True, False, True, True, True, True])
    result = secure_sum(updates(K, P), survived, 3, seed=1, round=1, ids=np.arange(K))
    keys, shares, vectors = K * 32, K * (K - 1) * (2 * 66 + 28), 5 * P * 8
    unmasking = 5 * (K - 1) * 66
    assert result.bytes_up == keys + shares + vectors + unmasking


def masked(x, round, client=0, K=5):
    secrets = [client_secrets(9, round, c, 3, K) for c in range(K)]
    return masked_input(client, FixedPoint().encode(x), secrets)


def test_a_masked_vector_is_uniform_over_the_ring_whatever_the_update():
    P = 4096
    for x in (np.zeros(P), np.full(P, 1000.0), np.linspace(-5, 5, P)):
        y = masked(x, round=1)
        bins = np.bincount((y >> np.uint64(60)).astype(np.int64), minlength=16)
        assert stats.chisquare(bins).pvalue > 1e-3
        assert stats.kstest(y / 2.0**64, "uniform").pvalue > 1e-3
    a, b = masked(np.zeros(P), round=1), masked(np.full(P, 1000.0), round=1)
    assert stats.ks_2samp(a / 2.0**64, b / 2.0**64).pvalue > 1e-3


def test_the_same_update_under_different_masks_looks_uncorrelated():
    x = np.linspace(-5, 5, 4096)
    first, second = masked(x, round=1) / 2.0**64, masked(x, round=2) / 2.0**64
    assert abs(np.corrcoef(first, second)[0, 1]) < 0.06
    assert abs(np.corrcoef(first, x)[0, 1]) < 0.06


def test_shamir_any_t_shares_recover_the_secret_and_fewer_do_not():
    generator = np.random.default_rng(0)
    secret = int.from_bytes(bytes(range(32)), "big")
    points = shamir.share(secret, 3, 5, generator)
    assert shamir.reconstruct(points[:3]) == secret
    assert shamir.reconstruct([points[4], points[1], points[2]]) == secret
    assert shamir.reconstruct(points[:2]) != secret


def test_fixed_point_round_trip_and_clipping():
    fixed = FixedPoint(fraction_bits=8, bound=4.0)
    words = fixed.encode(np.array([1.0, -2.5, 0.001, 100.0, -100.0]))
    assert np.array_equal(fixed.decode(words), [1.0, -2.5, 0.0, 4.0, -4.0])
