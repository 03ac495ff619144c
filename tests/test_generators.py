import numpy as np
import pytest
from scipy import stats as scipy_stats

from flcli.data.build import build_partition
from flcli.data.config import PartitionConfig
from flcli.data.generators import generate, synthetic_sizes
from flcli.errors import FLError
from flcli.rng import Purpose, rng


def test_synthetic_client_sizes_are_floor_lognormal_4_2_plus_50():
    sizes = synthetic_sizes(20_000, rng(0, Purpose.GENERATE))
    assert sizes.min() >= 50
    extra = sizes - 50  # floor(LogNormal(4, 2)): P(extra >= m) = P(LogNormal >= m) for whole m
    for m in (1, 10, 55, 200, 2000):
        expected = scipy_stats.lognorm.sf(m, s=2.0, scale=np.exp(4.0))
        observed = np.mean(extra >= m)
        assert abs(observed - expected) < 4 * np.sqrt(expected * (1 - expected) / len(sizes))


def test_synthetic_feature_scales_match_the_definition():
    data = generate("synthetic:alpha=1,beta=2,clients=120", rng(3, Purpose.GENERATE))
    assert data.X.shape[1] == 60 and data.num_classes == 10
    devices = np.unique(data.groups)
    means = np.stack([data.X[data.groups == k].mean(axis=0) for k in devices])
    centred = np.concatenate([data.X[data.groups == k] - means[i] for i, k in enumerate(devices)])
    # within a device, x ~ N(v_k, diag(j^-1.2))
    within = centred.var(axis=0) / (np.arange(1, 61) ** -1.2)
    assert np.allclose(within, 1.0, atol=0.06)
    # v_k ~ N(B_k, 1) per feature: spread of a device's 60 means around their centre is 1
    assert means.var(axis=1, ddof=1).mean() == pytest.approx(1.0, abs=0.1)
    # B_k ~ N(0, beta = 2): spread of device centres is beta^2 (+ 1/60 from the v_k noise)
    assert means.mean(axis=1).var(ddof=1) == pytest.approx(4.0 + 1 / 60, rel=0.3)


def test_synthetic_iid_shares_one_model_and_centres_devices_at_zero():
    from sklearn.linear_model import LogisticRegression

    data = generate("synthetic:iid=1", rng(4, Purpose.GENERATE))
    device_means = [data.X[data.groups == k].mean(axis=0) for k in np.unique(data.groups)]
    assert np.abs(np.mean(device_means, axis=0)).max() < 0.2
    rows = rng(0, Purpose.SPLIT).permutation(len(data.y))[:1500]
    fitted = LogisticRegression(C=1e4, max_iter=2000).fit(data.X[rows], data.y[rows])
    # one shared linear argmax for every device: the pooled data is linearly separable
    assert fitted.score(data.X[rows], data.y[rows]) > 0.97


def test_synthetic_natural_split_keeps_90_percent_of_each_device_for_training():
    data = generate("synthetic", rng(0, Purpose.GENERATE))
    part = build_partition(PartitionConfig(dataset="synthetic", scheme="natural", seed=0))
    device_sizes = np.bincount(data.groups)
    assert part.meta["num_clients"] == 30
    assert part.meta["client_sizes"] == [int(0.9 * n) for n in device_sizes]
    assert part.meta["num_test"] == int(sum(n - int(0.9 * n) for n in device_sizes))


def test_fcube_parties_hold_mirrored_octants_labelled_by_the_sign_of_x1():
    data = generate("fcube", rng(0, Purpose.GENERATE))
    train = ~data.is_test
    assert np.bincount(data.groups[train]).tolist() == [1000] * 4
    assert np.all((data.X[:, 0] > 0) == (data.y == 0))
    for party in range(4):
        x = data.X[data.groups == party]
        pattern = np.sign(x) * np.sign(x[:, :1])  # mirrored points share it
        assert len(np.unique(pattern, axis=0)) == 1
    patterns = {
        tuple(np.sign(data.X[data.groups == p][0]) * np.sign(data.X[data.groups == p][0, 0]))
        for p in range(4)
    }
    assert len(patterns) == 4
    assert np.abs(data.X[data.is_test]).max() <= 1


def test_classification_generator_takes_make_classification_arguments():
    data = generate(
        "classification:n_samples=300,n_features=8,n_classes=5", rng(0, Purpose.GENERATE)
    )
    assert data.X.shape == (300, 8) and data.num_classes == 5
    assert set(np.unique(data.y)) == set(range(5))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("synthetic:alpha=x", "is not KEY=NUMBER"),
        ("synthetic:gamma=1", "no parameter 'gamma'"),
        ("synthetic:clients=2.5", "whole number"),
        ("classification:n_classes=50,n_features=3", "classification:"),
        ("classification:colour=1", "no parameter 'colour'"),
    ],
)
def test_bad_generator_parameters_are_clear_errors(spec, message):
    with pytest.raises(FLError, match=message):
        generate(spec, rng(0, Purpose.GENERATE))
