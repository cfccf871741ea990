"""Export an inference graph to QONNX, the quantized-ONNX dialect FPGA flows such as FINN read.

The graph is the one :mod:`onebit.deploy.onnx_export` writes, with onebit's quantizers as QONNX
nodes (domain ``qonnx.custom_op.general``) instead of their float expansion:

* every sign (binary activations, and the sign inside binary convs and dense layers) is
  ``BipolarQuant(x, scale=1)``: ``+1`` where ``x >= 0`` else ``-1``, onebit's ``sign(0) = +1``.
  A unit scale keeps QONNX's ``BIPOLAR`` datatype, the form FINN maps to XNOR-popcount.
* binary weights are ``BipolarQuant(W, scale)`` over a float initializer: scale 1 inside
  binary convs (the accumulator stays an exact integer) and the per-channel scale of
  binary-weight float convs (BWN).
* the scales of binary layers follow the convolution as standard ops, in the runtime's order:
  ``acc * K * multiplier + bias``, where K is XNOR-Net's map (``Abs -> ReduceMean ->
  AveragePool``) and ``multiplier`` holds the layer's weight scale (XNOR-Net's alpha, Bi-Real's
  mean magnitude) times BiPer's output scale and the folded BatchNorm; layers feeding binary
  layers end in ``BipolarQuant((acc - T) * s)`` (the integer thresholds of the folded BatchNorm).
* k-bit activations are ``Quant(v, scale=1, zeropt=0, bitwidth=k, signed=0, narrow=0,
  rounding_mode="HALF_UP")`` on ``v = (x + 1) * L / 2`` (``L = 2^k - 1``), then ``/ L - 1/2``
  and ``* 2``: the level index is an unsigned k-bit integer.

BatchNorm and float layers are standard ONNX, the batch axis is dynamic. ``qonnx``'s executor
(``qonnx.core.onnx_exec.execute_onnx``) runs the file.

>>> from onebit.deploy import export_qonnx
>>> export_qonnx(model, "model.qonnx.onnx", example_input_shape=(1, 28, 28))   # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from onebit.deploy.onnx_export import OnnxWriter, _onnx, to_graph
from onebit.runtime.graph import Graph

__all__ = ["QONNX_DOMAIN", "export_qonnx", "graph_to_qonnx"]

QONNX_DOMAIN = "qonnx.custom_op.general"


class QonnxWriter(OnnxWriter):
    """:class:`OnnxWriter` with onebit's quantizers as QONNX ``BipolarQuant`` / ``Quant``."""

    format_name = "QONNX"

    def sign(self, x: str, base: str) -> str:
        return self.op("BipolarQuant", [x, self.const(f"{base}.scale", 1.0)], f"{base}.sign",
                       domain=QONNX_DOMAIN)

    def kbit_levels(self, v: str, bits: int, base: str) -> str:
        return self.op("Quant", [v, self.const(f"{base}.scale", 1.0),
                                 self.const(f"{base}.zeropt", 0.0),
                                 self.const(f"{base}.bitwidth", float(bits))],
                       f"{base}.level", domain=QONNX_DOMAIN, signed=0, narrow=0,
                       rounding_mode="HALF_UP")

    def binary_weight(self, signs: np.ndarray, scale: np.ndarray | None, base: str) -> str:
        w = self.const(f"{base}.weight", signs)
        s = 1.0 if scale is None else np.asarray(scale, np.float32).reshape(
            (-1,) + (1,) * (signs.ndim - 1))
        return self.op("BipolarQuant", [w, self.const(f"{base}.weight_scale", s)],
                       f"{base}.weight_q", domain=QONNX_DOMAIN)

    def accumulator(self, acc: str, base: str) -> str:
        return acc  # the weights come out of BipolarQuant nodes, which no optimizer folds into

    def opsets(self) -> list[Any]:
        return [*super().opsets(), self.onnx.helper.make_opsetid(QONNX_DOMAIN, 1)]


def graph_to_qonnx(graph: Graph) -> Any:
    """The QONNX ``onnx.ModelProto`` of ``graph`` (input ``[batch, *input_shape]``, output
    ``logits``)."""
    return QonnxWriter(graph).build()


def export_qonnx(model: Any, path: str | os.PathLike[str], *,
                 example_input_shape: Any = None, **convert_kwargs: Any) -> Any:
    """Write ``model`` (a PyTorch model, converted first, or a :class:`Graph`) as a QONNX file;
    returns the ModelProto. ``convert_kwargs`` go to :func:`onebit.deploy.convert`.

    Raises :class:`~onebit.deploy.onnx_export.ExportError` for AdderNet layers (no QONNX
    operator), and ConversionError for models convert cannot express.
    """
    proto = graph_to_qonnx(to_graph(model, example_input_shape, **convert_kwargs))
    _onnx().save(proto, os.fspath(path))
    return proto
