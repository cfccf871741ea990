"""Trace a trained PyTorch model into primitive ops (the first step of :func:`onebit.deploy.convert`).

The model is traced with ``torch.fx`` (onebit's layers, quantizers and torch's own modules are leaves)
and its shapes are propagated with an example input. Each node becomes a :class:`PNode` over
named values; quantization is explicit: a ``QuantConv2d`` with a sign input quantizer becomes
``sign -> conv2d`` with its weight held as signs and a per-channel scale, and the passes in
:mod:`onebit.deploy.passes` then fuse, fold and pack. Anything without an equivalent raises
:class:`ConversionError` naming the module path (or the traced function) and why.
"""

from __future__ import annotations

import functools
import operator
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from onebit.deploy.diagnose import grouped_binary_conv, unsupported_function, unsupported_module
from onebit.errors import OnebitError
from onebit.kernels._checks import pair
from onebit.nn import AdderConv2d
from onebit.quantizers import Quantizer
from onebit.runtime import float_ops
from onebit.runtime.ops import OPS

__all__ = ["ConversionError", "PNode", "trace"]


class ConversionError(OnebitError, ValueError):
    """A model (or one of its layers) has no equivalent in onebit's inference graph."""


@dataclass
class PNode:
    """A primitive op during conversion. ``arrays`` hold float64 (or bool) NumPy data by role."""

    op: str
    inputs: list[str]
    output: str
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    module: nn.Module | None = None  # the traced layer, where a later step needs it (AdderNet)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy().copy()


def _size_list(v: Any, name: str) -> list[int]:
    """A layer's 2-D size argument (read by :func:`onebit.kernels._checks.pair`) as the
    ``[h, w]`` list a graph node stores."""
    return list(pair(v, name, 0))


_PROBE = torch.cat([torch.tensor([0.0, -0.0, 1e-30, -1e-30, 0.25, -0.25, 0.5, -0.5, 1.0, -1.0,
                                  3.0, -3.0, 1e6, -1e6]), torch.linspace(-2, 2, 401)])


def quantizer_kind(q: nn.Module | None, where: str) -> tuple[str, int]:
    """What an activation quantizer computes in eval mode, checked on probe values:
    ``("float", 0)`` (identity), ``("sign", 1)`` (sign with sign(0) = +1) or ``("kbit", k)``."""
    if q is None:
        return "float", 0
    name = getattr(q, "name", "") or type(q).__name__
    probe = _PROBE.reshape(1, -1, 1, 1)  # one sample, the values as channels
    was_training = q.training
    q.eval()
    try:
        with torch.no_grad():
            out = q(probe.clone())
    except Exception as exc:
        raise ConversionError(f"{where}: activation quantizer {name!r} fails on a probe tensor "
                              f"({exc}); the runtime supports identity, sign and k-bit") from exc
    finally:
        q.train(was_training)
    if not isinstance(out, torch.Tensor) or out.shape != probe.shape:
        raise ConversionError(f"{where}: quantizer {name!r} does not map a tensor elementwise")
    out = out.reshape(-1)
    if torch.equal(out, _PROBE):
        return "float", 0
    if torch.equal(out, torch.where(_PROBE >= 0, 1.0, -1.0)):
        return "sign", 1
    bits = getattr(q, "bits", None)
    if isinstance(bits, int) and 1 <= bits <= 24:
        ref = torch.from_numpy(float_ops.kbit(_PROBE.numpy(), bits))
        if torch.allclose(out, ref, rtol=0, atol=1e-6):
            return "kbit", bits
    raise ConversionError(f"{where}: activation quantizer {name!r} is neither the identity, a sign "
                          "(sign(0) = +1) nor the k-bit quantizer in eval mode; the runtime cannot "
                          "compute it")


def layer_weight(layer: nn.Module, where: str) -> dict[str, np.ndarray]:
    """``{"weight": w}`` (float) or ``{"weight_neg": w < 0, "weight_scale": alpha}`` when the
    layer's weight quantizer is binary: every output filter must then be ``+/-alpha_o``."""
    wq = getattr(layer, "weight_quantizer", None)
    with torch.no_grad():
        w = layer.quantized_weight() if hasattr(layer, "quantized_weight") else layer.weight
    w = _np(w)
    if wq is None or not getattr(wq, "is_binary", False):
        return {"weight": w}
    mag = np.abs(w.reshape(w.shape[0], -1))
    scale = mag.max(axis=1)
    if not np.allclose(mag, scale[:, None], rtol=1e-6, atol=0):
        name = getattr(wq, "name", type(wq).__name__)
        raise ConversionError(f"{where}: weight quantizer {name!r} says it is binary but the "
                              "quantized weights are not +/-alpha per output channel")
    return {"weight_neg": w < 0, "weight_scale": scale}


