"""The ops of an inference graph, and the validation of a graph before anything runs it.

Every op below lists its inputs, attributes (all required, nothing else allowed) and tensors.
Shapes are per sample; ``C, H, W`` the input, ``O`` output channels, ``Cw = ceil(C / 32)``.

==================  =====================================================================  =========
op                  semantics (``acc`` = exact +/-1 dot product, padded taps per pad_value)  inputs
==================  =====================================================================  =========
conv2d              float conv; weight F32 [O, C/g, kh, kw] or weight_bits U32 [O, kh, kw,  float
                    ceil(C/g/32)] times weight_scale F32 [O]; optional bias; input padded
                    with pad_value
bconv2d             sign(x) (bits if already packed) conv weight_bits; output "float":       float|bits
                    ``acc * multiplier + bias`` (times the XNOR map K when xnor_k) or "bits":
                    bit 1 (value -1) iff ``acc < thresholds`` (``acc > thresholds`` where flip)
linear              float ``x @ W.T + bias``; weight or weight_bits + weight_scale            float
blinear             like bconv2d for vectors (no xnor_k)                                     float|bits
adder_conv2d        ``-sum |x - F|`` over the window (zero padding), then optional           float
                    ``* multiplier + bias``
adder_int8          ``-sum |q(x) - weight_q| * multiplier + bias``, ``q(x) = clip(rint(x /   float
                    scale), -127, 127)`` int8, weight_q int8 [O, kh, kw, C]
channel_affine      ``x * scale[c] + shift[c]`` (a BatchNorm in eval mode)                   float
relu, hardtanh      elementwise; hardtanh has min_val < max_val                              float
prelu               ``max(x, 0) + weight[c] * min(x, 0)``                                    float
sign                +1 where x >= 0 else -1; output "float" or "bits"                        float
kbit                ``2 * (floor((2^k-1) * (clip(x, -1, 1) + 1) / 2 + 1/2) / (2^k-1) - 1/2)``  float
maxpool2d           kernel, stride, padding, dilation, ceil_mode (torch semantics)           float
avgpool2d           kernel, stride, padding, ceil_mode, count_include_pad, divisor_override  float
adaptive_avgpool2d  output_size [oh, ow] (torch's window rule)                               float
adaptive_maxpool2d  output_size [oh, ow]                                                     float
flatten             (C, H, W) -> (C*H*W,) in C-major order, as torch.flatten(x, 1)           float
add                 elementwise sum of two values of one shape                               float x2
==================  =====================================================================  =========
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from onebit.runtime.errors import FormatError
from onebit.runtime.graph import Graph, Node, ValueInfo

__all__ = ["OPS", "graph_from_document", "graph_to_document", "validate_graph"]

MAX_NODES = 10_000
MAX_SPATIAL = 32_768
MAX_CHANNELS = 1 << 20
MAX_VALUE_ELEMENTS = 1 << 28
MAX_WINDOW = 64  # kernel, stride, padding, dilation
_NAME_LIMIT = 256
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _words(n: int) -> int:
    return (n + 31) // 32


class _Check:
    """Checks one node's attributes and tensors; every failure names the node."""

    def __init__(self, graph: Graph, index: int, node: Node) -> None:
        self.graph, self.node = graph, node
        self.where = f"node {index} ({node.op}{' ' + node.name if node.name else ''})"
        self.used_attrs: set[str] = set()
        self.used_tensors: set[str] = set()

    def fail(self, message: str) -> FormatError:
        return FormatError(f"{self.where}: {message}")

    # -- attributes -------------------------------------------------------------------------
    def _attr(self, key: str) -> Any:
        self.used_attrs.add(key)
        if key not in self.node.attrs:
            raise self.fail(f"missing attribute {key!r}")
        return self.node.attrs[key]

    def integer(self, key: str, lo: int, hi: int) -> int:
        v = self._attr(key)
        if type(v) is not int or not lo <= v <= hi:
            raise self.fail(f"attribute {key!r} must be an integer in [{lo}, {hi}], got {v!r}")
        return v

    def pair(self, key: str, lo: int, hi: int) -> tuple[int, int]:
        v = self._attr(key)
        if (not isinstance(v, list) or len(v) != 2
                or not all(type(x) is int and lo <= x <= hi for x in v)):
            raise self.fail(f"attribute {key!r} must be two integers in [{lo}, {hi}], got {v!r}")
        return v[0], v[1]

    def number(self, key: str) -> float:
        v = self._attr(key)
        if type(v) not in (int, float) or not abs(v) <= _FLOAT32_MAX:
            raise self.fail(f"attribute {key!r} must be a finite float32 number, got {v!r:.40}")
        return float(v)

    def flag(self, key: str) -> bool:
        v = self._attr(key)
        if type(v) is not bool:
            raise self.fail(f"attribute {key!r} must be true or false, got {v!r}")
        return v

    def choice(self, key: str, choices: tuple[Any, ...]) -> Any:
        v = self._attr(key)
        if type(v) not in (str, int, float) or v not in choices:
            raise self.fail(f"attribute {key!r} must be one of {list(choices)}, got {v!r}")
        return v

    # -- tensors ----------------------------------------------------------------------------
    def tensor(self, role: str, dtype: Any, shape: tuple[int, ...],
               optional: bool = False) -> np.ndarray | None:
        self.used_tensors.add(role)
        key = self.node.tensors.get(role)
        if key is None:
            if optional:
                return None
            raise self.fail(f"missing tensor {role!r}")
        array = self.graph.tensors.get(key) if isinstance(key, str) else None
        if array is None:
            raise self.fail(f"tensor {role!r} refers to {key!r}, which the file does not hold")
        if array.dtype != np.dtype(dtype):
            raise self.fail(f"tensor {role!r} ({key}) has dtype {array.dtype}, expected "
                            f"{np.dtype(dtype)}")
        if tuple(array.shape) != tuple(shape):
            raise self.fail(f"tensor {role!r} ({key}) has shape {list(array.shape)}, expected "
                            f"{list(shape)}")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise self.fail(f"tensor {role!r} ({key}) holds NaN or infinite values")
        return array

    def bits(self, role: str, shape: tuple[int, ...], nbits: int) -> np.ndarray:
        """A packed-bit tensor whose last axis packs ``nbits`` bits; tail bits must be 0."""
        array = self.tensor(role, np.uint32, shape)
        assert array is not None
        tail = nbits % 32
        if tail and array.size and np.any(array[..., -1] >> np.uint32(tail)):
            raise self.fail(f"tensor {role!r} has nonzero tail bits beyond bit {nbits} "
                            "(packed operands must pad with 0)")
        return array

    def weight(self, shape: tuple[int, ...], nbits: int) -> None:
        """Either a float weight of ``shape`` or weight_bits + weight_scale."""
        if "weight" in self.node.tensors:
            self.tensor("weight", np.float32, shape)
        else:
            self.bits("weight_bits", (shape[0], *shape[2:], _words(nbits)), nbits)
            self.tensor("weight_scale", np.float32, (shape[0],))

    def output_transform(self, out_channels: int) -> str:
        out = self.choice("output", ("float", "bits"))
        if out == "float":
            self.tensor("multiplier", np.float32, (out_channels,))
            self.tensor("bias", np.float32, (out_channels,))
        else:
            self.tensor("thresholds", np.int32, (out_channels,))
            flip = self.tensor("flip", np.uint8, (out_channels,))
            if flip is not None and np.any(flip > 1):
                raise self.fail("tensor 'flip' must hold only 0 and 1")
        return out

    def done(self) -> None:
        extra = set(self.node.attrs) - self.used_attrs
        if extra:
            raise self.fail(f"unknown attribute(s) {sorted(extra)}")
        extra = set(self.node.tensors) - self.used_tensors
        if extra:
            raise self.fail(f"unknown tensor role(s) {sorted(extra)}")


