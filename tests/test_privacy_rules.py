"""The published privacy rules, checked against their formulas rather than loose statistics.

DP-FedAvg (McMahan et al. 2018) with adaptive clipping (Andrew et al. 2021), Poisson sampling,
Shamir secret sharing (Shamir 1979) and secure aggregation (Bonawitz et al. 2017). Every random
number flcli draws is addressed (flcli.rng: seed, purpose, round, client), so the noise of a round
can be drawn again here and the released values compared with the formula to rounding error.
"""

import csv
import itertools
import json
import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import rdp

from flcli.algorithms.base import ClientUpdates
from flcli.engine.aggregates import NoisedMean
from flcli.engine.dropout import survivors
from flcli.engine.stages import DPClip, Dropout, PoissonSample
from flcli.engine.uplink import Uplink
from flcli.privacy import dp, shamir
from flcli.privacy.secagg import FixedPoint, secure_sum
from flcli.rng import Purpose, rng
from tests.conftest import write_generated_partition

# ---------------------------------------------------------------------------------------------
# DP-FedAvg: the noised mean, and adaptive clipping's noised count


def update_draw(seed, round, size):
    """The round's N(0, I) for the update sum: addressed by (seed, NOISE, round, 0)."""
    return rng(seed, Purpose.NOISE, round, 0).standard_normal(size)


def count_draw(seed, round):
    """The round's N(0, 1) for adaptive clipping's count: addressed by (seed, NOISE, round, 1)."""
    return rng(seed, Purpose.NOISE, round, 1).standard_normal()


def paper_mean(deltas, clip, z, expected_clients, noise):
    """McMahan et al. 2018: (sum_k delta_k min(1, C / ||delta_k||) + z C N(0, I)) / (q N)."""
    total = np.zeros(noise.shape)
    for delta in deltas:
        total += delta * min(1.0, clip / np.linalg.norm(delta))
    return (total + z * clip * noise) / expected_clients


def paper_next_clip(clip, norms, spec, noise):
    """Andrew et al. 2021: C exp(-eta (b - gamma)) with the noised fraction of unclipped updates
    b = (sum_k (1[||delta_k|| <= C] - 1/2) + N(0, sigma_b^2)) / (q N) + 1/2. The bits are centred
    so that one client moves the sum by 1/2, the sensitivity behind Thm. 1's split of z (the
    authors' TF Privacy QuantileEstimatorQuery does the same); with exactly q N clients it is
    the paper's (sum_k b_k + N(0, sigma_b^2)) / (q N)."""
    bits = [1.0 if norm <= clip else 0.0 for norm in norms]
    fraction = (sum(b - 0.5 for b in bits) + spec.count_std * noise) / spec.expected_clients + 0.5
    return clip * math.exp(-spec.clip_lr * (fraction - spec.target_quantile))


def split_z(z, sigma_b):
    """Andrew et al. 2021, Thm. 1: the update sum's noise multiplier z_delta."""
    return (z**-2 - (2 * sigma_b) ** -2) ** -0.5


def cohort(ids, deltas):
    ids = np.asarray(ids, dtype=np.int64)
    ones = np.ones(len(ids), dtype=np.int64)
    return ClientUpdates(ids=ids, deltas=deltas, num_samples=ones, num_steps=ones)


def dp_uplink(seed, num_clients, spec, dropout=0.0):
    """DP-FedAvg's uplink: Poisson sampling, failures, clipping and the noised mean."""
    failures = (Dropout(seed, dropout),) if dropout else ()
    stages = (*failures, DPClip(spec, seed), NoisedMean(spec, seed))
    return Uplink(PoissonSample(seed, num_clients, spec.sampling_rate), stages, dp=spec)


def released(uplink, round, clip, P):
    """Every client the round samples sends an update (norms from 0.2 to 3, so that clipping at
    C ~ 1 matters); returns the ids, the updates, what the server update gets from deliver() (the
    aggregate of the updates that arrived) and the clipping norm carried to the next round."""
    sampler = uplink.sampler
    ids = dp.poisson_sample(sampler.seed, round, sampler.num_clients, uplink.dp.sampling_rate)
    generator = np.random.default_rng(round)
    directions = generator.normal(size=(len(ids), P))
    norms = np.linspace(0.2, 3.0, len(ids))
    deltas = directions / np.linalg.norm(directions, axis=1, keepdims=True) * norms[:, None]
    sent = np.ones(len(ids), dtype=bool)
    delivery = uplink.deliver(round, cohort(ids, deltas), sent, {"dp_clip": np.array(clip)})
    assert delivery.updates is not None  # under DP even an empty round releases noise
    arrived = delivery.updates
    mean = arrived.aggregate(arrived.deltas, np.ones(len(arrived.ids)))
    return ids, deltas, mean, float(delivery.state["dp_clip"])


