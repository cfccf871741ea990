"""The AdderNet convolution's autograd functions: forward and the paper's gradients, in one place.

Three implementations of the same math: :class:`_AdderConv2dOp` on onebit's C++ kernels (CPU
float32, what :func:`onebit.nn.functional.adder_conv2d` runs there), :class:`_AdderConv2dFunction`
in torch (any device or dtype, bounded memory) and :class:`_AdderReferenceFunction` (the unfold
formulation over the whole difference tensor, for tests on small shapes). All three scale the
filter gradient with :func:`adaptive_filter_grad`. The public entry point is
:func:`onebit.nn.functional.adder_conv2d`; :func:`compiled_adder_conv2d` runs the C++ path alone
(float32 CPU only, for tests and benchmarks of the kernels).

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

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from onebit import _kernels
from onebit.kernels._checks import pair

__all__ = [
    "ADDER_CHUNK_ELEMENTS",
    "adaptive_filter_grad",
    "adder_conv2d_supported",
    "adder_output_size",
    "check_adder_args",
    "compiled_adder_conv2d",
]

#: Upper bound on the number of elements of any temporary the AdderNet backward builds
#: (the difference tensor is evaluated in blocks of rows x output channels x fan-in of this size).
ADDER_CHUNK_ELEMENTS = 1 << 22


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


def check_adder_args(
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
    s, p = pair(stride, "stride", 1), pair(padding, "padding", 0)
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


def compiled_adder_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    *,
    eta: float | None,
) -> torch.Tensor:
    """The C++ AdderNet convolution alone (CPU float32), with the paper's gradients.

    Args:
        x: ``[N, C, H, W]`` float32 CPU tensor (any strides; copied to contiguous if needed).
        weight: ``[C_out, C, kh, kw]`` float32 CPU tensor.
        stride, padding: an int or an ``(h, w)`` pair; padding is with zeros.
        eta: ``None`` for the raw filter gradient, or AdderNet's ``eta`` (0.2 in the paper, the
            default of :func:`onebit.nn.functional.adder_conv2d`) to apply the adaptive scaling
            ``eta * sqrt(numel(F)) / ||dF||_2`` in the backward pass.

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
            f"compiled_adder_conv2d runs float32 CPU tensors; got x {x.dtype} on {x.device} and "
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
    s = pair(stride, "stride", 1)
    p = pair(padding, "padding", 0)
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
