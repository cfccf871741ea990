"""Messages for models :func:`onebit.deploy.convert` cannot express: which module, of which type,
uses what, and what to do about it.

A traced function or attribute (``torch.sigmoid``, a ``getattr`` on a tensor, a matmul of
activations) is reported at the innermost module whose ``forward`` called it (``torch.fx`` keeps
that stack), with the construct it belongs to when it is a known one: squeeze-excitation,
attention, activation functions the runtime lacks, non-tensor inputs. Torch-only helpers; no
state.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

__all__ = ["grouped_binary_conv", "unsupported_function", "unsupported_module"]

_GATES = {torch.sigmoid, F.sigmoid, "sigmoid", "sigmoid_", F.hardsigmoid, "hardsigmoid"}
_MATMUL = {torch.matmul, operator.matmul, torch.bmm, "matmul", "bmm", torch.einsum,
           F.scaled_dot_product_attention, torch.softmax, F.softmax, "softmax"}
_ACTIVATIONS = {F.silu: "SiLU", F.gelu: "GELU", F.hardswish: "Hardswish", F.mish: "Mish",
                torch.tanh: "Tanh", "tanh": "Tanh", F.elu: "ELU", F.leaky_relu: "LeakyReLU"}
_ACTIVATION_MODULES = (nn.SiLU, nn.GELU, nn.Hardswish, nn.Mish, nn.Tanh, nn.ELU, nn.LeakyReLU,
                       nn.Sigmoid, nn.Hardsigmoid, nn.Softmax)
_SUPPORTED = ("supported: Conv2d, Linear, QuantConv2d, QuantLinear, AdderConv2d, "
              "BatchNorm1d/2d, ReLU, Hardtanh/ReLU6, PReLU, onebit quantizers, max/avg/adaptive "
              "pools, Flatten, Identity, Dropout, the sum of two tensors")


def _owner(node: fx.Node) -> tuple[str, str] | None:
    """(module path, type name) of the innermost module whose forward made ``node``."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    path, cls = list(stack.values())[-1]
    return str(path), getattr(cls, "__name__", str(cls))


def _label(fn: Any) -> str:
    return fn if isinstance(fn, str) else getattr(fn, "__name__", str(fn))


def _what(node: fx.Node) -> tuple[str, str]:
    """(what is unsupported, what to do) for a traced function or method call."""
    fn = node.target
    keep_float = ("onebit's runtime has no op for it even in float; replace the block (or use "
                  "a model without it) before binarize_ + convert")
    if fn in _GATES or (fn in (operator.mul, torch.mul, "mul") and any(
            isinstance(a, fx.Node) and a.target in _GATES for a in node.args)):
        return ("squeeze-excitation / gating (a sigmoid gate multiplied into the feature map)",
                keep_float)
    if fn in _MATMUL:
        return ("attention (products and softmax of activations)", "onebit converts "
                "convolutional and dense networks only; use a CNN such as a ResNet")
    if fn in (operator.mul, torch.mul, "mul", operator.truediv, torch.div, "div"):
        return ("elementwise product or quotient of tensors (e.g. a gate or a layer scale)",
                keep_float)
    if fn is getattr or fn in ("size", "dim") or fn is operator.getitem:
        return (f"Python-level use of a tensor ({_label(fn)}: its shape or an attribute is read "
                "in forward, e.g. a channel split or a shape-dependent branch)",
                "onebit traces a fixed graph of tensor ops; write forward with modules and "
                "tensor ops only")
    if fn in _ACTIVATIONS:
        return (f"the activation {_ACTIVATIONS[fn]}", "use ReLU, ReLU6/Hardtanh or PReLU "
                "(onebit's float activations), or a binarizing quantizer")
    return f"the function {_label(fn)!r}", _SUPPORTED


def unsupported_function(node: fx.Node) -> str:
    """Message for a traced function / method / attribute that has no onebit op."""
    owner = _owner(node)
    what, todo = _what(node)
    if owner is not None:  # name the construct the owning module implements, when known
        calls = [n for n in node.graph.nodes if n.op in ("call_function", "call_method")
                 and _owner(n) == owner]
        for n in calls:
            if n.target in _MATMUL or n.target in _GATES:
                what, todo = _what(n)
                break
    where = f"{owner[0]} ({owner[1]})" if owner else f"{node.name} (in the model's own forward)"
    verb = "has no onebit op" if todo is _SUPPORTED else "cannot be converted"
    return f"{where}: {what} {verb}; {todo}"


def unsupported_module(path: str, module: nn.Module) -> str:
    """Message for a module with no onebit op."""
    where = f"{path} ({type(module).__name__})"
    if isinstance(module, _ACTIVATION_MODULES):
        return (f"{where}: no onebit op for this module (the activation "
                f"{type(module).__name__}); use ReLU, ReLU6/Hardtanh or PReLU (onebit's float "
                "activations), or a binarizing quantizer")
    if isinstance(module, nn.MultiheadAttention) or "attention" in type(module).__name__.lower():
        return (f"{where}: attention cannot be converted; onebit converts convolutional and "
                "dense networks only")
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
        return (f"{where}: {type(module).__name__} normalises with statistics of each sample, "
                "which onebit's graph cannot express; use BatchNorm")
    return f"{where}: no onebit op for this module; {_SUPPORTED}"


def grouped_binary_conv(path: str, module: nn.Module, what: str) -> str:
    """Message for a grouped or depthwise conv that a binary method made binary."""
    groups = module.groups
    kind = "depthwise" if groups == module.in_channels else f"grouped (groups={groups})"
    return (f"{path} ({type(module).__name__}): {what} needs a binary convolution, and a "
            f"{kind} conv has none in onebit; keep this layer float: call "
            f"onebit.methods.mark_float_(model.get_submodule({path!r})) on the float model before "
            "binarize_, or name it in binarize_(..., keep_float=...)")
