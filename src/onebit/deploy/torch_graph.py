"""An inference graph run by PyTorch in float32: the same ops, with every binary weight expanded to
float and every binary conv computed as a float conv on +/-1 values.

Two uses: the float baseline of ``onebit bench`` (what the architecture costs in PyTorch's fp32
kernels), and an independent reference of the runtime's semantics (tests compare the two). The
torch reference of each op is in :data:`REFERENCES`, one entry per op of
:data:`onebit.runtime.ops.OPS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from onebit.kernels.int8conv import quantize_conv_weight
from onebit.nn.functional import adder_conv2d
from onebit.runtime.binary_ops import unpack_signs
from onebit.runtime.graph import Graph, Node

__all__ = ["REFERENCES", "GraphTorchModule"]


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
        if not self.exact and node.op in ("bconv2d", "blinear"):  # the float baseline
            a, w = node.attrs, self._w(i, "weight")
            if node.op == "blinear":
                return F.linear(xs[0], w)
            return F.conv2d(xs[0], w, None, a["stride"], a["padding"])
        return REFERENCES[node.op](self, i, node, xs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.graph.input: x}
        for i, node in enumerate(self.graph.nodes):
            values[node.output] = self._node(i, node, [values[v] for v in node.inputs])
        return values[self.graph.output]

    def float32_weight_bytes(self) -> int:
        """Bytes of all weights held as float32 (what the float model would store)."""
        return int(sum(4 * math.prod(w.shape) for (_, role), w in self._weights.items()
                       if role not in ("thresholds", "flip")))


# -- the torch reference of each op of onebit.runtime.ops.OPS ----------------------------------
# Each takes (module, node index, node, inputs) and returns the op's output (NCHW or [N, F]).
_Ref = Callable[[GraphTorchModule, int, Node, list[torch.Tensor]], torch.Tensor]


def _channel_shape(x: torch.Tensor) -> tuple[int, ...]:
    return (1, -1, 1, 1) if x.dim() == 4 else (1, -1)


def _conv2d(m: GraphTorchModule, i: int, node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    a = node.attrs
    return F.conv2d(_pad(xs[0], a["padding"], a["pad_value"]), m._w(i, "weight"), m._w(i, "bias"),
                    a["stride"], 0, a["dilation"], a["groups"])


def _conv2d_int8(m: GraphTorchModule, i: int, node: Node, xs: list[torch.Tensor]
                 ) -> torch.Tensor:
    """The int8 conv's arithmetic in torch: the same activation and weight quantization, the
    integer sum in float64 (exact), then float32 ``(acc - zp * sum wq) * out_scale + bias``."""
    a, x = node.attrs, xs[0]
    w = m._w(i, "weight")
    if not m.exact:  # the float baseline
        return F.conv2d(x, w, m._w(i, "bias"), a["stride"], a["padding"], a["dilation"])

    scale, zp, qmax = a["act_scale"], a["act_zero_point"], 2 ** a["act_bits"] - 1
    inv = torch.tensor(1.0 / scale, dtype=torch.float32)
    t = torch.clamp(x * inv, -zp, qmax - zp)  # as the kernel: clamp, then round half to even
    q = torch.round(torch.where(torch.isnan(t), torch.full_like(t, -zp), t)) + zp
    wq, sw = quantize_conv_weight(w.detach().cpu().numpy(), bits=a["weight_bits"])
    wq_t = torch.from_numpy(wq.astype(np.float64))
    acc = F.conv2d(F.pad(q.double() - zp, [a["padding"][1]] * 2 + [a["padding"][0]] * 2),
                   wq_t, None, a["stride"], 0, a["dilation"])
    out_scale = torch.from_numpy((np.float32(scale) * sw.astype(np.float32)).astype(np.float32))
    y = acc.float() * out_scale.reshape(1, -1, 1, 1)
    bias = m._w(i, "bias")
    return y + bias.reshape(1, -1, 1, 1) if bias is not None else y


def _bconv2d(m: GraphTorchModule, i: int, node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    a, x, k = node.attrs, xs[0], None
    if a["xnor_k"]:
        kh, kw = a["kernel"]
        box = torch.full((1, 1, kh, kw), 1.0 / (kh * kw))
        k = F.conv2d(_pad(x.abs().mean(1, keepdim=True), a["padding"], 0.0), box,
                     stride=a["stride"])
    acc = F.conv2d(_pad(_sign(x), a["padding"], float(a["pad_value"])), m._w(i, "weight"), None,
                   a["stride"])
    return m._transform(i, node, acc, k)


def _linear(m: GraphTorchModule, i: int, node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    return F.linear(xs[0], m._w(i, "weight"), m._w(i, "bias"))


def _blinear(m: GraphTorchModule, i: int, node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    x = xs[0]
    beta = x.abs().mean(1, keepdim=True) if node.attrs.get("xnor_k") else None
    return m._transform(i, node, F.linear(_sign(x), m._w(i, "weight")), beta)


def _adder_conv2d(m: GraphTorchModule, i: int, node: Node, xs: list[torch.Tensor]
                  ) -> torch.Tensor:
    a = node.attrs
    y = adder_conv2d(xs[0], m._w(i, "weight"), a["stride"], a["padding"], eta=None)
    mult, bias = m._w(i, "multiplier"), m._w(i, "bias")
    y = y * mult.reshape(1, -1, 1, 1) if mult is not None else y
    return y + bias.reshape(1, -1, 1, 1) if bias is not None else y


def _adder_int8(m: GraphTorchModule, i: int, node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    a = node.attrs
    x_q = torch.clamp(torch.round(xs[0] / a["scale"]), -127, 127)
    y = adder_conv2d(x_q, m._w(i, "weight_q"), a["stride"], a["padding"], eta=None)
    return y * m._w(i, "multiplier").reshape(1, -1, 1, 1) + m._w(i, "bias").reshape(1, -1, 1, 1)


def _channel_affine(m: GraphTorchModule, i: int, node: Node, xs: list[torch.Tensor]
                    ) -> torch.Tensor:
    shape = _channel_shape(xs[0])
    return xs[0] * m._w(i, "scale").reshape(shape) + m._w(i, "shift").reshape(shape)


def _prelu(m: GraphTorchModule, i: int, node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    x = xs[0]
    return torch.where(x >= 0, x, x * m._w(i, "weight").reshape(_channel_shape(x)))


def _kbit(m: GraphTorchModule, i: int, node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    bits, x = node.attrs["bits"], xs[0]
    if bits == 1:
        return _sign(x)
    levels = float(2 ** bits - 1)
    return 2 * (torch.floor(levels * (x.clamp(-1, 1) + 1) / 2 + 0.5) / levels - 0.5)


def _maxpool2d(m: GraphTorchModule, i: int, node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    a = node.attrs
    return F.max_pool2d(xs[0], a["kernel"], a["stride"], a["padding"], a["dilation"],
                        a["ceil_mode"])


def _avgpool2d(m: GraphTorchModule, i: int, node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
    a = node.attrs
    return F.avg_pool2d(xs[0], a["kernel"], a["stride"], a["padding"], a["ceil_mode"],
                        a["count_include_pad"], a["divisor_override"])


#: op name -> its torch reference; one entry per op of :data:`onebit.runtime.ops.OPS`
REFERENCES: dict[str, _Ref] = {
    "conv2d": _conv2d,
    "conv2d_int8": _conv2d_int8,
    "bconv2d": _bconv2d,
    "linear": _linear,
    "blinear": _blinear,
    "adder_conv2d": _adder_conv2d,
    "adder_int8": _adder_int8,
    "channel_affine": _channel_affine,
    "relu": lambda m, i, node, xs: F.relu(xs[0]),
    "hardtanh": lambda m, i, node, xs: F.hardtanh(xs[0], node.attrs["min_val"],
                                                  node.attrs["max_val"]),
    "prelu": _prelu,
    "sign": lambda m, i, node, xs: _sign(xs[0]),
    "kbit": _kbit,
    "maxpool2d": _maxpool2d,
    "avgpool2d": _avgpool2d,
    "adaptive_avgpool2d": lambda m, i, node, xs: F.adaptive_avg_pool2d(
        xs[0], node.attrs["output_size"]),
    "adaptive_maxpool2d": lambda m, i, node, xs: F.adaptive_max_pool2d(
        xs[0], node.attrs["output_size"]),
    "flatten": lambda m, i, node, xs: torch.flatten(xs[0], 1),
    "add": lambda m, i, node, xs: xs[0] + xs[1],
}
