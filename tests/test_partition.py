from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flcli.data import partition as schemes
from flcli.data import stats
from flcli.errors import FLError
from flcli.rng import Purpose, rng

ALWAYS_FEASIBLE = ("iid", "noise", "quantity", "continuous")
ROW_SCHEMES = [name for name, scheme in schemes.SCHEMES.items() if not scheme.vertical]
OWN_CLIENTS = ("natural", "grouped-natural")
SIZE_LAWS = {
    "quantity": ["dirichlet", "lognormal", "lognormal:2", "linear", "exponential"],
    "size": ["linear", "square", "exponential"],
    "inner-dirichlet": ["equal", "linear", "square"],
}


def labels_of(n, classes, seed):
    return np.random.default_rng(seed).integers(0, classes, n)


def assert_disjoint_and_complete(parts, n):
    joined = np.concatenate(parts)
    assert len(joined) == n
    assert np.array_equal(np.sort(joined), np.arange(n))
    assert all(np.array_equal(p, np.sort(p)) for p in parts)


@pytest.mark.parametrize("scheme", ROW_SCHEMES)
@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(25, 400),
    clients=st.integers(1, 25),
    classes=st.integers(2, 10),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_every_scheme_is_disjoint_complete_and_honours_min_samples(
    scheme, n, clients, classes, seed, data
):
    labels = labels_of(n, classes, seed)
    min_samples = data.draw(st.integers(1, max(1, n // clients)), label="min_samples")
    groups = labels_of(n, data.draw(st.integers(1, 30), label="groups"), seed + 1)
    if scheme in OWN_CLIENTS:
        clients = data.draw(st.one_of(st.none(), st.integers(1, 30)), label="natural clients")
    drawn = {
        "alpha": data.draw(st.floats(0.05, 100), label="alpha"),
        "classes_per_client": data.draw(st.integers(1, classes), label="K"),
        "shards_per_client": data.draw(st.integers(1, 4), label="S"),
        "sizes": data.draw(st.sampled_from(SIZE_LAWS.get(scheme, ["linear"])), label="sizes"),
        "sigma": data.draw(st.floats(0.1, 4), label="sigma"),
        "group_size": data.draw(st.integers(1, 8), label="G"),
        "noise_std": data.draw(st.floats(0, 2), label="noise_std"),
        "by": "x0",
        "strictness": data.draw(st.floats(0, 1), label="strictness"),
    }
    registered = schemes.SCHEMES[scheme]  # through the registry: its options from its signature
    options = {name: value for name, value in drawn.items() if name in registered.options}
    inputs = {"values": np.random.default_rng(seed).normal(size=n), "groups": groups}
    generator = rng(seed, Purpose.PARTITION)
    try:
        parts = registered.split(labels, clients, generator, min_samples, options, **inputs)
    except FLError as e:
        assert scheme not in ALWAYS_FEASIBLE, e
        assert "--" in str(e)  # names the flag to change
        return
    assert_disjoint_and_complete(parts, n)
    assert min(len(p) for p in parts) >= min_samples
    expected = len(np.unique(groups)) if scheme == "natural" and clients is None else clients
    if scheme == "grouped-natural":
        expected = -(-len(np.unique(groups)) // options["group_size"])
    assert len(parts) == expected
    if scheme == "pathological":
        held = [len(np.unique(labels[p])) for p in parts]
        assert held == [options["classes_per_client"]] * clients
    if scheme in OWN_CLIENTS:  # a group is never split between clients
        owner = np.empty(n, dtype=int)
        for client, p in enumerate(parts):
            owner[p] = client
        assert all(len(np.unique(owner[groups == g])) == 1 for g in np.unique(groups))


@pytest.mark.parametrize("scheme", ROW_SCHEMES)
def test_same_seed_same_partition_other_seed_other(scheme):
    labels = labels_of(500, 10, 0)
    options = {"values": np.linspace(0, 1, 500), "groups": labels_of(500, 40, 1)}
    if "alpha" in schemes.SCHEMES[scheme].options:
        options["alpha"] = 0.3

    def draw(seed):
        generator = rng(seed, Purpose.PARTITION)
        clients = None if scheme in OWN_CLIENTS else 10
        return schemes.partition(scheme, labels, clients, generator, 5, **options)

    assert all(np.array_equal(a, b) for a, b in zip(draw(1), draw(1), strict=True))
    if scheme not in OWN_CLIENTS:  # natural without merging has nothing random
        assert not all(np.array_equal(a, b) for a, b in zip(draw(1), draw(2), strict=True))


def test_small_alpha_skews_labels_and_large_alpha_does_not():
    labels = labels_of(5000, 10, 0)
    skews = {}
    for alpha in (0.05, 1000.0):
        parts = schemes.partition(
            "dirichlet", labels, 20, rng(0, Purpose.PARTITION), 10, alpha=alpha
        )
        skews[alpha] = stats.heterogeneity(stats.label_counts(parts, labels, 10))
    assert skews[0.05]["js_divergence"] > 0.3
    assert skews[0.05]["labels_per_client"] < 5
    assert skews[1000.0]["js_divergence"] < 0.01
    assert skews[1000.0]["labels_per_client"] == 10


def test_a_smaller_alpha_never_skews_labels_less():
    """Down to alpha -> 0, where each class lands whole on one client that is not yet full: with
    10 classes of n / 10 samples, one class per client."""
    labels = np.repeat(np.arange(10), 200)

    def labels_per_client(alpha: float) -> float:
        figures = []
        for seed in range(5):
            generator = rng(seed, Purpose.PARTITION)
            parts = schemes.partition("dirichlet", labels, 10, generator, 1, alpha=alpha)
            counts = stats.label_counts(parts, labels, 10)
            figures.append(stats.heterogeneity(counts)["labels_per_client"])
        return float(np.mean(figures))

    skews = [labels_per_client(alpha) for alpha in (0.1, 0.01, 1e-3, 1e-6)]
    assert skews == sorted(skews, reverse=True)
    assert skews[-1] == 1.0


def test_lognormal_sizes_of_any_sigma_deal_every_sample_once():
    labels = labels_of(1000, 5, 0)
    for sigma in (1, 500):  # 500: a LogNormal draw itself overflows to inf
        generator = rng(0, Purpose.PARTITION)
        parts = schemes.partition("quantity", labels, 10, generator, 10, sizes=f"lognormal:{sigma}")
        assert_disjoint_and_complete(parts, 1000)
        assert min(len(part) for part in parts) >= 10
    with pytest.raises(FLError, match="finite number"):
        schemes.partition("quantity", labels, 10, generator, 10, sizes="lognormal:inf")


def test_shards_deal_label_sorted_shards():
    labels = np.repeat(np.arange(10), 100)  # 1,000 samples, shards of 50: one label each
    parts = schemes.partition("shards", labels, 10, rng(0, Purpose.PARTITION), shards_per_client=2)
    for part in parts:
        assert len(part) == 100 and len(np.unique(labels[part])) <= 2
        for label in np.unique(labels[part]):
            assert np.sum(labels[part] == label) in (50, 100)  # whole shards


def test_quantity_sizes_follow_the_law_and_labels_stay_iid():
    labels = labels_of(20_000, 5, 0)
    generator = rng(0, Purpose.PARTITION)
    parts = schemes.partition("quantity", labels, 10, generator, 10, sizes="linear")
    sizes = np.array([len(p) for p in parts])
    weights = np.arange(1, 11)
    assert np.allclose(sizes - 10, (20_000 - 100) * weights / weights.sum(), atol=1)
    assert stats.heterogeneity(stats.label_counts(parts, labels, 5))["js_divergence"] < 0.01
    exponential = schemes.partition(
        "quantity", labels, 10, rng(0, Purpose.PARTITION), 10, sizes="exponential"
    )
    sizes = np.array([len(p) for p in exponential]) - 10
    assert np.allclose(sizes[4:] / sizes[3:-1], np.e, rtol=0.02)  # large enough to round well


def test_continuous_strictness_sorts_clients_by_the_feature():
    values = np.random.default_rng(0).normal(size=5000)
    labels = np.zeros(5000, dtype=int)

    def client_means(strictness):
        parts = schemes.partition(
            "continuous",
            labels,
            10,
            rng(0, Purpose.PARTITION),
            values=values,
            strictness=strictness,
        )
        return np.array([values[p].mean() for p in parts])

    strict = client_means(1.0)
    assert np.all(np.diff(strict) > 0) and strict[-1] - strict[0] > 2
    assert np.ptp(client_means(0.0)) < 0.2  # IID: every client looks like the whole


def test_natural_merges_whole_groups_into_balanced_clients():
    groups = np.repeat(np.arange(8), [50, 40, 30, 30, 20, 10, 10, 10])
    labels = np.zeros(len(groups), dtype=int)
    parts = schemes.partition("natural", labels, 3, rng(0, Purpose.PARTITION), groups=groups)
    assert sorted(len(p) for p in parts) == [60, 70, 70]
    with pytest.raises(FLError, match="8 natural clients"):
        schemes.partition("natural", labels, 9, rng(0, Purpose.PARTITION), groups=groups)


@pytest.mark.parametrize(
    "scheme, options, message",
    [
        ("pathological", {"classes_per_client": 11}, "between 1 and the 10 classes"),
        ("pathological", {"classes_per_client": 1}, "cannot cover"),  # 5 clients x 1 < 10
        ("dirichlet", {"alpha": 0.0}, "--alpha 0.0 must be > 0"),
        ("quantity", {"sizes": "cubic"}, "--sizes 'cubic' is unknown"),
        ("continuous", {}, "needs --by"),
        ("continuous", {"values": np.ones(100), "strictness": 0.5}, "constant"),
        ("natural", {}, "needs --by"),
    ],
)
def test_impossible_settings_are_clear_errors(scheme, options, message):
    labels = np.repeat(np.arange(10), 10)
    with pytest.raises(FLError, match=message):
        schemes.partition(scheme, labels, 5, rng(0, Purpose.PARTITION), 1, **options)


def test_impossible_min_samples_is_a_clear_error():
    labels = labels_of(100, 10, 0)
    with pytest.raises(FLError, match="lower --min-samples"):
        schemes.partition("dirichlet", labels, 10, rng(0, Purpose.PARTITION), 11)
    with pytest.raises(FLError, match="raise --alpha"):
        schemes.partition("dirichlet", labels, 10, rng(0, Purpose.PARTITION), 10, alpha=0.001)


def test_stratified_split_keeps_class_shares():
    labels = np.repeat(np.arange(4), [100, 200, 300, 400])
    train, test = schemes.stratified_split(labels, 0.2, rng(0, Purpose.SPLIT))
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 1000
    assert np.array_equal(np.bincount(labels[test]), [20, 40, 60, 80])


def test_stratified_split_falls_back_when_a_class_is_too_small():
    labels = np.array([0] * 50 + [1] * 49 + [2])
    train, test = schemes.stratified_split(labels, 0.2, rng(0, Purpose.SPLIT))
    assert len(train) == 80 and len(test) == 20


def test_heterogeneity_figures_on_a_hand_made_split():
    figures = stats.heterogeneity(np.array([[10, 0], [0, 30]]))
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


def test_an_unreachable_default_min_samples_is_lowered_to_the_largest_a_draw_reaches(tmp_path):
    from flcli.data.build import build_partition
    from flcli.data.config import PartitionConfig

    sizes = {}
    for seed in range(4):  # digits, 50 clients, Dirichlet(0.1): the default (9) fails each time
        config = PartitionConfig(
            dataset="digits", clients=50, scheme="dirichlet", alpha=0.1, seed=seed
        )
        built = build_partition(config)
        used = built.meta["params"]["min_samples"]
        assert built.meta["params"]["min_samples_default"] == 9 > used
        assert min(built.meta["client_sizes"]) == used
        sizes[seed] = used
        # the same partition as asking for that minimum outright
        again = build_partition(replace(config, min_samples=used))
        assert again.meta["hash"] == built.meta["hash"]
        assert "min_samples_default" not in again.meta["params"]
    with pytest.raises(
        FLError, match=f"works for it is {sizes[0]}: lower --min-samples to {sizes[0]}"
    ):
        build_partition(replace(config, seed=0, min_samples=sizes[0] + 1))