def rounds_sampling(uplink, want):
    """The first rounds whose Poisson sample satisfies want(number sampled)."""
    q = uplink.dp.sampling_rate
    found = [
        r
        for r in range(1, 400)
        if want(len(dp.poisson_sample(uplink.sampler.seed, r, uplink.sampler.num_clients, q)))
    ]
    assert found, "no such round in the first 400"
    return found[:3]


@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_the_dp_mean_is_the_clipped_sum_plus_z_c_gaussian_over_q_n(dropout):
    """DP-FedAvg (McMahan et al. 2018): the server releases (sum of the clipped updates that
    arrived + z C N(0, I)) / (q N), over the fixed expected cohort q N whoever came or failed."""
    N, cohort_size, P, z, C, seed = 40, 8, 30, 1.3, 0.9, 5
    spec = dp.DPSpec(
        noise_multiplier=z, sampling_rate=cohort_size / N, expected_clients=8.0, clip=C
    )
    uplink = dp_uplink(seed, N, spec, dropout)
    for round in rounds_sampling(uplink, lambda n: n >= 5):
        ids, deltas, mean, clip = released(uplink, round, C, P)
        came = survivors(seed, round, ids, dropout)
        if dropout:
            assert 0 < came.sum() < len(ids), "pick rounds where some clients fail"
        assert (np.linalg.norm(deltas[came], axis=1) > C).any()  # clipping matters
        expected = paper_mean(deltas[came], C, z, 8.0, update_draw(seed, round, P))
        assert np.allclose(mean, expected, rtol=1e-12, atol=1e-14)
        assert clip == C  # a fixed clip stays


@pytest.mark.parametrize("adaptive", [False, True])
def test_a_round_that_samples_nobody_still_releases_the_noise(adaptive):
    """DP-FedAvg (McMahan et al. 2018) with Poisson sampling: an empty cohort releases
    z C N(0, I) / (q N), like any other round (the empty sum plus the noise); with adaptive
    clipping (Andrew et al. 2021) the count is the noise alone: b = sigma_b N(0, 1) / (q N) + 1/2
    (the centred sum of no bits is 0)."""
    N, cohort_size, P, z, C, seed = 10, 2, 12, 0.5, 0.7, 3
    spec = dp.DPSpec(
        noise_multiplier=z,
        sampling_rate=cohort_size / N,
        expected_clients=2.0,
        clip=None if adaptive else C,
        count_noise=0.3 if adaptive else None,
    )
    uplink = dp_uplink(seed, N, spec)
    for round in rounds_sampling(uplink, lambda n: n == 0):
        ids, _, mean, clip = released(uplink, round, C, P)
        assert len(ids) == 0
        z_used = split_z(z, 0.3) if adaptive else z
        expected = z_used * C * update_draw(seed, round, P) / 2.0
        assert np.allclose(mean, expected, rtol=1e-12, atol=0)
        assert np.abs(mean).max() > 0.01  # really noise, not the kept model
        if adaptive:
            assert clip == pytest.approx(
                paper_next_clip(C, [], spec, count_draw(seed, round)), rel=1e-12
            )


@pytest.mark.parametrize("sampled", ["exactly q N", "fewer than q N", "more than q N"])
def test_adaptive_clipping_releases_the_noised_count_and_the_split_update_noise(sampled):
    """Andrew et al. 2021: C <- C exp(-eta (b - gamma)) from the noised count of updates within
    C, and the update sum gets z_delta = (z^-2 - (2 sigma_b)^-2)^-1/2 (Thm. 1), so that the pair
    of queries costs what one Gaussian query with multiplier z does. Both draws are reproduced."""
    N, cohort_size, P, z, C, seed = 200, 40, 16, 2.0, 1.1, 7
    spec = dp.DPSpec(
        noise_multiplier=z,
        sampling_rate=cohort_size / N,
        expected_clients=40.0,
        target_quantile=0.3,
        clip_lr=0.7,
    )
    assert spec.count_std == 2.0  # sigma_b = q N / 20, the paper's default
    z_delta = split_z(z, 2.0)
    assert spec.update_noise_multiplier == pytest.approx(z_delta, rel=1e-12)
    assert abs(z_delta - z) > 0.3  # 2.31 against 2: using z for both would show
    uplink = dp_uplink(seed, N, spec)
    want = {
        "exactly q N": lambda n: n == 40,
        "fewer than q N": lambda n: n < 36,
        "more than q N": lambda n: n > 44,
    }[sampled]
    for round in rounds_sampling(uplink, want):
        ids, deltas, mean, clip = released(uplink, round, C, P)
        expected = paper_mean(deltas, C, z_delta, 40.0, update_draw(seed, round, P))
        assert np.allclose(mean, expected, rtol=1e-12, atol=1e-14)
        norms = np.linalg.norm(deltas, axis=1)
        assert 0 < np.sum(norms <= C) < len(ids)  # some updates are clipped, some are not
        expected_clip = paper_next_clip(C, norms, spec, count_draw(seed, round))
        assert clip == pytest.approx(expected_clip, rel=1e-12)
        if sampled == "exactly q N":  # the paper's own form: (sum_k b_k + noise) / (q N)
            fraction = (np.sum(norms <= C) + 2.0 * count_draw(seed, round)) / 40.0
            assert clip == pytest.approx(C * math.exp(-0.7 * (fraction - 0.3)), rel=1e-12)


