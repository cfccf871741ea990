"""AdderNet convolution as a torch op backed by onebit's C++ kernels (CPU, float32).

Chen et al., "AdderNet: Do We Really Need Multiplications in Deep Learning?", CVPR 2020
(arXiv:1912.13200), section 3:

* forward   ``Y[n, t, oh, ow] = -sum_{c,i,j} |X_pad[n, c, oh*sh + i, ow*sw + j] - F[t, c, i, j]|``,
  ``X_pad`` zero-padded (a padded tap contributes ``|0 - F|``, as the official unfold code);
* filter gradient at full precision, ``dY/dF = X - F``:
  ``dF[t, c, i, j] = sum_{n,oh,ow} (X_pad - F) * G[n, t, oh, ow]``;
* input gradient clipped by HardTanh, ``dY/dX = HT(F - X) = clip(F - X, -1, 1)``:
  ``dX[n, c, h, w] = sum_{t,i,j} clip(F - X, -1, 1) * G`` over the taps that read ``(h, w)``;
* adaptive learning rate (optional, ``eta``): ``dF *= eta * sqrt(numel(F)) / ||dF||_2``.

The kernels never build the ``C_out x (C*kh*kw) x (N*H_out*W_out)`` difference tensor: each
thread packs a chunk of output positions at a time (a few rows of one image or a few small
images, sized from the layer). The forward splits positions among threads, the backward input
channels, so every sum runs in the same order whatever the thread count (bit-identical results).
They run on ``torch.get_num_threads()`` threads, so a torch program is not oversubscribed.

Results equal the unfold formulation up to float32 rounding: an output summing ``n`` terms is
within ``(n + 8) * 2^-24`` times the sum of the terms' magnitudes (the tests check this bound).
The filter gradient is computed as ``G X^T - F * sum(G)`` (exact algebra, one FMA per term), so
its terms are ``X * G`` and ``F * sum(G)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from onebit import _kernels
from onebit.nn.functional import adaptive_filter_grad

__all__ = ["adder_conv2d", "adder_conv2d_supported", "adaptive_filter_grad"]


def _pair(value: Any, name: str, minimum: int) -> tuple[int, int]:
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        pair = (value[0], value[1])
    else:
        pair = (value, value)
    for v in pair:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def adder_conv2d_supported(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`adder_conv2d` can run these tensors: both float32, on the CPU."""
    return (
        x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.device.type == "cpu"
        and weight.device.type == "cpu"
    )


class _AdderConv2dOp(Function):
    """Autograd wrapper of ``onebit._kernels.adder_conv2d_forward`` / ``_backward``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        stride: tuple[int, int],
        padding: tuple[int, int],
        eta: float | None,
        out_hw: tuple[int, int],
    ) -> torch.Tensor:
        xc = x.detach().contiguous()
        wc = weight.detach().contiguous()
        y = torch.empty((x.shape[0], weight.shape[0], *out_hw), dtype=torch.float32)
        _kernels.adder_conv2d_forward(xc, wc, y, *stride, *padding, torch.get_num_threads())
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.eta = stride, padding, eta
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        x, weight = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        xc = x.detach().contiguous()
        wc = weight.detach().contiguous()
        g = grad_out.detach().to(torch.float32).contiguous()
        grad_x = torch.empty_like(xc) if need_x else None
        grad_w = torch.empty_like(wc) if need_w else None
        if need_x or need_w:
            _kernels.adder_conv2d_backward(
                xc, wc, g, grad_x, grad_w, *ctx.stride, *ctx.padding, torch.get_num_threads()
            )
        if grad_w is not None:
            grad_w = adaptive_filter_grad(grad_w, ctx.eta)
        return grad_x, grad_w, None, None, None, None


def adder_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    eta: float | None = None,
) -> torch.Tensor:
    """AdderNet convolution on the CPU (float32), with the paper's gradients (module docstring).

    Args:
        x: ``[N, C, H, W]`` float32 CPU tensor (any strides; copied to contiguous if needed).
        weight: ``[C_out, C, kh, kw]`` float32 CPU tensor.
        stride, padding: an int or an ``(h, w)`` pair; padding is with zeros.
        eta: ``None`` for the raw filter gradient, or AdderNet's ``eta`` (0.2 in the paper) to apply
            the adaptive scaling ``eta * sqrt(numel(F)) / ||dF||_2`` in the backward pass.

    Returns ``[N, C_out, H_out, W_out]`` float32. Double backward is not supported.
    """
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError("adder_conv2d expects torch tensors x and weight")
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(
            f"adder_conv2d expects x [N, C, H, W] and weight [C_out, C, kh, kw]; got shapes "
            f"{tuple(x.shape)} and {tuple(weight.shape)}"
        )
    if not adder_conv2d_supported(x, weight):
        raise TypeError(
            f"onebit.ops.adder_conv2d runs float32 CPU tensors; got x {x.dtype} on {x.device} and "
            f"weight {weight.dtype} on {weight.device} (convert with .float().cpu(), or use "
            "onebit.nn.functional.adder_conv2d, which falls back to torch on other devices/dtypes)"
        )
    if x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"x has {x.shape[1]} channels but weight expects {weight.shape[1]} "
            f"(weight shape {tuple(weight.shape)})"
        )
    if min(x.shape) == 0 or min(weight.shape) == 0:
        raise ValueError(
            f"adder_conv2d got an empty tensor (x {tuple(x.shape)}, weight {tuple(weight.shape)})"
        )
    s = _pair(stride, "stride", 1)
    p = _pair(padding, "padding", 0)
    if eta is not None:
        eta = float(eta)
        if not eta > 0:
            raise ValueError(f"eta must be > 0, or None for the raw filter gradient; got {eta}")
    h, w = x.shape[2] + 2 * p[0], x.shape[3] + 2 * p[1]
    kh, kw = weight.shape[2], weight.shape[3]
    if h < kh or w < kw:
        raise ValueError(
            f"input {tuple(x.shape[2:])} padded by {p} is too small for the {kh}x{kw} kernel; "
            "use a larger input or more padding"
        )
    out_hw = ((h - kh) // s[0] + 1, (w - kw) // s[1] + 1)
    return _AdderConv2dOp.apply(x, weight, s, p, eta, out_hw)
