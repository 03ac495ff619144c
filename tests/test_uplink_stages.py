"""The uplink as an ordered list of stages: the order they run in, the state each keeps under its
own key (through a checkpoint, apart from the algorithm's), and the table of robust rules."""

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import assert_one_line_error

from flcli.algorithms.base import Algorithm, AlgorithmSpec, ClientUpdates, ServerState
from flcli.algorithms.registry import ALGORITHMS
from flcli.algorithms.robust_rules import ROBUST_RULES, RobustRule, aggregators, spelled_out
from flcli.api import simulate
from flcli.config import TrainConfig
from flcli.data.store import load_partition
from flcli.engine.aggregates import NoisedMean, RobustMean, SecureMean, WeightedMean
from flcli.engine.stages import Attack, DPClip, Dropout, FixedSample, PoissonSample, SecAggThreshold
from flcli.engine.uplink import build_uplink
from flcli.errors import FLError
from flcli.privacy import dp
from flcli.runlog import RunDir


def everything(**changes) -> TrainConfig:
    settings = dict(
        attack="scale",
        malicious=0.3,
        attack_strength=100.0,
        dropout=0.2,
        secure_agg=True,
        dp_clip=1.0,
        dp_noise=0.0,
        seed=4,
    )
    return TrainConfig(**{**settings, **changes})


@pytest.mark.parametrize(
    "config, kinds",
    [
        (TrainConfig(), [WeightedMean]),
        (TrainConfig(aggregator="krum"), [RobustMean]),
        (TrainConfig(secure_agg=True, dropout=0.1), [Dropout, SecAggThreshold, SecureMean]),
        (everything(), [Attack, Dropout, SecAggThreshold, DPClip, NoisedMean]),
        (everything(secure_agg=False, dropout=0.0), [Attack, DPClip, NoisedMean]),
    ],
)
def test_the_stages_are_those_asked_for_in_the_declared_order(config, kinds):
    uplink = build_uplink(config, 20, 10)
    assert [type(stage) for stage in uplink.stages] == kinds
    sampler = PoissonSample if config.dp_clip is not None else FixedSample
    assert type(uplink.sampler) is sampler


def cohort_updates(ids, norm, P=6):
    generator = np.random.default_rng(0)
    directions = generator.normal(size=(len(ids), P))
    deltas = norm * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    ones = np.ones(len(ids), dtype=np.int64)
    return ClientUpdates(ids=np.asarray(ids), deltas=deltas, num_samples=ones, num_steps=ones)


def test_an_attacked_update_is_clipped_by_dp_not_attacked_after_clipping():
    """attack (x100) -> dp (clip to 1): an attacker's update of norm 0.1 arrives with norm 1, not
    10; the honest ones keep 0.1. The noised mean (z = 0 here) sums what the clipping left."""
    N, C = 20, 1.0
    uplink = build_uplink(everything(dropout=0.0, secure_agg=False, dp_clip=C), N, 10)
    attack = next(stage for stage in uplink.stages if isinstance(stage, Attack))
    honest = np.setdiff1d(np.arange(N), attack.malicious)[:4]
    ids = np.sort(np.concatenate([attack.malicious[:2], honest]))
    updates = cohort_updates(ids, norm=0.1)
    delivery = uplink.deliver(1, updates, np.ones(len(ids), dtype=bool), uplink.initial_state())
    arrived = delivery.updates
    norms = np.linalg.norm(arrived.deltas, axis=1)
    bad = np.isin(arrived.ids, attack.malicious)
    assert bad.sum() == 2 and np.allclose(norms[bad], C, rtol=1e-12)
    assert np.allclose(norms[~bad], 0.1, rtol=1e-12)
    expected = arrived.deltas.sum(axis=0) / uplink.dp.expected_clients
    released = arrived.aggregate(arrived.deltas, arrived.num_samples)
    assert np.allclose(released, expected, rtol=1e-12, atol=0)


