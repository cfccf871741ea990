"""The ``.onebit`` container: a safetensors file whose metadata carries onebit's graph as JSON.

Layout (the safetensors layout, so any safetensors reader can list the tensors)::

    8 bytes      little-endian u64 N, the header length
    N bytes      UTF-8 JSON header, padded with spaces to a multiple of 8:
                 {"__metadata__": {"onebit": DOCUMENT, "onebit_sha256": HEX},
                  "<tensor>": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...}
    data         the tensors' bytes, little-endian, back to back in offset order, no gaps

``DOCUMENT`` is a JSON string holding the graph and its metadata (see :mod:`onebit.runtime.graph`).
``onebit_sha256`` is the SHA-256 of the document, the tensor table and the data together, so that a
flipped bit anywhere in the file is reported as corruption instead of silently changing the model.

Nothing in the file is ever executed: the reader parses JSON with duplicate keys, NaN and Infinity
rejected, checks every size against the file before slicing, and copies each tensor into its own
aligned, read-only NumPy array. Every failure raises :class:`~onebit.runtime.FormatError`.

Why its own reader rather than the ``safetensors`` package: the file must be checked as hostile
input (the digest above, duplicate JSON keys, size limits before any allocation, exact coverage of
the data by the tensor table) with every failure a :class:`FormatError` naming the field, and the
runtime-only install must need nothing but NumPy. The layout stays plain safetensors, so the
``safetensors`` package (a dependency of the ``train`` extra only, for training weights) and other
tools can still list and read the tensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from onebit.runtime.errors import FormatError

__all__ = [
    "DTYPES",
    "FORMAT_VERSION",
    "MAX_FILE_BYTES",
    "MAX_HEADER_BYTES",
    "read_container",
    "write_container",
]

#: safetensors dtype code -> NumPy dtype (little-endian). Only these can appear in a .onebit file.
DTYPES: dict[str, np.dtype] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "U32": np.dtype("<u4"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
}
_CODES = {dt: code for code, dt in DTYPES.items()}

FORMAT_VERSION = 1  #: the version this onebit writes and reads
MAX_HEADER_BYTES = 16 * 1024 * 1024  #: a larger header is refused before it is read
MAX_FILE_BYTES = 4 * 1024 ** 3  #: a larger file is refused before it is read
MAX_TENSORS = 100_000
MAX_RANK = 8
_MAGIC_KEY = "onebit"
_HASH_KEY = "onebit_sha256"


def _strict_json(text: str, what: str) -> Any:
    """``json.loads`` that refuses NaN/Infinity, duplicate keys and pathological nesting."""

    def no_constant(name: str) -> Any:
        raise FormatError(f"{what} contains the non-JSON constant {name}")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise FormatError(f"{what} repeats the key {key!r}")
            out[key] = value
        return out

    try:
        return json.loads(text, parse_constant=no_constant, object_pairs_hook=no_duplicates)
    except FormatError:
        raise
    except RecursionError:
        raise FormatError(f"{what} is nested too deeply to be a onebit file") from None
    except ValueError as exc:  # JSONDecodeError, int-digit limits
        raise FormatError(f"{what} is not valid JSON ({exc})") from None


def _digest(document: str, table: Mapping[str, Any], data: bytes | memoryview) -> str:
    h = hashlib.sha256()
    h.update(b"onebit-container\0")
    h.update(document.encode("utf-8"))
    h.update(b"\0")
    h.update(json.dumps(table, sort_keys=True, separators=(",", ":")).encode("ascii"))
    h.update(b"\0")
    h.update(data)
    return h.hexdigest()


def write_container(path: str | os.PathLike[str], document: Mapping[str, Any],
                    tensors: Mapping[str, np.ndarray]) -> int:
    """Write ``document`` (a JSON-able dict) and ``tensors`` as a ``.onebit`` file; return its size.

    ``document`` gets the keys ``format`` and ``format_version`` unless it has them already.

    The file is written to a temporary name beside ``path`` and renamed, so a crash never leaves a
    half-written model under the final name.
    """
    if not isinstance(document, Mapping):
        raise TypeError(f"document must be a dict, got {type(document).__name__}")
    document = json.dumps({"format": "onebit", "format_version": FORMAT_VERSION, **document},
                          separators=(",", ":"), allow_nan=False)
    table: dict[str, Any] = {}
    chunks: list[bytes] = []
    offset = 0
    for name, array in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"invalid tensor name {name!r}")
        array = np.asarray(array)
        code = _CODES.get(array.dtype.newbyteorder("<") if array.dtype.byteorder == ">"
                          else array.dtype)
        if code is None:
            raise ValueError(f"tensor {name!r} has dtype {array.dtype}; a .onebit file holds "
                             f"only {', '.join(str(d) for d in DTYPES.values())}")
        raw = np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()
        table[name] = {"dtype": code, "shape": [int(d) for d in array.shape],
                       "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    data = b"".join(chunks)
    header = dict(table)
    header["__metadata__"] = {_MAGIC_KEY: document, _HASH_KEY: _digest(document, table, data)}
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    head += b" " * (-len(head) % 8)
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(head)))
            f.write(head)
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return 8 + len(head) + len(data)


def _read_bytes(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> memoryview:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return memoryview(source).cast("B")
    path = os.fspath(source)
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise FormatError(f"{path} is not a regular file")
            size = info.st_size
            if size > MAX_FILE_BYTES:
                raise FormatError(f"{path}: {size} bytes is larger than the {MAX_FILE_BYTES}-byte "
                                  "limit of a .onebit file")
            return memoryview(f.read(MAX_FILE_BYTES + 1))
    except FileNotFoundError:
        raise FileNotFoundError(f"no such .onebit file: {path}") from None
    except IsADirectoryError:
        raise FormatError(f"{path} is a directory, not a .onebit file") from None


def _check_table(name: str, entry: Any, data_len: int) -> tuple[np.dtype, tuple[int, ...], int, int]:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise FormatError(f"tensor {name!r}: its entry must have exactly the keys dtype, shape and "
                          "data_offsets")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(code, str) or code not in DTYPES:
        raise FormatError(f"tensor {name!r}: unknown dtype {code!r}; known: {', '.join(DTYPES)}")
    if (not isinstance(shape, list) or len(shape) > MAX_RANK
            or not all(type(d) is int and 0 <= d < 2 ** 40 for d in shape)):
        raise FormatError(f"tensor {name!r}: shape must be a list of at most {MAX_RANK} "
                          f"non-negative integers, got {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(type(o) is int and o >= 0 for o in offsets) or offsets[0] > offsets[1]):
        raise FormatError(f"tensor {name!r}: data_offsets must be [begin, end] with "
                          f"0 <= begin <= end, got {offsets!r}")
    dtype = DTYPES[code]
    begin, end = offsets
    count = 1
    for d in shape:
        count *= d
    if count * dtype.itemsize != end - begin:
        raise FormatError(f"tensor {name!r}: shape {shape} of {code} needs "
                          f"{count * dtype.itemsize} bytes but data_offsets span {end - begin}")
    if end > data_len:
        raise FormatError(f"file is truncated: tensor {name!r} ends at byte {end} of the data "
                          f"section, which has only {data_len} bytes")
    return dtype, tuple(shape), begin, end


def read_container(source: str | os.PathLike[str] | bytes | bytearray | memoryview,
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and check a ``.onebit`` container; return ``(document, tensors)``.

    Checks, in this order: the length prefix, the header size, the header JSON, the onebit
    metadata, the document's format tag and version, every tensor entry (dtype, shape, offsets
    against the file), that the tensors tile the data section exactly, and the SHA-256. The
    document's contents are checked by :mod:`onebit.runtime.schema`, not here. Tensors come back
    as aligned read-only arrays.
    """
    buf = _read_bytes(source)
    if len(buf) < 8:
        raise FormatError(f"file is truncated: {len(buf)} bytes, too short for the 8-byte header "
                          "length of a .onebit file")
    (head_len,) = struct.unpack("<Q", buf[:8])
    if head_len > MAX_HEADER_BYTES:
        raise FormatError(f"header length {head_len} exceeds the {MAX_HEADER_BYTES}-byte limit: "
                          "not a .onebit file, or a corrupted one")
    if head_len > len(buf) - 8:
        raise FormatError(f"file is truncated: the header needs {head_len} bytes but only "
                          f"{len(buf) - 8} follow the length prefix")
    try:
        head_text = bytes(buf[8:8 + head_len]).decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("header is not UTF-8: not a .onebit file, or a corrupted one") from None
    header = _strict_json(head_text, "header")
    if not isinstance(header, dict):
        raise FormatError("header must be a JSON object")
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or _MAGIC_KEY not in meta:
        raise FormatError("this is not a .onebit file: the header has no onebit metadata (a plain "
                          "safetensors file? export a model with `onebit export`)")
    document, digest = meta.get(_MAGIC_KEY), meta.get(_HASH_KEY)
    if not isinstance(document, str) or not isinstance(digest, str):
        raise FormatError("onebit metadata must hold the document and its sha256 as strings")
    parsed = _strict_json(document, "onebit document")
    if not isinstance(parsed, dict) or parsed.get("format") != "onebit":
        raise FormatError("onebit document must be a JSON object with \"format\": \"onebit\"")
    version = parsed.get("format_version")
    if type(version) is not int:
        raise FormatError(f"format_version must be an integer, got {version!r}")
    if version != FORMAT_VERSION:
        newer = "a newer onebit: upgrade onebit" if version > FORMAT_VERSION else \
            "an older onebit: re-export the model with this one"
        raise FormatError(f"unsupported .onebit format version {version}; this onebit reads "
                          f"version {FORMAT_VERSION} (the file was written by {newer})")
    if len(header) > MAX_TENSORS:
        raise FormatError(f"{len(header)} tensors exceed the limit of {MAX_TENSORS}")
    data = buf[8 + head_len:]
    entries = []
    for name, entry in header.items():
        entries.append((name, *_check_table(name, entry, len(data))))
    entries.sort(key=lambda e: (e[3], e[4]))
    position = 0
    for name, _, _, begin, end in entries:
        if begin != position:
            raise FormatError(f"tensor {name!r} starts at byte {begin} of the data section; "
                              f"expected {position} (tensors overlap or leave a gap)")
        position = end
    if position != len(data):
        raise FormatError(f"data section has {len(data)} bytes but the tensors cover {position}: "
                          "the file is truncated or has trailing bytes")
    if _digest(document, header, data) != digest:
        raise FormatError("checksum mismatch: the file is corrupted (re-export or re-download it)")
    tensors: dict[str, np.ndarray] = {}
    for name, dtype, shape, begin, end in entries:
        array = np.frombuffer(data, dtype=dtype, count=(end - begin) // dtype.itemsize,
                              offset=begin).reshape(shape).copy()
        array.flags.writeable = False
        tensors[name] = array
    return parsed, tensors
