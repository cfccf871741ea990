"""The op registry: every op an inference graph may hold, in one table (:data:`OPS`).

Each entry (an :class:`OpSpec`) says everything onebit knows about one op:

* ``arity``, ``attrs`` (all required), ``optional`` (attributes a node may omit; nothing else
  is allowed) and ``roles`` (the tensors it may take), and a one-line ``semantics``;
* ``check``: validates a node's attributes and tensors against its input values and returns the
  output's :class:`~onebit.runtime.node.ValueInfo` (:mod:`onebit.runtime.schema` runs it);
* ``compile``: prepares the node once (weights laid out for the kernels) and returns the kernel
  ``fn(inputs, num_threads) -> output`` the :class:`~onebit.runtime.Model` calls; ``inplace``
  (elementwise ops only) the same computation overwriting input ``r`` at its last use;
* ``view``: the kernel may return a view of its input (the executor never overwrites it).

The torch reference of each op (the same semantics in PyTorch float32, used by ``onebit bench``
and by the tests as an independent check) lives on the torch side, in
``onebit.deploy.torch_graph.REFERENCES`` under the op's name: this module never imports torch.

Adding an op:

1. write its ``_check_<op>`` and ``_compile_<op>`` here (NumPy or :mod:`onebit.kernels` calls;
   shared rules are in :mod:`onebit.runtime.checks`) and add an :class:`OpSpec` to :data:`OPS`;
2. add its torch reference to ``REFERENCES`` in :mod:`onebit.deploy.torch_graph`;
3. emit it where the converter meets the layer (:mod:`onebit.deploy.trace`, or a pass).

``tests/runtime/test_op_registry.py`` checks that every op has all of these parts. Shapes below
are per sample; ``C, H, W`` the input, ``O`` output channels, ``Cw = ceil(C / 32)``; feature maps
run NHWC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from onebit import _kernels
from onebit.kernels._checks import resolve_threads
from onebit.kernels.floatops import MaxPoolWindow, conv2d_f32
from onebit.kernels.int8conv import (
    ActivationQuant,
    conv2d_int8,
    prepare_conv2d_int8,
)
from onebit.runtime import binary_ops, float_ops
from onebit.runtime.checks import (
    MAX_CHANNELS,
    MAX_SPATIAL,
    MAX_VALUE_ELEMENTS,
    MAX_WINDOW,
    Check,
    channels,
    conv_like,
    value,
    window_out,
    words,
)
from onebit.runtime.node import Node, ValueInfo

__all__ = ["OPS", "Kernel", "OpSpec", "OutKernel", "Tensors"]

#: a node's tensors by role (``"weight"``, ``"bias"``, ...)
Tensors = dict[str, np.ndarray]
#: a compiled op: ``fn(inputs, num_threads) -> output`` (inputs in the node's order)
Kernel = Callable[[list[np.ndarray], int | None], Any]


class OutKernel:
    """A compiled op that can also write into arrays the executor planned:
    ``fn(inputs, num_threads, out)`` with ``out`` the step's output arrays (C-contiguous, of the
    values' NHWC shapes, float32, or uint32 words for bits), or None to allocate them.
    :class:`~onebit.runtime.Model` plans those arrays once per batch size and reuses them."""

    takes_out = True

    def __init__(self, fn: Callable[[list[np.ndarray], int | None, Any], Any]) -> None:
        self._fn = fn

    def __call__(self, xs: list[np.ndarray], num_threads: int | None, out: Any = None) -> Any:
        return self._fn(xs, num_threads, out)


@dataclass(frozen=True)
class OpSpec:
    """One op of the inference graph (see the module docstring for what each field is for)."""

    name: str
    arity: int
    attrs: tuple[str, ...]
    roles: tuple[str, ...]
    semantics: str
    check: Callable[[Check, list[ValueInfo]], ValueInfo]
    compile: Callable[[Node, Tensors, bool], Kernel]  # (node, tensors, sign_bits)
    inplace: Callable[[Node, Tensors, int], Kernel] | None = None  # (node, tensors, r)
    view: bool = False
    optional: tuple[str, ...] = ()  # attributes a node may omit (added after files existed)
    # fusions (onebit.runtime.plan): absorbs(node, reader) says whether the node's kernel can
    # apply `reader` (the only reader of its output) before storing; nchw_input(node) whether it
    # can read the model's NCHW input as it is; fuse(node, tensors, reader or None, nchw)
    # compiles either.
    absorbs: Callable[[Node, Node], bool] | None = None
    nchw_input: Callable[[Node], bool] | None = None
    fuse: Callable[[Node, Tensors, Node | None, bool], Kernel] | None = None


def _pairs(attrs: dict[str, Any], *keys: str) -> list[tuple[int, int]]:
    return [tuple(attrs[k]) for k in keys]


_CONV = ("in_channels", "out_channels", "kernel", "stride", "padding")
_TRANSFORM = ("multiplier", "bias", "thresholds", "flip")


# -- float layers ------------------------------------------------------------------------------
def _float_weight(node: Node, t: Tensors, nbits: int) -> np.ndarray:
    """The float weight of a conv2d/linear node: stored, or expanded from bits * scale."""
    if "weight" in t:
        return np.asarray(t["weight"], dtype=np.float32)
    signs = binary_ops.unpack_signs(t["weight_bits"], nbits)  # [O, (kh, kw,) C]
    signs = signs * t["weight_scale"].reshape((-1,) + (1,) * (signs.ndim - 1))
    return np.moveaxis(signs, -1, 1) if signs.ndim == 4 else signs  # -> [O, C, (kh, kw)]


def _check_conv2d(c: Check, xs: list[ValueInfo]) -> ValueInfo:
    cin_g, out_ch, kh, kw, ho, wo = conv_like(c, xs[0], ("float",), groups_ok=True,
                                              dilation_ok=True)
    c.number("pad_value")
    c.weight((out_ch, cin_g, kh, kw), cin_g)
    c.tensor("bias", np.float32, (out_ch,), optional=True)
    return ValueInfo("float", (out_ch, ho, wo))


def _absorbed_pool(reader: Node | None) -> tuple[MaxPoolWindow | None, tuple | None]:
    """An absorbed maxpool2d node as a MaxPoolWindow and as the kernels' pool arguments."""
    if reader is None:
        return None, None
    pool = MaxPoolWindow(*_pairs(reader.attrs, "kernel", "stride", "padding", "dilation"),
                         ceil_mode=bool(reader.attrs["ceil_mode"]))
    return pool, (*pool.kernel_size, *pool.stride, *pool.padding, *pool.dilation, pool.ceil_mode)


