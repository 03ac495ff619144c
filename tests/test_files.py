import sys
import urllib.error

import numpy as np
import pandas as pd
import pytest
from sklearn.utils import Bunch

from flcli.data.datasets import load_dataset
from flcli.data.files import load_openml
from flcli.errors import FLError


@pytest.fixture
def table():
    generator = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "a": generator.normal(size=60),
            "b": generator.integers(0, 5, 60),
            "city": np.repeat(["paris", "oslo", "rome"], 20),
            "species": np.tile(["cat", "dog"], 30),
        }
    )


def test_csv_with_a_text_target_becomes_classes(tmp_path, table):
    path = tmp_path / "pets.csv"
    table.drop(columns="city").to_csv(path, index=False)
    data = load_dataset(str(path), target="species")
    assert data.task == "classification" and data.classes == ("cat", "dog")
    assert data.feature_names == ("a", "b") and data.X.shape == (60, 2)
    assert np.allclose(data.X.mean(axis=0), 0) and np.allclose(data.X.std(axis=0), 1)


def test_float_target_is_regression(tmp_path, table):
    path = tmp_path / "t.csv"
    table.drop(columns=["city", "species"]).to_csv(path, index=False)
    data = load_dataset(str(path), target="a")
    assert data.task == "regression" and data.num_classes is None and data.y.dtype == np.float64


def test_text_feature_is_an_error_naming_it_or_one_hot_with_encode(tmp_path, table):
    path = tmp_path / "pets.csv"
    table.to_csv(path, index=False)
    with pytest.raises(FLError, match="feature column 'city' is not numeric; .* --encode"):
        load_dataset(str(path), target="species")
    data = load_dataset(str(path), target="species", encode=True)
    assert data.feature_names == ("a", "b", "city_oslo", "city_paris", "city_rome")


def test_by_column_gives_natural_clients_and_is_not_a_feature(tmp_path, table):
    path = tmp_path / "pets.csv"
    table.to_csv(path, index=False)
    data = load_dataset(str(path), target="species", group_by="city")
    assert "city" not in data.feature_names
    assert np.bincount(data.groups).tolist() == [20, 20, 20]


@pytest.mark.parametrize(
    "target, group_by, message",
    [
        (None, None, "--target COLUMN; columns: a, b, city, species"),
        ("colour", None, "--target 'colour' is not a column; columns: a, b, city, species"),
        ("species", "street", "--by 'street' is not a column"),
    ],
)
def test_missing_columns_list_the_columns(tmp_path, table, target, group_by, message):
    path = tmp_path / "pets.csv"
    table.to_csv(path, index=False)
    with pytest.raises(FLError, match=message):
        load_dataset(str(path), target=target, group_by=group_by, encode=True)


def test_nans_are_errors_naming_the_column(tmp_path, table):
    path = tmp_path / "gaps.csv"
    table.loc[3, "b"] = np.nan
    table.drop(columns="city").to_csv(path, index=False)
    with pytest.raises(FLError, match="feature column 'b' has missing"):
        load_dataset(str(path), target="species")
    with pytest.raises(FLError, match="target column 'b' has missing"):
        load_dataset(str(path), target="b")


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FLError, match="does not exist"):
        load_dataset(str(tmp_path / "nope.csv"), target="y")
    with pytest.raises(FLError, match="use a .csv, .parquet or .npz"):
        load_dataset(str(tmp_path / "data.xlsx"), target="y")


def test_npz_arrays_become_columns_and_pickles_are_refused(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.arange(20.0).reshape(10, 2), y=np.arange(10) % 2)
    data = load_dataset(str(path), target="y")
    assert data.feature_names == ("X0", "X1") and data.num_classes == 2
    np.savez(path, X=np.array([{"a": 1}] * 10, dtype=object), y=np.arange(10))
    with pytest.raises(FLError, match="cannot read"):
        load_dataset(str(path), target="y")


def test_parquet_round_trip(tmp_path, table):
    pytest.importorskip("pyarrow")
    path = tmp_path / "pets.parquet"
    table.to_parquet(path)
    data = load_dataset(str(path), target="species", encode=True)
    assert data.X.shape == (60, 5)


def test_parquet_without_pyarrow_says_how_to_install_it(tmp_path, table, monkeypatch):
    path = tmp_path / "pets.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(FLError, match=r"needs pyarrow: pip install 'flcli\[parquet\]'"):
        load_dataset(str(path), target="species")


def fake_fetcher(table):
    def fetch(**kwargs):
        assert kwargs["as_frame"] is True
        return Bunch(frame=table, target_names=["species"])

    return fetch


def test_openml_through_the_fetcher_and_its_default_target(table):
    data = load_openml("openml:pets", encode=True, fetch=fake_fetcher(table))
    assert data.name == "openml:pets" and data.classes == ("cat", "dog")


def test_openml_offline_says_how_to_prefetch(monkeypatch):
    def offline(**kwargs):
        raise urllib.error.URLError("no network")

    import sklearn.datasets

    monkeypatch.setattr(sklearn.datasets, "fetch_openml", offline)
    with pytest.raises(FLError, match=r"pre-fetch it .*fetch_openml\(name='adult'\)"):
        load_dataset("openml:adult")


def test_reading_a_csv_reports_its_bytes_and_the_stages_of_partitioning(tmp_path):
    from flcli import api
    from flcli.data import progress
    from flcli.data.files import read_table

    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(3000, 4)), columns=list("abcd"))
    table["label"] = rng.integers(0, 3, len(table))
    file = tmp_path / "data.csv"
    table.to_csv(file, index=False)
    heard = []
    with progress.listening(lambda stage, done, total: heard.append((stage, done, total))):
        built, _ = api.partition(
            tmp_path / "part", dataset=str(file), target="label", clients=4, scheme="iid", seed=0
        )
    reads = [(done, total) for stage, done, total in heard if stage.startswith("reading data.csv")]
    size = file.stat().st_size
    assert reads[0] == (0, size) and reads[-1] == (size, size)
    assert [done for done, _ in reads] == sorted(done for done, _ in reads)
    stages = [stage for stage, _, _ in heard]
    assert any(s.startswith("splitting 2,400 samples among 4 clients") for s in stages)
    assert stages[-1] == "drawing partition.png"
    assert built.num_clients == 4
    pd.testing.assert_frame_equal(read_table(file), pd.read_csv(file))  # counted, parsed alike
