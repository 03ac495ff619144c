import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flcli.data import partition as schemes
from flcli.errors import FLError
from flcli.rng import Purpose, rng


def labels_of(n, classes, seed):
    return np.random.default_rng(seed).integers(0, classes, n)


def assert_disjoint_and_complete(parts, n):
    joined = np.concatenate(parts)
    assert len(joined) == n
    assert np.array_equal(np.sort(joined), np.arange(n))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(20, 600),
    clients=st.integers(1, 20),
    classes=st.integers(2, 10),
    alpha=st.floats(0.05, 100),
    seed=st.integers(0, 2**16),
)
def test_dirichlet_is_disjoint_complete_and_honours_min_samples(n, clients, classes, alpha, seed):
    labels = labels_of(n, classes, seed)
    min_samples = min(5, n // clients)
    try:
        parts = schemes.partition(
            "dirichlet", labels, clients, rng(seed, Purpose.PARTITION), alpha, min_samples
        )
    except FLError as e:
        assert "--min-samples" in str(e)
        return
    assert len(parts) == clients
    assert_disjoint_and_complete(parts, n)
    assert min(len(p) for p in parts) >= min_samples


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 500), clients=st.integers(1, 50), seed=st.integers(0, 2**16))
def test_iid_is_disjoint_complete_and_balanced(n, clients, seed):
    labels = labels_of(n, 3, seed)
    if clients > n:
        with pytest.raises(FLError, match="--clients"):
            schemes.partition("iid", labels, clients, rng(seed, Purpose.PARTITION))
        return
    parts = schemes.partition("iid", labels, clients, rng(seed, Purpose.PARTITION))
    assert_disjoint_and_complete(parts, n)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_same_seed_same_partition_other_seed_other():
    labels = labels_of(500, 10, 0)

    def draw(seed):
        return schemes.partition("dirichlet", labels, 10, rng(seed, Purpose.PARTITION), 0.3, 5)

    assert all(np.array_equal(a, b) for a, b in zip(draw(1), draw(1), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(draw(1), draw(2), strict=True))


def test_small_alpha_skews_labels_and_large_alpha_does_not():
    labels = labels_of(5000, 10, 0)
    skews = {}
    for alpha in (0.05, 1000.0):
        parts = schemes.partition("dirichlet", labels, 20, rng(0, Purpose.PARTITION), alpha, 10)
        skews[alpha] = schemes.heterogeneity(schemes.label_counts(parts, labels, 10))
    assert skews[0.05]["js_divergence"] > 0.3
    assert skews[0.05]["labels_per_client"] < 5
    assert skews[1000.0]["js_divergence"] < 0.01
    assert skews[1000.0]["labels_per_client"] == 10


def test_impossible_min_samples_is_a_clear_error():
    labels = labels_of(100, 10, 0)
    with pytest.raises(FLError, match="lower --min-samples"):
        schemes.partition("dirichlet", labels, 10, rng(0, Purpose.PARTITION), 0.5, 11)
    with pytest.raises(FLError, match="raise --alpha"):
        schemes.partition("dirichlet", labels, 10, rng(0, Purpose.PARTITION), 0.001, 10)


def test_stratified_split_keeps_class_shares():
    labels = np.repeat(np.arange(4), [100, 200, 300, 400])
    train, test = schemes.stratified_split(labels, 0.2, rng(0, Purpose.SPLIT))
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 1000
    assert np.array_equal(np.bincount(labels[test]), [20, 40, 60, 80])


def test_heterogeneity_figures_on_a_hand_made_split():
    figures = schemes.heterogeneity(np.array([[10, 0], [0, 30]]))
    # client 0 is p = (1, 0) against the global q = (0.25, 0.75); m = (p + q) / 2 = (0.625, 0.375)
    kl_p_m = np.log2(1 / 0.625)
    kl_q_m = 0.25 * np.log2(0.25 / 0.625) + 0.75 * np.log2(0.75 / 0.375)
    client0 = 0.5 * kl_p_m + 0.5 * kl_q_m
    # client 1 is p = (0, 1); m = (0.125, 0.875)
    client1 = 0.5 * np.log2(1 / 0.875) + 0.5 * (
        0.25 * np.log2(0.25 / 0.125) + 0.75 * np.log2(0.75 / 0.875)
    )
    assert figures["js_divergence"] == pytest.approx((client0 + client1) / 2)
    assert figures["labels_per_client"] == 1
    assert figures["size_cv"] == pytest.approx(10 / 20)
