"""partition.json's input_shape and vocabulary: recorded by fl partition, read by Partition,
refused in one line when corrupted; partition dirs without them load as before."""

import json
import math

import numpy as np
import pytest
from conftest import assert_one_line_error
from hypothesis import given
from hypothesis import strategies as st

from flcli.data.sample_format import parse_input_shape
from flcli.data.store import description_hash, load_partition
from flcli.errors import FLError


def meta_of(path):
    return json.loads((path / "partition.json").read_text())


def rewrite_meta(path, **changes):
    """partition.json with changes (a value None drops the key), its description_hash
    recomputed as fl partition would have written it: only the checks of the values stop it."""
    meta = {**meta_of(path), **changes}
    meta = {key: value for key, value in meta.items() if value is not None}
    meta["description_hash"] = description_hash(meta)
    (path / "partition.json").write_text(json.dumps(meta))


@pytest.fixture
def digits_dir(cli, tmp_path):
    out = tmp_path / "digits"
    assert cli("partition", "digits", "--clients", "3", "--out", out).code == 0
    return out


@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=8))
def test_a_shape_written_with_commas_reads_back(shape):
    text = ",".join(map(str, shape))
    assert parse_input_shape(text) == tuple(shape)
    assert parse_input_shape(" , ".join(map(str, shape))) == tuple(shape)
    assert parse_input_shape(shape) == tuple(shape)  # a TOML file's list


@given(
    st.one_of(
        st.lists(st.integers(-5, 0), min_size=1, max_size=4).map(lambda s: ",".join(map(str, s))),
        st.text(alphabet="abc.;x -", max_size=8),
        st.just(""),
        st.just("1,,2"),
        st.just("1.5,2"),
        st.just(",".join(["2"] * 9)),
    )
)
def test_anything_else_is_refused_naming_the_value_and_an_example(text):
    with pytest.raises(FLError) as refused:
        parse_input_shape(text)
    message = str(refused.value)
    assert repr(text) in message and "e.g. 1,28,28" in message and "\n" not in message


def test_digits_records_its_image_shape_and_a_cnn_gets_a_zero_copy_view(digits_dir):
    part = load_partition(digits_dir)
    assert meta_of(digits_dir)["input_shape"] == [1, 8, 8]
    assert part.input_shape == (1, 8, 8) and part.vocabulary is None
    images = part.x_train.reshape(-1, *part.input_shape)
    assert np.shares_memory(images, part.x_train)
    assert np.array_equal(images[:, 0].reshape(len(images), -1), part.x_train)


def test_the_shape_is_shown_by_fl_partition_and_fl_inspect(cli, digits_dir):
    shown = cli("inspect", digits_dir)
    assert shown.code == 0 and "1 x 8 x 8" in shown.out and "64 features" in shown.out


def test_a_source_without_a_shape_records_none_and_reads_as_its_features(cli, tmp_path):
    out = tmp_path / "iris"
    assert cli("partition", "iris", "--clients", "2", "--out", out).code == 0
    assert "input_shape" not in meta_of(out) and "vocabulary" not in meta_of(out)
    assert load_partition(out).input_shape == (4,)


def test_digits_grouped_by_a_pixel_is_no_longer_an_image(cli, tmp_path):
    out = tmp_path / "by"
    args = ("partition", "digits", "--scheme", "natural", "--by", "pixel_0_3", "--out", out)
    assert cli(*args).code == 0, "63 features: a pixel became the clients"
    assert load_partition(out).input_shape == (63,)


def test_an_older_partition_without_the_keys_loads_and_hashes_as_before(digits_dir):
    before = load_partition(digits_dir)
    rewrite_meta(digits_dir, input_shape=None)  # what flcli wrote before input_shape existed
    older = load_partition(digits_dir)
    assert older.input_shape == (64,) and older.hash == before.hash
    assert "input_shape" not in older.meta
    assert older.meta["description_hash"] == description_hash(older.meta)