def test_the_two_noises_have_the_stds_of_the_split():
    """Andrew et al. 2021, Thm. 1, without reproducing the addresses: the update noise has std
    z_delta C / (q N), not z C / (q N), and the count noise std sigma_b / (q N), independent."""
    spec = dp.DPSpec(noise_multiplier=2.0, sampling_rate=0.2, expected_clients=40.0)
    C = 0.5
    out = dp.noised_mean(np.zeros(400_000), C, spec, seed=11, round=2)
    # the sample std of n normals is within 6 / sqrt(2 n) of the true one (0.7%; z is 13% off)
    rel = 6 / math.sqrt(2 * len(out))
    assert out.std() == pytest.approx(split_z(2.0, 2.0) * C / 40.0, rel=rel)
    rounds = range(1, 3001)
    count_noise = []
    for r in rounds:  # nobody sampled: the log of C's change is the count noise alone
        new = dp.next_clip(1.0, np.zeros(0), spec, seed=11, round=r)
        fraction = spec.target_quantile - math.log(new) / spec.clip_lr
        count_noise.append((fraction - 0.5) * spec.expected_clients)
    count_noise = np.array(count_noise)
    bound = 6 / math.sqrt(2 * len(rounds))
    assert count_noise.std() == pytest.approx(2.0, rel=bound)  # sigma_b = q N / 20
    assert abs(count_noise.mean()) < 6 * 2.0 / math.sqrt(len(rounds))
    update_noise = [dp.noised_mean(np.zeros(1), C, spec, 11, r)[0] for r in rounds]
    assert abs(np.corrcoef(count_noise, update_noise)[0, 1]) < 6 / math.sqrt(len(rounds))


# ---------------------------------------------------------------------------------------------
# Poisson sampling


@pytest.mark.parametrize("q", [0.1, 0.013])
def test_poisson_sampling_takes_each_client_with_probability_q_independently(q):
    """Poisson sampling, as the subsampled-Gaussian accounting assumes (Mironov et al. 2019;
    McMahan et al. 2018): over R rounds of N clients the count is Binomial(R N, q) (6-sigma
    bound), a round's count has variance N q (1 - q), and a client's membership in consecutive
    rounds is independent (both in round r and r + 1 with probability q^2)."""
    N, R = 1000, 2000
    member = np.zeros((R, N), dtype=bool)
    for r in range(R):
        member[r, dp.poisson_sample(4, r + 1, N, q)] = True
    trials = R * N
    assert abs(member.sum() - trials * q) <= 6 * math.sqrt(trials * q * (1 - q))
    per_round = member.sum(axis=1)
    variance = N * q * (1 - q)
    # the sample variance of R normal counts has std variance sqrt(2 / (R - 1)); 10% slack for
    # the binomial's excess kurtosis (1 - 6 q (1 - q)) / variance, under 1% here
    assert abs(per_round.var(ddof=1) - variance) <= 6 * variance * math.sqrt(2 / (R - 1)) * 1.1
    both = (member[1:] & member[:-1]).sum()
    pairs = (R - 1) * N
    # neighbouring pairs share a round: Var = pairs q^2 (1 - q^2 + 2 (q - q^2))
    spread = math.sqrt(pairs * q * q * (1 + 2 * q - 3 * q * q))
    assert abs(both - pairs * q * q) <= 6 * spread


