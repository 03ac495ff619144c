"""Experiment tracking: fl train --track and fl export to a real local MLflow store (SQLite, and
the file store) and to real TensorBoard event files, each read back with the library's own
reader."""

import json
import socket
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error

from flcli import api
from flcli.config import TrainConfig
from flcli.errors import RunFailed

mlflow_tracking = pytest.importorskip(
    "mlflow.tracking", reason="MLflow is an optional extra: pip install 'flcli[mlflow]'"
)
event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="TensorBoard is an optional extra: pip install 'flcli[tensorboard]'",
)

TIMING = ["elapsed_s"]


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """MLflow sends no usage data from a test; the default store lands in the test's folder."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def part(tmp_path_factory):
    out = tmp_path_factory.mktemp("tracking") / "part"
    api.partition(out, dataset="digits", clients=4, scheme="iid", seed=0)
    return out


def train(cli, part, out, *flags):
    result = cli("train", part, "--rounds", 2, "--local-epochs", 1, "--out", out, *flags)
    assert result.code == 0, result.err
    return result


def client(uri: str):
    return mlflow_tracking.MlflowClient(tracking_uri=uri)


def only_run(uri: str, experiment: str):
    found = client(uri).search_runs([client(uri).get_experiment_by_name(experiment).experiment_id])
    assert len(found) == 1, [run.info.run_name for run in found]
    return found[0]


def history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client(uri).get_metric_history(run_id, key))


def metric_columns(rounds: pd.DataFrame) -> list[str]:
    return [column for column in rounds.columns if column != "round"]


def assert_metrics_are_rounds_csv(uri: str, run, run_dir):
    rounds = pd.read_csv(run_dir / "rounds.csv")
    assert set(run.data.metrics) == set(metric_columns(rounds))
    for column in metric_columns(rounds):
        expected = list(zip(rounds["round"], rounds[column].astype(float), strict=True))
        assert history(uri, run.info.run_id, column) == expected, column


def flat_config(run_dir) -> dict[str, str]:
    config = json.loads((run_dir / "run.json").read_text())["config"]
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": str(v) for k, v in value.items()})
        else:
            flat[key] = str(value)
    return flat


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    events = event_accumulator.EventAccumulator(str(folder))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)]
        for tag in events.Tags()[event_accumulator.SCALARS]
    }


def assert_scalars_are_rounds_csv(folder, run_dir):
    rounds = pd.read_csv(run_dir / "rounds.csv")
    logged = scalars(folder)
    assert set(logged) == set(metric_columns(rounds))
    for column in metric_columns(rounds):
        steps, values = zip(*logged[column], strict=True)
        assert list(steps) == rounds["round"].tolist(), column
        # event files hold float32 scalars
        assert np.allclose(values, rounds[column].astype(np.float32), rtol=1e-6, atol=0), column


def test_train_tracks_params_and_every_round_in_the_default_sqlite_store(cli, part, tmp_path):
    run_dir = tmp_path / "study" / "fedavg"
    result = train(cli, part, run_dir, "--track", "mlflow")
    assert (tmp_path / "mlflow.db").is_file()  # MLflow's own default, in the current folder
    uri = "sqlite:///mlflow.db"
    run = only_run(uri, "study")  # the experiment: the folder holding the run dir
    assert run.info.run_name == "fedavg" and run.info.status == "FINISHED"
    assert run.info.run_id in result.out
    params = run.data.params
    assert {k: params[k] for k in flat_config(run_dir)} == flat_config(run_dir)
    assert params["partition.dataset"] == "digits" and params["partition.num_clients"] == "4"
    info = json.loads((run_dir / "run.json").read_text())
    assert params["config_digest"] == info["config_digest"]
    assert_metrics_are_rounds_csv(uri, run, run_dir)


def test_a_round_not_evaluated_logs_its_counters_and_no_metric(cli, part, tmp_path):
    run_dir = tmp_path / "evaluated" / "k2"
    train(
        cli, part, run_dir, "--eval-every", 2, "--track", "mlflow", "--track-uri", "sqlite:///k2.db"
    )
    uri = "sqlite:///k2.db"
    run = only_run(uri, "evaluated")
    rounds = pd.read_csv(run_dir / "rounds.csv")
    assert rounds["evaluated"].tolist() == [1, 0, 1]
    assert "evaluated" not in run.data.metrics
    assert [step for step, _ in history(uri, run.info.run_id, "test_accuracy")] == [0, 2]
    assert history(uri, run.info.run_id, "bytes_up") == list(
        zip(rounds["round"], rounds["bytes_up"].astype(float), strict=True)
    )


def test_tracking_changes_no_result_and_tensorboard_holds_every_round(cli, part, tmp_path):
    plain, tracked = tmp_path / "plain", tmp_path / "tracked"
    train(cli, part, plain)
    result = train(cli, part, tracked, "--track", "tensorboard")
    assert f"tensorboard folder {tracked / 'tb'}" in result.out
    assert_scalars_are_rounds_csv(tracked / "tb", tracked)
    assert not (plain / "tb").exists()
    frames = [pd.read_csv(run / "rounds.csv").drop(columns=TIMING) for run in (plain, tracked)]
    pd.testing.assert_frame_equal(*frames)
    infos = [json.loads((run / "run.json").read_text()) for run in (plain, tracked)]
    assert infos[0]["config_digest"] == infos[1]["config_digest"]
    assert infos[1]["config"]["track"] == "tensorboard" and infos[0]["config"]["track"] is None


def test_a_resumed_run_continues_its_mlflow_run(cli, part, tmp_path):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    out = tmp_path / "exp" / "r"
    config = TrainConfig(rounds=4, local_epochs=1, track="mlflow", track_uri=uri)
    rounds = api.prepare_training(part, config, out).rounds()
    assert [next(rounds)["round"] for _ in range(3)] == [0, 1, 2]
    rounds.close()  # as Ctrl-C does: saved, marked interrupted
    assert only_run(uri, "exp").info.status == "KILLED"
    flags = ["--rounds", 4, "--local-epochs", 1, "--track", "mlflow", "--track-uri", uri]
    resumed = cli("train", part, *flags, "--out", out, "--resume")
    assert resumed.code == 0, resumed.err
    run = only_run(uri, "exp")
    assert run.info.status == "FINISHED"
    assert [step for step, _ in history(uri, run.info.run_id, "train_loss")] == [0, 1, 2, 3, 4]
    assert_metrics_are_rounds_csv(uri, run, out)


def test_export_a_folder_of_runs_to_both_backends_and_again_adds_nothing(cli, part, tmp_path):
    runs = [tmp_path / "grid" / f"seed={seed}" for seed in (0, 1)]
    for seed, run_dir in enumerate(runs):
        train(cli, part, run_dir, "--seed", seed)
    uri = f"sqlite:///{tmp_path / 'exported.db'}"
    first = cli("export", tmp_path / "grid", "--to", "mlflow", "--uri", uri)
    assert first.code == 0, first.err
    assert first.out.count("3 of 3 rounds") == 2
    again = cli("export", tmp_path / "grid", "--to", "mlflow", "--uri", uri)
    assert again.code == 0 and again.out.count("already in mlflow run") == 2, again.out
    experiment = client(uri).get_experiment_by_name("grid").experiment_id
    found = {run.info.run_name: run for run in client(uri).search_runs([experiment])}
    assert sorted(found) == ["seed=0", "seed=1"]
    for run_dir in runs:
        assert_metrics_are_rounds_csv(uri, found[run_dir.name], run_dir)
        assert found[run_dir.name].info.status == "FINISHED"

    board = tmp_path / "board"
    assert cli("export", *runs, "--to", "tensorboard", "--uri", board).code == 0
    assert cli("export", *runs, "--to", "tensorboard", "--uri", board).code == 0
    for run_dir in runs:
        folder = board / "grid" / run_dir.name
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1  # no second event file
        assert_scalars_are_rounds_csv(folder, run_dir)


def test_a_sweep_tracks_each_run_and_still_finds_them_done_untracked(cli, tmp_path):
    uri = f"sqlite:///{tmp_path / 'sweep.db'}"
    grid = "[grid]\nseed = [0, 1]\n"
    base = 'name = "tracked"\n[base]\ndataset = "digits"\nclients = 4\nrounds = 2\n'
    sweep = tmp_path / "s.toml"
    sweep.write_text(f'{base}track = "mlflow"\ntrack_uri = "{uri}"\n{grid}')
    first = cli("sweep", sweep, "--jobs", 1, "--out", tmp_path / "tracked")
    assert first.code == 0 and "2 trained" in first.out, first.err
    experiment = client(uri).get_experiment_by_name("tracked").experiment_id
    found = {run.info.run_name: run for run in client(uri).search_runs([experiment])}
    assert sorted(found) == ["seed=0", "seed=1"]
    for name, run in found.items():
        assert_metrics_are_rounds_csv(uri, run, tmp_path / "tracked" / name)
    sweep.write_text(f"{base}{grid}")
    again = cli("sweep", sweep, "--jobs", 1, "--out", tmp_path / "tracked")
    assert again.code == 0 and "0 trained, 2 already done" in again.out, again.out


def test_mlflow_file_store_when_mlflow_allows_it(cli, part, tmp_path, monkeypatch):
    train(cli, part, tmp_path / "runs" / "r")
    store = tmp_path / "mlruns"
    refused = cli("export", tmp_path / "runs", "--to", "mlflow", "--uri", store)
    assert_one_line_error(refused, f"--uri {store}", "MLFLOW_ALLOW_FILE_STORE=true")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert cli("export", tmp_path / "runs", "--to", "mlflow", "--uri", store).code == 0
    assert_metrics_are_rounds_csv(str(store), only_run(str(store), "runs"), tmp_path / "runs" / "r")


@pytest.mark.parametrize("backend", ["mlflow", "tensorboard"])
def test_a_missing_extra_is_one_line_before_anything_is_written(
    cli, part, tmp_path, monkeypatch, backend
):
    monkeypatch.setitem(sys.modules, backend, None)  # import mlflow / tensorboard fails
    install = f"pip install 'flcli[{backend}]'"
    out = tmp_path / "r"
    result = cli("train", part, "--rounds", 2, "--track", backend, "--out", out)
    assert_one_line_error(result, f"--track {backend} needs", "not installed", install)
    assert not out.exists()
    train(cli, part, out)
    assert_one_line_error(cli("export", out, "--to", backend), f"--to {backend} needs", install)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed once the probe is


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--track", "wandb"], ["--track 'wandb'", "mlflow, tensorboard"]),
        (["--track-uri", "sqlite:///x.db"], ["--track-uri sqlite:///x.db needs --track"]),
        (["--track", "mlflow", "--track-uri", "ftp://h/x"], ["--track-uri ftp://h/x", "sqlite"]),
        (["--track", "mlflow", "--track-uri", "sqlite://x.db"], ["three slashes"]),
        (["--track", "tensorboard", "--track-uri", "s3://b/x"], ["s3://b/x", "local folder"]),
    ],
)
def test_bad_tracking_values_are_one_line_and_nothing_is_written(
    cli, part, tmp_path, flags, fragments
):
    result = cli("train", part, "--rounds", 2, *flags, "--out", tmp_path / "r")
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "r").exists()


def test_a_server_nobody_runs_and_a_file_for_a_folder_are_one_line(cli, part, tmp_path):
    uri = f"http://127.0.0.1:{closed_port()}"
    result = cli("train", part, "--track", "mlflow", "--track-uri", uri, "--out", tmp_path / "r")
    assert_one_line_error(result, f"--track-uri {uri}", "nothing answers")
    (tmp_path / "file").write_text("")
    train(cli, part, tmp_path / "runs" / "r")  # a path holding no run is refused first
    result = cli("export", tmp_path / "runs", "--to", "tensorboard", "--uri", tmp_path / "file")
    assert_one_line_error(result, f"--uri {tmp_path / 'file'} is a file")


def test_a_tracked_run_deleted_while_training_stops_the_run_which_resumes(cli, part, tmp_path):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    out = tmp_path / "exp" / "r"
    config = TrainConfig(rounds=3, local_epochs=1, track="mlflow", track_uri=uri)
    rounds = api.prepare_training(part, config, out).rounds()
    next(rounds)
    client(uri).delete_run(only_run(uri, "exp").info.run_id)  # as from MLflow's UI
    with pytest.raises(RunFailed, match="MLflow: .*stopped at round 1, saved.*--resume"):
        next(rounds)
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    flags = ["--rounds", 3, "--local-epochs", 1, "--track", "mlflow", "--track-uri", uri]
    assert cli("train", part, *flags, "--out", out, "--resume").code == 0
    assert_metrics_are_rounds_csv(uri, only_run(uri, "exp"), out)  # a new run, every round


def test_a_sweep_needing_a_missing_extra_is_one_line_before_any_partition(
    cli, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    sweep = tmp_path / "s.toml"
    sweep.write_text('name = "t"\n[base]\ndataset = "digits"\ntrack = "mlflow"\n')
    result = cli("sweep", sweep, "--out", tmp_path / "t")
    assert_one_line_error(result, "--track mlflow needs MLflow", "pip install 'flcli[mlflow]'")
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize(
    "uri, fragments",
    [
        ("sqlite:///notes.txt", ["notes.txt is not a SQLite database"]),
        ("sqlite:///folder", ["folder is a folder", "sqlite:///folder/mlflow.db"]),
        ("sqlite:///notes.txt/x.db", ["notes.txt is a file, not a folder"]),
        ("notes.txt", ["notes.txt is a file, not a tracking URI", "sqlite:///notes.txt"]),
        ("http://[::1", ["is not a URI", "Invalid IPv6 URL"]),
        ("http://127.0.0.1:99999", ["Port out of range", "http://HOST:PORT"]),
        ("http://", ["names no host"]),
        ("postgresql://nobody@127.0.0.1:1/x", ["needs psycopg", "pip install 'psycopg[binary]'"]),
        ("sqlite+pysqlite:///notes.txt", ["notes.txt is not a SQLite database"]),
        (f"http://{'a' * 70}.com:5000", ["nothing answers there"]),  # a label idna refuses
    ],
)
def test_an_mlflow_uri_that_cannot_work_is_one_line_and_nothing_is_written(
    cli, part, tmp_path, uri, fragments
):
    (tmp_path / "notes.txt").write_text("not a database\n")
    (tmp_path / "folder").mkdir()
    out = tmp_path / "runs" / "r"
    train(cli, part, out)
    before = sorted(tmp_path.rglob("*"))
    assert_one_line_error(
        cli("export", out, "--to", "mlflow", "--uri", uri), f"--uri {uri}", *fragments
    )
    result = cli("train", part, "--track", "mlflow", "--track-uri", uri, "--out", tmp_path / "t")
    assert_one_line_error(result, f"--track-uri {uri}", *fragments)
    assert sorted(tmp_path.rglob("*")) == before
    assert (tmp_path / "notes.txt").read_text() == "not a database\n"


def test_a_path_without_runs_is_one_line_before_the_store_is_made(cli, tmp_path):
    result = cli("export", tmp_path / "nowhere", "--to", "mlflow")
    assert_one_line_error(result, "nowhere does not exist")
    assert not (tmp_path / "mlflow.db").exists()  # the default store, in the current folder


@pytest.mark.parametrize(
    "key, value, named",
    [
        ("config", "oops", "'config' should be a table"),
        ("partition_meta", 7, "'partition_meta' should be a table"),
        ("status", 5, "'status' should be a string"),
        ("config", {"lr": 0.1, "algo_args": [1]}, "'config.algo_args' should be a table"),
    ],
)
def test_a_run_json_edited_by_hand_is_one_line_and_logs_nothing(
    cli, part, tmp_path, key, value, named
):
    out = tmp_path / "runs" / "r"
    train(cli, part, out)
    info = json.loads((out / "run.json").read_text())
    info[key] = value
    (out / "run.json").write_text(json.dumps(info))
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    for command in (["export", out, "--to", "mlflow", "--uri", uri], ["report", out]):
        assert_one_line_error(cli(*command), f"{out / 'run.json'}: {named}", "delete the run")
    assert not (tmp_path / "store.db").exists()


def test_a_tensorboard_folder_of_another_run_of_the_same_name_is_refused(cli, part, tmp_path):
    board = tmp_path / "board"
    first = train(cli, part, tmp_path / "a" / "sweep" / "r", "--track", "tensorboard")
    assert first.code == 0, first.err
    export = cli("export", tmp_path / "a" / "sweep" / "r", "--to", "tensorboard", "--uri", board)
    assert export.code == 0, export.err
    other = train(cli, part, tmp_path / "b" / "sweep" / "r", "--lr", 0.01)  # same names, other run
    assert other.code == 0, other.err
    again = cli("export", tmp_path / "b" / "sweep" / "r", "--to", "tensorboard", "--uri", board)
    assert_one_line_error(again, "holds the events of another run")


def test_sqlite_with_a_driver_is_a_sqlite_uri(cli, part, tmp_path):
    uri = f"sqlite+pysqlite:///{tmp_path / 'store.db'}"
    train(cli, part, tmp_path / "runs" / "r", "--track", "mlflow", "--track-uri", uri)
    assert (tmp_path / "store.db").is_file()


def test_a_tensorboard_folder_under_a_file_is_one_line_before_the_run_dir(cli, part, tmp_path):
    (tmp_path / "notes.txt").write_text("a file\n")
    uri = tmp_path / "notes.txt" / "board"
    out = tmp_path / "r"
    result = cli("train", part, "--track", "tensorboard", "--track-uri", uri, "--out", out)
    assert_one_line_error(result, "lies under the file")
    assert not out.exists()