def _symmetric_padding(conv: nn.Module, where: str) -> list[int]:
    if getattr(conv, "padding_mode", "zeros") != "zeros":
        raise ConversionError(f"{where}: padding_mode={conv.padding_mode!r} is not supported "
                              "(use zero padding, with pad_value for quantized inputs)")
    left, right, top, bottom = (int(p) for p in conv._reversed_padding_repeated_twice)
    if left != right or top != bottom:
        raise ConversionError(f"{where}: asymmetric padding {(left, right, top, bottom)} is not "
                              "supported; use an explicit symmetric padding")
    return [top, left]


#: functions and tensor methods the builder converts (anything else is a ConversionError)
_FUNCTIONS = {
    F.relu, torch.relu, "relu", "relu_", F.hardtanh, "clamp", torch.clamp, "clip", torch.clip,
    torch.flatten, "flatten", "view", "reshape", torch.reshape, "contiguous", "clone", "detach",
    torch.mean, "mean", F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d,
}


class _Tracer(fx.Tracer):
    """fx tracer with onebit's layers as leaves. With ``chain_sequential``, subclasses of
    ``nn.Sequential`` are traced as the plain chain of their children (their own ``forward``,
    e.g. an input-shape check, is skipped; :func:`trace` then checks the result is unchanged)."""

    def __init__(self, leaves: tuple[type, ...], chain_sequential: bool = False) -> None:
        super().__init__()
        self.leaves = leaves
        self.chain_sequential = chain_sequential

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, self.leaves) or super().is_leaf_module(m, qualname)

    def call_module(self, m: nn.Module, forward: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
        if self.chain_sequential and isinstance(m, nn.Sequential):
            forward = functools.partial(nn.Sequential.forward, m)
        return super().call_module(m, forward, args, kwargs)


class _Builder:
    """Walks the traced graph and emits :class:`PNode` s."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.nodes: list[PNode] = []
        self.alias: dict[str, str] = {}  # fx node name -> value name

    def value(self, arg: Any, where: str) -> str:
        if not isinstance(arg, fx.Node) or arg.name not in self.alias:
            raise ConversionError(f"{where}: expects a tensor produced by the model, got {arg!r}")
        return self.alias[arg.name]

    def emit(self, op: str, inputs: list[str], name: str, out: str | None = None,
             **attrs: Any) -> str:
        if op not in OPS:  # every emitted op is one the runtime runs
            raise AssertionError(f"{op!r} is not an op of onebit.runtime.ops.OPS")
        out = out or f"v{len(self.nodes)}"
        self.nodes.append(PNode(op, inputs, out, name, attrs))
        return out

    # -- modules -----------------------------------------------------------------------------
    def quantized_input(self, m: nn.Module, x: str, where: str) -> tuple[str, str]:
        """Emit the layer's input quantizer as its own op; returns (value, kind)."""
        kind, bits = quantizer_kind(getattr(m, "input_quantizer", None), f"{where}.input_quantizer")
        if kind == "sign":
            x = self.emit("sign", [x], where, output="float")
        elif kind == "kbit":
            x = self.emit("kbit", [x], where, bits=bits)
        return x, kind

    def conv(self, m: nn.Conv2d, x: str, where: str) -> str:
        padding = _symmetric_padding(m, where)
        src = x
        x, kind = self.quantized_input(m, x, where)
        xnor_k = getattr(m, "input_scaling", None) == "xnor_k"
        if xnor_k and m.groups > 1:
            raise ConversionError(grouped_binary_conv(where.split(" ")[0], m, "XNOR's K map"))
        if xnor_k and kind != "sign":
            raise ConversionError(f"{where}: input_scaling='xnor_k' needs a sign input quantizer "
                                  "(the runtime applies K only in binary convolutions)")
        out = self.emit("conv2d", [x], where, in_channels=m.in_channels,
                        out_channels=m.out_channels,
                        kernel=_size_list(m.kernel_size, "kernel_size"),
                        stride=_size_list(m.stride, "stride"), padding=padding,
                        dilation=_size_list(m.dilation, "dilation"),
                        groups=m.groups, pad_value=float(getattr(m, "pad_value", 0.0)),
                        xnor_k=xnor_k, k_source=src)
        self._scaled_output(self.nodes[-1], m, where)
        return out

    def linear(self, m: nn.Linear, x: str, where: str) -> str:
        x, kind = self.quantized_input(m, x, where)
        beta = getattr(m, "input_scaling", None) == "xnor_beta"
        if beta and kind != "sign":
            raise ConversionError(f"{where}: input_scaling='xnor_beta' needs a sign input quantizer "
                                  "(the runtime applies beta only in binary dense layers)")
        out = self.emit("linear", [x], where, in_features=m.in_features,
                        out_features=m.out_features, xnor_k=beta)
        self._scaled_output(self.nodes[-1], m, where)
        return out

    def _scaled_output(self, node: PNode, m: nn.Module, where: str) -> None:
        """Weight (float or signs) and the output affine ``y * mult + bias`` (BiPer's scale)."""
        node.arrays.update(layer_weight(m, where))
        o = node.arrays.get("weight", node.arrays.get("weight_neg")).shape[0]
        scale = getattr(m, "scale", None)
        node.arrays["mult"] = _np(scale).reshape(o) if scale is not None else np.ones(o)
        node.arrays["bias"] = _np(m.bias) if m.bias is not None else np.zeros(o)

    def batchnorm(self, m: nn.modules.batchnorm._BatchNorm, x: str, where: str) -> str:
        if m.running_mean is None or m.running_var is None:
            raise ConversionError(f"{where}: BatchNorm without running statistics "
                                  "(track_running_stats=False) has no fixed eval-mode affine")
        s = 1.0 / np.sqrt(_np(m.running_var) + m.eps)
        if m.weight is not None:
            s = s * _np(m.weight)
        t = -_np(m.running_mean) * s + (_np(m.bias) if m.bias is not None else 0.0)
        out = self.emit("channel_affine", [x], where)
        self.nodes[-1].arrays.update(scale=s, shift=t)
        return out

    def pool(self, kind: str, x: str, where: str, kernel: Any, stride: Any, padding: Any,
             dilation: Any = 1, ceil_mode: bool = False, count_include_pad: bool = True,
             divisor_override: Any = None) -> str:
        stride = kernel if stride is None or stride == [] or stride == () else stride
        if kind == "max":
            return self.emit("maxpool2d", [x], where, kernel=_size_list(kernel, "kernel_size"),
                             stride=_size_list(stride, "stride"),
                             padding=_size_list(padding, "padding"),
                             dilation=_size_list(dilation, "dilation"),
                             ceil_mode=bool(ceil_mode))
        return self.emit("avgpool2d", [x], where, kernel=_size_list(kernel, "kernel_size"),
                         stride=_size_list(stride, "stride"),
                         padding=_size_list(padding, "padding"),
                         ceil_mode=bool(ceil_mode),
                         count_include_pad=bool(count_include_pad),
                         divisor_override=divisor_override)

    def adaptive(self, kind: str, x: str, where: str, size: Any, in_shape: tuple[int, ...]) -> str:
        size = [size, size] if isinstance(size, int) or size is None else list(size)
        size = [in_shape[2 + i] if s is None else int(s) for i, s in enumerate(size)]
        op = "adaptive_avgpool2d" if kind == "avg" else "adaptive_maxpool2d"
        return self.emit(op, [x], where, output_size=size)

    def module(self, node: fx.Node) -> str | None:
        m = self.modules[node.target]
        where = f"{node.target} ({type(m).__name__})"
        x = self.value(node.args[0], where) if node.args else None
        in_shape = tuple(node.args[0].meta["tensor_meta"].shape) if node.args else ()
        if isinstance(m, AdderConv2d):
            out = self.emit("adder_conv2d", [x], where, in_channels=m.weight.shape[1],
                            out_channels=m.weight.shape[0], kernel=list(m.weight.shape[2:]),
                            stride=_size_list(m.stride, "stride"),
                            padding=_size_list(m.padding, "padding"))
            o = m.weight.shape[0]
            bias = getattr(m, "bias", None)
            self.nodes[-1].arrays.update(weight=_np(m.weight), mult=np.ones(o),
                                         bias=_np(bias) if bias is not None else np.zeros(o))
            self.nodes[-1].module = m
            return out
        if isinstance(m, nn.Conv2d):
            return self.conv(m, x, where)
        if isinstance(m, nn.Linear):
            return self.linear(m, x, where)
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            if len(in_shape) != (4 if isinstance(m, nn.BatchNorm2d) else 2):
                raise ConversionError(f"{where}: input of shape {in_shape} is not supported")
            return self.batchnorm(m, x, where)
        if isinstance(m, Quantizer):
            kind, bits = quantizer_kind(m, where)
            if kind == "float":
                return x
            if kind == "sign":
                return self.emit("sign", [x], where, output="float")
            return self.emit("kbit", [x], where, bits=bits)
        if isinstance(m, (nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout)):
            return x
        if isinstance(m, nn.ReLU):
            return self.emit("relu", [x], where)
        if isinstance(m, nn.Hardtanh):  # also ReLU6
            return self.emit("hardtanh", [x], where, min_val=float(m.min_val),
                             max_val=float(m.max_val))
        if isinstance(m, nn.PReLU):
            out = self.emit("prelu", [x], where)
            self.nodes[-1].arrays["weight"] = _np(m.weight).reshape(-1)
            return out
        if isinstance(m, nn.MaxPool2d):
            if m.return_indices:
                raise ConversionError(f"{where}: return_indices=True is not supported")
            return self.pool("max", x, where, m.kernel_size, m.stride, m.padding, m.dilation,
                             m.ceil_mode)
        if isinstance(m, nn.AvgPool2d):
            return self.pool("avg", x, where, m.kernel_size, m.stride, m.padding, 1, m.ceil_mode,
                             m.count_include_pad, m.divisor_override)
        if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            if getattr(m, "return_indices", False):
                raise ConversionError(f"{where}: return_indices=True is not supported")
            kind = "avg" if isinstance(m, nn.AdaptiveAvgPool2d) else "max"
            return self.adaptive(kind, x, where, m.output_size, in_shape)
        if isinstance(m, nn.Flatten):
            return self.flatten(x, where, in_shape, m.start_dim, m.end_dim)
        raise ConversionError(unsupported_module(node.target, m))

    def flatten(self, x: str, where: str, in_shape: tuple[int, ...], start: int = 1,
                end: int = -1) -> str:
        if len(in_shape) == 2 and start in (1, -1) and end in (1, -1):
            return x
        if len(in_shape) != 4 or start != 1 or end not in (-1, 3):
            raise ConversionError(f"{where}: only flatten(x, 1) of an NCHW tensor is supported "
                                  f"(input {in_shape}, start_dim={start}, end_dim={end})")
        return self.emit("flatten", [x], where)

    # -- functions and methods ---------------------------------------------------------------
    def function(self, node: fx.Node) -> str | None:
        fn, args, kw = node.target, node.args, node.kwargs
        label = getattr(fn, "__name__", str(fn))
        where = f"{node.name} ({label})"
        in_shape = tuple(args[0].meta["tensor_meta"].shape) if args and isinstance(
            args[0], fx.Node) and "tensor_meta" in args[0].meta else ()
        arg = (lambda i, key, default: args[i] if len(args) > i else kw.get(key, default))
        if node.op == "call_method" and fn in ("size", "dim"):
            return None
        if fn in (operator.add, operator.iadd, torch.add, "add", "add_"):
            if len(args) != 2 or kw.get("alpha", 1) != 1 or not all(
                    isinstance(a, fx.Node) for a in args):
                raise ConversionError(f"{where}: only the sum of two tensors is supported")
            shapes = [tuple(a.meta["tensor_meta"].shape) for a in args]
            if shapes[0] != shapes[1]:
                raise ConversionError(f"{where}: adding shapes {shapes[0]} and {shapes[1]} needs "
                                      "broadcasting, which is not supported")
            return self.emit("add", [self.value(a, where) for a in args], where)
        if fn not in _FUNCTIONS:
            raise ConversionError(unsupported_function(node))
        x = self.value(args[0], where) if args else None
        if fn in (F.relu, torch.relu, "relu", "relu_"):
            return self.emit("relu", [x], where)
        if fn in (F.hardtanh, "clamp", torch.clamp, "clip", torch.clip):
            lo = arg(1, "min_val" if fn is F.hardtanh else "min", -1.0)
            hi = arg(2, "max_val" if fn is F.hardtanh else "max", 1.0)
            if not all(isinstance(v, (int, float)) for v in (lo, hi)):
                raise ConversionError(f"{where}: clamp needs constant numeric bounds")
            return self.emit("hardtanh", [x], where, min_val=float(lo), max_val=float(hi))
        if fn in (torch.flatten, "flatten"):
            return self.flatten(x, where, in_shape, arg(1, "start_dim", 0), arg(2, "end_dim", -1))
        if fn in ("view", "reshape", torch.reshape):
            out_shape = tuple(node.meta["tensor_meta"].shape)
            if out_shape == in_shape:
                return x
            if len(in_shape) == 4 and len(out_shape) == 2 and out_shape[0] == in_shape[0]:
                return self.emit("flatten", [x], where)
            raise ConversionError(f"{where}: reshape {in_shape} -> {out_shape} is not supported "
                                  "(only flattening NCHW to (N, C*H*W))")
        if fn in ("contiguous", "clone", "detach"):
            return x
        if fn in (torch.mean, "mean"):
            dims = arg(1, "dim", None)
            dims = sorted(d % 4 for d in ([dims] if isinstance(dims, int) else dims or []))
            if len(in_shape) != 4 or dims != [2, 3]:
                raise ConversionError(f"{where}: only the mean over H and W is supported")
            y = self.emit("adaptive_avgpool2d", [x], where, output_size=[1, 1])
            return y if arg(2, "keepdim", False) else self.emit("flatten", [y], where)
        if fn in (F.max_pool2d, F.avg_pool2d):
            kernel, stride = arg(1, "kernel_size", None), arg(2, "stride", None)
            padding = arg(3, "padding", 0)
            if fn is F.max_pool2d:
                return self.pool("max", x, where, kernel, stride, padding, arg(4, "dilation", 1),
                                 arg(5, "ceil_mode", False))
            return self.pool("avg", x, where, kernel, stride, padding, 1, arg(4, "ceil_mode", False),
                             arg(5, "count_include_pad", True), arg(6, "divisor_override", None))
        if fn in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
            kind = "avg" if fn is F.adaptive_avg_pool2d else "max"
            return self.adaptive(kind, x, where, arg(1, "output_size", None), in_shape)
        raise AssertionError(f"{label} is listed in _FUNCTIONS but not handled")

    def run(self) -> tuple[str, str]:
        input_name = output_name = None
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                if input_name is not None:
                    raise ConversionError(f"{node.name}: the model takes a second input "
                                          f"{node.target!r}; convert needs a model of a single "
                                          "tensor input (wrap it in a module whose forward(x) "
                                          "supplies the others as constants, or drop them)")
                input_name = self.alias[node.name] = "input"
            elif node.op == "output":
                out = node.args[0]
                output_name = self.value(out, "model output (a single tensor)")
            elif node.op == "get_attr":
                raise ConversionError(f"{node.name}: the model uses the attribute {node.target!r} "
                                      "as a tensor; only modules and supported functions convert")
            else:
                meta = node.meta.get("tensor_meta")
                if meta is not None and len(meta.shape) not in (2, 4):
                    raise ConversionError(f"{node.name} ({node.target}): tensors of rank "
                                          f"{len(meta.shape)} are not supported (only NCHW and "
                                          "(N, F))")
                handler: Callable[[fx.Node], str | None] = (
                    self.module if node.op == "call_module" else self.function)
                result = handler(node)
                if result is not None:
                    self.alias[node.name] = result
        assert input_name is not None and output_name is not None
        return input_name, output_name


def _trace_as_chain(model: nn.Module, leaves: tuple[type, ...], example: torch.Tensor,
                    error: Exception) -> fx.GraphModule:
    """Second attempt for models built from ``nn.Sequential`` subclasses whose ``forward`` adds
    untraceable checks: trace them as plain chains, then require identical outputs in torch."""
    fail = ConversionError(f"torch.fx cannot trace {type(model).__name__}: {error}. Keep "
                           "data-dependent Python control flow out of forward()")
    if not any(isinstance(m, nn.Sequential) for m in model.modules()):
        raise fail from error
    root = nn.Sequential(OrderedDict(model.named_children())) if isinstance(
        model, nn.Sequential) else model
    try:
        tracer = _Tracer(leaves, chain_sequential=True)
        graph = tracer.trace(root)
        gm = fx.GraphModule(tracer.root, graph)
        with torch.no_grad():
            same = torch.equal(gm(example), model(example))
    except Exception:
        raise fail from error
    if not same:
        raise ConversionError(f"{type(model).__name__}: its forward() cannot be traced and "
                              "differs from running its children in order") from error
    return gm


def trace(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[list[PNode], str, str]:
    """Trace ``model`` (in eval mode) into primitive nodes; return ``(nodes, input, output)``."""
    leaves = (nn.Conv2d, nn.Linear, Quantizer, AdderConv2d)
    example = torch.randn(2, *input_shape)
    try:
        tracer = _Tracer(leaves)
        graph = tracer.trace(model)
        gm = fx.GraphModule(tracer.root, graph)
    except Exception as exc:  # fx raises many types for untraceable Python
        gm = _trace_as_chain(model, leaves, example, exc)
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    builder = _Builder(gm)
    input_name, output_name = builder.run()
    return builder.nodes, input_name, output_name