def test_poisson_sampling_is_addressed_by_seed_round_and_client():
    """DESIGN.md's addressed randomness: whether client c is sampled in round r depends on
    (seed, r, c) alone, not on how many other clients there are."""
    for r in (1, 2, 50):
        big = dp.poisson_sample(9, r, 1000, 0.2)
        assert np.array_equal(dp.poisson_sample(9, r, 400, 0.2), big[big < 400])
        assert np.array_equal(dp.poisson_sample(9, r, 1000, 0.2), big)
    assert not np.array_equal(
        dp.poisson_sample(9, 1, 1000, 0.2), dp.poisson_sample(9, 2, 1000, 0.2)
    )
    assert not np.array_equal(
        dp.poisson_sample(9, 1, 1000, 0.2), dp.poisson_sample(8, 1, 1000, 0.2)
    )


# ---------------------------------------------------------------------------------------------
# Shamir secret sharing


class Coefficients:
    """A stand-in for np.random.Generator that hands share() chosen polynomial coefficients
    (share draws each as random_element: SHARE_BYTES big-endian bytes modulo the prime)."""

    def __init__(self, values):
        self.values = list(values)

    def bytes(self, length):
        return self.values.pop(0).to_bytes(length, "big")


SECRETS = [0, 1, 2**255 + 12345, 2**256 - 1, shamir.PRIME - 1]


@pytest.mark.parametrize("threshold, shares", [(1, 1), (1, 3), (2, 2), (2, 5), (3, 5), (4, 7)])
def test_shamir_any_t_shares_recover_the_secret(threshold, shares):
    """Shamir 1979: the points x = 1..n of a random polynomial of degree t - 1 with p(0) = s;
    every set of t of them (in any order), and every larger set, interpolates to s."""
    for k, secret in enumerate(SECRETS):
        points = shamir.share(secret, threshold, shares, np.random.default_rng(k))
        assert [x for x, _ in points] == list(range(1, shares + 1))
        assert all(0 <= y < shamir.PRIME for _, y in points)
        for size in range(threshold, shares + 1):
            for subset in itertools.combinations(points, size):
                assert shamir.reconstruct(list(subset)) == secret
                assert shamir.reconstruct(list(reversed(subset))) == secret


@pytest.mark.parametrize("threshold, shares", [(2, 4), (3, 5), (5, 7)])
def test_shamir_shares_lie_on_a_polynomial_of_degree_exactly_t_minus_1(threshold, shares):
    """Shamir 1979: degree t - 1, not less, so t - 1 shares do not pin p(0). If p has leading
    coefficient a, the shares in a set S of t - 1 interpolate to p(0) - a prod_{i in S} (0 - x_i):
    one nonzero a explains every such miss (a polynomial of degree t - 2 would give s from any)."""
    secret, P = 2**200 + 7, shamir.PRIME
    points = shamir.share(secret, threshold, shares, np.random.default_rng(3))
    leading = set()
    for subset in itertools.combinations(points, threshold - 1):
        miss = (secret - shamir.reconstruct(list(subset))) % P
        product = math.prod(-x for x, _ in subset) % P
        leading.add(miss * pow(product, -1, P) % P)
    assert len(leading) == 1 and 0 not in leading


@pytest.mark.parametrize("threshold", [2, 3])
def test_shamir_t_minus_1_shares_are_uniform_whatever_the_secret(threshold, monkeypatch):
    """Shamir 1979, perfect secrecy, exhaustively in GF(11): for every secret s, as the t - 1
    random coefficients run over the field, any t - 1 shares take every value in GF(11)^(t-1)
    exactly once; so they say nothing about s. And every t shares give s back."""
    p = 11
    monkeypatch.setattr(shamir, "PRIME", p)
    n = threshold + 1
    for secret in range(p):
        seen = {subset: [] for subset in itertools.combinations(range(n), threshold - 1)}
        for coefficients in itertools.product(range(p), repeat=threshold - 1):
            generator = Coefficients(coefficients)
            points = shamir.share(secret, threshold, n, generator)
            assert generator.values == []  # it drew t - 1 coefficients, no fewer
            assert all(0 <= y < p for _, y in points)  # the small field is the one in use
            for subset in seen:
                seen[subset].append(tuple(points[i][1] for i in subset))
            for subset in itertools.combinations(points, threshold):
                assert shamir.reconstruct(list(subset)) == secret
        everything = sorted(itertools.product(range(p), repeat=threshold - 1))
        for values in seen.values():
            assert sorted(values) == everything


# ---------------------------------------------------------------------------------------------
# Secure aggregation with dropouts

DROPOUT_CASES = [  # (cohort K, threshold t, seed of the vectors and of who drops)
    (5, 2, 0),
    (5, 3, 1),
    (6, 4, 2),
    (6, 5, 3),
    (7, 3, 4),
    (7, 5, 5),
    (8, 4, 6),
    (9, 2, 7),
]


