"""Functional forms of onebit's layers: the AdderNet convolution and the XNOR-Net K map.

``adder_conv2d`` is onebit's one AdderNet convolution on the torch side, the entry point
:class:`onebit.nn.AdderConv2d` calls: onebit's C++ kernels on CPU float32, torch elsewhere (the
autograd functions are in :mod:`onebit.nn.adder_autograd`). ``adder_conv2d_reference`` is the
plain unfold formulation, kept for tests on small shapes only.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from onebit.kernels._checks import pair
from onebit.nn.adder_autograd import (
    ADDER_CHUNK_ELEMENTS,
    _AdderConv2dFunction,
    _AdderConv2dOp,
    _AdderReferenceFunction,
    adaptive_filter_grad,
    adder_conv2d_supported,
    adder_output_size,
    check_adder_args,
)

__all__ = [
    "adaptive_filter_grad",
    "adder_conv2d",
    "adder_conv2d_reference",
    "adder_output_size",
    "xnor_k_map",
    "ADDER_CHUNK_ELEMENTS",
]

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
    s, p, eta = check_adder_args(x, weight, stride, padding, eta)
    if adder_conv2d_supported(x, weight):  # CPU float32: onebit's C++ kernels, same math
        if min(x.shape) == 0 or min(weight.shape) == 0:
            raise ValueError(f"adder_conv2d got an empty tensor (x {tuple(x.shape)}, weight "
                             f"{tuple(weight.shape)})")
        out_hw = adder_output_size(x.shape[2], x.shape[3], tuple(weight.shape[2:]), s, p)
        return _AdderConv2dOp.apply(x, weight, s, p, eta, out_hw)
    return _AdderConv2dFunction.apply(x, weight, s, p, eta)


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
    s, p, eta = check_adder_args(x, weight, stride, padding, eta)
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
    kh, kw = pair(kernel_size, "kernel_size", 1)
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        pads = tuple(int(v) for v in padding)
    else:
        ph, pw = pair(padding, "padding", 0)
        pads = (pw, pw, ph, ph)
    a = x.abs().mean(dim=1, keepdim=True)
    if any(pads):
        a = F.pad(a, pads, value=0.0)
    box = torch.full((1, 1, kh, kw), 1.0 / (kh * kw), dtype=x.dtype, device=x.device)
    return F.conv2d(a, box, stride=pair(stride, "stride", 1),
                    dilation=pair(dilation, "dilation", 1))
