import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import pld, rdp

from flcli.errors import FLError
from flcli.privacy import dp


def accountant_says(ledger, q, z, rounds, delta):
    """What dp-accounting itself returns, written out without flcli's helpers."""
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z))
    ledger.compose(event, rounds)
    return ledger.get_epsilon(delta)


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_epsilon_is_dp_accountings(accountant):
    q, z, rounds, delta = 0.1, 1.1, 30, 1e-2
    fresh = rdp.RdpAccountant() if accountant == "rdp" else pld.PLDAccountant()
    expected = accountant_says(fresh, q, z, rounds, delta)
    assert dp.epsilon(q, z, rounds, delta, accountant) == pytest.approx(expected, rel=1e-9)
    assert dp.epsilon(q, z, 0, delta) == 0.0
    assert dp.epsilon(q, 0.0, 3, delta) == math.inf


@pytest.mark.parametrize(
    ("accountant", "q", "z", "delta", "rounds"),
    [
        ("rdp", 0.1, 0.8, 1e-5, 40),
        ("rdp", 0.02, 0.5, 3e-6, 40),
        ("rdp", 1.0, 2.0, 1e-5, 40),
        ("pld", 0.1, 1.1, 1e-5, 8),
        ("pld", 0.3, 0.9, 1e-6, 5),
    ],
)
def test_a_runs_accountant_gives_a_fresh_accountants_epsilon_to_the_last_bit(
    accountant, q, z, delta, rounds
):
    """The run's accountant works out one round once; epsilon after each round must still be
    what a fresh dp-accounting accountant composing that many rounds returns, exactly."""
    run = dp.RunAccountant(q, z, delta, accountant)
    for t in range(1, rounds + 1):
        fresh = rdp.RdpAccountant() if accountant == "rdp" else pld.PLDAccountant()
        assert run.epsilon_after(t) == accountant_says(fresh, q, z, t, delta), t


def test_a_runs_accountant_asked_first_at_a_late_round_is_the_same_as_one_asked_every_round():
    """What a resumed run does: its first question is the round after the checkpoint's."""
    q, z, delta = 0.1, 0.8, 1e-5
    every_round = dp.RunAccountant(q, z, delta, "pld")
    asked = [every_round.epsilon_after(t) for t in range(1, 5)]
    resumed = dp.RunAccountant(q, z, delta, "pld")
    assert [resumed.epsilon_after(t) for t in (3, 4)] == asked[2:]


def test_a_runs_accountant_spends_nothing_before_the_first_round_and_all_without_noise():
    assert dp.RunAccountant(0.1, 1.0, 1e-5, "pld").epsilon_after(0) == 0.0
    assert dp.RunAccountant(0.1, 0.0, 1e-5, "rdp").epsilon_after(3) == math.inf
    with pytest.raises(FLError, match="--dp-accountant"):
        dp.RunAccountant(0.1, 1.0, 1e-5, "moments")


def test_noise_for_epsilon_spends_the_budget_and_no_more():
    q, rounds, delta, target = 0.1, 40, 1e-2, 2.0
    z = dp.noise_for_epsilon(q, rounds, target, delta)
    assert dp.epsilon(q, z, rounds, delta) <= target
    assert dp.epsilon(q, z * 0.999, rounds, delta) > target
    with pytest.raises(FLError, match="--dp-epsilon"):
        dp.noise_for_epsilon(q, rounds, 0.0, delta)


def test_pld_calibration_spends_the_budget_with_less_noise_than_rdp():
    q, rounds, delta, target = 1.0, 1, 1e-2, 2.0  # small: PLD's calibration takes seconds
    z = dp.noise_for_epsilon(q, rounds, target, delta, "pld")
    assert dp.epsilon(q, z, rounds, delta, "pld") <= target
    assert dp.epsilon(q, z * 0.999, rounds, delta, "pld") > target
    assert z < dp.noise_for_epsilon(q, rounds, target, delta, "rdp")


def test_a_budget_no_noise_can_meet_is_a_one_line_error():
    with pytest.raises(FLError, match="--dp-epsilon 10000000.0: no noise.*--dp-noise"):
        dp.noise_for_epsilon(1.0, 2, 1e7, 0.1)


def test_clipping_scales_long_updates_to_the_bound_and_keeps_short_ones():
    deltas = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    clipped, norms = dp.clip_updates(deltas, 1.0)
    assert np.allclose(norms, [5.0, 0.5, 0.0])
    assert np.allclose(clipped, [[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]])


