"""A user's table as it arrives: --drop, --features, --impute, client and feature names."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error
from hypothesis import given, settings
from hypothesis import strategies as st

from flcli.data.files import TableOptions, dataset_from_frame, prepare_frame

ROWS = [
    (i, f"hospital_{'abc'[i % 3]}", 30 + i if i % 4 else None, 100 + 2 * i, i % 2)
    for i in range(30)
]


def table(tmp_path):
    frame = pd.DataFrame(ROWS, columns=["patient_id", "hospital", "age", "bp", "label"])
    frame.to_csv(tmp_path / "t.csv", index=False)
    return str(tmp_path / "t.csv")


def test_an_id_column_is_dropped_and_names_are_recorded(cli, tmp_path):
    out = tmp_path / "p"
    args = ["--target", "label", "--scheme", "natural", "--by", "hospital", "--out", str(out)]
    result = cli("partition", table(tmp_path), "--drop", "patient_id", "--impute", "median", *args)
    assert result.code == 0, result.err
    meta = json.loads((out / "partition.json").read_text())
    assert meta["feature_names"] == ["age", "bp"] and meta["num_features"] == 2
    assert meta["client_names"] == ["hospital_a", "hospital_b", "hospital_c"]
    assert meta["params"]["drop"] == "patient_id" and "hospital_a" in result.out
    assert cli("train", str(out), "--rounds", "2", "--out", str(tmp_path / "r")).code == 0


def test_features_keeps_only_the_columns_named(cli, tmp_path):
    out = tmp_path / "p"
    result = cli(
        "partition", table(tmp_path), "--target", "label", "--features", "bp", "--out", str(out)
    )
    assert result.code == 0, result.err
    assert json.loads((out / "partition.json").read_text())["feature_names"] == ["bp"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--drop", "hospital"], "--impute"),
        (["--drop", "patinet_id", "--impute", "mean"], "--drop 'patinet_id' is not a column"),
        (["--features", "bp", "--drop", "label"], "names the --target"),
        (["--impute", "mode"], "--impute"),
    ],
)
def test_bad_table_options_are_one_line(cli, tmp_path, args, fragment):
    result = cli(
        "partition", table(tmp_path), "--target", "label", *args, "--out", str(tmp_path / "p")
    )
    assert_one_line_error(result, fragment)


def test_impute_drop_drops_the_incomplete_rows():
    frame = pd.DataFrame(ROWS, columns=["patient_id", "hospital", "age", "bp", "label"])
    data = dataset_from_frame(
        "t",
        frame,
        "label",
        group_by="hospital",
        table=TableOptions(drop="patient_id", impute="drop"),
    )
    assert len(data.y) == sum(1 for row in ROWS if row[2] is not None)


@settings(max_examples=40, deadline=None)
@given(
    cells=st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), min_size=2, max_size=40),
    how=st.sampled_from(["mean", "median"]),
)
def test_imputing_fills_only_the_missing_cells(cells, how):
    frame = pd.DataFrame({"a": pd.array(cells, dtype="float64"), "y": range(len(cells))})
    filled = prepare_frame(frame, "y", None, TableOptions(impute=how))
    known = frame["a"].notna()
    assert np.array_equal(filled["a"][known], frame["a"][known])
    if known.any():
        assert filled["a"].notna().all()
