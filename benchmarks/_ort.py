"""ONNX Runtime competitors for the benchmarks: a float32 model and its static int8 quantization.

The int8 model is what a user would build with ONNX Runtime's own tools: ``quantize_static`` in
QDQ format, per-channel int8 weights, uint8 activations, calibrated (MinMax) on sample inputs.
Both sessions run with every graph optimisation on, ``intra_op_num_threads`` set to the thread
count and one inter-op thread. ``onnx`` and ``onnxruntime`` come with onebit's ``bench`` extra;
:func:`available` says whether they import here (the scripts skip these rows with a note if not).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["available", "export_onnx", "ort_session", "quantize_int8"]


def available() -> str | None:
    """None when ONNX Runtime rows can run; else the reason (for the skip note)."""
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        return (f"{' and '.join(missing)} not installed (pip install 'onebit[bench]'): "
                "ONNX Runtime rows skipped")
    return None


def export_onnx(model, input_shape: tuple[int, ...], path: str | os.PathLike[str]) -> str:
    """Export a float torch model (eval mode) to ONNX with a dynamic batch axis."""
    import torch

    x = torch.zeros((1, *input_shape))
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(model.eval(), (x,), str(path), input_names=["input"],
                          output_names=["output"], opset_version=17, dynamo=False,
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return str(path)


def quantize_int8(float_path: str | os.PathLike[str], out_path: str | os.PathLike[str],
                  calibration: np.ndarray) -> str:
    """Static int8 quantization (QDQ, per-channel weights, uint8 activations) calibrated on
    ``calibration`` (a float32 NCHW batch, fed one image at a time)."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{"input": calibration[i:i + 1]} for i in range(len(calibration))])

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
    return str(out_path)


def ort_session(path: str | os.PathLike[str], threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """A callable running the ONNX file in ONNX Runtime on the CPU with ``threads`` threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]
