"""A .npz read array by array: each array's header (dtype, shape) before any of its data, then its
data in chunks straight into an array of the dtype asked for, the stored bytes fed to a hash as
they stream. (np.load reads an array whole in the file's dtype: a cast to float32 after it holds
the float64 array and its copy at once, and a hash after it is a second pass.)

A .npz is a zip of .npy files. np.savez stores them uncompressed; those are read from the file at
their offset. A member compressed by np.savez_compressed is read through zipfile. Every problem
is an OSError, ValueError, EOFError or zipfile.BadZipFile naming the member.
"""

import math
import os
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

CHUNK_BYTES = 4 * 2**20
# a zip member's local header (PKWARE's APPNOTE 4.3.7): its signature, 22 bytes of fields that the
# central directory repeats, then the lengths of the member's name and of its extra field
LOCAL_HEADER = struct.Struct("<4s22xHH")
LOCAL_SIGNATURE = b"PK\x03\x04"
READABLE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # np.savez's, np.savez_compressed's


@dataclass(frozen=True)
class Member:
    """One array of a .npz as its .npy header describes it."""

    name: str  # the member's file name without .npy
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool
    info: zipfile.ZipInfo

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def npy_header(stream: BinaryIO, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy file stream starts with; stream is left at the
    start of the array's data."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
    else:  # 3.0 is written only for structured dtypes with non-Latin-1 field names
        raise ValueError(f"{name}.npy has .npy format version {version}; 1.0 or 2.0 expected")
    if dtype.hasobject:
        raise ValueError(f"{name}.npy holds Python objects, which would need unpickling")
    return shape, fortran_order, dtype


def fill(stream: BinaryIO, buffer: np.ndarray, name: str) -> None:
    """Read exactly buffer's bytes from stream into it."""
    view = memoryview(buffer.reshape(-1).view(np.uint8))
    filled = 0
    while filled < len(view):
        got = stream.readinto(view[filled:])
        if not got:
            raise EOFError(f"{name}.npy ends {len(view) - filled} bytes short of its array")
        filled += got


def read_chunks(stream: BinaryIO, out: np.ndarray, stored: np.dtype, digest, name: str) -> None:
    """Fill the C-ordered array out from stream's data of dtype stored, a chunk at a time, casting
    each chunk (as astype does) when out's dtype is another, and feeding the stored bytes to
    digest (when not None)."""
    flat = out.reshape(-1)
    same = out.dtype == stored
    per_chunk = max(1, CHUNK_BYTES // max(1, stored.itemsize))
    scratch = None if same else np.empty(min(per_chunk, flat.size), dtype=stored)
    for start in range(0, flat.size, per_chunk):
        stop = min(start + per_chunk, flat.size)
        chunk = flat[start:stop] if same else scratch[: stop - start]
        fill(stream, chunk, name)
        if digest is not None:
            digest.update(chunk.view(np.uint8))
        if not same:
            with np.errstate(over="ignore"):  # infinities, which validation refuses with advice
                flat[start:stop] = chunk


class NpzReader:
    """An open .npz file: its arrays' headers (members), and each array read on demand."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.size = file.seek(0, os.SEEK_END)
        self.archive = zipfile.ZipFile(file)
        self.members = {}
        for info in self.archive.infolist():
            if info.filename.endswith(".npy"):
                member = self.read_header(info)
                self.members[member.name] = member

    def stat(self) -> os.stat_result:
        """The open file's stat: that of the bytes being read, whatever its path now names."""
        return os.fstat(self.file.fileno())

    def data_start(self, info: zipfile.ZipInfo) -> int:
        """Where an uncompressed member's bytes start in the file: after its local header."""
        self.file.seek(info.header_offset)
        header = self.file.read(LOCAL_HEADER.size)
        if len(header) < LOCAL_HEADER.size or not header.startswith(LOCAL_SIGNATURE):
            raise zipfile.BadZipFile(f"{info.filename}'s local header is damaged")
        _, name_length, extra_length = LOCAL_HEADER.unpack(header)
        start = info.header_offset + LOCAL_HEADER.size + name_length + extra_length
        if info.compress_size != info.file_size or start + info.file_size > self.size:
            raise EOFError(f"{info.filename} ends beyond the end of the file")
        return start

    @contextmanager
    def member_bytes(self, info: zipfile.ZipInfo) -> Iterator[BinaryIO]:
        """A stream of the member's .npy file from its start."""
        if info.flag_bits & 0x1 or info.compress_type not in READABLE_METHODS:
            raise ValueError(f"{info.filename} is encrypted or compressed as np.savez never is")
        if info.compress_type == zipfile.ZIP_STORED:
            self.file.seek(self.data_start(info))
            yield self.file
            return
        with self.archive.open(info) as stream:
            yield stream

    def read_header(self, info: zipfile.ZipInfo) -> Member:
        name = info.filename.removesuffix(".npy")
        with self.member_bytes(info) as stream:
            origin = stream.tell()
            shape, fortran_order, dtype = npy_header(stream, name)
            header_size = stream.tell() - origin
        member = Member(name, dtype, shape, fortran_order, info)
        if header_size + member.nbytes != info.file_size:
            raise ValueError(
                f"{info.filename}'s header promises {member.nbytes} bytes of data, the member "
                f"holds {info.file_size - header_size}"
            )
        return member

    def read(self, member: Member, dtype=None, digest=None) -> np.ndarray:
        """The member's array in dtype (None: the stored one); digest (a hashlib object, or None)
        is fed the array's stored bytes in C order."""
        target = member.dtype if dtype is None else np.dtype(dtype)
        with self.member_bytes(member.info) as stream:
            npy_header(stream, member.name)
            if not member.fortran_order:
                out = np.empty(member.shape, dtype=target)
                read_chunks(stream, out, member.dtype, digest, member.name)
                return out
            transposed = np.empty(member.shape[::-1], dtype=member.dtype)
            read_chunks(stream, transposed, member.dtype, None, member.name)
        array = transposed.T  # the stored bytes are the array in Fortran order
        if digest is not None:
            digest.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
        with np.errstate(over="ignore"):
            return array.astype(target, copy=False)


@contextmanager
def open_npz(path: Path) -> Iterator[NpzReader]:
    with open(path, "rb") as file:
        yield NpzReader(file)