@pytest.mark.parametrize("K, threshold, case", DROPOUT_CASES)
def test_the_secure_sum_with_dropouts_is_the_plain_sum_of_the_survivors(K, threshold, case):
    """Bonawitz et al. 2017: with at least t survivors the server removes the self masks of the
    survivors and the pairwise masks of the dropped clients (rebuilt from t Shamir shares), so
    what is left is the sum of the survivors' fixed-point words: their plain sum within
    K step / 2 per coordinate (each encoding rounds by at most step / 2)."""
    generator = np.random.default_rng(100 + case)
    P = 25
    vectors = generator.normal(0, 3, size=(K, P))
    ids = np.sort(generator.choice(1000, K, replace=False))
    survived = np.ones(K, dtype=bool)
    dropped = generator.choice(K, generator.integers(1, K - threshold + 1), replace=False)
    survived[dropped] = False
    assert threshold <= survived.sum() < K
    result = secure_sum(vectors, survived, threshold, seed=case, round=case + 1, ids=ids)
    fixed = FixedPoint.for_cohort(K)
    plain = vectors[survived].sum(axis=0)
    assert np.abs(result.total - plain).max() <= survived.sum() * fixed.step / 2 + 1e-12
    assert np.abs(result.total - plain).max() <= K * fixed.step / 2
    words = fixed.encode(vectors[survived]).sum(axis=0, dtype=np.uint64)
    assert np.array_equal(result.total, fixed.decode(words))  # the masks cancel exactly


# ---------------------------------------------------------------------------------------------
# End to end: the defaults the logged epsilon uses


def rows(run_dir):
    with open(run_dir / "rounds.csv") as file:
        return list(csv.DictReader(file))


def rdp_epsilon(q, z, rounds, delta):
    ledger = rdp.RdpAccountant()
    ledger.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), rounds)
    return ledger.get_epsilon(delta)


def generated_partition(out, clients, rows_each):
    """clients IID clients of rows_each rows: y = 1[x_0 > 0] on three Gaussian features."""
    generator = np.random.default_rng(0)
    n = clients * rows_each
    x, x_test = generator.normal(size=(n, 3)), generator.normal(size=(100, 3))
    y, y_test = (x[:, 0] > 0).astype(np.int64), (x_test[:, 0] > 0).astype(np.int64)
    sizes = np.full(clients, rows_each, dtype=np.int64)
    return write_generated_partition(out, x, y, sizes, x_test, y_test, 2)


@pytest.mark.parametrize(
    "clients, rows_each, per_round, delta",
    [(10, 20, 3, 1e-5), (40_000, 1, 8, 40_000**-1.1)],  # 40,000^-1.1 = 8.7e-6 < 1e-5
)
def test_the_logged_epsilon_uses_the_default_delta_and_q_from_clients_per_round(
    cli, tmp_path, clients, rows_each, per_round, delta
):
    """DP-FedAvg's accounting (McMahan et al. 2018; README): without --dp-delta, delta is
    min(1e-5, clients^-1.1) (Dwork & Roth 2014, 2.3: well below 1 / clients), and with
    --clients-per-round M the Poisson rate is q = M / clients, which both the sampling and the
    logged epsilon use."""
    partition = generated_partition(tmp_path / "partition", clients, rows_each)
    out, z, seed = tmp_path / "run", 1.1, 4
    result = cli(
        "train", partition, "--out", out, "--rounds", "2", "--clients-per-round", per_round,
        "--dp-clip", "1", "--dp-noise", z, "--seed", seed, "--dp-publish-uncovered",
    )  # fmt: skip
    assert result.code == 0, result.err
    q = per_round / clients
    record = json.loads((out / "run.json").read_text())["dp"]
    assert record["delta"] == pytest.approx(delta, rel=1e-12)
    assert record["sampling_rate"] == pytest.approx(q, rel=1e-12)
    logged = rows(out)
    assert float(logged[0]["epsilon"]) == 0.0
    for row in logged[1:]:
        r = int(row["round"])
        assert int(row["clients"]) == len(dp.poisson_sample(seed, r, clients, q))
        assert float(row["epsilon"]) == pytest.approx(rdp_epsilon(q, z, r, delta), rel=1e-9)
    # the rules this excludes: delta = 1 / N, the other side of the min, q = 1 (no --fraction)
    other_side = clients**-1.1 if delta == 1e-5 else 1e-5
    for wrong_q, wrong_delta in ((q, 1 / clients), (q, other_side), (1.0, delta)):
        wrong = rdp_epsilon(wrong_q, z, 2, wrong_delta)
        assert float(logged[-1]["epsilon"]) != pytest.approx(wrong, rel=1e-6)
