"""Quantized drop-in replacements for ``nn.Conv2d`` and ``nn.Linear``.

Both keep torch's constructor signature and add keyword-only quantizer arguments (anything
:func:`onebit.quantizers.get` accepts). The forward is the ordinary ``F.conv2d`` / ``F.linear`` on
the quantized tensors, so training matches what a packed kernel computes once the same padding
convention is used (see ``pad_value``).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from onebit import quantizers
from onebit.nn.functional import xnor_k_map

__all__ = ["QuantConv2d", "QuantLinear", "LatentClipWarning", "INPUT_SCALINGS",
           "LINEAR_INPUT_SCALINGS", "BinaryGradientFunction", "binary_gradient"]

#: Accepted values of ``QuantConv2d(input_scaling=...)``.
INPUT_SCALINGS = (None, "xnor_k")
#: Accepted values of ``QuantLinear(input_scaling=...)``.
LINEAR_INPUT_SCALINGS = (None, "xnor_beta")


class BinaryGradientFunction(torch.autograd.Function):
    """Identity forward; backward ``g -> max|g| * sign(g)`` with one ``max|g|`` over the whole
    gradient tensor (XNOR-Net's binary gradients, Rastegari et al. 2016, sec. 3.2). ``sign(0) =
    0`` here: a zero gradient (e.g. a max-pool's unused positions) stays zero."""

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor) -> torch.Tensor:
        return y.view_as(y)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return torch.sign(grad) * grad.abs().amax()


def binary_gradient(y: torch.Tensor) -> torch.Tensor:
    """``y`` unchanged; the gradient flowing back into it is binarized (see
    :class:`BinaryGradientFunction`)."""
    return BinaryGradientFunction.apply(y)


class LatentClipWarning(UserWarning):
    """A binary weight quantizer whose gradient vanishes outside [-1, 1] is used without latent
    weight clipping: latent weights that leave [-1, 1] stop learning."""


def _warn_unclipped(layer: nn.Module, wq: nn.Module | None) -> None:
    if wq is None or not getattr(wq, "is_binary", False):
        return
    if getattr(wq, "needs_latent_clip", False) or not getattr(wq, "starves_unclipped", False):
        return
    warnings.warn(
        f"{type(layer).__name__} uses the binary weight quantizer {getattr(wq, 'name', wq)!r} without "
        "latent weight clipping; its gradient is zero for |w| > 1, so latent weights that leave "
        "[-1, 1] stop learning. Use a quantizer with needs_latent_clip (e.g. 'sign') and call "
        "onebit.optim.clip_latent_weights_ after each step, or ignore this if it is the method's recipe.",
        LatentClipWarning,
        stacklevel=4,
    )


class _QuantMixin:
    """Shared quantizer handling: attributes ``input_quantizer`` / ``weight_quantizer`` (modules or
    None) and the optional learnable per-output-channel ``scale``."""

    weight: nn.Parameter
    input_quantizer: nn.Module | None
    weight_quantizer: nn.Module | None
    scale: nn.Parameter | None

    def _init_quant(self, input_quantizer: Any, weight_quantizer: Any, output_scale: bool,
                    binary_grad: bool = False) -> None:
        self.binary_grad = bool(binary_grad)
        self.input_quantizer = quantizers.get(input_quantizer)
        self.weight_quantizer = quantizers.get(weight_quantizer)
        _warn_unclipped(self, self.weight_quantizer)  # type: ignore[arg-type]
        if output_scale:
            self.scale = nn.Parameter(
                torch.ones(self.weight.shape[0], dtype=self.weight.dtype, device=self.weight.device)
            )
            self.reset_output_scale_()
        else:
            self.register_parameter("scale", None)  # type: ignore[attr-defined]

    def binary_weight(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Eval mode with a binary weight quantizer: ``(signs, alpha)``, the quantized weight split
        into its ``+/-1`` filters and per-output-channel magnitude ``alpha`` (``[out]``), so that
        ``quantized_weight() == alpha * signs``; None otherwise (training mode, float weights).

        The eval-mode forward convolves with ``signs`` and multiplies by ``alpha`` afterwards
        (:meth:`output_affine`): with a sign input quantizer the convolution is then the exact
        integer accumulator ``acc`` of a packed kernel, and the output a fixed float function of
        ``acc`` that :func:`onebit.deploy.convert` turns into exact integer thresholds."""
        wq = self.weight_quantizer
        if self.training or wq is None or not getattr(wq, "is_binary", False):
            return None
        with torch.no_grad():
            w = self.quantized_weight()
        alpha = w.abs().reshape(w.shape[0], -1).amax(dim=1)
        signs = 1 - 2 * (w < 0).to(w.dtype)
        return signs, alpha

    def quantized_weight(self) -> torch.Tensor:
        """The effective weight the forward uses: ``weight_quantizer(weight)`` (e.g. ``alpha *
        sign(w)``), or the float weight without a weight quantizer. The output ``scale`` (if any) is
        not folded in."""
        if self.weight_quantizer is None:
            return self.weight
        return self.weight_quantizer(self.weight)

    @torch.no_grad()
    def reset_output_scale_(self) -> None:
        """Set ``scale`` from the current latent weight: the weight quantizer's
        ``output_scale_init`` (``mean|W_c|`` for plain signs, ``E|sin(omega0 W_c)|`` for BiPer stage
        2, ones for real-valued or already-scaled weights)."""
        if self.scale is None:
            return
        init = getattr(self.weight_quantizer, "output_scale_init", None)
        if init is None:
            value = torch.ones_like(self.scale)
        else:
            value = init(self.weight).to(self.scale)
        self.scale.copy_(value.reshape(self.scale.shape))

    def _quant_repr(self) -> str:
        parts = []
        for attr in ("input_quantizer", "weight_quantizer"):
            q = getattr(self, attr)
            if q is not None:
                parts.append(f"{attr}={getattr(q, 'name', type(q).__name__) or type(q).__name__}")
        if self.scale is not None:
            parts.append("output_scale=True")
        if self.binary_grad:
            parts.append("binary_grad=True")
        return ", ".join(parts)


class QuantConv2d(_QuantMixin, nn.Conv2d):
    """``nn.Conv2d`` on quantized inputs and weights.

    ``y = conv2d(pad(q_in(x), pad_value), q_w(W)) [* K] [* scale] + bias``:

    - ``input_quantizer`` / ``weight_quantizer``: anything :func:`onebit.quantizers.get` takes
      (None = keep float).
    - ``pad_value``: the value the *quantized* input is padded with. ``0.0`` is what training
      frameworks do (a padded tap contributes 0); ``-1.0`` / ``+1.0`` keep every tap binary, which a
      packed kernel can compute without a border correction. Padding is applied explicitly with
      this value, then the convolution runs with padding 0. Non-``"zeros"`` ``padding_mode`` values
      (reflect, replicate, circular) pad the quantized input with that mode instead.
    - ``input_scaling="xnor_k"``: multiply the output by XNOR-Net's ``K`` map
      (:func:`onebit.nn.functional.xnor_k_map` of the *real* input, same stride/padding/dilation).
    - ``output_scale=True``: a learnable per-output-channel scale (BiPer's alpha) multiplies the
      convolution output before the bias; initialised by :meth:`reset_output_scale_`.
    - ``binary_grad=True``: in training, the gradient flowing back into the layer's output is
      binarized, ``max|g| * sign(g)`` (XNOR-Net's binary gradients, :func:`binary_gradient`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: str | int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
        *,
        input_quantizer: Any = None,
        weight_quantizer: Any = None,
        input_scaling: str | None = None,
        pad_value: float = 0.0,
        output_scale: bool = False,
        binary_grad: bool = False,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, device, dtype,
        )
        if input_scaling not in INPUT_SCALINGS:
            raise ValueError(f"input_scaling must be one of {INPUT_SCALINGS}; got {input_scaling!r}")
        self.input_scaling = input_scaling
        self.pad_value = float(pad_value)
        self._init_quant(input_quantizer, weight_quantizer, output_scale, binary_grad)

    @property
    def explicit_padding(self) -> tuple[int, int, int, int]:
        """``(left, right, top, bottom)`` padding applied before the (unpadded) convolution."""
        p = self._reversed_padding_repeated_twice
        return (int(p[0]), int(p[1]), int(p[2]), int(p[3]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._forward(x)
        return binary_gradient(y) if self.binary_grad and self.training else y

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        xq = x if self.input_quantizer is None else self.input_quantizer(x)
        pads = self.explicit_padding
        if any(pads):
            if self.padding_mode == "zeros":
                xq = F.pad(xq, pads, value=self.pad_value)
            else:
                xq = F.pad(xq, pads, mode=self.padding_mode)
        split = self.binary_weight()
        if split is None and self.input_scaling is None and self.scale is None:
            return F.conv2d(
                xq, self.quantized_weight(), self.bias, self.stride, 0, self.dilation, self.groups
            )
        w = self.quantized_weight() if split is None else split[0]
        y = F.conv2d(xq, w, None, self.stride, 0, self.dilation, self.groups)
        k = None
        if self.input_scaling == "xnor_k":
            k = xnor_k_map(x, self.kernel_size, self.stride, pads, self.dilation)
        return self.output_affine(y, None if split is None else split[1], k)

    def output_affine(self, y: torch.Tensor, alpha: torch.Tensor | None = None,
                      k: torch.Tensor | None = None) -> torch.Tensor:
        """The map after the convolution: ``y [* alpha] [* K] [* scale] + bias``, each a separate
        elementwise op in this order (``alpha`` from :meth:`binary_weight` in eval mode, ``K``
        XNOR-Net's map); ``y`` is ``[N, out, H, W]``."""
        if alpha is not None:
            y = y * alpha.view(1, -1, 1, 1)
        if k is not None:
            y = y * k
        if self.scale is not None:
            y = y * self.scale.view(1, -1, 1, 1)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y

    def extra_repr(self) -> str:
        extra = [super().extra_repr(), self._quant_repr()]
        if self.input_scaling is not None:
            extra.append(f"input_scaling={self.input_scaling!r}")
        if self.pad_value != 0.0:
            extra.append(f"pad_value={self.pad_value}")
        return ", ".join(e for e in extra if e)


class QuantLinear(_QuantMixin, nn.Linear):
    """``nn.Linear`` on quantized inputs and weights:
    ``y = linear(q_in(x), q_w(W)) [* beta] [* scale] + bias``.

    - ``input_quantizer`` / ``weight_quantizer``: anything :func:`onebit.quantizers.get` takes.
    - ``input_scaling="xnor_beta"``: XNOR-Net's input scale for binary dense layers, one
      ``beta = ||x||_1 / n`` per input vector (the mean ``|x|`` of the *real* input over its ``n``
      features; the dense form of the conv ``K`` map), multiplying every output of that vector.
    - ``output_scale=True``: a learnable per-output-feature scale before the bias.
    - ``binary_grad=True``: XNOR-Net's binary gradients in training (see :class:`QuantConv2d`).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        input_quantizer: Any = None,
        weight_quantizer: Any = None,
        input_scaling: str | None = None,
        output_scale: bool = False,
        binary_grad: bool = False,
    ) -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        if input_scaling not in LINEAR_INPUT_SCALINGS:
            raise ValueError(f"input_scaling must be one of {LINEAR_INPUT_SCALINGS}; got "
                             f"{input_scaling!r}")
        self.input_scaling = input_scaling
        self._init_quant(input_quantizer, weight_quantizer, output_scale, binary_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._forward(x)
        return binary_gradient(y) if self.binary_grad and self.training else y

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        xq = x if self.input_quantizer is None else self.input_quantizer(x)
        split = self.binary_weight()
        if split is None and self.scale is None and self.input_scaling is None:
            return F.linear(xq, self.quantized_weight(), self.bias)
        w = self.quantized_weight() if split is None else split[0]
        beta = x.abs().mean(dim=-1, keepdim=True) if self.input_scaling == "xnor_beta" else None
        return self.output_affine(F.linear(xq, w), None if split is None else split[1], beta)

    def output_affine(self, y: torch.Tensor, alpha: torch.Tensor | None = None,
                      beta: torch.Tensor | None = None) -> torch.Tensor:
        """The map after the product: ``y [* alpha] [* beta] [* scale] + bias``, each a separate
        elementwise op in this order (``alpha`` from :meth:`binary_weight` in eval mode, ``beta``
        the ``[N, 1]`` input scale); ``y`` is ``[N, out]``."""
        if alpha is not None:
            y = y * alpha
        if beta is not None:
            y = y * beta
        if self.scale is not None:
            y = y * self.scale
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self) -> str:
        scaling = f"input_scaling={self.input_scaling!r}" if self.input_scaling else ""
        return ", ".join(e for e in (super().extra_repr(), self._quant_repr(), scaling) if e)