def _compile_conv2d(node: Node, t: Tensors, sign_bits: bool) -> Kernel:
    if _direct_conv2d(node):
        return _fuse_conv2d(node, t, None, False)
    a, bias = node.attrs, t.get("bias")
    groups = a["groups"]
    weight = _float_weight(node, t, a["in_channels"] // groups)
    o_g = a["out_channels"] // groups
    kernel, stride, padding, dilation = _pairs(a, "kernel", "stride", "padding", "dilation")
    pad_value = float(a["pad_value"])
    wmat = np.stack([float_ops.conv_weight_matrix(weight[g * o_g:(g + 1) * o_g])
                     for g in range(groups)])
    return lambda xs, nt: float_ops.conv2d(xs[0], wmat, bias, kernel, stride, padding, dilation,
                                           groups, pad_value)


def _direct_conv2d(node: Node) -> bool:
    """Whether the float conv runs onebit's direct kernel (float_ops.direct_conv_weight's rule),
    which also reads NCHW input and applies a max pool after it."""
    a = node.attrs
    return float_ops.uses_direct_conv(a["in_channels"] // a["groups"], tuple(a["kernel"]),
                                      a["groups"])


def _absorbs_conv2d(node: Node, reader: Node) -> bool:
    return reader.op == "maxpool2d" and _direct_conv2d(node)


def _fuse_conv2d(node: Node, t: Tensors, reader: Node | None, nchw: bool) -> Kernel:
    """The float conv on the direct kernel, reading NCHW input and/or max pooling its output."""
    a, bias = node.attrs, t.get("bias")
    weight = _float_weight(node, t, a["in_channels"] // a["groups"])
    direct = float_ops.direct_conv_weight(weight, a["groups"])
    kernel, stride, padding, dilation = _pairs(a, "kernel", "stride", "padding", "dilation")
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    pad_value = float(a["pad_value"])
    b = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
    pool, pool_args = _absorbed_pool(reader)
    layout = "nchw" if nchw else "nhwc"
    impl = direct._impl

    def run(xs: list[np.ndarray], nt: int | None, out: Any) -> np.ndarray:
        if out is None:
            return conv2d_f32(np.ascontiguousarray(xs[0], dtype=np.float32), direct, b,
                              stride=stride, padding=padding, dilation=dilation,
                              pad_value=pad_value, layout=layout, maxpool=pool, num_threads=nt)
        # the graph was validated: straight to the kernel (which checks every shape again)
        _kernels.float_conv2d(np.ascontiguousarray(xs[0], dtype=np.float32), impl, b, pad_value,
                              out[0], sh, sw, ph, pw, dh, dw, resolve_threads(nt), nchw,
                              pool_args)
        return out[0]
    return OutKernel(run)


def _act_quant(a: dict[str, Any]) -> Any:
    return ActivationQuant(scale=float(a["act_scale"]), zero_point=int(a["act_zero_point"]),
                           bits=int(a["act_bits"]))


def _check_conv2d_int8(c: Check, xs: list[ValueInfo]) -> ValueInfo:
    cin, out_ch, kh, kw, ho, wo = conv_like(c, xs[0], ("float",), groups_ok=False,
                                            dilation_ok=True)
    bits = c.integer("act_bits", 2, 8)
    wbits = c.integer("weight_bits", 2, 7)
    c.integer("act_zero_point", 0, 2 ** bits - 1)
    scale = c.number("act_scale")
    if not scale > 0:
        raise c.fail(f"act_scale must be positive, got {scale}")
    if 2 * (2 ** bits - 1) * (2 ** (wbits - 1) - 1) > 32767:
        raise c.fail(f"{bits}-bit activations with {wbits}-bit weights can overflow the kernel's "
                     "int16 pair sums")
    c.weight((out_ch, cin, kh, kw), cin)
    c.tensor("bias", np.float32, (out_ch,), optional=True)
    return ValueInfo("float", (out_ch, ho, wo))


def _compile_conv2d_int8(node: Node, t: Tensors, sign_bits: bool) -> Kernel:
    return _fuse_conv2d_int8(node, t, None, False)


def _absorbs_conv2d_int8(node: Node, reader: Node) -> bool:
    """A max pool folds into the int8 conv (a validated pool's padding is at most half its
    kernel, the windows the fused pool kernel takes)."""
    return reader.op == "maxpool2d"


def _fuse_conv2d_int8(node: Node, t: Tensors, reader: Node | None, nchw: bool) -> Kernel:
    a = node.attrs
    prepared = prepare_conv2d_int8(np.asarray(t["weight"], dtype=np.float32), _act_quant(a),
                                   bias=t.get("bias"), weight_bits=int(a["weight_bits"]))
    stride, padding, dilation = _pairs(a, "stride", "padding", "dilation")
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    pool, pool_args = _absorbed_pool(reader)
    layout = "nchw" if nchw else "nhwc"
    impl = prepared._impl

    def run(xs: list[np.ndarray], nt: int | None, out: Any) -> np.ndarray:
        if out is None:
            return conv2d_int8(xs[0], prepared, stride=stride, padding=padding,
                               dilation=dilation, layout=layout, maxpool=pool, num_threads=nt)
        # the graph was validated: straight to the kernel (which checks every shape again)
        _kernels.int8_conv2d(xs[0], impl, out[0], sh, sw, ph, pw, dh, dw, False,
                             resolve_threads(nt), nchw, pool_args)
        return out[0]
    return OutKernel(run)


def _check_linear(c: Check, xs: list[ValueInfo]) -> ValueInfo:
    (f,) = value(c, xs[0], ("float",), 1)
    fin = c.integer("in_features", 1, MAX_VALUE_ELEMENTS)
    fout = c.integer("out_features", 1, MAX_CHANNELS)
    if fin != f:
        raise c.fail(f"in_features={fin} but the input has {f} features")
    c.weight((fout, fin), fin)
    c.tensor("bias", np.float32, (fout,), optional=True)
    return ValueInfo("float", (fout,))


def _compile_linear(node: Node, t: Tensors, sign_bits: bool) -> Kernel:
    w = float_ops.linear_weight(_float_weight(node, t, node.attrs["in_features"]))
    bias = t.get("bias")
    return lambda xs, nt: float_ops.linear(xs[0], w, bias, nt)


# -- binary layers -----------------------------------------------------------------------------
def _check_bconv2d(c: Check, xs: list[ValueInfo]) -> ValueInfo:
    cin, out_ch, kh, kw, ho, wo = conv_like(c, xs[0], ("float", "bits"), groups_ok=False,
                                            dilation_ok=False)
    c.choice("pad_value", (-1, 0, 1, -1.0, 0.0, 1.0))
    if kh * kw * cin >= 1 << 24:  # the binary conv kernel's limit (exact float32 accumulators)
        raise c.fail(f"kernel {kh}x{kw} x {cin} input channels = {kh * kw * cin} taps; the binary "
                     "conv kernel takes fewer than 2^24")
    c.bits("weight_bits", (out_ch, kh, kw, words(cin)), cin)
    xnor_k = c.flag("xnor_k")
    out = c.output_transform(out_ch)
    if xnor_k and (xs[0].kind != "float" or out != "float"):
        raise c.fail("xnor_k needs a float input (for |x|) and a float output")
    return ValueInfo(out, (out_ch, ho, wo))


def _compile_bconv2d(node: Node, t: Tensors, sign_bits: bool) -> Kernel:
    return binary_ops.BConvKernel(binary_ops.BinaryArgs.from_node(node.attrs, t),
                                  sign_bits=sign_bits)


def _check_blinear(c: Check, xs: list[ValueInfo]) -> ValueInfo:
    (f,) = value(c, xs[0], ("float", "bits"), 1)
    fin = c.integer("in_features", 1, MAX_VALUE_ELEMENTS)
    fout = c.integer("out_features", 1, MAX_CHANNELS)
    if fin != f:
        raise c.fail(f"in_features={fin} but the input has {f} features")
    c.bits("weight_bits", (fout, words(fin)), fin)
    beta = c.flag("xnor_k") if "xnor_k" in c.node.attrs else False  # optional: older files
    out = c.output_transform(fout)
    if beta and (xs[0].kind != "float" or out != "float"):
        raise c.fail("xnor_k needs a float input (for |x|) and a float output")
    return ValueInfo(out, (fout,))


def _compile_blinear(node: Node, t: Tensors, sign_bits: bool) -> Kernel:
    args = binary_ops.BinaryArgs.from_node(node.attrs, t)
    return lambda xs, nt: binary_ops.blinear(xs[0], args, nt)


# -- AdderNet ----------------------------------------------------------------------------------
def _check_adder_conv2d(c: Check, xs: list[ValueInfo]) -> ValueInfo:
    cin, out_ch, kh, kw, ho, wo = conv_like(c, xs[0], ("float",), groups_ok=False,
                                            dilation_ok=False)
    c.tensor("weight", np.float32, (out_ch, cin, kh, kw))
    c.tensor("multiplier", np.float32, (out_ch,), optional=True)
    c.tensor("bias", np.float32, (out_ch,), optional=True)
    return ValueInfo("float", (out_ch, ho, wo))


def _compile_adder_conv2d(node: Node, t: Tensors, sign_bits: bool) -> Kernel:
    weight = np.ascontiguousarray(t["weight"])
    stride, padding = _pairs(node.attrs, "stride", "padding")
    mult, bias = t.get("multiplier"), t.get("bias")

    def adder(xs: list[np.ndarray], nt: int | None) -> np.ndarray:
        y = float_ops.adder_conv2d(xs[0], weight, stride, padding, nt)
        if mult is not None:
            y *= mult
        if bias is not None:
            y += bias
        return y
    return adder


def _check_adder_int8(c: Check, xs: list[ValueInfo]) -> ValueInfo:
    cin, out_ch, kh, kw, ho, wo = conv_like(c, xs[0], ("float",), groups_ok=False,
                                            dilation_ok=False)
    if not c.number("scale") > 0:
        raise c.fail("attribute 'scale' must be > 0")
    c.tensor("weight_q", np.int8, (out_ch, kh, kw, cin))
    c.tensor("multiplier", np.float32, (out_ch,))
    c.tensor("bias", np.float32, (out_ch,))
    return ValueInfo("float", (out_ch, ho, wo))


def _compile_adder_int8(node: Node, t: Tensors, sign_bits: bool) -> Kernel:
    weight_q = np.ascontiguousarray(t["weight_q"])
    stride, padding = _pairs(node.attrs, "stride", "padding")
    scale, mult, bias = np.float32(node.attrs["scale"]), t["multiplier"], t["bias"]
    return lambda xs, nt: float_ops.adder_int8(xs[0], weight_q, scale, stride, padding, mult,
                                               bias, nt)


# -- elementwise -------------------------------------------------------------------------------
def _check_channel_affine(c: Check, xs: list[ValueInfo]) -> ValueInfo:
    ch = channels(c, xs[0])
    c.tensor("scale", np.float32, (ch,))
    c.tensor("shift", np.float32, (ch,))
    return xs[0]


def _compile_channel_affine(node: Node, t: Tensors, sign_bits: bool) -> Kernel:
    scale, shift = t["scale"], t["shift"]
    return lambda xs, nt: xs[0] * scale + shift


def _inplace_channel_affine(node: Node, t: Tensors, r: int) -> Kernel:
    scale, shift = t["scale"], t["shift"]
    return lambda xs, nt: np.add(np.multiply(xs[0], scale, out=xs[0]), shift, out=xs[0])


def _check_elementwise(c: Check, xs: list[ValueInfo]) -> ValueInfo:
    channels(c, xs[0])
    return xs[0]


def _compile_relu(node: Node, t: Tensors, sign_bits: bool) -> Kernel:
    return lambda xs, nt: np.maximum(xs[0], np.float32(0))


def _inplace_relu(node: Node, t: Tensors, r: int) -> Kernel:
    return lambda xs, nt: np.maximum(xs[0], np.float32(0), out=xs[0])


def _check_hardtanh(c: Check, xs: list[ValueInfo]) -> ValueInfo:
    channels(c, xs[0])
    if not c.number("min_val") < c.number("max_val"):
        raise c.fail("hardtanh needs min_val < max_val")
    return xs[0]


def _compile_hardtanh(node: Node, t: Tensors, sign_bits: bool) -> Kernel:
    lo, hi = np.float32(node.attrs["min_val"]), np.float32(node.attrs["max_val"])
    return lambda xs, nt: np.clip(xs[0], lo, hi)


def _inplace_hardtanh(node: Node, t: Tensors, r: int) -> Kernel:
    lo, hi = np.float32(node.attrs["min_val"]), np.float32(node.attrs["max_val"])
    return lambda xs, nt: np.clip(xs[0], lo, hi, out=xs[0])


def _check_prelu(c: Check, xs: list[ValueInfo]) -> ValueInfo:
    ch = channels(c, xs[0])
    stored = c.stored("weight")  # one shared slope or one per channel
    c.tensor("weight", np.float32, (1,) if stored is not None and stored.shape == (1,) else (ch,))
    return xs[0]


def _compile_prelu(node: Node, t: Tensors, sign_bits: bool) -> Kernel:
    slope = t["weight"]
    return lambda xs, nt: np.where(xs[0] >= 0, xs[0], xs[0] * slope).astype(np.float32)


def _check_sign(c: Check, xs: list[ValueInfo]) -> ValueInfo:
    channels(c, xs[0])
    return ValueInfo(c.choice("output", ("float", "bits")), xs[0].shape)


def _compile_sign(node: Node, t: Tensors, sign_bits: bool) -> Kernel:
    if node.attrs["output"] == "bits":
        return lambda xs, nt: binary_ops.pack_signs(xs[0])
    return lambda xs, nt: np.where(xs[0] < 0, np.float32(-1), np.float32(1))  # NaN: +1


def _check_kbit(c: Check, xs: list[ValueInfo]) -> ValueInfo:
    channels(c, xs[0])
    c.integer("bits", 1, 24)
    return xs[0]


def _compile_kbit(node: Node, t: Tensors, sign_bits: bool) -> Kernel:
    bits = node.attrs["bits"]
    return lambda xs, nt: float_ops.kbit(xs[0], bits)


def _check_add(c: Check, xs: list[ValueInfo]) -> ValueInfo:
    a, b = xs
    if a.kind != "float" or b.kind != "float" or a.shape != b.shape:
        raise c.fail(f"adds two float values of one shape, got {a.kind} {a.shape} and "
                     f"{b.kind} {b.shape}")
    return a


def _compile_add(node: Node, t: Tensors, sign_bits: bool) -> Kernel:
    return lambda xs, nt: xs[0] + xs[1]


def _inplace_add(node: Node, t: Tensors, r: int) -> Kernel:
    return lambda xs, nt: np.add(xs[r], xs[1 - r], out=xs[r])


# -- pooling and reshaping ---------------------------------------------------------------------
def _check_pool(c: Check, xs: list[ValueInfo], avg: bool) -> ValueInfo:
    ch, h, w = value(c, xs[0], ("float",), 3)
    kh, kw = c.pair("kernel", 1, MAX_WINDOW)
    sh, sw = c.pair("stride", 1, MAX_WINDOW)
    ph, pw = c.pair("padding", 0, MAX_WINDOW)
    if 2 * ph > kh or 2 * pw > kw:
        raise c.fail(f"padding {[ph, pw]} must be at most half the kernel {[kh, kw]}")
    ceil = c.flag("ceil_mode")
    if avg:
        c.flag("count_include_pad")
        div = c.attr("divisor_override")
        if div is not None and (type(div) is not int or not 1 <= div <= MAX_VALUE_ELEMENTS):
            raise c.fail(f"attribute 'divisor_override' must be null or a positive integer, "
                         f"got {div!r}")
        dh = dw = 1
    else:
        dh, dw = c.pair("dilation", 1, MAX_WINDOW)
    return ValueInfo("float", (ch, window_out(c, h, kh, sh, ph, dh, ceil),
                               window_out(c, w, kw, sw, pw, dw, ceil)))


def _check_maxpool2d(c: Check, xs: list[ValueInfo]) -> ValueInfo:
    return _check_pool(c, xs, avg=False)


def _compile_maxpool2d(node: Node, t: Tensors, sign_bits: bool) -> Kernel:
    a = node.attrs
    kernel, stride, padding, dilation = _pairs(a, "kernel", "stride", "padding", "dilation")
    args = (*kernel, *stride, *padding, *dilation, bool(a["ceil_mode"]))

    def run(xs: list[np.ndarray], nt: int | None, out: Any) -> np.ndarray:
        if out is None:
            return float_ops.maxpool2d(xs[0], kernel, stride, padding, dilation,
                                       a["ceil_mode"], nt)
        # a validated pool's padding is at most half its kernel: the kernel takes every window
        _kernels.float_maxpool2d(np.ascontiguousarray(xs[0]), out[0], *args,
                                 resolve_threads(nt))
        return out[0]
    return OutKernel(run)


def _check_avgpool2d(c: Check, xs: list[ValueInfo]) -> ValueInfo:
    return _check_pool(c, xs, avg=True)


def _compile_avgpool2d(node: Node, t: Tensors, sign_bits: bool) -> Kernel:
    a = node.attrs
    kernel, stride, padding = _pairs(a, "kernel", "stride", "padding")
    div = a["divisor_override"]
    args = (*kernel, *stride, *padding, bool(a["ceil_mode"]), bool(a["count_include_pad"]),
            0 if div is None else int(div))

    def run(xs: list[np.ndarray], nt: int | None, out: Any) -> np.ndarray:
        if out is None:
            return float_ops.avgpool2d(xs[0], kernel, stride, padding, a["ceil_mode"],
                                       a["count_include_pad"], div, nt)
        # a validated pool (padding at most half its kernel, divisor >= 1): the kernel's windows
        _kernels.float_avgpool2d(np.ascontiguousarray(xs[0]), out[0], *args,
                                 resolve_threads(nt))
        return out[0]
    return OutKernel(run)


def _check_adaptive(c: Check, xs: list[ValueInfo]) -> ValueInfo:
    ch, h, w = value(c, xs[0], ("float",), 3)
    oh, ow = c.pair("output_size", 1, MAX_SPATIAL)
    return ValueInfo("float", (ch, oh, ow))


def _compile_adaptive(mode: str) -> Callable[[Node, Tensors, bool], Kernel]:
    def compile_(node: Node, t: Tensors, sign_bits: bool) -> Kernel:
        size = tuple(node.attrs["output_size"])
        return lambda xs, nt: float_ops.adaptive_pool2d(xs[0], size, mode)
    return compile_


def _check_flatten(c: Check, xs: list[ValueInfo]) -> ValueInfo:
    ch, h, w = value(c, xs[0], ("float",), 3)
    return ValueInfo("float", (ch * h * w,))


def _compile_flatten(node: Node, t: Tensors, sign_bits: bool) -> Kernel:
    return lambda xs, nt: float_ops.flatten(xs[0])


_POOL = ("kernel", "stride", "padding", "ceil_mode")

_SPECS = [
    OpSpec("conv2d", 1, (*_CONV, "dilation", "groups", "pad_value"),
           ("weight", "weight_bits", "weight_scale", "bias"),
           "float conv; weight F32 [O, C/g, kh, kw] or weight_bits U32 [O, kh, kw, ceil(C/g/32)] "
           "times weight_scale F32 [O]; optional bias; input padded with pad_value",
           _check_conv2d, _compile_conv2d, absorbs=_absorbs_conv2d, nchw_input=_direct_conv2d,
           fuse=_fuse_conv2d),
    OpSpec("conv2d_int8", 1, (*_CONV, "dilation", "act_scale", "act_zero_point", "act_bits",
                              "weight_bits"), ("weight", "bias"),
           "float conv computed in int8: x quantized per tensor (act_scale, act_zero_point, "
           "act_bits; zero padding), weight F32 [O, C, kh, kw] quantized per output channel to "
           "weight_bits at load; y = dequantized int32 sum + bias (onebit.kernels.conv2d_int8)",
           _check_conv2d_int8, _compile_conv2d_int8, absorbs=_absorbs_conv2d_int8,
           nchw_input=lambda node: True, fuse=_fuse_conv2d_int8),
    OpSpec("bconv2d", 1, (*_CONV, "pad_value", "xnor_k", "output"),
           ("weight_bits", *_TRANSFORM),
           "sign(x) (bits if already packed) conv weight_bits, acc = exact +/-1 dot product "
           "(padded taps count pad_value); output 'float': acc * multiplier + bias (times the "
           "XNOR map K when xnor_k), or 'bits': bit 1 (value -1) iff acc < thresholds "
           "(acc > thresholds where flip)",
           _check_bconv2d, _compile_bconv2d),
    OpSpec("linear", 1, ("in_features", "out_features"),
           ("weight", "weight_bits", "weight_scale", "bias"),
           "float x @ W.T + bias; weight or weight_bits + weight_scale",
           _check_linear, _compile_linear),
    OpSpec("blinear", 1, ("in_features", "out_features", "output"),
           ("weight_bits", *_TRANSFORM),
           "like bconv2d for vectors; optional xnor_k: XNOR's beta = mean|x| per row",
           _check_blinear, _compile_blinear, optional=("xnor_k",)),
    OpSpec("adder_conv2d", 1, _CONV, ("weight", "multiplier", "bias"),
           "-sum |x - F| over the window (zero padding), then optional * multiplier + bias",
           _check_adder_conv2d, _compile_adder_conv2d),
    OpSpec("adder_int8", 1, (*_CONV, "scale"), ("weight_q", "multiplier", "bias"),
           "-sum |q(x) - weight_q| * multiplier + bias, q(x) = clip(rint(x / scale), -127, 127) "
           "int8, weight_q int8 [O, kh, kw, C]",
           _check_adder_int8, _compile_adder_int8),
    OpSpec("channel_affine", 1, (), ("scale", "shift"),
           "x * scale[c] + shift[c] (a BatchNorm in eval mode)",
           _check_channel_affine, _compile_channel_affine, _inplace_channel_affine),
    OpSpec("relu", 1, (), (), "max(x, 0)", _check_elementwise, _compile_relu, _inplace_relu),
    OpSpec("hardtanh", 1, ("min_val", "max_val"), (), "clip(x, min_val, max_val), min_val < "
           "max_val", _check_hardtanh, _compile_hardtanh, _inplace_hardtanh),
    OpSpec("prelu", 1, (), ("weight",), "max(x, 0) + weight[c] * min(x, 0) (one weight or one "
           "per channel)", _check_prelu, _compile_prelu),
    OpSpec("sign", 1, ("output",), (), "-1 where x < 0 else +1 (NaN: +1); output 'float' or 'bits'",
           _check_sign, _compile_sign),
    OpSpec("kbit", 1, ("bits",), (),
           "2 * (floor((2^k-1) * (clip(x, -1, 1) + 1) / 2 + 1/2) / (2^k-1) - 1/2), k = bits; "
           "k = 1 is sign", _check_kbit, _compile_kbit),
    OpSpec("maxpool2d", 1, (*_POOL, "dilation"), (), "max over each window (torch semantics)",
           _check_maxpool2d, _compile_maxpool2d),
    OpSpec("avgpool2d", 1, (*_POOL, "count_include_pad", "divisor_override"), (),
           "mean over each window (torch's divisor rule)", _check_avgpool2d, _compile_avgpool2d),
    OpSpec("adaptive_avgpool2d", 1, ("output_size",), (),
           "mean over torch's adaptive windows to [oh, ow]", _check_adaptive,
           _compile_adaptive("avg")),
    OpSpec("adaptive_maxpool2d", 1, ("output_size",), (),
           "max over torch's adaptive windows to [oh, ow]", _check_adaptive,
           _compile_adaptive("max")),
    OpSpec("flatten", 1, (), (), "(C, H, W) -> (C*H*W,) in C-major order, as torch.flatten(x, 1)",
           _check_flatten, _compile_flatten, view=True),
    OpSpec("add", 2, (), (), "elementwise sum of two float values of one shape",
           _check_add, _compile_add, _inplace_add),
]

#: op name -> its :class:`OpSpec`; the one list of what a graph may hold
OPS: dict[str, OpSpec] = {spec.name: spec for spec in _SPECS}
