"""The .onebit container: round trip, safetensors compatibility, one clear FormatError per kind of
damage, and a bounded fuzz run where the loader only ever returns a graph or raises FormatError."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest

import onebit.runtime as rt
from onebit.deploy import convert, load_graph, save
from onebit.runtime.container import read_container, write_container

from _deploy_helpers import bnn_sequential


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> tuple[Path, bytes, rt.Graph]:
    graph = convert(bnn_sequential(), example_input_shape=(3, 8, 8),
                    class_names=list("abcde"), normalization={"mean": [0.5] * 3, "std": [0.25] * 3})
    path = tmp_path_factory.mktemp("fmt") / "model.onebit"
    save(graph, path)
    return path, path.read_bytes(), graph


def _split(raw: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _document_and_tensors(raw: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    return read_container(raw)


def _rewrite(tmp_path: Path, document: dict, tensors: dict[str, np.ndarray]) -> Path:
    """A file with a valid checksum around an edited document / tensors (what an attacker can do)."""
    path = tmp_path / "edited.onebit"
    write_container(path, document, tensors)
    return path


def _expect(source, pattern: str) -> rt.FormatError:
    with pytest.raises(rt.FormatError, match=pattern) as info:
        rt.load_graph(source)
    return info.value


def test_round_trip_keeps_graph_tensors_and_metadata(good):
    path, _, graph = good
    loaded = load_graph(path)
    assert [n.to_json() for n in loaded.nodes] == [n.to_json() for n in graph.nodes]
    assert loaded.tensors.keys() == graph.tensors.keys()
    for key, value in graph.tensors.items():
        assert loaded.tensors[key].dtype == value.dtype
        np.testing.assert_array_equal(loaded.tensors[key], value)
        assert not loaded.tensors[key].flags.writeable
    assert loaded.input_shape == (3, 8, 8)
    assert loaded.class_names == list("abcde")
    assert loaded.normalization == {"mean": [0.5] * 3, "std": [0.25] * 3}
    assert loaded.metadata["onebit_version"]
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(rt.Model(loaded)(x), rt.Model(graph)(x))


def test_file_is_plain_safetensors(good):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open

    path, _, graph = good
    tensors = safetensors_numpy.load_file(str(path))
    assert tensors.keys() == graph.tensors.keys()
    for key, value in tensors.items():
        np.testing.assert_array_equal(value, graph.tensors[key])
    with safe_open(str(path), framework="numpy") as f:
        document = json.loads(f.metadata()["onebit"])
    assert document["format"] == "onebit" and document["format_version"] == rt.FORMAT_VERSION


def test_format_error_is_a_value_error():
    assert issubclass(rt.FormatError, ValueError)


@pytest.mark.parametrize("cut, pattern", [
    (0, "too short for the 8-byte header length"),
    (5, "too short for the 8-byte header length"),
    (20, "the header needs"),
    (-3, "tensors cover .*truncated|truncated: tensor"),
])
def test_truncated_file(good, cut, pattern):
    raw = good[1]
    _expect(raw[:cut] if cut >= 0 else raw[:cut], pattern)


def test_trailing_bytes(good):
    _expect(good[1] + b"\0\0\0\0", "trailing bytes")


def test_flipped_byte_in_data_is_reported_as_corruption(good):
    raw = bytearray(good[1])
    raw[-10] ^= 0x40
    _expect(bytes(raw), "checksum mismatch")


def test_flipped_byte_in_document_is_reported_as_corruption(good):
    raw = good[1]
    i = raw.index(b"maxpool2d")
    _expect(raw[:i] + b"maxpool3d" + raw[i + 9:], "checksum mismatch")


@pytest.mark.parametrize("version, pattern", [(2, "newer onebit: upgrade"), (0, "older onebit")])
def test_wrong_version(good, tmp_path, version, pattern):
    document, tensors = _document_and_tensors(good[1])
    document["format_version"] = version
    err = _expect(_rewrite(tmp_path, document, tensors), pattern)
    assert f"version {version}" in str(err)


def test_version_must_be_an_integer(good, tmp_path):
    document, tensors = _document_and_tensors(good[1])
    document["format_version"] = "1"
    _expect(_rewrite(tmp_path, document, tensors), "format_version must be an integer")


@pytest.mark.parametrize("length, pattern", [(2 ** 40, "exceeds the .*-byte limit"),
                                             (10 ** 6, "the header needs")])
def test_oversized_header_length(good, length, pattern):
    _expect(struct.pack("<Q", length) + good[1][8:], pattern)


def test_header_shape_disagrees_with_offsets(good):
    header, data = _split(good[1])
    name = next(k for k in header if k != "__metadata__")
    header[name]["shape"] = [d + 1 for d in header[name]["shape"]]
    head = json.dumps(header).encode()
    _expect(struct.pack("<Q", len(head)) + head + data, "but data_offsets span")


def test_overlapping_tensors(good):
    header, data = _split(good[1])
    names = sorted((k for k in header if k != "__metadata__"),
                   key=lambda k: header[k]["data_offsets"][0])
    a, b = header[names[0]], header[names[1]]
    if a["dtype"] == b["dtype"] and a["shape"] == b["shape"]:
        b["data_offsets"] = list(a["data_offsets"])
    else:
        a["data_offsets"] = [o + 4 for o in a["data_offsets"]]
    head = json.dumps(header).encode()
    _expect(struct.pack("<Q", len(head)) + head + data, "overlap or leave a gap|needs .* bytes")


def test_graph_tensor_shape_mismatch(good, tmp_path):
    document, tensors = _document_and_tensors(good[1])
    key = next(k for k in tensors if k.endswith(".weight_bits"))
    tensors[key] = np.zeros(tensors[key].shape[:-1] + (tensors[key].shape[-1] + 1,), np.uint32)
    _expect(_rewrite(tmp_path, document, tensors), r"weight_bits.* has shape \[.*\], expected")


def test_graph_tensor_wrong_dtype(good, tmp_path):
    document, tensors = _document_and_tensors(good[1])
    key = next(k for k in tensors if k.endswith(".multiplier"))
    tensors[key] = tensors[key].astype(np.float16)
    _expect(_rewrite(tmp_path, document, tensors), "has dtype float16, expected float32")


def test_unknown_op(good, tmp_path):
    document, tensors = _document_and_tensors(good[1])
    document["nodes"][1]["op"] = "gelu"
    err = _expect(_rewrite(tmp_path, document, tensors), "unknown op 'gelu'")
    assert "known ops:" in str(err) and "bconv2d" in str(err)


@pytest.mark.parametrize("edit, pattern", [
    (lambda n: n["attrs"].__setitem__("stride", "2"), "'stride' must be two integers"),
    (lambda n: n["attrs"].__setitem__("stride", [0, 1]), "'stride' must be two integers in"),
    (lambda n: n["attrs"].__setitem__("pad_value", 0.5), "'pad_value' must be one of"),
    (lambda n: n["attrs"].__setitem__("secret", 1), "unknown attribute"),
    (lambda n: n["attrs"].pop("kernel"), "missing attribute 'kernel'"),
    (lambda n: n["attrs"].__setitem__("in_channels", 7), "in_channels=7 but the input has"),
    (lambda n: n.__setitem__("inputs", ["nowhere"]), "'nowhere' is not defined by an earlier"),
    (lambda n: n["tensors"].__setitem__("weight_bits", "ghost"), "'ghost', which the file does"),
    (lambda n: n.__setitem__("output", "input"), "already defined"),
    (lambda n: n["attrs"].__setitem__("kernel", [64, 64]), "larger than the padded input"),
])
def test_bad_node_fields(good, tmp_path, edit, pattern):
    document, tensors = _document_and_tensors(good[1])
    node = next(n for n in document["nodes"] if n["op"] == "bconv2d")
    edit(node)
    _expect(_rewrite(tmp_path, document, tensors), pattern)


def test_nonzero_tail_bits(good, tmp_path):
    document, tensors = _document_and_tensors(good[1])
    node = next(n for n in document["nodes"] if n["op"] == "bconv2d")  # 8 input channels
    key = node["tensors"]["weight_bits"]
    bad = tensors[key].copy()
    bad[0, 0, 0, -1] |= np.uint32(1 << 31)
    tensors[key] = bad
    _expect(_rewrite(tmp_path, document, tensors), "nonzero tail bits")


def test_unused_tensor(good, tmp_path):
    document, tensors = _document_and_tensors(good[1])
    tensors["stowaway"] = np.zeros(3, np.float32)
    _expect(_rewrite(tmp_path, document, tensors), "tensors no node uses")


def test_bad_metadata(good, tmp_path):
    document, tensors = _document_and_tensors(good[1])
    document["metadata"]["class_names"] = ["only one"]
    _expect(_rewrite(tmp_path, document, tensors), "1 class_names but the model outputs")
    document["metadata"]["class_names"] = None
    document["metadata"]["normalization"] = {"mean": [0, 0, 0], "std": [1, 0, 1]}
    _expect(_rewrite(tmp_path, document, tensors), "positive std")


@pytest.mark.parametrize("header, pattern", [
    (b"{not json", "header is not valid JSON"),
    (b'{"a": NaN}', "non-JSON constant NaN"),
    (b'{"a": 1, "a": 2}', "repeats the key 'a'"),
    (b"[1, 2]", "header must be a JSON object"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[" * 100000 + b"]" * 100000, "nested too deeply|not valid JSON"),
])
def test_malformed_header(header, pattern):
    _expect(struct.pack("<Q", len(header)) + header, pattern)


def test_plain_safetensors_file_is_refused(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "plain.safetensors"
    safetensors_numpy.save_file({"w": np.zeros(4, np.float32)}, str(path))
    _expect(path, "not a .onebit file")


def test_special_files_are_refused(tmp_path):
    _expect(tmp_path, "is a directory")
    _expect("/dev/zero", "not a regular file")  # would otherwise be read forever


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such .onebit file"):
        rt.load(tmp_path / "absent.onebit")


def _byte_mutation(raw: bytes, rng: np.random.Generator) -> bytes:
    (head_len,) = struct.unpack("<Q", raw[:8])
    kind = rng.integers(6)
    b = bytearray(raw)
    if kind == 0:  # flip bits anywhere
        for i in rng.integers(0, len(b), size=rng.integers(1, 4)):
            b[i] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # flip bits inside the header, where the structure lives
        for i in rng.integers(8, 8 + head_len, size=rng.integers(1, 4)):
            b[i] ^= 1 << int(rng.integers(8))
    elif kind == 2:  # truncate
        del b[int(rng.integers(0, len(b))):]
    elif kind == 3:  # insert random bytes
        i = int(rng.integers(0, len(b)))
        b[i:i] = rng.integers(0, 256, size=rng.integers(1, 16)).astype(np.uint8).tobytes()
    elif kind == 4:  # random length prefix
        b[:8] = struct.pack("<Q", int(rng.integers(0, 2 ** 63)) >> int(rng.integers(0, 63)))
    else:  # replace a header digit (shapes, offsets, attributes)
        digits = [i for i in range(8, 8 + head_len) if chr(b[i]).isdigit()]
        b[digits[int(rng.integers(len(digits)))]] = ord(str(int(rng.integers(10))))
    return bytes(b)


_GARBAGE = [None, True, -1, 0, 3, 2 ** 40, 1.5, float("1e308"), "", "x", "input", [], [1],
            [0, 0], [2 ** 31, 1], [-1, 1], {}, {"a": 1}]


def _document_mutation(document: dict, rng: np.random.Generator) -> dict:
    """Re-signed semantic damage: a random field of a random node (or of the top level) replaced
    by a value of a random type, or a node dropped / duplicated / moved."""
    doc = json.loads(json.dumps(document))
    nodes = doc["nodes"]
    kind = rng.integers(5)
    node = nodes[int(rng.integers(len(nodes)))]
    value = _GARBAGE[int(rng.integers(len(_GARBAGE)))]
    if kind == 0 and node["attrs"]:
        node["attrs"][sorted(node["attrs"])[int(rng.integers(len(node["attrs"])))]] = value
    elif kind == 1:
        node[["op", "inputs", "output", "tensors", "name", "attrs"][int(rng.integers(6))]] = value
    elif kind == 2:
        i, j = rng.integers(len(nodes), size=2)
        nodes.insert(int(j), nodes.pop(int(i)))
    elif kind == 3:
        doc[["input", "output", "metadata", "nodes"][int(rng.integers(4))]] = value
    else:
        nodes.insert(int(rng.integers(len(nodes))), json.loads(json.dumps(node)))
    return doc


def test_fuzz_loader_only_raises_format_error(good, tmp_path):
    """300 mutations (raw bytes and re-signed documents): loading either gives a graph that runs,
    or raises FormatError; never another exception, never more than a few seconds in all."""
    raw = good[1]
    document, tensors = _document_and_tensors(raw)
    rng = np.random.default_rng(1234)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    outcomes = {"ok": 0, "error": 0}
    start = time.perf_counter()
    for i in range(300):
        if i % 2:
            source: bytes | Path = _byte_mutation(raw, rng)
        else:
            source = tmp_path / "fuzz.onebit"
            try:
                write_container(source, _document_mutation(document, rng), tensors)
            except (TypeError, ValueError):  # not even JSON-serialisable: nothing to load
                continue
        try:
            graph = rt.load_graph(source)
        except rt.FormatError:
            outcomes["error"] += 1
            continue
        outcomes["ok"] += 1
        out = rt.Model(graph)(x.reshape((2,) + graph.input_shape) if np.prod(
            graph.input_shape) == 3 * 8 * 8 else np.zeros((2,) + graph.input_shape, np.float32))
        assert out.dtype == np.float32 and out.shape[0] == 2
    assert outcomes["error"] > 200
    assert time.perf_counter() - start < 30
