"""The IDX file format (MNIST, Fashion-MNIST): read and write, NumPy only.

Layout (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte magic number
``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32 dimensions, then the
``prod(dims)`` elements, big-endian, in C order. Dtype codes: 0x08 uint8, 0x09 int8, 0x0B int16,
0x0C int32, 0x0D float32, 0x0E float64. Files may be gzip-compressed (detected from the gzip magic
``1f 8b``, not from the file name).
"""

from __future__ import annotations

import gzip
import os
import tempfile
import zlib
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

from onebit.errors import OnebitError

__all__ = ["IDXFormatError", "IDX_DTYPES", "read_idx", "write_idx"]

PathOrFile = Union[str, "os.PathLike[str]", BinaryIO]

#: IDX dtype code -> NumPy dtype as stored in the file (big-endian).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_KIND = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


class IDXFormatError(OnebitError, ValueError):
    """A file is not a well-formed IDX file (bad magic, unknown dtype, wrong payload size)."""


def _known_codes() -> str:
    return ", ".join(f"0x{code:02X} ({dt.name})" for code, dt in IDX_DTYPES.items())


def decompress_if_gzip(data: bytes, source: str) -> bytes:
    """Return ``data`` gunzipped when it starts with the gzip magic, else unchanged."""
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise IDXFormatError(f"{source}: not a valid gzip stream ({exc}); the file is corrupted "
                             "or truncated: delete it and get it again") from exc


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse the (already decompressed) bytes of an IDX file; see :func:`read_idx`."""
    if len(data) < 4:
        raise IDXFormatError(f"{source}: {len(data)} bytes is too short for an IDX header "
                             "(4-byte magic + 4 bytes per dimension)")
    if data[0] != 0 or data[1] != 0:
        raise IDXFormatError(f"{source}: bad IDX magic {data[:4].hex()}: an IDX file starts with "
                             "two zero bytes, a dtype code and the number of dimensions")
    code, ndim = data[2], data[3]
    dtype = IDX_DTYPES.get(code)
    if dtype is None:
        raise IDXFormatError(f"{source}: unknown IDX dtype code 0x{code:02X}; known codes: "
                             f"{_known_codes()}")
    if ndim == 0:
        raise IDXFormatError(f"{source}: IDX header declares 0 dimensions; at least 1 is needed")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(f"{source}: truncated IDX header: {ndim} dimensions need {header} "
                             f"header bytes, the file has {len(data)}")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        what = "truncated payload" if actual < expected else "trailing bytes after the payload"
        raise IDXFormatError(f"{source}: {what}: header says shape {shape} of {dtype.name} = "
                             f"{expected} bytes, the file holds {actual}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    # native byte order, writable, owning its memory
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path_or_fileobj: PathOrFile) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a native-endian NumPy array.

    ``path_or_fileobj`` is a path or a binary file object opened for reading. The header is fully
    validated: magic ``00 00``, a known dtype code, the dimensions, and that the payload holds
    exactly ``prod(dims) * itemsize`` bytes. Raises :class:`IDXFormatError` (a ``ValueError``)
    naming the file and what is wrong.

    Example::

        images = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
        images.shape, images.dtype   # ((10000, 28, 28), dtype('uint8'))
    """
    if hasattr(path_or_fileobj, "read"):
        data = path_or_fileobj.read()  # type: ignore[union-attr]
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("read_idx needs a file opened in binary mode ('rb'), got text")
        source = str(getattr(path_or_fileobj, "name", "<file object>"))
    elif isinstance(path_or_fileobj, (str, os.PathLike)):
        source = os.fspath(path_or_fileobj)
        with open(source, "rb") as f:
            data = f.read()
    else:
        raise TypeError(f"read_idx takes a path or a binary file object, got "
                        f"{type(path_or_fileobj).__name__}")
    return parse_idx(decompress_if_gzip(bytes(data), source), source)


def encode_idx(array: np.ndarray) -> bytes:
    """The bytes of ``array`` as an (uncompressed) IDX file; see :func:`write_idx`."""
    array = np.asarray(array)
    code = _CODE_OF_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise TypeError(f"IDX cannot store dtype {array.dtype}; supported: uint8, int8, int16, "
                        f"int32, float32, float64 (convert with array.astype(...))")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX stores 1 to 255 dimensions, got an array with {array.ndim}; "
                         "reshape a scalar to (1,)")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"IDX dimensions must be < 2**32, got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    return header + payload


def write_idx(path: PathOrFile, array: np.ndarray, *, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file (big-endian, C order).

    ``compress`` gzips the file; by default it does so when ``path`` ends with ``.gz``. A path is
    written atomically (temporary file in the same directory, then rename), so a reader never sees
    half a file. ``path`` may also be a binary file object opened for writing.
    """
    data = encode_idx(array)
    if hasattr(path, "write"):
        if compress:
            data = gzip.compress(data, mtime=0)
        path.write(data)  # type: ignore[union-attr]
        return
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"write_idx takes a path or a binary file object, got "
                        f"{type(path).__name__}")
    target = Path(path)
    if compress is None:
        compress = target.name.endswith(".gz")
    if compress:
        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(target, data)


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file in the same directory + rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
