"""AdderNet's convolution layer: an L1 distance in place of the cross-correlation."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from onebit.kernels._checks import pair
from onebit.nn import functional as onebit_F

__all__ = ["AdderConv2d"]


class AdderConv2d(nn.Module):
    """AdderNet layer (Chen et al., "AdderNet: Do We Really Need Multiplications in Deep
    Learning?", CVPR 2020, arXiv:1912.13200).

    Forward ``Y[n, t, p] = -sum_{i,j,k} |X[n, k, p+(i,j)] - F[t, k, i, j]|`` (+ bias), zero padding.
    Backward: ``dY/dF = X - F`` (full precision) scaled per layer by the adaptive learning rate
    ``eta * sqrt(numel(F)) / ||grad_F||_2`` (``eta=None`` disables it), and ``dY/dX = clip(F - X, -1, 1)``.
    Filters start from ``N(0, 1)``. The computation goes through
    :func:`onebit.nn.functional.adder_conv2d`, the single hook for faster kernels.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = False,
        eta: float | None = 0.2,
        *,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        for what, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{what} must be a positive integer; got {v!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride = pair(stride, "stride", 1)
        self.padding = pair(padding, "padding", 0)
        if eta is not None and not float(eta) > 0:
            raise ValueError(f"eta must be > 0 (or None to disable the adaptive scaling); got {eta}")
        self.eta = None if eta is None else float(eta)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels, *self.kernel_size, **factory)
        )
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Filters ~ N(0, 1) (as the paper), bias zero."""
        nn.init.normal_(self.weight, 0.0, 1.0)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = onebit_F.adder_conv2d(x, self.weight, self.stride, self.padding, self.eta)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, eta={self.eta}"
        )
        return s + (", bias=True" if self.bias is not None else "")
