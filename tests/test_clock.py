"""The simulated clock (flcli.system, flcli.engine.clock) and asynchronous FL
(flcli.algorithms.asynchronous, flcli.engine.asynchronous)."""

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_crash import assert_sigkill_then_resume_is_uninterrupted

from flcli import api
from flcli.algorithms.asynchronous import fedasync, fedbuff, staleness_weight
from flcli.algorithms.base import ClientUpdates, Context, ServerState
from flcli.config import TrainConfig
from flcli.configfile import train_config
from flcli.errors import FLError
from flcli.system import build_system


def final_params(partition, **options):
    return [result.state.params for result in api.simulate(partition, train_config(**options))]


def rounds(partition, **options):
    return pd.DataFrame(
        [result.record for result in api.simulate(partition, train_config(**options))]
    )


def test_identical_devices_make_every_full_round_equally_long(iid_dir):
    frame = rounds(iid_dir, rounds=4)
    steps = np.diff(frame["sim_time_s"].to_numpy())
    assert frame["sim_time_s"][0] == 0 and steps[0] > 0
    np.testing.assert_allclose(steps, steps[0], rtol=1e-12)


def test_a_slower_system_takes_longer_for_the_same_model(iid_dir):
    fast = rounds(iid_dir, rounds=2)
    slow = rounds(iid_dir, rounds=2, system="lognormal:sigma=1")
    np.testing.assert_array_equal(fast["test_accuracy"], slow["test_accuracy"])
    assert slow["sim_time_s"].iloc[-1] > fast["sim_time_s"].iloc[-1]


def test_a_deadline_drops_late_clients_and_bounds_the_round(iid_dir):
    free = rounds(iid_dir, rounds=2, system="lognormal:sigma=1")
    longest = np.diff(free["sim_time_s"]).max()
    cut = rounds(iid_dir, rounds=2, system="lognormal:sigma=1", round_deadline=longest / 2)
    np.testing.assert_allclose(np.diff(cut["sim_time_s"]), longest / 2)
    assert (cut["bytes_up"].diff()[1:] < free["bytes_up"].diff()[1:]).all()


def test_over_selection_keeps_the_cohort_size_and_shortens_rounds(iid_dir):
    plain = rounds(iid_dir, rounds=2, clients_per_round=4, system="lognormal:sigma=1")
    over = rounds(
        iid_dir, rounds=2, clients_per_round=4, system="lognormal:sigma=1", over_select=2.0
    )
    assert (over["clients"][1:] == 4).all()
    assert over["bytes_down"].iloc[-1] == 2 * plain["bytes_down"].iloc[-1]
    assert over["sim_time_s"].iloc[-1] < plain["sim_time_s"].iloc[-1]


def test_fedasync_with_alpha_one_and_one_client_is_sequential_sgd_over_clients(iid_dir):
    asynchronous = final_params(
        iid_dir, algo="fedasync", mixing=1.0, staleness_fn="constant", concurrency=1, rounds=5
    )
    sequential = final_params(iid_dir, algo="fedavg", clients_per_round=1, rounds=5)
    for a, s in zip(asynchronous, sequential, strict=True):
        np.testing.assert_allclose(a, s, rtol=1e-12, atol=1e-14)


def test_fedbuff_with_k_equal_to_concurrency_and_no_scaling_is_fedavg(iid_dir):
    # digits' IID shards take the same step count, so identical devices finish together
    fedbuff_run = final_params(
        iid_dir, algo="fedbuff", buffer_size=5, concurrency=5, staleness_scaling="none", rounds=4
    )
    fedavg_run = final_params(
        iid_dir, algo="fedavg", clients_per_round=5, server_weighting="uniform", rounds=4
    )
    for a, s in zip(fedbuff_run, fedavg_run, strict=True):
        np.testing.assert_allclose(a, s, rtol=1e-12, atol=1e-14)


def updates(deltas, staleness, params=None):
    deltas = np.asarray(deltas, dtype=np.float64)
    return ClientUpdates(
        ids=np.arange(len(deltas)),
        deltas=deltas,
        num_samples=np.ones(len(deltas), dtype=np.int64),
        num_steps=np.ones(len(deltas), dtype=np.int64),
        params=params,
        staleness=np.asarray(staleness),
    )


def test_fedbuff_scales_stale_updates_by_one_over_root_one_plus_staleness():
    algorithm = fedbuff(Context(None, 2, 0.1), buffer_size=2, server_lr=2.0)
    state = ServerState(params=np.zeros(2))
    after = algorithm.server_update(state, updates([[1.0, 0.0], [0.0, 1.0]], [0, 3]))
    np.testing.assert_allclose(after.params, 2.0 * np.array([1.0, 0.5]) / 2)


