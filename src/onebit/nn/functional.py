"""Functional forms of onebit's layers: the AdderNet convolution and the XNOR-Net K map.

``adder_conv2d`` is the single entry point :class:`onebit.nn.AdderConv2d` calls (the place a
compiled kernel plugs in); ``adder_conv2d_reference`` is the plain unfold formulation, kept for
tests on small shapes only.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd import Function

__all__ = [
    "adaptive_filter_grad",
    "adder_conv2d",
    "adder_conv2d_reference",
    "adder_output_size",
    "xnor_k_map",
    "ADDER_CHUNK_ELEMENTS",
]

#: Upper bound on the number of elements of any temporary the AdderNet backward builds
#: (the difference tensor is evaluated in blocks of rows x output channels x fan-in of this size).
ADDER_CHUNK_ELEMENTS = 1 << 22


def _pair(v: Any, what: str) -> tuple[int, int]:
    if isinstance(v, int) and not isinstance(v, bool):
        out = (v, v)
    elif isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        out = (int(v[0]), int(v[1]))
    else:
        raise ValueError(f"{what} must be an int or a pair of ints; got {v!r}")
    return out


def adder_output_size(
    h: int, w: int, kernel_size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> tuple[int, int]:
    """``(H_out, W_out) = ((H + 2 p - k) // s + 1, ...)``; raises ValueError when not positive."""
    ho = (h + 2 * padding[0] - kernel_size[0]) // stride[0] + 1
    wo = (w + 2 * padding[1] - kernel_size[1]) // stride[1] + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(
            f"input {h}x{w} is too small for kernel {kernel_size} with padding {padding}; "
            "use a larger input or more padding"
        )
    return ho, wo


def _check_adder_args(
    x: torch.Tensor, weight: torch.Tensor, stride: Any, padding: Any, eta: float | None
) -> tuple[tuple[int, int], tuple[int, int], float | None]:
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(
            f"adder_conv2d expects x [N, C_in, H, W] and weight [C_out, C_in, kh, kw]; got "
            f"{tuple(x.shape)} and {tuple(weight.shape)}"
        )
    if x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"x has {x.shape[1]} channels but the weight expects {weight.shape[1]} (weight shape "
            f"{tuple(weight.shape)})"
        )
    if not x.is_floating_point() or x.dtype != weight.dtype:
        raise TypeError(
            f"adder_conv2d needs floating-point x and weight of one dtype; got {x.dtype} and "
            f"{weight.dtype} (convert with .float())"
        )
    s, p = _pair(stride, "stride"), _pair(padding, "padding")
    if min(s) < 1 or min(p) < 0:
        raise ValueError(f"stride must be >= 1 and padding >= 0; got stride={s}, padding={p}")
    if eta is not None:
        eta = float(eta)
        if not eta > 0:
            raise ValueError(f"eta must be > 0 (or None for no adaptive scaling); got {eta}")
    return s, p, eta


def adaptive_filter_grad(grad_w: torch.Tensor, eta: float | None) -> torch.Tensor:
    """AdderNet's adaptive learning rate folded into the filter gradient (paper eq. 12):
    ``grad * eta * sqrt(numel(grad)) / max(||grad||_2, 1e-12)``; the identity for ``eta=None``."""
    if eta is None:
        return grad_w
    norm = grad_w.norm(p=2).clamp_min(1e-12)
    return grad_w * (eta * math.sqrt(grad_w.numel()) / norm)