def test_a_dropped_client_does_not_count_towards_the_secure_aggregation_threshold():
    """dropout -> secagg: with every client failing, the threshold stage aborts the round (its
    traffic is counted) and DP releases the noise of an empty round."""
    uplink = build_uplink(everything(dropout=0.99, dp_noise=1.0), 20, 10)
    ids = np.arange(0, 20, 2)
    delivery = uplink.deliver(1, cohort_updates(ids, 0.1), np.ones(10, dtype=bool), {"dp_clip": 1})
    assert delivery.counts == {"dropped": 10} and delivery.messages_up == 0
    assert len(delivery.updates.ids) == 0 and delivery.bytes_up > 0


def test_the_uplink_state_round_trips_through_a_checkpoint_under_its_own_keys(tmp_path):
    state = ServerState(
        params=np.arange(3.0),
        extra={"dp_clip": np.array(7.0), "m": np.ones(3)},  # an algorithm's own key dp_clip
        uplink={"dp_clip": np.array(0.25)},
    )
    run = RunDir(tmp_path, {"status": "running"}, [])
    record = {"round": 0, "train_loss": 1.0}
    run.append(record, state)
    run.flush()
    with np.load(tmp_path / "checkpoint.npz") as saved:
        assert float(saved["uplink_dp_clip"]) == 0.25 and float(saved["extra_dp_clip"]) == 7.0
    _, resumed = RunDir(tmp_path, {"status": "interrupted"}, [record]).checkpoint()
    assert resumed.uplink == {"dp_clip": 0.25}
    assert set(resumed.extra) == {"dp_clip", "m"} and float(resumed.extra["dp_clip"]) == 7.0


def test_a_dp_run_checkpoints_its_clipping_norm_as_uplink_state(cli, iid_dir, tmp_path):
    flags = ["--rounds", "2", "--fraction", "0.5", "--dp-clip", "adaptive", "--dp-noise", "0.1"]
    result = cli("train", iid_dir, "--out", tmp_path / "run", *flags)
    assert result.code == 0, result.err
    with np.load(tmp_path / "run" / "checkpoint.npz") as saved:
        assert "uplink_dp_clip" in saved.files and "extra_dp_clip" not in saved.files
        assert float(saved["uplink_dp_clip"]) != dp.DPSpec(1.0, 0.5, 5.0).initial_clip


def fedavg_counting_in_dp_clip(ctx):
    """FedAvg that counts its rounds in extra["dp_clip"], the key DP's clipping norm once had."""

    def server_init(params, num_clients):
        return ServerState(params=params.copy(), extra={"dp_clip": np.array(0)})

    def server_update(state, updates):
        step = updates.aggregate(updates.deltas, updates.num_samples)
        return ServerState(state.params + step, extra={"dp_clip": state.extra["dp_clip"] + 1})

    return Algorithm("counting", server_init=server_init, server_update=server_update)


def test_an_algorithm_keeping_dp_clip_in_extra_does_not_collide_with_dp(iid_dir, monkeypatch):
    info = AlgorithmSpec("counting", fedavg_counting_in_dp_clip, "test", "FedAvg counting rounds")
    monkeypatch.setitem(ALGORITHMS, "counting", info)
    partition = load_partition(iid_dir)
    dp_options = dict(rounds=4, fraction=0.5, dp_clip="adaptive", dp_noise=0.1)
    fedavg = list(simulate(partition, TrainConfig(algo="fedavg", **dp_options)))
    counting = list(simulate(partition, TrainConfig(algo="counting", **dp_options)))
    for round, (plain, mine) in enumerate(zip(fedavg, counting, strict=True)):
        assert np.array_equal(plain.state.params, mine.state.params)
        assert plain.state.uplink.keys() == mine.state.uplink.keys() == {"dp_clip"}
        assert float(plain.state.uplink["dp_clip"]) == float(mine.state.uplink["dp_clip"])
        assert int(mine.state.extra["dp_clip"]) == round  # the algorithm's own count
    assert len({float(r.state.uplink["dp_clip"]) for r in counting}) > 1  # adaptive clipping moved


