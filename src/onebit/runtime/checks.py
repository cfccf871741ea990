"""What every op's check is made of: :class:`Check` (typed attribute and tensor readers that name
the node at fault) and the shape rules the ops share (windows, conv-like layers).

The per-op checks themselves are in :mod:`onebit.runtime.ops`; :mod:`onebit.runtime.schema` runs
them over a graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onebit.runtime.errors import FormatError
from onebit.runtime.node import Node, ValueInfo

__all__ = [
    "FLOAT32_MAX",
    "MAX_CHANNELS",
    "MAX_NODES",
    "MAX_SPATIAL",
    "MAX_VALUE_ELEMENTS",
    "MAX_WINDOW",
    "NAME_LIMIT",
    "Check",
    "channels",
    "conv_like",
    "value",
    "window_out",
    "words",
]

MAX_NODES = 10_000
MAX_SPATIAL = 32_768
MAX_CHANNELS = 1 << 20
MAX_VALUE_ELEMENTS = 1 << 28
MAX_WINDOW = 64  # kernel, stride, padding, dilation
NAME_LIMIT = 256
FLOAT32_MAX = float(np.finfo(np.float32).max)


def words(n: int) -> int:
    """uint32 words that pack ``n`` bits."""
    return (n + 31) // 32


class Check:
    """Checks one node's attributes and tensors; every failure names the node."""

    def __init__(self, tensors: dict[str, np.ndarray], index: int, node: Node,
                 attrs: tuple[str, ...] = (), roles: tuple[str, ...] = ()) -> None:
        self.graph_tensors, self.node = tensors, node
        self.where = f"node {index} ({node.op}{' ' + node.name if node.name else ''})"
        self.declared_attrs, self.declared_roles = frozenset(attrs), frozenset(roles)
        self.used_attrs: set[str] = set()
        self.used_tensors: set[str] = set()

    def stored(self, role: str) -> np.ndarray | None:
        """The tensor the node names for ``role`` (unchecked; None when absent)."""
        key = self.node.tensors.get(role)
        return self.graph_tensors.get(key) if isinstance(key, str) else None

    def fail(self, message: str) -> FormatError:
        return FormatError(f"{self.where}: {message}")

    # -- attributes -------------------------------------------------------------------------
    def attr(self, key: str) -> Any:
        # a checker reading an attribute its registry entry does not list is a bug of onebit
        assert key in self.declared_attrs, f"{self.node.op}: attribute {key!r} is not declared"
        self.used_attrs.add(key)
        if key not in self.node.attrs:
            raise self.fail(f"missing attribute {key!r}")
        return self.node.attrs[key]

    def integer(self, key: str, lo: int, hi: int) -> int:
        v = self.attr(key)
        if type(v) is not int or not lo <= v <= hi:
            raise self.fail(f"attribute {key!r} must be an integer in [{lo}, {hi}], got {v!r}")
        return v

    def pair(self, key: str, lo: int, hi: int) -> tuple[int, int]:
        v = self.attr(key)
        if (not isinstance(v, list) or len(v) != 2
                or not all(type(x) is int and lo <= x <= hi for x in v)):
            raise self.fail(f"attribute {key!r} must be two integers in [{lo}, {hi}], got {v!r}")
        return v[0], v[1]

    def number(self, key: str) -> float:
        v = self.attr(key)
        if type(v) not in (int, float) or not abs(v) <= FLOAT32_MAX:
            raise self.fail(f"attribute {key!r} must be a finite float32 number, got {v!r:.40}")
        return float(v)

    def flag(self, key: str) -> bool:
        v = self.attr(key)
        if type(v) is not bool:
            raise self.fail(f"attribute {key!r} must be true or false, got {v!r}")
        return v

    def choice(self, key: str, choices: tuple[Any, ...]) -> Any:
        v = self.attr(key)
        if type(v) not in (str, int, float) or v not in choices:
            raise self.fail(f"attribute {key!r} must be one of {list(choices)}, got {v!r}")
        return v

    # -- tensors ----------------------------------------------------------------------------
    def tensor(self, role: str, dtype: Any, shape: tuple[int, ...],
               optional: bool = False) -> np.ndarray | None:
        assert role in self.declared_roles, f"{self.node.op}: tensor {role!r} is not declared"
        self.used_tensors.add(role)
        key = self.node.tensors.get(role)
        if key is None:
            if optional:
                return None
            raise self.fail(f"missing tensor {role!r}")
        array = self.graph_tensors.get(key) if isinstance(key, str) else None
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
            self.bits("weight_bits", (shape[0], *shape[2:], words(nbits)), nbits)
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


def value(c: Check, info: ValueInfo, kinds: tuple[str, ...], rank: int) -> tuple[int, ...]:
    if info.kind not in kinds:
        raise c.fail(f"needs a {' or '.join(kinds)} input, got {info.kind}")
    if len(info.shape) != rank:
        raise c.fail(f"needs a {'(C, H, W)' if rank == 3 else '(F,)'} input, got shape "
                     f"{info.shape}")
    return info.shape


def window_out(c: Check, size: int, k: int, s: int, p: int, d: int, ceil: bool = False) -> int:
    span = d * (k - 1) + 1
    if size + 2 * p < span:
        raise c.fail(f"window {k} (dilation {d}) is larger than the padded input {size + 2 * p}")
    num = size + 2 * p - span
    out = (-(-num // s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def conv_like(c: Check, x: ValueInfo, kinds: tuple[str, ...], *, groups_ok: bool,
               dilation_ok: bool) -> tuple[int, int, int, int, int, int]:
    cin, h, w = value(c, x, kinds, 3)
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
    ho = window_out(c, h, kh, sh, ph, dh)
    wo = window_out(c, w, kw, sw, pw, dw)
    return in_ch // groups, out_ch, kh, kw, ho, wo


def channels(c: Check, x: ValueInfo) -> int:
    """The channel count of a float ``(C, H, W)`` or ``(F,)`` input (elementwise ops)."""
    if x.kind != "float" or len(x.shape) not in (1, 3):
        raise c.fail(f"needs a float (C, H, W) or (F,) input, got {x.kind} {x.shape}")
    return x.shape[0]
