"""Rewrites of the primitive ops into the inference graph: fold, fuse, pack.

In order:

1. ``hardtanh -> maxpool/flatten`` becomes ``maxpool/flatten -> hardtanh`` (monotone maps commute
   with max and with moving values), and ``hardtanh -> sign`` becomes ``sign``: ``sign(clip(x, lo, hi)) = sign(x)`` when ``lo < 0 <= hi``.
2. BatchNorm (``channel_affine``) folds into the output affine ``y * mult + bias`` of the conv,
   linear or adder layer before it (``mult *= s``, ``bias = bias * s + t``), also across a max
   pool when every scale ``s`` is positive (``max(s a + t) = s max(a) + t``).
3. ``sign -> conv2d/linear`` with binary weights becomes ``bconv2d`` / ``blinear`` (the binary op
   takes the real input and packs its sign), when the conv has no groups or dilation and pads
   with 0 or +/-1.
4. A binary op whose output only feeds binary ops writes packed bits: its affine and the sign
   that follows fold into one integer threshold per channel. Where the torch layer and the
   BatchNorms folded into it are known, the thresholds reproduce the PyTorch model's eval-mode
   float decision for every integer accumulator, ties included (see :func:`exact_thresholds`);
   otherwise they come from the real-arithmetic fold (see :func:`thresholds`).
5. Ops whose result is never used are dropped; then :func:`materialize` packs weights and names
   the tensors.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import torch

from onebit.deploy.trace import ConversionError, PNode
from onebit.kernels import sign_thresholds
from onebit.runtime.binary_ops import pack_signs
from onebit.runtime.graph import Node

__all__ = ["exact_thresholds", "materialize", "run_passes", "thresholds"]

_AFFINE_OPS = ("conv2d", "linear", "adder_conv2d", "adder_int8", "bconv2d", "blinear")
_BINARY_OPS = ("bconv2d", "blinear")


def _consumers(nodes: list[PNode], output: str) -> dict[str, list[Any]]:
    users: dict[str, list[Any]] = defaultdict(list)
    for node in nodes:
        for name in node.inputs:
            users[name].append(node)
    users[output].append("graph output")
    return users


def _producers(nodes: list[PNode]) -> dict[str, PNode]:
    return {n.output: n for n in nodes}


def _clip_after_maxpool(nodes: list[PNode], output: str) -> list[PNode]:
    """``clip/relu -> maxpool`` becomes ``maxpool -> clip/relu``: a monotone elementwise map
    commutes with max (padding is -inf and never wins), and the map then runs on fewer values.
    Likewise ``clip/relu -> flatten`` (flatten only moves values). A clip that ends up right
    before a sign then disappears (step 1)."""
    changed = True
    while changed:
        changed = False
        users = _consumers(nodes, output)
        for i, act in enumerate(nodes):
            if act.op not in ("hardtanh", "relu") or len(users[act.output]) != 1:
                continue
            pool = users[act.output][0]
            if isinstance(pool, str) or pool.op not in ("maxpool2d", "flatten"):
                continue
            a, b, c = act.inputs[0], act.output, pool.output
            pool.inputs, pool.output, act.inputs, act.output = [a], b, [b], c
            j = nodes.index(pool)
            nodes[i], nodes[j] = pool, act
            changed = True
            break
    return nodes


def _bypass_clip_before_sign(nodes: list[PNode], output: str) -> None:
    prod = _producers(nodes)
    users = _consumers(nodes, output)
    for node in nodes:
        if node.op != "sign" or any(not isinstance(u, str) and u.attrs.get("xnor_k")
                                    for u in users[node.output]):
            continue  # XNOR's K uses |x| of the clipped input: keep the clip there
        src = prod.get(node.inputs[0])
        while src is not None and src.op == "hardtanh" and src.attrs["min_val"] < 0 <= \
                src.attrs["max_val"]:
            node.inputs = [src.inputs[0]]
            src = prod.get(src.inputs[0])


def _fold(target: PNode, s: np.ndarray, t: np.ndarray, bn: PNode | None = None) -> None:
    """Fold ``y * s + t`` into ``target``'s output affine; ``bn`` (a direct fold, nothing in
    between) joins the chain of modules :func:`exact_thresholds` evaluates, any other fold
    breaks that chain."""
    target.arrays["mult"] = target.arrays["mult"] * s
    target.arrays["bias"] = target.arrays["bias"] * s + t
    chain = target.attrs.setdefault("_folded", [])
    chain.append(bn.module if bn is not None else None)


def _fold_batchnorm(nodes: list[PNode], output: str) -> list[PNode]:
    removed: set[int] = set()
    for bn in nodes:
        if bn.op != "channel_affine":
            continue
        users = _consumers(nodes, output)
        prod = _producers(nodes)
        s, t = bn.arrays["scale"], bn.arrays["shift"]
        src = prod.get(bn.inputs[0])
        if src is None or len(users[src.output]) != 1:
            continue
        if src.op in _AFFINE_OPS:
            _fold(src, s, t, bn)
            src.output = bn.output
            removed.add(id(bn))
            nodes = [n for n in nodes if id(n) not in removed]
        elif src.op == "maxpool2d" and np.all(s > 0):
            inner = prod.get(src.inputs[0])
            if inner is not None and inner.op in _AFFINE_OPS and len(users[inner.output]) == 1:
                _fold(inner, s, t)
                src.output = bn.output
                removed.add(id(bn))
                nodes = [n for n in nodes if id(n) not in removed]
    return nodes


def _fuse_binary(nodes: list[PNode]) -> None:
    prod = _producers(nodes)
    for node in nodes:
        if node.op not in ("conv2d", "linear"):
            continue
        src = prod.get(node.inputs[0])
        fusable = "weight_neg" in node.arrays and src is not None and src.op == "sign"
        if node.op == "conv2d":
            a = node.attrs
            fusable = fusable and a["groups"] == 1 and a["dilation"] == [1, 1] and \
                a["pad_value"] in (-1.0, 0.0, 1.0)
            xnor_k = a.pop("xnor_k")
            a.pop("k_source")  # the real input K is computed from: the sign's input, by trace
            if xnor_k and not fusable:
                raise ConversionError(f"{node.name}: XNOR's K map needs a binary convolution "
                                      "(sign input, binary weights, no groups or dilation)")
            if fusable:
                del a["groups"], a["dilation"]
                a["xnor_k"] = xnor_k
        else:
            beta = node.attrs.pop("xnor_k", False)
            if beta and not fusable:
                raise ConversionError(f"{node.name}: XNOR's beta needs a binary dense layer "
                                      "(sign input, binary weights)")
            if beta:  # only written when used: files without beta stay as they were
                node.attrs["xnor_k"] = True
        if fusable:
            node.op = "bconv2d" if node.op == "conv2d" else "blinear"
            node.inputs = [src.inputs[0]]


def _pack_outputs(nodes: list[PNode], output: str) -> None:
    users = _consumers(nodes, output)
    for node in nodes:
        if node.op in _BINARY_OPS:
            node.attrs["output"] = "float"
    for node in nodes:
        if node.op not in _BINARY_OPS:
            continue
        us = users[node.output]
        if us and not node.attrs.get("xnor_k") and all(
                not isinstance(u, str) and u.op in _BINARY_OPS and not u.attrs.get("xnor_k")
                for u in us):
            node.attrs["output"] = "bits"


def _prune(nodes: list[PNode], output: str) -> list[PNode]:
    needed = {output}
    kept: list[PNode] = []
    for node in reversed(nodes):
        if node.output in needed:
            kept.append(node)
            needed.update(node.inputs)
    return kept[::-1]


def run_passes(nodes: list[PNode], output: str) -> list[PNode]:
    """Apply the rewrites listed in the module docstring; returns the new node list."""
    nodes = _clip_after_maxpool(nodes, output)
    _bypass_clip_before_sign(nodes, output)
    nodes = _prune(nodes, output)
    nodes = _fold_batchnorm(nodes, output)
    _fuse_binary(nodes)
    nodes = _prune(nodes, output)
    _pack_outputs(nodes, output)
    return nodes


def thresholds(mult: np.ndarray, bias: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``sign(acc * mult + bias)`` into integer thresholds on ``acc`` in ``[-n, n]``.

    ``sign(z) = +1`` iff ``z >= 0``. For ``mult > 0``: iff ``acc >= -bias/mult``, so the output
    is -1 (bit 1) iff ``acc < T`` with ``T = ceil(-bias/mult)``. For ``mult < 0`` the comparison
    flips: -1 iff ``acc > T`` with ``T = floor(-bias/mult)`` (``flip = 1``). ``mult = 0`` gives
    the constant ``sign(bias)``. (:func:`onebit.kernels.sign_thresholds` does the arithmetic.)
    T is clamped to ``[-(n+1), n+1]``, where the comparison is already constant over ``acc``;
    returns ``(T int32, flip uint8)``.
    """
    t, flip = sign_thresholds(mult, bias)
    t = np.clip(t.astype(np.float64), -(n + 1), n + 1)
    return t.astype(np.int32), flip.astype(np.uint8)


