"""An inference graph run by PyTorch in float32: the same ops, with every binary weight expanded to
float and every binary conv computed as a float conv on +/-1 values.

Two uses: the float baseline of ``onebit bench`` (what the architecture costs in PyTorch's fp32
kernels), and an independent reference of the runtime's semantics (tests compare the two).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from onebit.runtime.binary_ops import unpack_signs
from onebit.runtime.graph import Graph, Node

__all__ = ["GraphTorchModule"]


def _sign(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x < 0, -1.0, 1.0).to(x.dtype)  # NaN: +1, as the packed bits


def _pad(x: torch.Tensor, padding: list[int], value: float) -> torch.Tensor:
    ph, pw = padding
    return F.pad(x, (pw, pw, ph, ph), value=value) if ph or pw else x


class GraphTorchModule(nn.Module):
    """``GraphTorchModule(graph)(x)`` computes ``onebit.runtime.Model(graph)(x)`` with PyTorch
    float32 ops (NCHW). Packed-bit values are represented as float +/-1 tensors.

    With ``exact=False`` a binary conv / dense layer is just the float conv / matmul of its real
    input (no sign, PyTorch's own zero padding): what a float network of this architecture costs,
    the baseline ``onebit bench`` times (its outputs are not the binary model's).
    """

    def __init__(self, graph: Graph, exact: bool = True) -> None:
        super().__init__()
        self.infos = graph.validate()
        self.graph = graph
        self.exact = exact
        self._weights: dict[tuple[int, str], torch.Tensor] = {}
        for i, node in enumerate(graph.nodes):
            for role, key in node.tensors.items():
                array = graph.tensors[key]
                if role == "weight_bits":
                    array = self._expand(node, array)
                    role = "weight"
                elif role == "weight_scale":
                    continue
                elif role == "weight_q":  # int8 [O, kh, kw, C] -> [O, C, kh, kw]
                    array = np.asarray(array).transpose(0, 3, 1, 2)
                self._weights[(i, role)] = torch.from_numpy(np.array(array, np.float32))
            if "weight_scale" in node.tensors:
                scale = torch.from_numpy(np.array(graph.tensors[node.tensors["weight_scale"]]))
                w = self._weights[(i, "weight")]
                self._weights[(i, "weight")] = w * scale.reshape((-1,) + (1,) * (w.dim() - 1))

    def _expand(self, node: Node, bits: np.ndarray) -> np.ndarray:
        n = node.attrs.get("in_features") or node.attrs["in_channels"] // node.attrs.get("groups",
                                                                                         1)
        signs = unpack_signs(bits, n)  # [O, (kh, kw,) C]
        return np.moveaxis(signs, -1, 1) if signs.ndim == 4 else signs

    def _w(self, i: int, role: str) -> torch.Tensor | None:
        return self._weights.get((i, role))

    def _transform(self, i: int, node: Node, acc: torch.Tensor, k: torch.Tensor | None
                   ) -> torch.Tensor:
        shape = (1, -1, 1, 1) if acc.dim() == 4 else (1, -1)
        if node.attrs["output"] == "float":
            y = acc * k if k is not None else acc
            return y * self._w(i, "multiplier").reshape(shape) + self._w(i, "bias").reshape(shape)
        t = self._w(i, "thresholds").reshape(shape)
        flip = self._w(i, "flip").reshape(shape) > 0
        negative = torch.where(flip, acc > t, acc < t)
        return torch.where(negative, -1.0, 1.0)

    def _node(self, i: int, node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
        a, op, x = node.attrs, node.op, xs[0]
        if op == "conv2d":
            return F.conv2d(_pad(x, a["padding"], a["pad_value"]), self._w(i, "weight"),
                            self._w(i, "bias"), a["stride"], 0, a["dilation"], a["groups"])
        if op == "bconv2d" and not self.exact:
            return F.conv2d(x, self._w(i, "weight"), None, a["stride"], a["padding"])
        if op == "blinear" and not self.exact:
            return F.linear(x, self._w(i, "weight"))
        if op == "bconv2d":
            k = None
            if a["xnor_k"]:
                kh, kw = a["kernel"]
                box = torch.full((1, 1, kh, kw), 1.0 / (kh * kw))
                k = F.conv2d(_pad(x.abs().mean(1, keepdim=True), a["padding"], 0.0), box,
                             stride=a["stride"])
            acc = F.conv2d(_pad(_sign(x), a["padding"], float(a["pad_value"])),
                           self._w(i, "weight"), None, a["stride"])
            return self._transform(i, node, acc, k)
        if op == "linear":
            return F.linear(x, self._w(i, "weight"), self._w(i, "bias"))
        if op == "blinear":
            beta = x.abs().mean(1, keepdim=True) if a.get("xnor_k") else None
            return self._transform(i, node, F.linear(_sign(x), self._w(i, "weight")), beta)
        if op == "adder_conv2d":
            from onebit.nn.functional import adder_conv2d

            y = adder_conv2d(x, self._w(i, "weight"), a["stride"], a["padding"], None)
            mult, bias = self._w(i, "multiplier"), self._w(i, "bias")
            y = y * mult.reshape(1, -1, 1, 1) if mult is not None else y
            return y + bias.reshape(1, -1, 1, 1) if bias is not None else y
        if op == "adder_int8":
            from onebit.nn.functional import adder_conv2d

            x_q = torch.clamp(torch.round(x / a["scale"]), -127, 127)
            y = adder_conv2d(x_q, self._w(i, "weight_q"), a["stride"], a["padding"], None)
            return y * self._w(i, "multiplier").reshape(1, -1, 1, 1) + \
                self._w(i, "bias").reshape(1, -1, 1, 1)
        if op in ("channel_affine", "prelu"):
            shape = (1, -1, 1, 1) if x.dim() == 4 else (1, -1)
            if op == "prelu":
                return torch.where(x >= 0, x, x * self._w(i, "weight").reshape(shape))
            return x * self._w(i, "scale").reshape(shape) + self._w(i, "shift").reshape(shape)
        simple: dict[str, Any] = {
            "relu": lambda: F.relu(x),
            "hardtanh": lambda: F.hardtanh(x, a["min_val"], a["max_val"]),
            "sign": lambda: _sign(x),
            "maxpool2d": lambda: F.max_pool2d(x, a["kernel"], a["stride"], a["padding"],
                                              a["dilation"], a["ceil_mode"]),
            "avgpool2d": lambda: F.avg_pool2d(x, a["kernel"], a["stride"], a["padding"],
                                              a["ceil_mode"], a["count_include_pad"],
                                              a["divisor_override"]),
            "adaptive_avgpool2d": lambda: F.adaptive_avg_pool2d(x, a["output_size"]),
            "adaptive_maxpool2d": lambda: F.adaptive_max_pool2d(x, a["output_size"]),
            "flatten": lambda: torch.flatten(x, 1),
            "add": lambda: x + xs[1],
        }
        if op == "kbit":
            levels = float(2 ** a["bits"] - 1)
            if a["bits"] == 1:
                return _sign(x)
            return 2 * (torch.floor(levels * (x.clamp(-1, 1) + 1) / 2 + 0.5) / levels - 0.5)
        return simple[op]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.graph.input: x}
        for i, node in enumerate(self.graph.nodes):
            values[node.output] = self._node(i, node, [values[v] for v in node.inputs])
        return values[self.graph.output]

    def float32_weight_bytes(self) -> int:
        """Bytes of all weights held as float32 (what the float model would store)."""
        return int(sum(4 * math.prod(w.shape) for (_, role), w in self._weights.items()
                       if role not in ("thresholds", "flip")))