def _value(c: _Check, info: ValueInfo, kinds: tuple[str, ...], rank: int) -> tuple[int, ...]:
    if info.kind not in kinds:
        raise c.fail(f"needs a {' or '.join(kinds)} input, got {info.kind}")
    if len(info.shape) != rank:
        raise c.fail(f"needs a {'(C, H, W)' if rank == 3 else '(F,)'} input, got shape "
                     f"{info.shape}")
    return info.shape


def _window_out(c: _Check, size: int, k: int, s: int, p: int, d: int, ceil: bool = False) -> int:
    span = d * (k - 1) + 1
    if size + 2 * p < span:
        raise c.fail(f"window {k} (dilation {d}) is larger than the padded input {size + 2 * p}")
    num = size + 2 * p - span
    out = (-(-num // s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def _conv_like(c: _Check, x: ValueInfo, kinds: tuple[str, ...], *, groups_ok: bool,
               dilation_ok: bool) -> tuple[int, int, int, int, int, int]:
    cin, h, w = _value(c, x, kinds, 3)
    in_ch = c.integer("in_channels", 1, MAX_CHANNELS)
    out_ch = c.integer("out_channels", 1, MAX_CHANNELS)
    if in_ch != cin:
        raise c.fail(f"in_channels={in_ch} but the input has {cin} channels")
    kh, kw = c.pair("kernel", 1, MAX_WINDOW)
    sh, sw = c.pair("stride", 1, MAX_WINDOW)
    ph, pw = c.pair("padding", 0, MAX_WINDOW)
    dh, dw = c.pair("dilation", 1, MAX_WINDOW) if dilation_ok else (1, 1)
    groups = c.integer("groups", 1, MAX_CHANNELS) if groups_ok else 1
    if in_ch % groups or out_ch % groups:
        raise c.fail(f"groups={groups} must divide in_channels={in_ch} and "
                     f"out_channels={out_ch}")
    ho = _window_out(c, h, kh, sh, ph, dh)
    wo = _window_out(c, w, kw, sw, pw, dw)
    return in_ch // groups, out_ch, kh, kw, ho, wo


def _conv2d(c: _Check, xs: list[ValueInfo]) -> ValueInfo:
    cin_g, out_ch, kh, kw, ho, wo = _conv_like(c, xs[0], ("float",), groups_ok=True,
                                               dilation_ok=True)
    c.number("pad_value")
    c.weight((out_ch, cin_g, kh, kw), cin_g)
    c.tensor("bias", np.float32, (out_ch,), optional=True)
    return ValueInfo("float", (out_ch, ho, wo))


def _bconv2d(c: _Check, xs: list[ValueInfo]) -> ValueInfo:
    cin, out_ch, kh, kw, ho, wo = _conv_like(c, xs[0], ("float", "bits"), groups_ok=False,
                                             dilation_ok=False)
    if kh * kw * cin >= 1 << 24:  # the binary conv kernel's limit (exact float32 accumulators)
        raise c.fail(f"kernel {kh}x{kw} x {cin} input channels = {kh * kw * cin} taps; the binary "
                     "conv kernel takes fewer than 2^24")
    c.choice("pad_value", (-1, 0, 1, -1.0, 0.0, 1.0))
    c.bits("weight_bits", (out_ch, kh, kw, _words(cin)), cin)
    xnor_k = c.flag("xnor_k")
    out = c.output_transform(out_ch)
    if xnor_k and (xs[0].kind != "float" or out != "float"):
        raise c.fail("xnor_k needs a float input (for |x|) and a float output")
    return ValueInfo(out, (out_ch, ho, wo))


def _linear(c: _Check, xs: list[ValueInfo]) -> ValueInfo:
    (f,) = _value(c, xs[0], ("float",), 1)
    fin = c.integer("in_features", 1, MAX_VALUE_ELEMENTS)
    fout = c.integer("out_features", 1, MAX_CHANNELS)
    if fin != f:
        raise c.fail(f"in_features={fin} but the input has {f} features")
    c.weight((fout, fin), fin)
    c.tensor("bias", np.float32, (fout,), optional=True)
    return ValueInfo("float", (fout,))


def _blinear(c: _Check, xs: list[ValueInfo]) -> ValueInfo:
    (f,) = _value(c, xs[0], ("float", "bits"), 1)
    fin = c.integer("in_features", 1, MAX_VALUE_ELEMENTS)
    fout = c.integer("out_features", 1, MAX_CHANNELS)
    if fin != f:
        raise c.fail(f"in_features={fin} but the input has {f} features")
    c.bits("weight_bits", (fout, _words(fin)), fin)
    return ValueInfo(c.output_transform(fout), (fout,))


def _adder_conv2d(c: _Check, xs: list[ValueInfo]) -> ValueInfo:
    cin, out_ch, kh, kw, ho, wo = _conv_like(c, xs[0], ("float",), groups_ok=False,
                                             dilation_ok=False)
    c.tensor("weight", np.float32, (out_ch, cin, kh, kw))
    c.tensor("multiplier", np.float32, (out_ch,), optional=True)
    c.tensor("bias", np.float32, (out_ch,), optional=True)
    return ValueInfo("float", (out_ch, ho, wo))


def _adder_int8(c: _Check, xs: list[ValueInfo]) -> ValueInfo:
    cin, out_ch, kh, kw, ho, wo = _conv_like(c, xs[0], ("float",), groups_ok=False,
                                             dilation_ok=False)
    if not c.number("scale") > 0:
        raise c.fail("attribute 'scale' must be > 0")
    c.tensor("weight_q", np.int8, (out_ch, kh, kw, cin))
    c.tensor("multiplier", np.float32, (out_ch,))
    c.tensor("bias", np.float32, (out_ch,))
    return ValueInfo("float", (out_ch, ho, wo))


def _channels(c: _Check, x: ValueInfo) -> int:
    if x.kind != "float" or len(x.shape) not in (1, 3):
        raise c.fail(f"needs a float (C, H, W) or (F,) input, got {x.kind} {x.shape}")
    return x.shape[0]


def _channel_affine(c: _Check, xs: list[ValueInfo]) -> ValueInfo:
    ch = _channels(c, xs[0])
    c.tensor("scale", np.float32, (ch,))
    c.tensor("shift", np.float32, (ch,))
    return xs[0]


def _elementwise(c: _Check, xs: list[ValueInfo]) -> ValueInfo:
    _channels(c, xs[0])
    return xs[0]


def _hardtanh(c: _Check, xs: list[ValueInfo]) -> ValueInfo:
    _channels(c, xs[0])
    if not c.number("min_val") < c.number("max_val"):
        raise c.fail("hardtanh needs min_val < max_val")
    return xs[0]


def _prelu(c: _Check, xs: list[ValueInfo]) -> ValueInfo:
    ch = _channels(c, xs[0])
    stored = c.graph.tensors.get(c.node.tensors.get("weight"))  # one shared slope or one per channel
    c.tensor("weight", np.float32, (1,) if stored is not None and stored.shape == (1,) else (ch,))
    return xs[0]


def _sign(c: _Check, xs: list[ValueInfo]) -> ValueInfo:
    _channels(c, xs[0])
    return ValueInfo(c.choice("output", ("float", "bits")), xs[0].shape)


def _kbit(c: _Check, xs: list[ValueInfo]) -> ValueInfo:
    _channels(c, xs[0])
    c.integer("bits", 1, 24)
    return xs[0]


def _pool(c: _Check, xs: list[ValueInfo], avg: bool) -> ValueInfo:
    ch, h, w = _value(c, xs[0], ("float",), 3)
    kh, kw = c.pair("kernel", 1, MAX_WINDOW)
    sh, sw = c.pair("stride", 1, MAX_WINDOW)
    ph, pw = c.pair("padding", 0, MAX_WINDOW)
    if 2 * ph > kh or 2 * pw > kw:
        raise c.fail(f"padding {[ph, pw]} must be at most half the kernel {[kh, kw]}")
    ceil = c.flag("ceil_mode")
    if avg:
        c.flag("count_include_pad")
        div = c._attr("divisor_override")
        if div is not None and (type(div) is not int or not 1 <= div <= MAX_VALUE_ELEMENTS):
            raise c.fail(f"attribute 'divisor_override' must be null or a positive integer, "
                         f"got {div!r}")
        dh = dw = 1
    else:
        dh, dw = c.pair("dilation", 1, MAX_WINDOW)
    return ValueInfo("float", (ch, _window_out(c, h, kh, sh, ph, dh, ceil),
                               _window_out(c, w, kw, sw, pw, dw, ceil)))


def _adaptive(c: _Check, xs: list[ValueInfo]) -> ValueInfo:
    ch, h, w = _value(c, xs[0], ("float",), 3)
    oh, ow = c.pair("output_size", 1, MAX_SPATIAL)
    return ValueInfo("float", (ch, oh, ow))


def _flatten(c: _Check, xs: list[ValueInfo]) -> ValueInfo:
    ch, h, w = _value(c, xs[0], ("float",), 3)
    return ValueInfo("float", (ch * h * w,))


def _add(c: _Check, xs: list[ValueInfo]) -> ValueInfo:
    a, b = xs
    if a.kind != "float" or b.kind != "float" or a.shape != b.shape:
        raise c.fail(f"adds two float values of one shape, got {a.kind} {a.shape} and "
                     f"{b.kind} {b.shape}")
    return a


#: op name -> (number of inputs, checker returning the output's ValueInfo)
OPS: dict[str, tuple[int, Callable[[_Check, list[ValueInfo]], ValueInfo]]] = {
    "conv2d": (1, _conv2d),
    "bconv2d": (1, _bconv2d),
    "linear": (1, _linear),
    "blinear": (1, _blinear),
    "adder_conv2d": (1, _adder_conv2d),
    "adder_int8": (1, _adder_int8),
    "channel_affine": (1, _channel_affine),
    "relu": (1, _elementwise),
    "hardtanh": (1, _hardtanh),
    "prelu": (1, _prelu),
    "sign": (1, _sign),
    "kbit": (1, _kbit),
    "maxpool2d": (1, lambda c, xs: _pool(c, xs, avg=False)),
    "avgpool2d": (1, lambda c, xs: _pool(c, xs, avg=True)),
    "adaptive_avgpool2d": (1, _adaptive),
    "adaptive_maxpool2d": (1, _adaptive),
    "flatten": (1, _flatten),
    "add": (2, _add),
}


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= _NAME_LIMIT:
        raise FormatError(f"{what} must be a non-empty string of at most {_NAME_LIMIT} "
                          f"characters, got {value!r:.80}")
    return value


def _check_input_shape(shape: Any) -> tuple[int, ...]:
    if (not isinstance(shape, (list, tuple)) or len(shape) not in (1, 3)
            or not all(type(d) is int and 1 <= d <= MAX_SPATIAL * 32 for d in shape)):
        raise FormatError(f"input shape must be [C, H, W] or [F] of positive integers, got "
                          f"{shape!r:.80}")
    if math.prod(shape) > MAX_VALUE_ELEMENTS:
        raise FormatError(f"input shape {list(shape)} exceeds {MAX_VALUE_ELEMENTS} elements")
    return tuple(shape)


def _check_metadata(meta: Any, out: ValueInfo) -> None:
    if not isinstance(meta, dict):
        raise FormatError("metadata must be an object")
    unknown = set(meta) - {"method", "class_names", "normalization", "onebit_version"}
    if unknown:
        raise FormatError(f"unknown metadata field(s) {sorted(unknown)}")
    for key in ("method", "onebit_version"):
        v = meta.get(key)
        if v is not None and (not isinstance(v, str) or len(v) > 64):
            raise FormatError(f"metadata {key!r} must be a short string or null, got {v!r:.80}")
    names = meta.get("class_names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) and len(n) <= _NAME_LIMIT
                                                  for n in names):
            raise FormatError("class_names must be a list of strings")
        if out.shape != (len(names),):
            raise FormatError(f"{len(names)} class_names but the model outputs shape {out.shape}")
    norm = meta.get("normalization")
    if norm is not None:
        if not isinstance(norm, dict) or set(norm) != {"mean", "std"}:
            raise FormatError("normalization must be {\"mean\": [...], \"std\": [...]}")
        for key in ("mean", "std"):
            v = norm[key]
            if (not isinstance(v, list) or not v or len(v) > MAX_CHANNELS or not all(
                    type(x) in (int, float) and abs(x) <= _FLOAT32_MAX for x in v)):
                raise FormatError(f"normalization {key} must be a list of finite numbers")
        if len(norm["mean"]) != len(norm["std"]) or any(s <= 0 for s in norm["std"]):
            raise FormatError("normalization needs as many positive std values as means")


def validate_graph(graph: Graph) -> dict[str, ValueInfo]:
    """Check every node of ``graph`` in order; return the :class:`ValueInfo` of each value."""
    if not isinstance(graph.nodes, list) or not 0 < len(graph.nodes) <= MAX_NODES:
        raise FormatError(f"a graph needs 1 to {MAX_NODES} nodes")
    shape = _check_input_shape(graph.input_shape)
    infos: dict[str, ValueInfo] = {_check_name(graph.input, "input name"): ValueInfo("float",
                                                                                      shape)}
    for index, node in enumerate(graph.nodes):
        spec = OPS.get(node.op) if isinstance(node.op, str) else None
        if spec is None:
            raise FormatError(f"node {index}: unknown op {node.op!r:.80}; known ops: "
                              f"{', '.join(sorted(OPS))}")
        if not isinstance(node.name, str) or len(node.name) > 1000:
            raise FormatError(f"node {index} ({node.op}): name must be a string of at most 1000 "
                              "characters")
        check = _Check(graph, index, node)
        if not isinstance(node.attrs, dict) or not isinstance(node.tensors, dict) or not all(
                isinstance(v, str) for v in node.tensors.values()):
            raise check.fail("attrs must be an object and tensors an object of tensor names")
        arity, infer = spec
        if not isinstance(node.inputs, list) or len(node.inputs) != arity:
            raise check.fail(f"takes {arity} input(s), got {node.inputs!r:.80}")
        args = []
        for name in node.inputs:
            if not isinstance(name, str) or name not in infos:
                raise check.fail(f"input {name!r:.80} is not defined by an earlier node")
            args.append(infos[name])
        out = _check_name(node.output, f"{check.where}: output name")
        if out in infos:
            raise check.fail(f"output {out!r} is already defined (values are assigned once)")
        info = infer(check, args)
        check.done()
        if any(d < 1 for d in info.shape) or math.prod(info.shape) > MAX_VALUE_ELEMENTS:
            raise check.fail(f"output shape {info.shape} is empty or exceeds "
                             f"{MAX_VALUE_ELEMENTS} elements")
        infos[out] = info
    if not isinstance(graph.output, str) or graph.output not in infos:
        raise FormatError(f"graph output {graph.output!r:.80} is not defined by any node")
    if infos[graph.output].kind != "float":
        raise FormatError("graph output must be a float value")
    _check_metadata(graph.metadata, infos[graph.output])
    return infos


def graph_to_document(graph: Graph) -> dict[str, Any]:
    """The JSON-able document a ``.onebit`` file stores for ``graph`` (validated first)."""
    validate_graph(graph)
    return {"input": {"name": graph.input, "shape": list(graph.input_shape)},
            "output": graph.output, "metadata": dict(graph.metadata),
            "nodes": [n.to_json() for n in graph.nodes]}


def graph_from_document(document: Any, tensors: dict[str, np.ndarray]) -> Graph:
    """Build and validate a :class:`Graph` from a file's document and tensors."""
    if not isinstance(document, dict):
        raise FormatError("onebit document must be an object")
    unknown = set(document) - {"format", "format_version", "input", "output", "metadata", "nodes"}
    if unknown:
        raise FormatError(f"unknown document field(s) {sorted(unknown)}")
    inp, nodes = document.get("input"), document.get("nodes")
    if not isinstance(inp, dict) or set(inp) != {"name", "shape"}:
        raise FormatError("document 'input' must be {\"name\": ..., \"shape\": [...]}")
    if not isinstance(nodes, list) or not 0 < len(nodes) <= MAX_NODES:
        raise FormatError(f"document 'nodes' must be a list of 1 to {MAX_NODES} nodes")
    parsed = []
    keys = {"op", "name", "inputs", "output", "attrs", "tensors"}
    for index, raw in enumerate(nodes):
        if not isinstance(raw, dict) or set(raw) != keys:
            raise FormatError(f"node {index} must be an object with exactly the keys "
                              f"{sorted(keys)}")
        parsed.append(Node(op=raw["op"], inputs=raw["inputs"], output=raw["output"],
                           attrs=raw["attrs"], tensors=raw["tensors"], name=raw["name"]))
    shape = _check_input_shape(inp["shape"])
    graph = Graph(nodes=parsed, tensors=dict(tensors), input_shape=shape,
                  output=document.get("output"), input=inp["name"],
                  metadata=document.get("metadata", {}))
    validate_graph(graph)
    used = {key for n in parsed for key in n.tensors.values()}
    unused = set(tensors) - used
    if unused:
        raise FormatError(f"the file holds tensors no node uses: {sorted(unused)[:5]}")
    return graph