def exact_thresholds(layer: Any, folded: list[Any], n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Thresholds and flips that reproduce the PyTorch eval-mode decision ``sign(z(acc))`` for
    every integer accumulator ``acc`` in ``[-n, n]``, where ``z`` is the layer's
    ``output_affine(acc, alpha)`` followed by the ``folded`` BatchNorm modules, evaluated by torch
    itself on all ``2n + 1`` values per channel (the same ops, in the same order, as the model's
    forward; ``sign(z) = -1`` iff ``z < 0``, so NaN gives +1).

    Returns ``(T int32, flip uint8)`` as :func:`thresholds` does, or None when the layer cannot
    be evaluated this way (no ``output_affine``/``binary_weight``, a fold that was not a
    BatchNorm module, or a decision that is not monotone in ``acc``).
    """
    split = getattr(layer, "binary_weight", lambda: None)()
    if split is None or not hasattr(layer, "output_affine") or not all(
            isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded):
        return None
    alpha = split[1]
    out = alpha.numel()
    acc = torch.arange(-n, n + 1, dtype=alpha.dtype)
    conv = isinstance(layer, torch.nn.Conv2d)
    with torch.no_grad():
        if conv:  # NCHW, the values along H: the layout of a convolution output
            z = layer.output_affine(acc.view(1, 1, -1, 1).expand(1, out, -1, 1).contiguous(), alpha)
        else:
            z = layer.output_affine(acc.view(-1, 1).expand(-1, out).contiguous(), alpha)
        for bn in folded:
            z = bn(z)
    neg = (z < 0).reshape(out, -1).numpy() if conv else (z < 0).T.numpy()
    t = np.empty(out, dtype=np.int64)
    flip = np.zeros(out, dtype=np.uint8)
    values = np.arange(-n, n + 1)
    for o in range(out):
        row = neg[o]
        k = int(row.sum())
        if k == 0 or k == row.size:  # constant: -1 everywhere (T above the range) or +1
            t[o] = n + 1 if k else -(n + 1)
        elif row[:k].all():  # -1 for the k smallest accumulators: -1 iff acc < T
            t[o] = values[k]
        elif row[-k:].all():  # -1 for the k largest: -1 iff acc > T
            t[o], flip[o] = values[-k - 1], 1
        else:
            return None
    return t.astype(np.int32), flip


def _pack_rows(neg: np.ndarray) -> np.ndarray:
    """bool ``[O, C]`` or ``[O, C, kh, kw]`` (True = -1) -> packed ``[O, (kh, kw,) ceil(C/32)]``."""
    if neg.ndim == 4:
        neg = neg.transpose(0, 2, 3, 1)
    return pack_signs(np.where(neg, np.float32(-1), np.float32(1)))


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def materialize(nodes: list[PNode]) -> tuple[list[Node], dict[str, np.ndarray]]:
    """Turn primitive nodes into graph nodes plus named float32 / packed tensors."""
    out_nodes: list[Node] = []
    tensors: dict[str, np.ndarray] = {}
    for index, p in enumerate(nodes):
        attrs = dict(p.attrs)
        if p.op not in _BINARY_OPS or attrs.get("output") != "bits":
            attrs.pop("_folded", None)
        arr: dict[str, np.ndarray] = {}
        a = p.arrays
        if p.op in ("conv2d", "linear"):
            if "weight" in a:
                w = a["weight"] * a["mult"].reshape((-1,) + (1,) * (a["weight"].ndim - 1))
                arr["weight"] = _f32(w)
            else:
                arr["weight_bits"] = _pack_rows(a["weight_neg"])
                arr["weight_scale"] = _f32(a["weight_scale"] * a["mult"])
            if np.any(a["bias"] != 0):
                arr["bias"] = _f32(a["bias"])
        elif p.op in _BINARY_OPS:
            arr["weight_bits"] = _pack_rows(a["weight_neg"])
            m = a["weight_scale"] * a["mult"]
            if attrs["output"] == "float":
                arr["multiplier"], arr["bias"] = _f32(m), _f32(a["bias"])
            else:
                n = math.prod(a["weight_neg"].shape[1:])
                folded = attrs.pop("_folded", [])
                exact = None if p.module is None or None in folded else \
                    exact_thresholds(p.module, folded, n)
                arr["thresholds"], arr["flip"] = exact or thresholds(m, a["bias"], n)
        elif p.op == "adder_conv2d":
            arr["weight"] = _f32(a["weight"])
            if np.any(a["mult"] != 1):
                arr["multiplier"] = _f32(a["mult"])
            if np.any(a["bias"] != 0):
                arr["bias"] = _f32(a["bias"])
        elif p.op == "adder_int8":
            arr["weight_q"] = np.ascontiguousarray(a["weight_q"], dtype=np.int8)
            arr["multiplier"] = _f32(attrs["scale"] * a["mult"])
            arr["bias"] = _f32(a["bias"])
        elif p.op == "channel_affine":
            arr["scale"], arr["shift"] = _f32(a["scale"]), _f32(a["shift"])
        elif p.op == "prelu":
            arr["weight"] = _f32(a["weight"])
        roles = {}
        for role, value in arr.items():
            key = f"{index:03d}.{role}"
            tensors[key] = value
            roles[role] = key
        out_nodes.append(Node(op=p.op, inputs=list(p.inputs), output=p.output,
                              attrs=attrs, tensors=roles, name=p.name))
    return out_nodes, tensors