def test_input_shape_flag_overrides_the_source_and_is_recorded(cli, tmp_path):
    out = tmp_path / "flat"
    args = ("partition", "digits", "--clients", "3", "--input-shape", "4,16", "--out", out)
    result = cli(*args)
    assert result.code == 0, result.err
    meta = meta_of(out)
    assert meta["input_shape"] == [4, 16] and meta["params"]["input_shape"] == [4, 16]
    assert load_partition(out).input_shape == (4, 16)
    assert "4 x 16" in result.out


@pytest.mark.parametrize(
    "shape, fragments",
    [
        ("3,8,8", ["--input-shape 3,8,8", "multiplies to 192", "64 features", "e.g. 1,8,8"]),
        ("0,8,8", ["--input-shape '0,8,8'", "e.g. 1,28,28"]),
        ("8x8", ["--input-shape '8x8'", "not a shape"]),
    ],
)
def test_a_wrong_input_shape_is_one_line(cli, tmp_path, shape, fragments):
    args = ("partition", "digits", "--input-shape", shape, "--out", tmp_path / "p")
    assert_one_line_error(cli(*args), *fragments)
    assert not (tmp_path / "p").exists()


def test_a_sweep_file_gives_the_shape_as_a_list(tmp_path):
    from flcli import api

    built, _ = api.partition(tmp_path / "p", dataset="iris", clients=2, input_shape=[2, 2])
    assert built.input_shape == (2, 2)
    with pytest.raises(FLError, match="--input-shape"):
        api.partition(tmp_path / "q", dataset="iris", clients=2, input_shape=[2, 0])


@pytest.mark.parametrize(
    "changes, fragments",
    [
        ({"input_shape": [1, 8, 9]}, ["input_shape [1, 8, 9]", "multiplies to 72", "64"]),
        ({"input_shape": [1, -8, -8]}, ["input_shape [1, -8, -8]", "positive integers"]),
        ({"input_shape": "1,8,8"}, ['input_shape "1,8,8"', "list of 1 to 8"]),
        ({"input_shape": [1.0, 8, 8]}, ["positive integers"]),
        ({"input_shape": []}, ["input_shape []", "list of 1 to 8"]),
        ({"vocabulary": ["<pad>", "<unk>", 3]}, ["vocabulary", "list of strings"]),
        ({"vocabulary": "abc"}, ["vocabulary", "list of strings"]),
        ({"vocabulary": ["a", "b"]}, ["vocabulary", "'<pad>' (id 0)"]),
        ({"vocabulary": ["<pad>", "<unk>", "a", "a"]}, ["vocabulary", "twice"]),
    ],
)
def test_a_corrupted_shape_or_vocabulary_is_one_line_with_the_fix(
    cli, digits_dir, tmp_path, changes, fragments
):
    rewrite_meta(digits_dir, **changes)
    for command in (("inspect", digits_dir), ("train", digits_dir, "--out", tmp_path / "r")):
        result = cli(*command)
        assert_one_line_error(result, "partition.json", "re-create the partition", *fragments)


def test_token_ids_beyond_the_vocabulary_are_one_line(cli, digits_dir, tmp_path):
    # digits' pixels (up to 1.0, fractions) are ids of no vocabulary of 1 or 2 reserved tokens
    rewrite_meta(digits_dir, vocabulary=["<pad>", "<unk>"], input_shape=None)
    result = cli("train", digits_dir, "--out", tmp_path / "r")
    assert_one_line_error(result, "data.npz", "x_train", "token ids", "--text chars or words")


def test_a_shape_of_another_feature_count_than_the_arrays_is_one_line(cli, digits_dir, tmp_path):
    meta = meta_of(digits_dir)
    rewrite_meta(digits_dir, input_shape=[2, 4, 4], num_features=32)  # a consistent lie
    assert meta["num_features"] == 64 and math.prod([2, 4, 4]) == 32
    result = cli("train", digits_dir, "--out", tmp_path / "r")
    assert_one_line_error(result, "data.npz", "input_shape 2,4,4", "64 features")
