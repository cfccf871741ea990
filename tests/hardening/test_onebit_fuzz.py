"""The .onebit loader checks every kernel limit at load, and a hypothesis fuzz run over file
mutations: a file either loads into a model that runs, or raises FormatError at load."""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import onebit.runtime as rt
from onebit.runtime.container import read_container, write_container


def _bconv_document(cin: int, kernel: int, hw: int) -> tuple[dict, dict[str, np.ndarray]]:
    words = (cin + 31) // 32
    document = {
        "input": {"name": "input", "shape": [cin, hw, hw]}, "output": "y", "metadata": {},
        "nodes": [
            {"op": "bconv2d", "name": "conv", "inputs": ["input"], "output": "v1",
             "attrs": {"in_channels": cin, "out_channels": 1, "kernel": [kernel, kernel],
                       "stride": [1, 1], "padding": [0, 0], "pad_value": 0.0, "xnor_k": False,
                       "output": "float"},
             "tensors": {"weight_bits": "w", "multiplier": "m", "bias": "b"}},
            {"op": "flatten", "name": "flat", "inputs": ["v1"], "output": "y", "attrs": {},
             "tensors": {}},
        ]}
    tensors = {"w": np.zeros((1, kernel, kernel, words), np.uint32),
               "m": np.ones(1, np.float32), "b": np.zeros(1, np.float32)}
    return document, tensors


def test_binary_conv_tap_limit_is_a_format_error_at_load(tmp_path):
    # 4 x 4 taps x 2^20 input channels = 2^24: the binary conv kernel takes fewer
    document, tensors = _bconv_document(cin=1 << 20, kernel=4, hw=4)
    path = tmp_path / "big.onebit"
    write_container(path, document, tensors)
    with pytest.raises(rt.FormatError, match="2\\^24"):
        rt.load_graph(path)
    # one channel fewer loads (and runs: the limit is the kernel's, not an arbitrary one)
    document, tensors = _bconv_document(cin=(1 << 20) - 32, kernel=4, hw=4)
    write_container(path, document, tensors)
    model = rt.load(path)
    assert model(np.ones((1, (1 << 20) - 32, 4, 4), np.float32)).shape == (1, 1)


# ---------------------------------------------------------------------------------- the fuzz

@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[bytes, dict, dict[str, np.ndarray]]:
    """A small model with a float stem, a binary conv (bits hand-off), pooling and dense layers."""
    torch = pytest.importorskip("torch")  # the model is built with torch; the fuzzing is not
    from torch import nn

    from onebit.deploy import convert, save
    from onebit.nn import QuantConv2d, QuantLinear

    torch.manual_seed(0)
    sign = {"name": "sign"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Hardtanh(),
            QuantConv2d(8, 40, 3, padding=1, bias=False, input_quantizer=sign,
                        weight_quantizer=sign),
            nn.BatchNorm2d(40), nn.Hardtanh(),
            QuantConv2d(40, 16, 3, stride=2, padding=1, bias=False, input_quantizer=sign,
                        weight_quantizer=sign),
            nn.BatchNorm2d(16), nn.MaxPool2d(2), nn.Flatten(),
            QuantLinear(16 * 2 * 2, 12, input_quantizer=sign, weight_quantizer=sign),
            nn.BatchNorm1d(12), nn.Linear(12, 5)).eval()
    graph = convert(model, example_input_shape=(1, 8, 8))
    path = tmp_path_factory.mktemp("fuzz") / "small.onebit"
    save(graph, path)
    raw = path.read_bytes()
    document, tensors = read_container(raw)
    return raw, document, tensors


def _loads_and_runs_or_format_error(source: bytes) -> None:
    try:
        model = rt.load(source, num_threads=1)
    except rt.FormatError:
        return
    shape = model.input_shape
    if int(np.prod(shape)) > 1 << 16:
        return  # a valid but large input: nothing new to learn from running it
    out = model(np.zeros((2, *shape), np.float32))
    assert out.dtype == np.float32 and out.shape[0] == 2


_VALUES = st.one_of(
    st.sampled_from([None, True, False, "", "bits", "float", [], {}, [1], [0, 0], [1, 1],
                     [64, 64], [2 ** 31, 1], [-1, 1], 1.5, -1.0, 1e308]),
    st.integers(min_value=-2, max_value=70),
    st.sampled_from([2 ** 16, 2 ** 20, 2 ** 24, 2 ** 31, 2 ** 40, 2 ** 63]),
)


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_resigned_document_mutations(small, data):
    """Attribute, node and metadata edits re-signed with a valid digest (what an attacker can
    write): load raises FormatError or the model runs."""
    _, document, tensors = small
    doc = json.loads(json.dumps(document))
    for _ in range(data.draw(st.integers(1, 3))):
        node = doc["nodes"][data.draw(st.integers(0, len(doc["nodes"]) - 1))]
        where = data.draw(st.sampled_from(["attr", "field", "input_shape"]))
        value = data.draw(_VALUES)
        if where == "attr" and node["attrs"]:
            node["attrs"][data.draw(st.sampled_from(sorted(node["attrs"])))] = value
        elif where == "field":
            node[data.draw(st.sampled_from(["op", "inputs", "output", "tensors"]))] = value
        else:
            doc["input"]["shape"] = data.draw(st.lists(st.integers(0, 2 ** 21), min_size=0,
                                                       max_size=4))
    try:
        raw = _serialize(doc, tensors)
    except (TypeError, ValueError, rt.FormatError):
        return  # the writer itself refuses it: no file to load
    _loads_and_runs_or_format_error(raw)


def _serialize(doc: dict, tensors: dict[str, np.ndarray]) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.onebit"
        write_container(path, doc, tensors)
        return path.read_bytes()


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_raw_byte_mutations(small, data):
    """Flipped bits, truncation, inserted bytes, a forged length prefix: FormatError at load."""
    raw = bytearray(small[0])
    (head_len,) = struct.unpack("<Q", bytes(raw[:8]))
    kind = data.draw(st.sampled_from(["flip", "flip_header", "truncate", "insert", "length"]))
    if kind in ("flip", "flip_header"):
        hi = len(raw) - 1 if kind == "flip" else 8 + head_len - 1
        for _ in range(data.draw(st.integers(1, 3))):
            raw[data.draw(st.integers(0 if kind == "flip" else 8, hi))] ^= 1 << data.draw(
                st.integers(0, 7))
    elif kind == "truncate":
        del raw[data.draw(st.integers(0, len(raw) - 1)):]
    elif kind == "insert":
        at = data.draw(st.integers(0, len(raw)))
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
    else:
        raw[:8] = struct.pack("<Q", data.draw(st.integers(0, 2 ** 64 - 1)))
    if bytes(raw) == small[0]:
        return
    with pytest.raises(rt.FormatError):
        rt.load_graph(bytes(raw))
