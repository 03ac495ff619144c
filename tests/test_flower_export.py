"""fl partition --export flower DIR writes flwr-datasets create's layout; flower:DIR reads it."""

import json

import pytest
from conftest import assert_one_line_error

datasets = pytest.importorskip("datasets")


def test_export_and_read_back_keep_clients_and_labels(cli, tmp_path):
    part, flower, back = tmp_path / "p", tmp_path / "flower", tmp_path / "back"
    made = cli(
        "partition", "digits", "--clients", "5", "--scheme", "dirichlet", "--alpha", "0.5",
        "--out", part, "--export", "flower", flower,
    )  # fmt: skip
    assert made.code == 0, made.err
    assert sorted(p.name for p in flower.iterdir()) == [
        *(f"partition_{i}" for i in range(5)),
        "test",
    ]
    one = datasets.load_from_disk(str(flower / "partition_0"))
    assert set(one.column_names) == {"x", "label"} and len(one[0]["x"]) == 64
    read = cli("partition", f"flower:{flower}", "--scheme", "natural", "--out", back)
    assert read.code == 0, read.err
    first = json.loads((part / "partition.json").read_text())
    second = json.loads((back / "partition.json").read_text())
    assert second["client_sizes"] == first["client_sizes"]
    assert second["label_counts"] == first["label_counts"]
    assert second["num_test"] == first["num_test"]
    assert second["client_names"] == [f"partition_{i}" for i in range(5)]
    assert cli("train", back, "--rounds", "2", "--out", tmp_path / "r").code == 0


def test_a_folder_without_partitions_or_a_broken_one_is_one_line(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = cli(
        "partition", f"flower:{tmp_path / 'empty'}", "--scheme", "natural", "--out", tmp_path / "p"
    )
    assert_one_line_error(result, "partition_0")
    (tmp_path / "empty" / "partition_0").mkdir()
    result = cli(
        "partition", f"flower:{tmp_path / 'empty'}", "--scheme", "natural", "--out", tmp_path / "p"
    )
    assert_one_line_error(result, "cannot read", "partition_0")


def test_an_existing_export_folder_is_refused_before_partitioning(cli, tmp_path):
    (tmp_path / "f").mkdir()
    result = cli("partition", "iris", "--out", tmp_path / "p", "--export", "flower", tmp_path / "f")
    assert_one_line_error(result, "already exists")
    assert not (tmp_path / "p").exists()
    wrong = cli("partition", "iris", "--out", tmp_path / "p", "--export", "tff", tmp_path / "g")
    assert_one_line_error(wrong, "flower")