def test_fedasync_mixes_at_alpha_times_the_staleness_function():
    assert staleness_weight(np.array([3]), "polynomial", 0.5, 4)[0] == pytest.approx(0.5)
    np.testing.assert_allclose(staleness_weight([2, 4, 6], "hinge", 10.0, 4), [1, 1, 1 / 21])
    algorithm = fedasync(Context(None, 2, 0.1), mixing=0.5, staleness_fn="polynomial")
    state = ServerState(params=np.array([4.0]))
    after = algorithm.server_update(state, updates([[0.0]], [3], params=np.array([[0.0]])))
    np.testing.assert_allclose(after.params, [4.0 * (1 - 0.25)])  # alpha_t = 0.5 * 4^-0.5


def test_fedbuff_reports_staleness_and_its_order_is_the_seed_alone(iid_dir):
    options = dict(algo="fedbuff", buffer_size=3, concurrency=6, system="lognormal:sigma=1")
    first = rounds(iid_dir, rounds=6, **options)
    again = rounds(iid_dir, rounds=6, backend="serial", **options)
    assert first["staleness_max"].max() > 0
    assert (first["clients"][1:] == 3).all()
    assert (np.diff(first["sim_time_s"]) >= 0).all()
    columns = [c for c in first.columns if c != "elapsed_s"]
    pd.testing.assert_frame_equal(first[columns], again[columns], rtol=1e-9)


def test_an_asynchronous_run_resumes_exactly_after_sigkill(cli, iid_dir, tmp_path):
    args = ["--algo", "fedbuff", "--buffer-size", 2, "--concurrency", 5, "--system",
            "lognormal:sigma=1", "--rounds", 60, "--seed", 4, "--checkpoint-every", 1]  # fmt: skip
    assert_sigkill_then_resume_is_uninterrupted(cli, iid_dir, args, tmp_path)


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--algo", "fedbuff", "--dropout", "0.1"], "--dropout"),
        (["--concurrency", "3"], "--concurrency"),
        (["--algo", "fedbuff", "--concurrency", "11"], "--concurrency 11"),
        (["--system", "lognormal:sigma=-1"], "--system"),
        (["--system", "phones"], "--system 'phones'"),
        (["--over-select", "0.5"], "--over-select"),
    ],
)
def test_bad_time_options_are_one_line(cli, iid_dir, tmp_path, flags, fragment):
    assert_one_line_error(cli("train", iid_dir, *flags, "--out", tmp_path / "r"), fragment)


speeds = st.floats(0.01, 1e9, allow_nan=False)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(speeds, speeds, speeds), min_size=1, max_size=8))
def test_a_device_csv_is_read_back_exactly(tmp_path, rows):
    file = tmp_path / "devices.csv"
    lines = [f"{k},{s!r},{d!r},{u!r}" for k, (s, d, u) in enumerate(rows)]
    file.write_text("client,compute_sps,down_bps,up_bps\n" + "\n".join(lines) + "\n")
    system = build_system(str(file), None, len(rows), 0)
    np.testing.assert_array_equal(system.compute_sps, [r[0] for r in rows])
    np.testing.assert_array_equal(system.up_bps, [r[2] for r in rows])


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(["-1", "0", "nan", "x", ""]), st.integers(0, 2))
def test_a_bad_device_csv_value_is_one_line_naming_it(tmp_path, bad, column):
    cells = ["1.0", "2.0", "3.0"]
    cells[column] = bad
    file = tmp_path / "devices.csv"
    file.write_text("client,compute_sps,down_bps,up_bps\n0," + ",".join(cells) + "\n")
    with pytest.raises(FLError) as error:
        build_system(str(file), None, 1, 0)
    assert "line 2" in str(error.value) and "\n" not in str(error.value)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.floats(0, 100), st.floats(0.1, 50)), min_size=1, max_size=6
    ),
    st.floats(0, 200),
)
def test_availability_windows_say_who_is_there(tmp_path, windows, now):
    file = tmp_path / "windows.csv"
    rows = [f"{k},{start!r},{start + length!r}" for k, start, length in windows]
    file.write_text("client,start_s,end_s\n" + "\n".join(rows) + "\n")
    system = build_system("identical", str(file), 4, 0)
    expected = [
        not any(k == c for k, _, _ in windows)
        or any(k == c and s <= now < s + length for k, s, length in windows)
        for c in range(4)
    ]
    np.testing.assert_array_equal(system.available(now), expected)


def test_fedscale_traces_are_read_as_json(tmp_path):
    devices, behaviour = tmp_path / "devices.json", tmp_path / "behave.json"
    devices.write_text('{"17": {"computation": 10.0, "communication": 800.0}}')
    behaviour.write_text('{"17": {"active": [0, 50], "inactive": [10, 60], "finish_time": 100}}')
    system = build_system(str(devices), str(behaviour), 2, 0)
    np.testing.assert_allclose(system.compute_sps, [100.0, 100.0])  # 10 ms per sample
    np.testing.assert_allclose(system.down_bps, [1e5, 1e5])  # 800 kbit/s
    assert system.available(105.0).all() and not system.available(30.0).any()
    assert system.next_opening(30.0) == 50.0
    with pytest.raises(FLError):
        TrainConfig(system=" ")
