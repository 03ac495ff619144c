"""flcli.data.npzfile: a .npz read array by array, in chunks, in the dtype asked for, hashing the
stored bytes as they stream, gives what np.load and astype give (hypothesis), and a damaged file
is one of the errors load_partition turns into one line."""

import hashlib
import io
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from flcli.data import npzfile
from flcli.data.npzfile import NpzReader, open_npz

DTYPES = st.sampled_from(["<f8", ">f8", "<f4", "<f2", "<i8", ">i4", "<u2", "|u1", "|b1", "<c16"])
ARRAYS = hnp.arrays(
    DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9), elements={}
)
READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile)


def npz_bytes(arrays: dict, compressed: bool = False) -> io.BytesIO:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    buffer.seek(0)
    return buffer


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["a", "b", "x_train"]), ARRAYS, min_size=1),
    st.sampled_from([None, "float32", "float64"]),
    st.integers(1, 64),
    st.booleans(),
    st.booleans(),
)
def test_an_array_read_in_chunks_is_np_loads_cast_as_astype_would(
    arrays, dtype, chunk_bytes, compressed, fortran
):
    if fortran:
        arrays = {name: np.asfortranarray(a) for name, a in arrays.items()}
    loaded = np.load(npz_bytes(arrays, compressed))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(npzfile, "CHUNK_BYTES", chunk_bytes)
        reader = NpzReader(npz_bytes(arrays, compressed))
        for name, member in reader.members.items():
            expected = loaded[name]
            assert (member.dtype, member.shape) == (expected.dtype, expected.shape)
            castable = dtype is not None and expected.dtype.kind == "f"
            digest = hashlib.sha256()
            got = reader.read(member, dtype if castable else None, digest)
            with np.errstate(over="ignore"):
                assert same(got, expected.astype(dtype) if castable else expected)
            stored = np.ascontiguousarray(expected).reshape(-1).view(np.uint8)
            assert digest.hexdigest() == hashlib.sha256(stored).hexdigest()


def test_a_file_on_disk_reads_as_np_load_and_its_stat_is_the_open_files(tmp_path):
    x = np.random.default_rng(0).normal(size=(1000, 7))
    np.savez(tmp_path / "data.npz", x=x, y=np.arange(1000))
    with open_npz(tmp_path / "data.npz") as reader:
        assert same(reader.read(reader.members["x"]), x)
        assert same(reader.read(reader.members["x"], "float32"), x.astype(np.float32))
        assert reader.stat().st_ino == (tmp_path / "data.npz").stat().st_ino


def damaged(change) -> bytes:
    data = bytearray(npz_bytes({"x": np.arange(100.0), "y": np.arange(10)}).getvalue())
    return bytes(change(data))


def read_everything(data: bytes) -> None:
    reader = NpzReader(io.BytesIO(data))
    for member in reader.members.values():
        reader.read(member)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d[: len(d) // 2],  # truncated: no central directory
        lambda d: d[:100] + d[200:],  # bytes missing in the middle
        lambda d: d.replace(b"'shape': (100,)", b"'shape': (900,)"),  # a header promising more
        lambda d: d.replace(b"'shape': (100,)", b"'shape': (-10,)"),
        lambda d: d.replace(b"<f8", b"|O8"),  # Python objects: never unpickled
        lambda d: d.replace(b"\x93NUMPY\x01", b"\x93NUMPY\x03", 1),  # an unknown .npy version
        lambda d: d.replace(b"PK\x03\x04", b"PK\x00\x00", 1),  # a damaged local header
        lambda d: b"not a zip file at all",
    ],
)
def test_a_damaged_npz_raises_one_of_the_read_errors(change):
    with pytest.raises(READ_ERRORS):
        read_everything(damaged(change))
