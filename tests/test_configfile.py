"""fl train --config: TOML files and run.json as config sources; flags win."""

import json

import pandas as pd
import pytest
from conftest import assert_one_line_error

from flcli.config import TrainConfig
from flcli.configfile import resolve_train_config


def rounds_of(run_dir):
    return pd.read_csv(run_dir / "rounds.csv").drop(columns=["elapsed_s"])


def write(path, text):
    path.write_text(text)
    return path


def test_toml_fills_options_and_flags_override_it(cli, iid_dir, tmp_path):
    config = write(
        tmp_path / "train.toml",
        f'partition = "{iid_dir}"\nrounds = 3\nlr = 0.1\nlocal-epochs = 1\nfraction = 0.5\n',
    )
    result = cli("train", "--config", config, "--lr", 0.2, "--out", tmp_path / "run")
    assert result.code == 0, result.err
    resolved = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert resolved["rounds"] == 3 and resolved["local_epochs"] == 1
    assert resolved["lr"] == 0.2  # the flag beats the file
    assert resolved["fraction"] == 0.5
    assert resolved["batch_size"] == 16  # TrainConfig's default fills the rest
    assert len(pd.read_csv(tmp_path / "run" / "rounds.csv")) == 4


def test_a_fraction_of_the_clients_is_rounded_half_up():
    sizes = [TrainConfig(fraction=f).cohort_size(10) for f in (0.05, 0.15, 0.25, 0.35, 0.45)]
    assert sizes == [1, 2, 3, 4, 5]
    assert TrainConfig(fraction=0.01).cohort_size(10) == 1  # never nobody


def test_a_flag_replaces_the_files_choice_of_cohort_size(tmp_path, iid_dir):
    config = write(tmp_path / "train.toml", "fraction = 0.5\n")
    resolved, _ = resolve_train_config({"clients_per_round": 3}, config, iid_dir)
    assert resolved.clients_per_round == 3 and resolved.fraction is None


def test_a_flag_replaces_the_files_way_of_setting_the_noise(tmp_path, iid_dir):
    config = write(tmp_path / "train.toml", "dp_clip = 1.0\ndp_noise = 1.0\n")
    resolved, _ = resolve_train_config({"dp_epsilon": 5.0}, config, iid_dir)
    assert resolved.dp_epsilon == 5.0 and resolved.dp_noise is None


def test_model_arg_flags_add_to_the_files_table(tmp_path, iid_dir):
    text = 'model = "sklearn:SGDClassifier"\n[model_args]\nalpha = 0.001\nloss = "log_loss"\n'
    config = write(tmp_path / "train.toml", text)
    resolved, _ = resolve_train_config({"model_args": {"eta0": 0.03}}, config, iid_dir)
    assert resolved.model_args == {"alpha": 0.001, "loss": "log_loss", "eta0": 0.03}


def test_another_algo_or_model_on_a_run_json_takes_its_own_defaults(cli, iid_dir, tmp_path):
    """run.json holds what its run was given: another --algo or --model takes its own defaults,
    not the values the file chose for its algorithm or model."""
    from flcli.assemble import resolve
    from flcli.data.store import load_partition

    partition = load_partition(iid_dir)
    first = tmp_path / "first"
    args = ["--algo", "fedadam", "--beta1", 0.5, "--model", "mlp", "--hidden", 16, "--rounds", 1]
    assert cli("train", iid_dir, *args, "--out", first).code == 0
    run_json = first / "run.json"
    given, _ = resolve_train_config({"algo": "fedprox"}, run_json, None)
    resolved = resolve(given, partition)[0]
    assert resolved.algo_args == {"mu": 0.01}  # fedprox's, not fedadam's
    assert resolved.drop_stragglers is False and resolved.hidden == (16,)
    given, _ = resolve_train_config({"model": "softmax"}, run_json, None)
    resolved = resolve(given, partition)[0]
    assert resolved.hidden is None and resolved.lr == 0.5  # softmax's
    assert resolved.algo_args["beta1"] == 0.5  # still fedadam, as given
    same, _ = resolve_train_config({"rounds": 2}, run_json, None)
    assert resolve(same, partition)[0].hidden == (16,) and same.algo_args == {"beta1": 0.5}


def test_config_run_json_repeats_the_run_exactly(cli, dirichlet_dir, tmp_path):
    first = tmp_path / "first"
    args = ["--rounds", 3, "--fraction", 0.5, "--seed", 7, "--lr", 0.3, "--batch-size", 8]
    assert cli("train", dirichlet_dir, *args, "--out", first).code == 0
    again = cli("train", "--config", first / "run.json", "--out", tmp_path / "again")
    assert again.code == 0, again.err
    pd.testing.assert_frame_equal(rounds_of(first), rounds_of(tmp_path / "again"), check_exact=True)
    info = [json.loads((d / "run.json").read_text()) for d in (first, tmp_path / "again")]
    assert info[0]["config"] == info[1]["config"]
    assert info[0]["config_digest"] == info[1]["config_digest"]


def test_relative_partition_in_toml_is_relative_to_the_file(tmp_path, iid_dir):
    (tmp_path / "exp").mkdir()
    config = write(tmp_path / "exp" / "train.toml", 'partition = "../parts/iid"\n')
    _, partition = resolve_train_config({}, config, None)
    assert partition == tmp_path / "exp" / ".." / "parts" / "iid"


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("rounds = 3\nlearning_rate = 0.1\n", ["learning_rate", "known keys", "lr", "rounds"]),
        ("rounds = [3\n", ["not valid TOML"]),
        ("rounds = 0\n", ["--rounds 0"]),
        ('lr = "fast"\n', ["lr = 'fast'", "a number"]),
        ('seed = "abc"\n', ["seed = 'abc'", "an integer"]),
        ("rounds = true\n", ["rounds = True", "an integer"]),
        ('rounds = "2"\n', ["rounds = '2'", "an integer"]),
        ('model = "sklearn:Ridge"\nmodel_args = "alpha=1"\n', ["model_args", "table"]),
        ("partition = 5\n", ["partition = 5", "a string"]),
    ],
)
def test_bad_config_file_is_one_line(cli, iid_dir, tmp_path, text, fragments):
    config = write(tmp_path / "bad.toml", text)
    assert_one_line_error(
        cli("train", iid_dir, "--config", config, "--out", tmp_path / "r"), *fragments
    )
    assert not (tmp_path / "r").exists()


def test_missing_partition_and_missing_file_are_one_line(cli, tmp_path):
    assert_one_line_error(cli("train", "--out", tmp_path / "r"), "PARTITION_DIR", "--config")
    missing = tmp_path / "nope.toml"
    assert_one_line_error(cli("train", "--config", missing, "--out", tmp_path / "r"), "nope.toml")
