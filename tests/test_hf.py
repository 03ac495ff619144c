"""hf:NAME[@REVISION][:SPLIT] through the datasets library, on folders the tests write."""

import json

import numpy as np
import pytest
from conftest import assert_one_line_error

datasets = pytest.importorskip("datasets")

WRITERS = {"w0": 12, "w1": 9, "w2": 15}


def tiny(seed=0, rows=None):
    """An image-like list column, a number, a writer_id and a label."""
    generator = np.random.default_rng(seed)
    writers = [w for w, n in WRITERS.items() for _ in range(n)] if rows is None else rows
    n = len(writers)
    labels = generator.integers(0, 3, n)
    images = generator.random((n, 4, 4)) + labels[:, None, None]
    return datasets.Dataset.from_dict(
        {
            "image": images.tolist(),
            "size": generator.random(n).tolist(),
            "writer_id": writers,
            "label": labels.tolist(),
        }
    ).cast_column("label", datasets.ClassLabel(names=["a", "b", "c"]))


def test_a_saved_folder_through_partition_and_train(cli, tmp_path):
    folder = tmp_path / "femnist-like"
    tiny().save_to_disk(str(folder))
    part, run = tmp_path / "p", tmp_path / "r"
    result = cli(
        "partition", f"hf:{folder}", "--scheme", "natural", "--by", "writer_id", "--out", part
    )
    assert result.code == 0, result.err
    meta = json.loads((part / "partition.json").read_text())
    assert meta["num_features"] == 17  # 4 x 4 image flattened, and size
    assert sorted(meta["client_names"]) == sorted(WRITERS)
    assert meta["num_train"] + meta["num_test"] == sum(WRITERS.values())
    assert meta["classes"] == ["a", "b", "c"]
    source = meta["dataset_source"]
    assert source["loader"] == "datasets" and source["revision"] == "local"
    assert len(source["fingerprint"]) >= 8
    assert cli("train", part, "--rounds", "2", "--out", run).code == 0


def test_a_dataset_dict_gives_its_test_split(cli, tmp_path):
    folder = tmp_path / "dd"
    train = tiny(0)
    test = tiny(1, rows=["w0"] * 7)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(folder))
    part = tmp_path / "p"
    result = cli(
        "partition", f"hf:{folder}", "--scheme", "natural", "--by", "writer_id", "--out", part
    )
    assert result.code == 0, result.err
    meta = json.loads((part / "partition.json").read_text())
    assert meta["num_test"] == 7 and meta["params"]["test_split"] == "own"
    assert sorted(meta["client_sizes"]) == sorted(WRITERS.values())
    one = cli(
        "partition",
        f"hf:{folder}:test",
        "--drop",
        "writer_id",
        "--clients",
        "2",
        "--out",
        tmp_path / "q",
    )
    assert one.code == 0, one.err


def test_text_needs_encode(cli, tmp_path):
    folder = tmp_path / "text"
    data = tiny().add_column("word", ["x", "y", "z"] * 12)
    data.save_to_disk(str(folder))
    natural = ["--scheme", "natural", "--by", "writer_id"]
    refused = cli("partition", f"hf:{folder}", *natural, "--out", tmp_path / "p")
    assert_one_line_error(refused, "'word'", "--encode")
    done = cli("partition", f"hf:{folder}", *natural, "--encode", "--out", tmp_path / "q")
    assert done.code == 0, done.err


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda d: (d / "state.json").write_text("garbage"), "cannot read"),
        (lambda d: next(d.glob("*.arrow")).write_bytes(b"xx"), "cannot read"),
        (lambda d: None, "does not exist"),
    ],
)
def test_a_broken_or_absent_folder_is_one_line(cli, tmp_path, damage, fragment):
    folder = tmp_path / "d"
    tiny().save_to_disk(str(folder))
    damage(folder)
    name = folder if fragment != "does not exist" else tmp_path / "absent"
    result = cli("partition", f"hf:{name}", "--scheme", "natural", "--out", tmp_path / "p")
    assert_one_line_error(result, fragment)


def test_a_bad_spec_and_a_missing_split_are_one_line(cli, tmp_path):
    folder = tmp_path / "d"
    tiny().save_to_disk(str(folder))
    result = cli("partition", f"hf:{folder}:valid", "--out", tmp_path / "p")
    assert_one_line_error(result, "no splits", ":valid")
    assert_one_line_error(cli("partition", "hf:", "--out", tmp_path / "q"), "hf:NAME")


def test_without_the_extra_it_says_what_to_install(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "datasets", None)
    result = cli("partition", f"hf:{tmp_path}", "--scheme", "natural", "--out", tmp_path / "p")
    assert_one_line_error(result, "pip install 'flcli[hf]'")
