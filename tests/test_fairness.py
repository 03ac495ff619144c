"""The fairness columns: Jain's index and the Gini coefficient of per-client accuracy, and the
columns a run logs for the global and the personal models."""

import math

import numpy as np
import pandas as pd
import pytest

from flcli.engine.evaluate import distribution, gini, jain_index


def test_jain_and_gini_of_equal_and_of_concentrated_accuracies():
    equal = np.full(8, 0.7)
    assert jain_index(equal) == pytest.approx(1.0)
    assert gini(equal) == pytest.approx(0.0)
    one = np.zeros(8)
    one[3] = 0.9
    assert jain_index(one) == pytest.approx(1 / 8)
    assert gini(one) == pytest.approx(1 - 1 / 8)  # (n - 1) / n for one client holding all
    assert math.isnan(jain_index(np.zeros(4))) and math.isnan(gini(np.zeros(4)))


def test_gini_is_the_mean_absolute_difference_over_twice_the_mean():
    x = np.random.default_rng(0).random(13)
    pairwise = np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())
    assert gini(x) == pytest.approx(pairwise)
    stats = distribution(x, "a")
    assert list(stats) == ["a_mean", "a_std", "a_p10", "a_p90", "a_jain", "a_gini"]
    assert stats["a_p90"] == pytest.approx(np.percentile(x, 90))
    assert stats["a_jain"] == pytest.approx(x.sum() ** 2 / (len(x) * (x**2).sum()))


def test_a_personalizing_run_logs_both_distributions(personal_dir, tmp_path):
    from flcli.cli import main

    out = tmp_path / "run"
    with pytest.raises(SystemExit) as done:
        main(["train", str(personal_dir), "--algo", "fedavglu", "--rounds", "2", "--out", str(out)])
    assert not done.value.code
    rounds = pd.read_csv(out / "rounds.csv")
    for prefix in ("client_accuracy", "personal_accuracy"):
        for suffix in ("mean", "std", "p10", "p90", "jain", "gini"):
            assert f"{prefix}_{suffix}" in rounds.columns
    last = rounds.iloc[-1]
    low, high = last["client_accuracy_p10"], last["client_accuracy_p90"]
    assert low <= last["client_accuracy_mean"] <= high
    assert 0 < last["personal_accuracy_jain"] <= 1 and 0 <= last["personal_accuracy_gini"] < 1
