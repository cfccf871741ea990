"""Export an inference graph to ONNX: the float simulation of the model, in standard ONNX ops.

Every op of a converted :class:`~onebit.runtime.Graph` becomes standard ONNX (opset 13) over
NCHW float32 tensors with a dynamic batch axis:

* ``sign`` (and the sign inside ``bconv2d`` / ``blinear``) is ``Where(x < 0, -1, 1)``, so
  ``sign(0) = +1`` and ``sign(NaN) = +1`` as in onebit; packed bits travel as float tensors
  of +/-1.
* ``bconv2d`` is ``Conv`` of the +/-1 input with the +/-1 filters (integer sums, exact in
  float32; a ``Round`` marks them, see :meth:`OnnxWriter.accumulator`), then
  ``Mul(multiplier)`` and ``Add(bias)``; XNOR-Net's K map is ``Abs ->
  ReduceMean(channels) -> AveragePool`` (zero padding counted) multiplied in before the
  multiplier, in the runtime's order. A bits output is ``sign((acc - T) * s)`` with
  ``s = -1`` where ``flip``. Padding with +/-1 is an explicit ``Pad``.
* ``kbit`` is ``Floor(Clip((x + 1) * L * 0.5, 0, L) + 0.5) / L``, then ``- 0.5`` and ``* 2``
  (``L = 2^k - 1``), the runtime's arithmetic step by step.
* BatchNorm left unfolded (``channel_affine``) is ``Mul`` + ``Add``; float convs, dense layers,
  pools, ReLU, Hardtanh (``Clip``), PReLU, flatten and add map to their ONNX op.

AdderNet layers have no ONNX operator and raise :class:`ExportError`. The QONNX export
(:mod:`onebit.deploy.qonnx`) reuses this translator with ``BipolarQuant`` / ``Quant`` nodes.

>>> from onebit.deploy import export_onnx
>>> export_onnx(model, "model.onnx", example_input_shape=(1, 28, 28))   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from onebit.runtime.binary_ops import unpack_signs
from onebit.runtime.float_ops import window_out
from onebit.runtime.graph import Graph, Node, ValueInfo

__all__ = ["ExportError", "OnnxWriter", "export_onnx", "graph_to_onnx", "to_graph"]

OPSET = 13
BATCH = "batch"


class ExportError(ValueError):
    """A graph op has no equivalent in the requested export format."""


def _onnx() -> Any:
    try:
        import onnx  # optional: the interop extra
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("ONNX export needs the onnx package: pip install 'onebit[interop]'") \
            from exc
    return onnx


class OnnxWriter:
    """Builds one ONNX graph from a :class:`Graph`. Subclasses change how quantizers are written
    (:meth:`sign`, :meth:`kbit`, :meth:`binary_weight`); everything else is shared."""

    format_name = "ONNX"

    def __init__(self, graph: Graph) -> None:
        self.onnx = _onnx()
        self.graph = graph
        self.infos: dict[str, ValueInfo] = graph.validate()
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.names: set[str] = set()
        self.where = ""

    # -- building blocks ---------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        name = base.replace(" ", "_")
        i = 0
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def const(self, base: str, value: Any, dtype: Any = np.float32) -> str:
        name = self.fresh(base)
        array = np.array(value, dtype=dtype)  # a copy, C order; scalars stay 0-d
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], base: str, domain: str = "",
           **attrs: Any) -> str:
        out = self.fresh(base)
        self.nodes.append(self.onnx.helper.make_node(
            op_type, inputs, [out], name=self.fresh(f"{base}.{op_type}"), domain=domain,
            **attrs))
        return out

    def per_channel(self, base: str, value: np.ndarray, rank: int) -> str:
        """A ``[C]`` vector shaped to broadcast over NCHW (``rank`` 4) or ``[N, F]``."""
        v = np.asarray(value, dtype=np.float32)
        return self.const(base, v.reshape((1, -1, 1, 1) if rank == 4 else (1, -1)))

    def fail(self, message: str) -> ExportError:
        return ExportError(f"{self.where}: {message}")

    # -- quantizers (overridden by the QONNX writer) -----------------------------------------
    def sign(self, x: str, base: str) -> str:
        """-1 where ``x < 0`` else +1 (NaN: +1, onebit's rule), as float."""
        lt = self.op("Less", [x, self.const(f"{base}.zero", 0.0)], f"{base}.lt")
        return self.op("Where", [lt, self.const(f"{base}.minus_one", -1.0),
                                 self.const(f"{base}.one", 1.0)], f"{base}.sign")

    def kbit_levels(self, v: str, bits: int, base: str) -> str:
        """``floor(clip(v, 0, L) + 1/2)``: the level index of ``v = (x + 1) * L / 2``."""
        levels = 2 ** bits - 1
        c = self.op("Clip", [v, self.const(f"{base}.lo", 0.0), self.const(f"{base}.hi", levels)],
                    f"{base}.clip")
        h = self.op("Add", [c, self.const(f"{base}.half", 0.5)], f"{base}.half_up")
        return self.op("Floor", [h], f"{base}.level")

    def kbit(self, x: str, bits: int, base: str) -> str:
        if bits == 1:
            return self.sign(x, base)
        levels = 2 ** bits - 1
        v = self.op("Add", [x, self.const(f"{base}.one", 1.0)], f"{base}.shift")
        v = self.op("Mul", [v, self.const(f"{base}.L", float(levels))], f"{base}.stretch")
        v = self.op("Mul", [v, self.const(f"{base}.half", 0.5)], f"{base}.v")
        j = self.kbit_levels(v, bits, base)
        y = self.op("Div", [j, self.const(f"{base}.L2", float(levels))], f"{base}.frac")
        y = self.op("Sub", [y, self.const(f"{base}.half2", 0.5)], f"{base}.centre")
        return self.op("Mul", [y, self.const(f"{base}.two", 2.0)], f"{base}.kbit")

    def binary_weight(self, signs: np.ndarray, scale: np.ndarray | None, base: str) -> str:
        """A weight of +/-1 (times ``scale`` per output channel when given)."""
        w = signs if scale is None else signs * scale.reshape((-1,) + (1,) * (signs.ndim - 1))
        return self.const(f"{base}.weight", w)

    # -- graph ops ---------------------------------------------------------------------------
    def tensor(self, node: Node, role: str) -> np.ndarray | None:
        key = node.tensors.get(role)
        return None if key is None else self.graph.tensors[key]

    def signs(self, node: Node, n: int) -> np.ndarray:
        """The node's packed filters as +/-1 float: ``[O, C, kh, kw]`` or ``[O, F]``."""
        s = unpack_signs(self.tensor(node, "weight_bits"), n)
        return np.ascontiguousarray(np.moveaxis(s, -1, 1) if s.ndim == 4 else s)

    def pads(self, x: str, padding: list[int], value: float, base: str) -> str:
        ph, pw = padding
        p = self.const(f"{base}.pads", [0, 0, ph, pw, 0, 0, ph, pw], np.int64)
        return self.op("Pad", [x, p, self.const(f"{base}.pad_value", value)], f"{base}.pad",
                       mode="constant")

    def conv(self, x: str, w: str, a: dict[str, Any], pad_value: float, base: str,
             bias: str | None = None, groups: int = 1, dilation: tuple[int, ...] = (1, 1)) -> str:
        padding = list(a["padding"])
        if pad_value != 0 and any(padding):
            x = self.pads(x, padding, pad_value, base)
            padding = [0, 0]
        inputs = [x, w] + ([bias] if bias else [])
        return self.op("Conv", inputs, f"{base}.conv", kernel_shape=list(a["kernel"]),
                       strides=list(a["stride"]), pads=padding * 2, dilations=list(dilation),
                       group=groups)

    def accumulator(self, acc: str, base: str) -> str:
        """The integer sum of a binary layer. ``Round`` (a no-op on it) keeps graph optimizers
        such as ONNX Runtime's from folding the per-channel multiplier into the +/-1 weights,
        which would turn the exact sum into a rounded one (and flip signs of outputs at 0)."""
        return self.op("Round", [acc], f"{base}.acc")

    def output_transform(self, acc: str, node: Node, rank: int, base: str,
                         k_map: str | None = None) -> str:
        """The binary op's output from its accumulator, as the kernels compute it."""
        acc = self.accumulator(acc, base)
        if node.attrs["output"] == "float":
            y = acc if k_map is None else self.op("Mul", [acc, k_map], f"{base}.k")
            y = self.op("Mul", [y, self.per_channel(f"{base}.multiplier",
                                                    self.tensor(node, "multiplier"), rank)],
                        f"{base}.scaled")
            return self.op("Add", [y, self.per_channel(f"{base}.bias", self.tensor(node, "bias"),
                                                       rank)], f"{base}.out")
        t = self.tensor(node, "thresholds").astype(np.float32)
        s = np.where(self.tensor(node, "flip") == 1, np.float32(-1), np.float32(1))
        d = self.op("Sub", [acc, self.per_channel(f"{base}.thresholds", t, rank)], f"{base}.d")
        d = self.op("Mul", [d, self.per_channel(f"{base}.direction", s, rank)], f"{base}.dir")
        return self.sign(d, f"{base}.bits")

    def k_map(self, x: str, a: dict[str, Any], base: str) -> str:
        """XNOR-Net's ``K``: the channel mean of ``|x|``, box-filtered with the conv's window."""
        m = self.op("ReduceMean", [self.op("Abs", [x], f"{base}.abs")], f"{base}.A", axes=[1],
                    keepdims=1)
        return self.op("AveragePool", [m], f"{base}.K", kernel_shape=list(a["kernel"]),
                       strides=list(a["stride"]), pads=list(a["padding"]) * 2,
                       count_include_pad=1)

    def emit(self, node: Node, x: list[str]) -> str:
        a, op, base = node.attrs, node.op, node.output
        rank = 4 if len(self.infos[node.inputs[0]].shape) == 3 else 2
        if op == "bconv2d":
            xs = self.sign(x[0], f"{base}.in")  # bits inputs are +/-1 already: idempotent
            w = self.binary_weight(self.signs(node, a["in_channels"]), None, base)
            acc = self.conv(xs, w, a, float(a["pad_value"]), base)
            k = self.k_map(x[0], a, base) if a["xnor_k"] else None
            return self.output_transform(acc, node, 4, base, k)
        if op == "blinear":
            xs = self.sign(x[0], f"{base}.in")
            w = self.binary_weight(self.signs(node, a["in_features"]), None, base)
            acc = self.op("Gemm", [xs, w], f"{base}.acc", transB=1)
            return self.output_transform(acc, node, 2, base)
        if op in ("conv2d", "linear"):
            n = a["in_channels"] // a["groups"] if op == "conv2d" else a["in_features"]
            if "weight" in node.tensors:
                w = self.const(f"{base}.weight", self.tensor(node, "weight"))
            else:
                w = self.binary_weight(self.signs(node, n), self.tensor(node, "weight_scale"),
                                       base)
            b = self.tensor(node, "bias")
            bias = None if b is None else self.const(f"{base}.bias", b)
            if op == "linear":
                return self.op("Gemm", [x[0], w] + ([bias] if bias else []), f"{base}.out",
                               transB=1)
            return self.conv(x[0], w, a, float(a["pad_value"]), base, bias, a["groups"],
                             a["dilation"])
        if op in ("adder_conv2d", "adder_int8"):
            raise self.fail(f"AdderNet ({op}) has no {self.format_name} operator: "
                            "export AdderNet models as .onebit files (onebit export ... "
                            "--format onebit)")
        if op == "channel_affine":
            y = self.op("Mul", [x[0], self.per_channel(f"{base}.scale", self.tensor(
                node, "scale"), rank)], f"{base}.scaled")
            return self.op("Add", [y, self.per_channel(f"{base}.shift", self.tensor(
                node, "shift"), rank)], f"{base}.out")
        if op == "relu":
            return self.op("Relu", x, f"{base}.out")
        if op == "hardtanh":
            return self.op("Clip", [x[0], self.const(f"{base}.min", a["min_val"]),
                                    self.const(f"{base}.max", a["max_val"])], f"{base}.out")
        if op == "prelu":
            slope = self.tensor(node, "weight")
            shape = (-1, 1, 1) if rank == 4 and slope.size > 1 else (-1,)
            return self.op("PRelu", [x[0], self.const(f"{base}.slope", slope.reshape(shape))],
                           f"{base}.out")
        if op == "sign":
            return self.sign(x[0], base)
        if op == "kbit":
            return self.kbit(x[0], a["bits"], base)
        if op in ("maxpool2d", "avgpool2d"):
            return self.pool(node, x[0])
        if op in ("adaptive_avgpool2d", "adaptive_maxpool2d"):
            return self.adaptive(node, x[0])
        if op == "flatten":
            return self.op("Flatten", x, f"{base}.out", axis=1)
        if op == "add":
            return self.op("Add", x, f"{base}.out")
        raise self.fail(f"op {op!r} has no {self.format_name} translation")

    def pool(self, node: Node, x: str) -> str:
        a, base = node.attrs, node.output
        _, h, w = self.infos[node.inputs[0]].shape
        dil = a.get("dilation", [1, 1])
        expect = self.infos[node.output].shape[1:]
        # ONNX's ceil_mode keeps a last window that starts in the padding; PyTorch drops it
        onnx_hw = tuple(window_out(s, k, st, p, d, False) if not a["ceil_mode"] else
                        -(-(s + 2 * p - d * (k - 1) - 1) // st) + 1
                        for s, k, st, p, d in zip((h, w), a["kernel"], a["stride"], a["padding"],
                                                  dil))
        if onnx_hw != tuple(expect):
            raise self.fail(f"ceil_mode gives {expect} here in PyTorch but {onnx_hw} in ONNX; "
                            "use ceil_mode=False or a padding that makes them agree")
        common = dict(kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                      pads=list(a["padding"]) * 2, ceil_mode=int(a["ceil_mode"]))
        if node.op == "maxpool2d":
            return self.op("MaxPool", [x], f"{base}.out", dilations=list(dil), **common)
        if a["divisor_override"] is not None:
            raise self.fail("avg_pool2d with divisor_override has no ONNX equivalent; "
                            "leave divisor_override unset")
        return self.op("AveragePool", [x], f"{base}.out",
                       count_include_pad=int(a["count_include_pad"]), **common)

    def adaptive(self, node: Node, x: str) -> str:
        base = node.output
        _, h, w = self.infos[node.inputs[0]].shape
        oh, ow = node.attrs["output_size"]
        avg = node.op == "adaptive_avgpool2d"
        if (oh, ow) == (1, 1):
            return self.op("GlobalAveragePool" if avg else "GlobalMaxPool", [x], f"{base}.out")
        if h % oh == 0 and w % ow == 0:
            kernel = [h // oh, w // ow]
            return self.op("AveragePool" if avg else "MaxPool", [x], f"{base}.out",
                           kernel_shape=kernel, strides=kernel)
        # uneven windows [floor(i*H/oh), ceil((i+1)*H/oh)): rows first, then columns (as the
        # runtime reduces them), each window a Slice and a reduction, joined by Concat
        reduce = "ReduceMean" if avg else "ReduceMax"
        for axis, size, out in ((2, h, oh), (3, w, ow)):
            parts = []
            for i in range(out):
                lo, hi = (i * size) // out, -(-((i + 1) * size) // out)
                part = self.op("Slice", [x, self.const(f"{base}.lo", [lo], np.int64),
                                         self.const(f"{base}.hi", [hi], np.int64),
                                         self.const(f"{base}.axis", [axis], np.int64)],
                               f"{base}.window")
                parts.append(self.op(reduce, [part], f"{base}.reduce", axes=[axis], keepdims=1))
            x = self.op("Concat", parts, f"{base}.axis{axis}", axis=axis)
        return x

    # -- the whole graph ---------------------------------------------------------------------
    def opsets(self) -> list[Any]:
        return [self.onnx.helper.make_opsetid("", OPSET)]

    def build(self) -> Any:
        g, helper = self.graph, self.onnx.helper
        values = {g.input: self.fresh(g.input)}
        for node in g.nodes:
            self.where = f"{node.op} {node.name or node.output}"
            values[node.output] = self.emit(node, [values[i] for i in node.inputs])
        f32 = self.onnx.TensorProto.FLOAT
        inp = helper.make_tensor_value_info(values[g.input], f32, [BATCH, *g.input_shape])
        out_name = "logits"
        self.nodes.append(helper.make_node("Identity", [values[g.output]], [out_name],
                                           name="output"))
        out = helper.make_tensor_value_info(out_name, f32,
                                            [BATCH, *self.infos[g.output].shape])
        onnx_graph = helper.make_graph(self.nodes, "onebit", [inp], [out], self.initializers)
        model = helper.make_model(onnx_graph, opset_imports=self.opsets(),
                                  producer_name="onebit")
        model.ir_version = min(model.ir_version, 8)
        meta = {k: v for k, v in g.metadata.items() if v is not None}
        for key, value in meta.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
        self.onnx.checker.check_model(model)
        return model


def graph_to_onnx(graph: Graph) -> Any:
    """The ``onnx.ModelProto`` of ``graph``'s float simulation (input ``[batch, *input_shape]``,
    output ``logits``; method, class names and normalisation in ``metadata_props``)."""
    return OnnxWriter(graph).build()


def to_graph(model: Any, example_input_shape: Any = None, **convert_kwargs: Any) -> Graph:
    """``model`` itself when it is a :class:`Graph`, else :func:`onebit.deploy.convert` of it."""
    if isinstance(model, Graph):
        return model
    # torch only for a torch model: a Graph exports without it
    from onebit.deploy.convert import convert

    return convert(model, example_input_shape=example_input_shape, **convert_kwargs)


def export_onnx(model: Any, path: str | os.PathLike[str], *,
                example_input_shape: Any = None, **convert_kwargs: Any) -> Any:
    """Write the float simulation of ``model`` (a PyTorch model, converted first, or a
    :class:`Graph`) as a standard ONNX file with a dynamic batch axis; returns the ModelProto.

    ``convert_kwargs`` (``class_names``, ``normalization``) go to :func:`onebit.deploy.convert`.
    Raises :class:`ExportError` for AdderNet layers, and ConversionError for models convert
    cannot express.
    """
    proto = graph_to_onnx(to_graph(model, example_input_shape, **convert_kwargs))
    _onnx().save(proto, os.fspath(path))
    return proto