class _AdderConv2dFunction(Function):
    """``Y = -sum |X - F|`` with bounded-memory forward and backward (see :func:`adder_conv2d`)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        stride: tuple[int, int],
        padding: tuple[int, int],
        eta: float | None,
    ) -> torch.Tensor:
        n, _, h, w = x.shape
        c_out, c_in, kh, kw = weight.shape
        ho, wo = adder_output_size(h, w, (kh, kw), stride, padding)
        # rows: one per (sample, output position); columns: the C_in*kh*kw taps
        cols = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # [N, K, P]
        rows = cols.transpose(1, 2).reshape(n * ho * wo, c_in * kh * kw)
        w2 = weight.reshape(c_out, -1)
        dist = torch.cdist(rows, w2, p=1)  # [N*P, C_out], sum_k |X - F| without the 3-D tensor
        ctx.save_for_backward(rows, w2)
        ctx.meta = (x.shape, weight.shape, stride, padding, eta, ho, wo)
        return -dist.reshape(n, ho * wo, c_out).transpose(1, 2).reshape(n, c_out, ho, wo)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        rows, w2 = ctx.saved_tensors
        x_shape, w_shape, stride, padding, eta, ho, wo = ctx.meta
        n = x_shape[0]
        c_out = w_shape[0]
        g = grad_out.reshape(n, c_out, ho * wo).transpose(1, 2).reshape(n * ho * wo, c_out)
        grad_x = grad_w = None
        if ctx.needs_input_grad[1]:
            # dY/dF = X - F:  sum_r (X_r - F) g_r = G^T X - F * sum_r g_r
            gw = g.t() @ rows - w2 * g.sum(dim=0)[:, None]
            grad_w = adaptive_filter_grad(gw, eta).reshape(w_shape)
        if ctx.needs_input_grad[0]:
            # dY/dX = clip(F - X, -1, 1):  grad_rows[r, k] = sum_c clip(F[c, k] - X[r, k]) g[r, c]
            n_rows, k = rows.shape
            grad_rows = torch.empty_like(rows)
            c_blk = max(1, min(c_out, ADDER_CHUNK_ELEMENTS // max(1, k)))
            r_blk = max(1, ADDER_CHUNK_ELEMENTS // (c_blk * k))
            for r0 in range(0, n_rows, r_blk):
                xr = rows[r0 : r0 + r_blk, None, :]  # [R, 1, K]
                acc = None
                for c0 in range(0, c_out, c_blk):
                    d = (w2[None, c0 : c0 + c_blk, :] - xr).clamp_(-1, 1)  # [R, C, K]
                    part = torch.bmm(g[r0 : r0 + r_blk, None, c0 : c0 + c_blk], d).squeeze(1)
                    acc = part if acc is None else acc.add_(part)
                grad_rows[r0 : r0 + r_blk] = acc
            cols = grad_rows.reshape(n, ho * wo, k).transpose(1, 2)
            grad_x = F.fold(
                cols, x_shape[2:], (w_shape[2], w_shape[3]), padding=padding, stride=stride
            )
        return grad_x, grad_w, None, None, None


def adder_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    eta: float | None = 0.2,
) -> torch.Tensor:
    """AdderNet convolution (Chen et al., "AdderNet", CVPR 2020, arXiv:1912.13200).

    Forward: ``Y[n, t, p] = -sum_{i,j,k} |X[n, k, p+(i,j)] - F[t, k, i, j]|`` (zero padding, like the
    official code's unfold). Backward: filter gradient at full precision ``dY/dF = X - F``, then
    the adaptive learning-rate scaling ``grad_F *= eta * sqrt(numel(F)) / ||grad_F||_2``
    (``eta=None`` leaves it unscaled); input gradient ``dY/dX = clip(F - X, -1, 1)`` (HardTanh).

    Memory stays bounded: the forward uses ``torch.cdist(p=1)`` on the im2col rows and the input
    gradient is accumulated in blocks of at most :data:`ADDER_CHUNK_ELEMENTS` elements, so the
    ``C_out x (C_in*k*k) x (N*H*W)`` difference tensor is never built.
    """
    s, p, eta = _check_adder_args(x, weight, stride, padding, eta)
    if x.device.type == "cpu" and x.dtype == torch.float32 and weight.device.type == "cpu":
        # CPU float32: onebit's C++ kernels (onebit.ops.adder_conv2d, same math); torch otherwise
        from onebit.ops.adder import adder_conv2d as compiled_adder_conv2d

        return compiled_adder_conv2d(x, weight, s, p, eta)
    return _AdderConv2dFunction.apply(x, weight, s, p, eta)


class _AdderReferenceFunction(Function):
    """The unfold formulation over the full difference tensor (small shapes only)."""

    @staticmethod
    def forward(ctx: Any, x, weight, stride, padding, eta):  # type: ignore[no-untyped-def]
        n, _, h, w = x.shape
        c_out, _, kh, kw = weight.shape
        ho, wo = adder_output_size(h, w, (kh, kw), stride, padding)
        # X_col: [K, N*P] (column (n, p) holds the receptive field of output p of sample n)
        x_col = F.unfold(x, (kh, kw), padding=padding, stride=stride).permute(1, 0, 2).reshape(
            weight[0].numel(), -1
        )
        w_col = weight.reshape(c_out, -1)
        diff = x_col[None, :, :] - w_col[:, :, None]  # [C_out, K, N*P]
        out = -diff.abs().sum(dim=1)  # [C_out, N*P]
        ctx.save_for_backward(x_col, w_col)
        ctx.meta = (x.shape, weight.shape, stride, padding, eta)
        return out.reshape(c_out, n, ho, wo).permute(1, 0, 2, 3).contiguous()

    @staticmethod
    def backward(ctx: Any, grad_out):  # type: ignore[no-untyped-def]
        x_col, w_col = ctx.saved_tensors
        x_shape, w_shape, stride, padding, eta = ctx.meta
        c_out = w_shape[0]
        g = grad_out.permute(1, 0, 2, 3).reshape(c_out, -1)  # [C_out, N*P]
        diff = x_col[None, :, :] - w_col[:, :, None]  # X - F
        grad_w = (diff * g[:, None, :]).sum(dim=2)
        grad_w = adaptive_filter_grad(grad_w, eta).reshape(w_shape)
        grad_x_col = ((-diff).clamp(-1, 1) * g[:, None, :]).sum(dim=0)  # [K, N*P]
        n = x_shape[0]
        cols = grad_x_col.reshape(grad_x_col.shape[0], n, -1).permute(1, 0, 2)
        grad_x = F.fold(cols, x_shape[2:], (w_shape[2], w_shape[3]), padding=padding, stride=stride)
        return grad_x, grad_w, None, None, None


def adder_conv2d_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    eta: float | None = 0.2,
) -> torch.Tensor:
    """Reference AdderNet convolution: same math as :func:`adder_conv2d`, computed over the whole
    ``C_out x (C_in*kh*kw) x (N*H_out*W_out)`` difference tensor as the official code does.

    Memory grows with the product of all dimensions: use it on small shapes (tests) only.
    """
    s, p, eta = _check_adder_args(x, weight, stride, padding, eta)
    return _AdderReferenceFunction.apply(x, weight, s, p, eta)


def xnor_k_map(
    x: torch.Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: Any = 0,
    dilation: int | tuple[int, int] = 1,
) -> torch.Tensor:
    """XNOR-Net's per-position input scale ``K = A (*) k`` (Rastegari et al. 2016, sec. 3.2).

    ``A = mean_c |x[:, c]|`` (``[N, 1, H, W]``), ``k`` a ``kh x kw`` box filter of value
    ``1 / (kh * kw)``, applied with the convolution's stride and dilation. ``padding`` is an int, a
    pair (symmetric) or a 4-tuple ``(left, right, top, bottom)`` as ``F.pad`` takes it; ``A`` is
    zero-padded. Returns ``[N, 1, H_out, W_out]``; gradients flow into ``x``.
    """
    if x.dim() != 4:
        raise ValueError(f"xnor_k_map expects x [N, C, H, W]; got shape {tuple(x.shape)}")
    kh, kw = _pair(kernel_size, "kernel_size")
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        pads = tuple(int(v) for v in padding)
    else:
        ph, pw = _pair(padding, "padding")
        pads = (pw, pw, ph, ph)
    a = x.abs().mean(dim=1, keepdim=True)
    if any(pads):
        a = F.pad(a, pads, value=0.0)
    box = torch.full((1, 1, kh, kw), 1.0 / (kh * kw), dtype=x.dtype, device=x.device)
    return F.conv2d(a, box, stride=_pair(stride, "stride"), dilation=_pair(dilation, "dilation"))
