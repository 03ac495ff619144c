"""fl train --algo feddist --proxy SOURCE: FedDF's proxy set from outside the clients' shards."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error

from flcli.assemble import assemble
from flcli.config import TrainConfig
from flcli.data.store import load_partition


@pytest.fixture
def digits(cli, tmp_path):
    part = tmp_path / "p"
    assert cli("partition", "digits", "--clients", "4", "--out", part).code == 0
    return part


def test_a_proxy_file_leaves_every_shard_whole_and_is_what_is_distilled(digits, tmp_path):
    partition = load_partition(digits)
    rows = np.random.default_rng(0).random((30, partition.num_features))
    np.savez(tmp_path / "proxy.npz", x=rows)
    parts = assemble(TrainConfig(algo="feddist", proxy=str(tmp_path / "proxy.npz")), partition)
    assert parts.partition.client_sizes.tolist() == partition.client_sizes.tolist()
    assert np.array_equal(parts.x_proxy, rows)
    held = assemble(TrainConfig(algo="feddist"), partition)  # holdout, the default: as before
    assert held.partition.client_sizes.sum() + len(held.x_proxy) == partition.client_sizes.sum()


def test_a_partition_dir_and_a_csv_are_proxies_too(cli, digits, tmp_path):
    other = tmp_path / "other"
    assert cli("partition", "digits", "--clients", "2", "--seed", "1", "--out", other).code == 0
    partition = load_partition(digits)
    parts = assemble(TrainConfig(algo="feddist", proxy=str(other)), partition)
    assert np.array_equal(parts.x_proxy, load_partition(other).x_test)
    pd.DataFrame(partition.x_test[:5]).to_csv(tmp_path / "proxy.csv", index=False)
    run = tmp_path / "r"
    result = cli(
        "train", digits, "--algo", "feddist", "--proxy", tmp_path / "proxy.csv",
        "--rounds", "2", "--out", run,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert json.loads((run / "run.json").read_text())["config"]["proxy"].endswith("proxy.csv")


def test_a_wrong_proxy_is_one_line(cli, digits, tmp_path):
    np.savez(tmp_path / "narrow.npz", x=np.zeros((3, 5)))
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    train = ["train", digits, "--algo", "feddist", "--rounds", "1"]
    cases = [
        (tmp_path / "narrow.npz", "64 features"),
        (tmp_path / "broken.npz", "not a readable .npz"),
        (tmp_path / "absent.npz", "neither holdout"),
    ]
    for i, (source, fragment) in enumerate(cases):
        result = cli(*train, "--proxy", source, "--out", tmp_path / f"r{i}")
        assert_one_line_error(result, fragment)
    fedavg = cli("train", digits, "--proxy", tmp_path / "narrow.npz", "--out", tmp_path / "f")
    assert_one_line_error(fedavg, "--proxy applies to --algo feddist")