def test_the_noise_is_calibrated_once_per_build(monkeypatch):
    calls = []
    calibrate = dp.noise_for_epsilon

    def counted(*args):
        calls.append(args)
        return calibrate(*args)

    monkeypatch.setattr(dp, "noise_for_epsilon", counted)
    config = TrainConfig(rounds=4, dp_clip="1.0", dp_epsilon=8.0)
    assert calls == []  # the options' checks need no calibration
    uplink = build_uplink(config, 10, 5)
    assert len(calls) == 1 and calls[0][:3] == (0.5, 4, 8.0)
    assert uplink.dp.noise_multiplier == calibrate(*calls[0])
    build_uplink(config, 10, 5)
    assert len(calls) == 2


def test_build_uplink_parses_a_raw_dp_clip_itself():
    """Options with --dp-clip as text (as the command line has it) build the same uplink; they
    hold only the attributes build_uplink may read."""
    options = SimpleNamespace(
        **dict.fromkeys(
            [
                "dp_epsilon",
                "dp_delta",
                "secagg_threshold",
                "byzantine",
                "compress",
                "error_feedback",
            ]
        ),
        **dict.fromkeys(["attack", "malicious", "attack_strength"]),
        seed=0,
        rounds=3,
        dp_clip="0.5",
        dp_noise=1.0,
        dp_accountant="rdp",
        secure_agg=False,
        aggregator="mean",
        dropout=0.0,
        server_weighting="samples",
    )
    raw = build_uplink(options, 10, 4)
    parsed = build_uplink(TrainConfig(rounds=3, dp_clip=0.5, dp_noise=1.0), 10, 4)
    assert raw.dp == parsed.dp and raw.dp.clip == 0.5
    assert raw.initial_state() == parsed.initial_state() == {"dp_clip": 0.5}


def test_a_new_robust_rule_is_one_table_entry(cli, iid_dir, tmp_path, monkeypatch):
    seen = []

    def coordinate_mean(vectors, weights, f):
        seen.append((len(vectors), f))
        return vectors.mean(axis=0)

    rule = RobustRule("the unweighted coordinate mean", coordinate_mean, needs=lambda f: 2 * f + 1)
    monkeypatch.setitem(ROBUST_RULES, "plain-mean", rule)
    unknown = cli("train", iid_dir, "--out", tmp_path / "bad", "--aggregator", "nope")
    assert_one_line_error(unknown, "--aggregator 'nope'", "mean, median", "majority, plain-mean")
    too_few = cli(
        "train", iid_dir, "--out", tmp_path / "few", "--aggregator", "plain-mean",
        "--byzantine", "0.4", "--clients-per-round", "4",
    )  # fmt: skip
    assert_one_line_error(too_few, "--aggregator plain-mean", "f=2 of 4", "needs at least 5")
    partition = load_partition(iid_dir)
    config = TrainConfig(rounds=2, aggregator="plain-mean", byzantine=0.2)
    results = list(simulate(partition, config))
    assert seen == [(10, 2), (10, 2)]  # every round's 10 updates, f = 0.2 x 10
    assert not np.array_equal(results[-1].state.params, results[0].state.params)


def test_the_robust_rules_tolerate_what_the_arrivals_allow():
    """With fewer arrivals than the cohort (dropouts), f shrinks to what the rule can run on, and
    krum and bulyan fall back to the median below 3 arrivals."""
    krum = RobustMean("krum", byzantine=0.4)
    generator = np.random.default_rng(1)
    for arrivals in (1, 2, 3, 5):
        vectors = generator.normal(size=(arrivals, 4))
        combined = krum.combine(vectors, np.ones(arrivals))
        if arrivals < 3:
            assert np.array_equal(combined, np.median(vectors, axis=0))
        else:
            assert any(np.array_equal(combined, row) for row in vectors)
    with pytest.raises(FLError, match="needs at least 7"):
        build_uplink(TrainConfig(aggregator="krum", byzantine=0.4), 10, 5)


def test_fl_train_help_lists_the_aggregators_of_the_table(cli):
    result = cli("train", "--help")
    text = " ".join(result.out.replace("│", " ").split())
    assert spelled_out(aggregators()) in text
    assert "mean, median, trimmed-mean, krum, multi-krum, bulyan, geomed or majority" in text
