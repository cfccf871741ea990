"""``convert``: a trained PyTorch model -> an :class:`~onebit.runtime.Graph` the runtime executes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from onebit import __version__
from onebit.deploy.adder_int8 import calibrate_adder_scale, quantize_adder_layer
from onebit.deploy.int8_convs import quantize_float_convs
from onebit.deploy.passes import materialize, run_passes
from onebit.deploy.trace import ConversionError, PNode, trace
from onebit.runtime.graph import Graph

__all__ = ["convert"]


def _method_name(model: nn.Module) -> str | None:
    method = getattr(model, "onebit_method", None)
    if method is None:
        return None
    if isinstance(method, str):
        return method
    name = getattr(method, "name", None)
    return name if isinstance(name, str) else type(method).__name__


def _input_shape(model: nn.Module, shape: Any) -> tuple[int, ...]:
    if shape is None:
        shape = getattr(model, "default_input_size", None)
        if shape is None:
            raise ValueError("convert needs the per-sample input shape: pass "
                             "example_input_shape=(C, H, W) (or (F,) for a vector model)")
    if (not isinstance(shape, Sequence) or len(shape) not in (1, 3)
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise ValueError(f"example_input_shape must be (C, H, W) or (F,) of positive ints without "
                         f"the batch axis, got {shape!r}")
    return tuple(shape)


def _normalization(norm: Any, channels: int) -> dict[str, list[float]] | None:
    if norm is None:
        return None
    if isinstance(norm, Mapping):
        mean, std = norm.get("mean"), norm.get("std")
    elif isinstance(norm, Sequence) and len(norm) == 2:
        mean, std = norm
    else:
        raise ValueError("normalization must be {'mean': [...], 'std': [...]} or (mean, std)")
    mean = [float(v) for v in (mean if isinstance(mean, Sequence) else [mean])]
    std = [float(v) for v in (std if isinstance(std, Sequence) else [std])]
    if len(mean) == 1 and len(std) == 1 and channels > 1:
        mean, std = mean * channels, std * channels
    if len(mean) != channels or len(std) != channels or not all(
            math.isfinite(v) for v in mean + std) or min(std) <= 0:
        raise ValueError(f"normalization needs {channels} finite means and {channels} positive "
                         f"stds (one per input channel), got mean={mean}, std={std}")
    return {"mean": mean, "std": std}


def _adders_to_int8(model: nn.Module, nodes: list[PNode], calibration: Any) -> None:
    """Give every AdderNet layer its shared int8 scale, calibrated on ``calibration`` (a batch of
    model inputs): ``s = max|X| / 127`` over the batch, filters beyond ``127 s`` clipped with the
    exact bias correction of :func:`onebit.deploy.adder_int8.quantize_adder_layer`
    (``clip_filters=True``).
    Trained adder filters drift far outside the input range; a scale sized for them would leave
    the inputs only a few int8 levels."""
    adders = [p for p in nodes if p.op == "adder_conv2d"]
    if not adders:
        raise ValueError("adder_calibration was given but the model has no AdderNet layer")
    seen: dict[int, list[torch.Tensor]] = {id(p.module): [] for p in adders}
    hooks = [p.module.register_forward_hook(
        lambda m, args, out: seen[id(m)].append(args[0].detach())) for p in adders]
    try:
        with torch.no_grad():
            model(torch.as_tensor(np.asarray(calibration, dtype=np.float32)))
    finally:
        for h in hooks:
            h.remove()
    for p in adders:
        scale = calibrate_adder_scale(None, seen[id(p.module)])
        q = quantize_adder_layer(p.module, scale, clip_filters=True)
        p.op = "adder_int8"
        p.attrs["scale"] = float(scale)
        p.arrays["weight_q"] = np.ascontiguousarray(q.weight_q)
        p.arrays["bias"] = q.bias.astype(np.float64)  # the layer's bias less the clip correction


def _attach_modules(model: nn.Module, nodes: list[PNode]) -> None:
    """Give each conv, linear and BatchNorm node its torch module (named ``"path (Type)"`` by
    the trace), so that :func:`~onebit.deploy.passes.materialize` can evaluate the exact float
    map from a binary accumulator to the next sign."""
    for p in nodes:
        if p.module is not None or p.op not in ("conv2d", "linear", "channel_affine"):
            continue
        path = p.name.rsplit(" (", 1)[0]
        try:
            p.module = model.get_submodule(path)
        except AttributeError:
            continue


def convert(model: nn.Module, *, example_input_shape: Sequence[int] | None = None,
            class_names: Sequence[str] | None = None,
            normalization: Mapping[str, Sequence[float]] | Sequence[Any] | None = None,
            adder_calibration: Any = None, first_layer: str = "float",
            float_convs: str = "float", calibration: Any = None) -> Graph:
    """Convert a trained model (evaluated in eval mode) into an inference graph.

    BatchNorm folds into the neighbouring layer (a per-channel threshold on the integer
    accumulator where a sign follows), binary weights are packed 1 bit each with their
    per-channel scale, and binary layers that feed binary layers exchange packed bits. See
    :mod:`onebit.deploy.passes` for the rules.

    Args:
        model: a ``torch.nn.Module`` traceable by ``torch.fx`` (every registered onebit model is).
        example_input_shape: per-sample input shape ``(C, H, W)``; defaults to the model's
            ``default_input_size`` (set by ``onebit.models.create``).
        class_names: optional label per output, stored in the file.
        normalization: ``{"mean": [...], "std": [...]}`` per input channel, applied to pixels
            scaled to [0, 1] by ``Model.preprocess`` (stored, never applied by ``model(x)``).
        adder_calibration: a float32 batch of model inputs ``[N, C, H, W]``; when given, every
            AdderNet layer becomes ``adder_int8`` (inputs and filters int8 with one shared scale
            per layer, calibrated on this batch; exact SAD kernel) instead of the float op.
        first_layer: ``"float"`` (default: the stem conv stays float32, exactly as trained) or
            ``"int8"``: the float convs that read the model's input run in int8
            (:func:`onebit.deploy.int8_convs.quantize_float_convs`: the input per tensor with a
            zero point, calibrated on ``calibration``; the weights per output channel), about
            twice as fast as float on a 7x7 stem; its accuracy cost is measured in the README.
        float_convs: ``"float"`` (default) or ``"int8"``: every float conv with groups 1 and
            zero padding in int8 (the stem and, e.g., Bi-Real's 1x1 downsampling shortcuts).
        calibration: float32 ``[N, C, H, W]`` model inputs, required with either int8 option.

    Raises:
        ConversionError: a layer or function has no equivalent; the message names its module
            path and why.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert expects a torch.nn.Module, got {type(model).__name__}")
    for name, v in (("first_layer", first_layer), ("float_convs", float_convs)):
        if v not in ("float", "int8"):
            raise ValueError(f"{name} must be 'float' or 'int8', got {v!r}")
    int8 = "all" if float_convs == "int8" else "stem" if first_layer == "int8" else None
    if (int8 is not None) != (calibration is not None):
        raise ValueError("first_layer='int8' / float_convs='int8' need calibration=<float32 "
                         "[N, C, H, W] model inputs>" if calibration is None else
                         "calibration is used only with first_layer='int8' or float_convs='int8'")
    shape = _input_shape(model, example_input_shape)
    norm = _normalization(normalization, shape[0]) if len(shape) == 3 else None
    if normalization is not None and len(shape) != 3:
        raise ValueError("normalization applies to image models (input shape (C, H, W))")
    was_training = model.training
    model.eval()
    try:
        nodes, input_name, output_name = trace(model, shape)
        _attach_modules(model, nodes)
        if adder_calibration is not None:
            _adders_to_int8(model, nodes, adder_calibration)
        if not nodes:
            raise ConversionError("the model has no ops to convert (its output is its input)")
        nodes = run_passes(nodes, output_name)
        graph_nodes, tensors = materialize(nodes)
    finally:
        model.train(was_training)

    metadata: dict[str, Any] = {"method": _method_name(model), "onebit_version": __version__}
    if norm is not None:
        metadata["normalization"] = norm
    graph = Graph(nodes=graph_nodes, tensors=tensors, input_shape=shape, output=output_name,
                  input=input_name, metadata=metadata)
    if int8 is not None:
        graph = quantize_float_convs(graph, calibration, scope=int8)
    out_shape = graph.validate()[output_name].shape
    if class_names is not None:
        names = [str(c) for c in class_names]
        if out_shape != (len(names),):
            raise ValueError(f"{len(names)} class_names for a model with output shape {out_shape}")
        metadata["class_names"] = names
    return graph