def test_noised_mean_divides_by_the_expected_cohort_and_adds_noise_of_std_z_c():
    spec = dp.DPSpec(noise_multiplier=2.0, sampling_rate=0.1, expected_clients=5.0, clip=0.5)
    total = np.full(20_000, 1.0)
    out = dp.noised_mean(total, 0.5, spec, seed=3, round=1)
    assert abs(out.mean() - 1.0 / 5.0) < 0.01
    assert out.std() == pytest.approx(2.0 * 0.5 / 5.0, rel=0.03)
    again = dp.noised_mean(total, 0.5, spec, seed=3, round=1)
    assert np.array_equal(out, again)  # addressed by (seed, NOISE, round)


def test_adaptive_clip_tracks_the_target_quantile():
    norms = np.arange(1.0, 101.0)
    spec = dp.DPSpec(
        noise_multiplier=0.0,
        sampling_rate=1.0,
        expected_clients=100.0,
        target_quantile=0.3,
        count_noise=0.0,
    )
    clip = 1.0
    for round in range(300):
        clip = dp.next_clip(clip, norms, spec, seed=0, round=round)
    assert 27 <= clip <= 34


@pytest.mark.parametrize("norm", [0.5, 5.0])  # one more client below, or above, the clip
def test_one_client_moves_the_noised_count_by_half_as_the_noise_split_assumes(norm):
    """Thm. 1 of Andrew et al. splits z with 2 sigma_b because each client's bit is centred
    (b_k - 1/2): adding or removing a client moves the count's sum by exactly 1/2."""
    spec = dp.DPSpec(noise_multiplier=1.0, sampling_rate=0.5, expected_clients=40.0)
    norms = np.linspace(0.1, 4.0, 40)

    def count_sum(norms):  # the noised sum of bits, undone from C's multiplicative update
        new_clip = dp.next_clip(1.0, norms, spec, seed=2, round=3)
        fraction = spec.target_quantile - math.log(new_clip) / spec.clip_lr
        return (fraction - 0.5) * spec.expected_clients

    moved = count_sum(np.append(norms, norm)) - count_sum(norms)
    assert abs(moved) == pytest.approx(0.5)


def test_adaptive_clipping_splits_the_noise_between_the_two_queries():
    spec = dp.DPSpec(noise_multiplier=1.0, sampling_rate=0.2, expected_clients=20.0)
    assert spec.count_std == 1.0  # expected clients / 20
    assert spec.update_noise_multiplier == pytest.approx((1.0 - 0.25) ** -0.5)
    small = dp.DPSpec(noise_multiplier=1.0, sampling_rate=0.1, expected_clients=10.0)
    with pytest.raises(FLError, match="more clients per round"):
        _ = small.update_noise_multiplier


def test_poisson_sampling_has_rate_q_and_is_addressed():
    counts = [len(dp.poisson_sample(0, r, 1000, 0.1)) for r in range(1, 21)]
    assert 80 < np.mean(counts) < 120
    assert np.array_equal(dp.poisson_sample(0, 4, 1000, 0.1), dp.poisson_sample(0, 4, 1000, 0.1))


def test_a_dp_run_leaves_what_epsilon_does_not_cover_out_unless_asked(cli, iid_dir, tmp_path):
    import pandas as pd
    from conftest import assert_one_line_error

    dp = ["--dp-clip", "1.0", "--dp-noise", "0.5", "--rounds", "2", "--seed", "1"]
    refused = cli("train", iid_dir, *dp, "--log-clients", "--out", tmp_path / "a")
    assert_one_line_error(refused, "--log-clients", "--dp-publish-uncovered")
    assert cli("train", iid_dir, *dp, "--out", tmp_path / "quiet").code == 0
    quiet = pd.read_csv(tmp_path / "quiet" / "rounds.csv").columns
    assert "epsilon" in quiet and "test_accuracy" in quiet
    assert "clients" not in quiet and "bytes_up" not in quiet  # bytes_up: clients x model size
    assert not any(c.startswith("client_accuracy") for c in quiet)
    loud = [*dp, "--log-clients", "--dp-publish-uncovered"]
    assert cli("train", iid_dir, *loud, "--out", tmp_path / "loud").code == 0
    published = pd.read_csv(tmp_path / "loud" / "rounds.csv").columns
    assert "clients" in published and "client_accuracy_mean" in published
    assert (tmp_path / "loud" / "clients.csv").is_file()


def test_dp_publish_uncovered_without_dp_is_refused(cli, iid_dir, tmp_path):
    from conftest import assert_one_line_error

    result = cli("train", iid_dir, "--dp-publish-uncovered", "--out", tmp_path / "r")
    assert_one_line_error(result, "--dp-publish-uncovered", "--dp-clip")
