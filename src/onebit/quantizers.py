"""Quantizers: the forward maps and gradient estimators of onebit's methods.

Each estimator is one ``torch.autograd.Function`` (the math, forward and backward written out) and
one small ``nn.Module`` (a :class:`Quantizer`) that carries its settings, ``precision`` (bits; 32 for
real-valued outputs), ``is_binary``, ``needs_latent_clip`` and a ``get_config()`` dict that
:func:`get` turns back into an equal quantizer.

Conventions shared by every quantizer: ``sign(0) = +1`` (``sign(x) = -1 if x < 0 else +1``, so
``-0.0`` and NaN give +1, as onebit's packed bits and the runtime's ``sign`` op do), and
"per output channel" means over dim 0 of the weight (``[out, in]`` or ``[out, in, kh, kw]``), with
``n = weight[0].numel()`` the fan-in of one output filter.

Registered names (see :func:`list_quantizers`):

==========================  ==========================================================================
``"sign"``                  BNN/BinaryConnect straight-through sign (Courbariaux, Hubara et al. 2016)
``"approx_sign"``           Bi-Real Net's piecewise-polynomial sign estimator (Liu et al. 2018)
``"stochastic_sign"``       BinaryConnect's stochastic binarization (Courbariaux et al. 2015)
``"scaled_sign"``           BWN / XNOR-Net ``alpha * sign(W)`` (Rastegari et al. 2016)
``"magnitude_aware_sign"``  Bi-Real Net's magnitude-aware weight sign (Liu et al. 2018)
``"periodic_sign"``         BiPer's binary periodic function (Vargas et al. 2024)
``"kbit"``                  XNOR-Net's k-bit uniform quantizer on [-1, 1]
``"identity"``              no quantization (precision 32)
``"function"``              a plain callable wrapped by :func:`get` (see :class:`FunctionQuantizer`)
==========================  ==========================================================================

Example::

    >>> q = get("sign", clip=1.0)
    >>> get(q.get_config()).get_config() == q.get_config()
    True
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, ClassVar

import torch
from torch import nn
from torch.autograd import Function

__all__ = [
    # registry
    "Quantizer", "register_quantizer", "list_quantizers", "get",
    # quantizer modules
    "Sign", "ApproxSign", "StochasticSign", "ScaledSign", "MagnitudeAwareSign", "PeriodicSign",
    "KBit", "IdentityQuantizer", "FunctionQuantizer",
    # autograd functions (the math; usable directly as ``Fn.apply(x, ...)``)
    "SignSTEFunction", "ApproxSignFunction", "StochasticSignFunction", "ScaledSignFunction",
    "PeriodicSignFunction", "KBitFunction",
    # helpers
    "binary_sign", "channel_l1_mean",
]


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def binary_sign(x: torch.Tensor) -> torch.Tensor:
    """``sign(x)`` with ``sign(0) = +1``: ``-1`` where ``x < 0``, else ``+1`` (``-0.0`` and NaN too;
    the rule of the packed bits and the runtime); same dtype."""
    return 1 - 2 * (x < 0).to(x.dtype)


def channel_l1_mean(w: torch.Tensor) -> torch.Tensor:
    """``alpha_c = ||W_c||_1 / n`` per output channel (dim 0), shaped to broadcast against ``w``."""
    if w.dim() < 2:
        raise ValueError(
            f"a per-output-channel scale needs a weight with >= 2 dims ([out, in, ...]); got shape "
            f"{tuple(w.shape)}"
        )
    return w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)


def _mask(x: torch.Tensor, clip: float | None) -> torch.Tensor:
    """``1[|x| <= clip]`` in x's dtype (all ones when clip is None)."""
    if clip is None:
        return torch.ones_like(x)
    return (x.abs() <= clip).to(x.dtype)


def _check_clip(clip: float | None) -> float | None:
    if clip is None:
        return None
    clip = float(clip)
    if not clip > 0:
        raise ValueError(f"clip must be > 0 (or None for no gradient clipping); got {clip}")
    return clip


# ----------------------------------------------------------------------------------------------
# autograd functions (the math)
# ----------------------------------------------------------------------------------------------
class SignSTEFunction(Function):
    """Straight-through sign. Forward ``sign(x)``; backward ``dL/dx = dL/db * 1[|x| <= clip]``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, clip: float | None) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.clip = clip
        return binary_sign(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad * _mask(x, ctx.clip), None


class ApproxSignFunction(Function):
    """Bi-Real ApproxSign. Forward ``sign(x)``; backward ``dL/dx = dL/db * max(0, 2 - 2|x|)``.

    ``max(0, 2 - 2|x|)`` is ``F'(x)`` of ``F(x) = 2x + x^2`` on ``[-1, 0)``, ``2x - x^2`` on ``[0, 1)``,
    constant outside (``2 + 2x`` on ``[-1, 0)``, ``2 - 2x`` on ``[0, 1)``, 0 elsewhere).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return binary_sign(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (2 - 2 * x.abs()).clamp_min(0)


class StochasticSignFunction(Function):
    """BinaryConnect stochastic sign. Forward ``+1`` with probability ``p = clip((x + 1) / 2, 0, 1)``
    (the hard sigmoid), else ``-1``; backward straight-through ``dL/dx = dL/db * 1[|x| <= clip]``."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, clip: float | None, generator: torch.Generator | None
    ) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.clip = clip
        p = ((x + 1) / 2).clamp(0, 1)
        u = torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator)
        return 1 - 2 * (u >= p).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        return grad * _mask(x, ctx.clip), None, None


class ScaledSignFunction(Function):
    """``alpha * sign(W)`` with a given (detached) per-channel ``alpha``, and a chosen backward.

    ``mode="xnor"`` (BWN/XNOR-Net, Rastegari et al. 2016, eq. in sec. 3.1):
    ``dL/dW = dL/dW~ * (1/n + alpha * 1[|W| <= clip])``.
    ``mode="bireal"`` (Bi-Real Net paper): ``dL/dW = dL/dW~ * alpha * 1[|W| <= clip]``.
    ``mode="bireal_detached"`` (Bi-Real official code, scale detached): ``dL/dW = dL/dW~ * 1[|W| <= clip]``.
    """

    @staticmethod
    def forward(
        ctx: Any, w: torch.Tensor, alpha: torch.Tensor, clip: float | None, mode: str
    ) -> torch.Tensor:
        ctx.save_for_backward(w, alpha)
        ctx.clip = clip
        ctx.mode = mode
        return alpha * binary_sign(w)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        w, alpha = ctx.saved_tensors
        mask = _mask(w, ctx.clip)
        if ctx.mode == "xnor":
            n = w[0].numel()
            factor = 1.0 / n + alpha * mask
        elif ctx.mode == "bireal":
            factor = alpha * mask
        else:
            factor = mask
        return grad * factor, None, None, None


class PeriodicSignFunction(Function):
    """BiPer stage 2. Forward ``sign(sin(omega0 * w))``; backward ``dL/dw = dL/db * omega0 * cos(omega0 * w)``
    (the derivative of the sine the square wave stands for)."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, omega0: float) -> torch.Tensor:
        ctx.save_for_backward(w)
        ctx.omega0 = omega0
        return binary_sign(torch.sin(omega0 * w))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (w,) = ctx.saved_tensors
        return grad * (ctx.omega0 * torch.cos(ctx.omega0 * w)), None


class KBitFunction(Function):
    """XNOR-Net k-bit quantizer on [-1, 1].

    Forward ``q_k(x) = 2 * (round((2^k - 1) * (x + 1) / 2) / (2^k - 1) - 1/2)`` on ``clip(x, -1, 1)``,
    rounding half up (``round(v) = floor(v + 1/2)``) so that ``q_1 = sign`` with ``sign(0) = +1``;
    ``k = 1`` is computed as ``sign(x)`` directly (the formula would round tiny negatives, whose
    ``(x + 1) / 2`` rounds to 1/2, up to +1). Backward straight-through within the range: ``dL/dx = dL/dq * 1[|x| <= 1]``.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bits: int) -> torch.Tensor:
        ctx.save_for_backward(x)
        if bits == 1:
            return binary_sign(x)
        levels = float(2**bits - 1)
        v = levels * (x.clamp(-1, 1) + 1) / 2
        return 2 * (torch.floor(v + 0.5) / levels - 0.5)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad * _mask(x, 1.0), None


# ----------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------
_REGISTRY: dict[str, type[Quantizer]] = {}


def register_quantizer(name: str) -> Callable[[Any], Any]:
    """Class decorator: register a :class:`Quantizer` subclass under ``name`` for :func:`get`.

    A plain function ``fn(x) -> tensor`` may be decorated too: it is registered as a
    :class:`FunctionQuantizer` subclass (precision 32 unless the function has a ``precision``
    attribute). The decorated object is returned unchanged.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a quantizer name must be a non-empty string; got {name!r}")

    def decorator(obj: Any) -> Any:
        if name in _REGISTRY:
            raise ValueError(f"a quantizer named {name!r} is already registered ({_REGISTRY[name]})")
        if isinstance(obj, type) and issubclass(obj, Quantizer):
            obj.name = name
            _REGISTRY[name] = obj
        elif callable(obj):
            fn = obj
            bits = int(getattr(fn, "precision", 32))

            class _Registered(FunctionQuantizer):
                def __init__(self) -> None:
                    super().__init__(fn, precision=bits)

                def get_config(self) -> dict[str, Any]:
                    return {"name": name}

            _Registered.__name__ = _Registered.__qualname__ = f"FunctionQuantizer[{name}]"
            _Registered.name = name
            _REGISTRY[name] = _Registered
        else:
            raise TypeError(f"register_quantizer expects a Quantizer subclass or a function; got {obj!r}")
        return obj

    return decorator


def list_quantizers() -> list[str]:
    """The registered quantizer names, sorted."""
    return sorted(_REGISTRY)


def _accepted_kwargs(cls: type) -> list[str]:
    params = inspect.signature(cls.__init__).parameters
    return [p for p in params if p != "self" and params[p].kind not in (params[p].VAR_POSITIONAL,)]


def _build(name: str, kwargs: dict[str, Any]) -> Quantizer:
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown quantizer {name!r}; known quantizers: {', '.join(list_quantizers())}")
    accepted = _accepted_kwargs(cls)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"quantizer {name!r} got unexpected argument(s) {', '.join(unknown)}; it accepts: "
            f"{', '.join(accepted) if accepted else '(no arguments)'}"
        )
    return cls(**kwargs)


def get(spec: Any, **kwargs: Any) -> Quantizer | nn.Module | None:
    """Resolve a quantizer spec.

    ``spec`` may be a registered name (``"sign"``; ``kwargs`` go to its constructor), a config dict
    ``{"name": ..., **kwargs}`` (as returned by ``get_config()``; extra ``kwargs`` override it), an
    ``nn.Module`` (returned as is), a plain callable (wrapped in a :class:`FunctionQuantizer`;
    ``kwargs`` may give ``precision``) or ``None`` (returns ``None``).

    Raises ``ValueError`` for an unknown name (listing the known ones) and ``TypeError`` for an
    argument the quantizer does not take (naming the ones it does).
    """
    if spec is None:
        if kwargs:
            raise TypeError(f"get(None) takes no arguments; got {', '.join(sorted(kwargs))}")
        return None
    if isinstance(spec, str):
        return _build(spec, dict(kwargs))
    if isinstance(spec, dict):
        config = dict(spec)
        name = config.pop("name", None)
        if not isinstance(name, str):
            raise ValueError(
                f"a quantizer config dict needs a 'name' key naming one of: {', '.join(list_quantizers())}; "
                f"got {spec!r}"
            )
        config.update(kwargs)
        return _build(name, config)
    if isinstance(spec, nn.Module):
        if kwargs:
            raise TypeError(
                f"arguments {', '.join(sorted(kwargs))} cannot be applied to an existing module {spec!r}; "
                "pass a name or a config dict instead"
            )
        return spec
    if callable(spec):
        return _build("function", {"fn": spec, **kwargs})
    raise TypeError(
        f"cannot make a quantizer from {spec!r} ({type(spec).__name__}); pass a name "
        f"({', '.join(list_quantizers())}), a config dict, an nn.Module, a callable or None"
    )


# ----------------------------------------------------------------------------------------------
# quantizer modules
# ----------------------------------------------------------------------------------------------
class Quantizer(nn.Module):
    """Base class: a parameter-free module mapping a tensor to its quantized value.

    Attributes: ``name`` (registry name), ``precision`` (bits of the output; 32 for real values),
    ``is_binary`` (``precision == 1``), ``needs_latent_clip`` (as a weight quantizer, its latent
    weights must be clamped to [-1, 1] after every optimizer step, see
    :func:`onebit.optim.clip_latent_weights_`), ``starves_unclipped`` (its gradient is zero for
    ``|w| > 1``, so unclipped latent weights that leave [-1, 1] stop learning).
    """

    name: ClassVar[str] = ""
    needs_latent_clip: ClassVar[bool] = False
    starves_unclipped: ClassVar[bool] = False
    _config_keys: ClassVar[tuple[str, ...]] = ()

    @property
    def precision(self) -> int:
        return 1

    @property
    def is_binary(self) -> bool:
        return self.precision == 1

    def get_config(self) -> dict[str, Any]:
        """``{"name": ..., **settings}``; ``get(config)`` builds an equal quantizer."""
        return {"name": self.name, **{k: getattr(self, k) for k in self._config_keys}}

    def output_scale_init(self, weight: torch.Tensor) -> torch.Tensor:
        """A sensible start for a learnable per-output-channel scale after a layer using this as its
        weight quantizer: ones here; sign-like quantizers override it."""
        return torch.ones(weight.shape[0], dtype=weight.dtype, device=weight.device)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in self._config_keys)


@register_quantizer("sign")
class Sign(Quantizer):
    """BNN / BinaryConnect deterministic sign with the straight-through estimator.

    Forward ``b = sign(x)`` (``sign(0) = +1``); backward ``dL/dx = dL/db * 1[|x| <= clip]``
    (``clip=None``: the gradient passes unchanged). As a weight quantizer it needs latent clipping.
    Reference: Courbariaux, Hubara et al., "Binarized Neural Networks", 2016, arXiv:1602.02830.
    """

    needs_latent_clip = True
    starves_unclipped = True
    _config_keys = ("clip",)

    def __init__(self, clip: float | None = 1.0) -> None:
        super().__init__()
        self.clip = _check_clip(clip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return SignSTEFunction.apply(x, self.clip)

    def output_scale_init(self, weight: torch.Tensor) -> torch.Tensor:
        return channel_l1_mean(weight).flatten().detach().clone()


@register_quantizer("approx_sign")
class ApproxSign(Quantizer):
    """Bi-Real Net ApproxSign for activations.

    Forward ``sign(x)``; backward ``dL/dx = dL/db * F'(x)``, ``F'(x) = 2 + 2x`` on ``[-1, 0)``,
    ``2 - 2x`` on ``[0, 1)``, ``0`` elsewhere. ``normalize_std=True`` is BiPer's official-code variant:
    in training mode each sample is divided by ``sqrt(var(x_n) + 1e-5)`` (over all non-batch dims,
    unbiased) before the sign, which changes only the gradient (the sign is scale-invariant).
    Reference: Liu et al., "Bi-Real Net", ECCV 2018, arXiv:1808.00278.
    """

    starves_unclipped = True
    _config_keys = ("normalize_std",)

    def __init__(self, normalize_std: bool = False) -> None:
        super().__init__()
        self.normalize_std = bool(normalize_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize_std and self.training and x.dim() > 1:
            dims = tuple(range(1, x.dim()))
            x = x / torch.sqrt(x.var(dim=dims, keepdim=True) + 1e-5)
        return ApproxSignFunction.apply(x)


@register_quantizer("stochastic_sign")
class StochasticSign(Quantizer):
    """BinaryConnect stochastic binarization.

    Training mode: ``b = +1`` with probability ``hard_sigmoid(x) = clip((x + 1) / 2, 0, 1)``, else
    ``-1``; eval mode: the deterministic ``sign(x)``. Backward (both modes) straight-through,
    ``dL/dx = dL/db * 1[|x| <= clip]``. As a weight quantizer it needs latent clipping.
    Reference: Courbariaux, Bengio, David, "BinaryConnect", NeurIPS 2015, arXiv:1511.00363.
    """

    needs_latent_clip = True
    starves_unclipped = True
    _config_keys = ("clip",)

    def __init__(self, clip: float | None = 1.0) -> None:
        super().__init__()
        self.clip = _check_clip(clip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return StochasticSignFunction.apply(x, self.clip, None)
        return SignSTEFunction.apply(x, self.clip)

    def output_scale_init(self, weight: torch.Tensor) -> torch.Tensor:
        return channel_l1_mean(weight).flatten().detach().clone()


class _ChannelScaledSign(Quantizer):
    """Shared body of the ``alpha * sign(W)`` weight quantizers; ``last_alpha`` holds the alpha
    (shape ``[out, 1, ...]``, detached) of the latest forward."""

    _mode: ClassVar[str] = "xnor"

    def __init__(self, clip: float | None = 1.0) -> None:
        super().__init__()
        self.clip = _check_clip(clip)
        self.last_alpha: torch.Tensor | None = None

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        alpha = channel_l1_mean(w).detach()
        self.last_alpha = alpha
        return ScaledSignFunction.apply(w, alpha, self.clip, self._mode)


@register_quantizer("scaled_sign")
class ScaledSign(_ChannelScaledSign):
    """BWN / XNOR-Net weight binarization ``W~ = alpha * sign(W)``, ``alpha = ||W_c||_1 / n`` per
    output channel (dim 0).

    Backward (the paper's formula): ``dL/dW = dL/dW~ * (1/n + alpha * 1[|W| <= clip])``. The alpha of
    the latest forward is ``last_alpha``. Latent weights are clipped to [-1, 1] (as the official code).
    Reference: Rastegari et al., "XNOR-Net", ECCV 2016, arXiv:1603.05279.
    """

    needs_latent_clip = True
    _config_keys = ("clip",)
    _mode = "xnor"


@register_quantizer("magnitude_aware_sign")
class MagnitudeAwareSign(_ChannelScaledSign):
    """Bi-Real Net magnitude-aware weight sign ``W~ = (||W_c||_1 / n) * sign(W)``.

    Backward: paper ``dL/dW = dL/dW~ * alpha * 1[|W| <= clip]`` (``detach_scale=False``); official
    code ``dL/dW = dL/dW~ * 1[|W| <= clip]`` (``detach_scale=True``). No latent clipping (Bi-Real
    trains binary weights with weight decay 0 and no clip), so weights outside [-1, 1] receive no
    gradient. Reference: Liu et al., "Bi-Real Net", ECCV 2018, arXiv:1808.00278.
    """

    starves_unclipped = True
    _config_keys = ("detach_scale", "clip")

    def __init__(self, detach_scale: bool = False, clip: float | None = 1.0) -> None:
        super().__init__(clip)
        self.detach_scale = bool(detach_scale)

    @property
    def _mode(self) -> str:  # type: ignore[override]
        return "bireal_detached" if self.detach_scale else "bireal"


@register_quantizer("periodic_sign")
class PeriodicSign(Quantizer):
    """BiPer binary periodic weight function.

    ``stage=1``: forward ``sin(omega0 w)`` (real valued, precision 32), its true gradient
    ``omega0 cos(omega0 w)``. ``stage=2``: forward the square wave ``sign(sin(omega0 w))``
    (``sign(0) = +1``), backward ``dL/dw = dL/db * omega0 * cos(omega0 w)``. Stage 2 starts from
    stage 1's latent weights; switch with ``set_stage``. No latent clipping (the function is periodic).
    Reference: Vargas et al., "BiPer: Binary Neural Networks using a Periodic Function", CVPR 2024.
    """

    _config_keys = ("omega0", "stage")

    def __init__(self, omega0: float = 20.0, stage: int = 2) -> None:
        super().__init__()
        omega0 = float(omega0)
        if not (omega0 > 0 and math.isfinite(omega0)):
            raise ValueError(f"omega0 must be a finite number > 0; got {omega0}")
        self.omega0 = omega0
        self.stage = 2
        self.set_stage(stage)

    def set_stage(self, stage: int) -> None:
        """Switch between stage 1 (``sin``) and stage 2 (``sign(sin)``)."""
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 (sin) or 2 (sign of sin); got {stage!r}")
        self.stage = int(stage)

    @property
    def precision(self) -> int:
        return 1 if self.stage == 2 else 32

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.stage == 1:
            return torch.sin(self.omega0 * w)
        return PeriodicSignFunction.apply(w, self.omega0)

    def output_scale_init(self, weight: torch.Tensor) -> torch.Tensor:
        """Stage 2: ``E|sin(omega0 W_c)|`` per channel, the scale that best fits ``sin`` with
        ``gamma * sign(sin)`` (BiPer's quantization-error analysis); stage 1: ones."""
        if self.stage == 1:
            return super().output_scale_init(weight)
        s = torch.sin(self.omega0 * weight.detach()).abs()
        return s.mean(dim=tuple(range(1, weight.dim()))).clone()


@register_quantizer("kbit")
class KBit(Quantizer):
    """XNOR-Net k-bit uniform quantizer on [-1, 1].

    Forward ``q_k(x) = 2 * (round((2^k - 1)(x + 1) / 2) / (2^k - 1) - 1/2)`` on ``clip(x, -1, 1)``
    (round half up; ``bits=1`` is exactly ``sign`` with ``sign(0) = +1``); backward ``dL/dx = dL/dq *
    1[|x| <= 1]``. Reference: Rastegari et al., "XNOR-Net", ECCV 2016, sec. 4 (k-bit extension).
    """

    starves_unclipped = True
    _config_keys = ("bits",)

    def __init__(self, bits: int = 2) -> None:
        super().__init__()
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 24:
            raise ValueError(f"bits must be an integer in [1, 24]; got {bits!r}")
        self.bits = bits

    @property
    def precision(self) -> int:
        return self.bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return KBitFunction.apply(x, self.bits)


@register_quantizer("identity")
class IdentityQuantizer(Quantizer):
    """No quantization: forward ``x``, gradient 1. Precision 32."""

    @property
    def precision(self) -> int:
        return 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register_quantizer("function")
class FunctionQuantizer(Quantizer):
    """A plain callable ``fn(x) -> tensor`` used as a quantizer (what :func:`get` does with a callable).

    ``precision`` says how many bits ``fn`` produces (default 32). ``get_config()`` holds the function
    object itself, so it round-trips through :func:`get` but is not JSON-serialisable; register the
    function with :func:`register_quantizer` to refer to it by name instead.
    """

    _config_keys = ("fn", "precision")

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], precision: int = 32) -> None:
        super().__init__()
        if not callable(fn):
            raise TypeError(f"fn must be callable; got {fn!r}")
        if isinstance(precision, bool) or not isinstance(precision, int) or precision < 1:
            raise ValueError(f"precision must be a positive integer (bits); got {precision!r}")
        self.fn = fn
        self._precision = precision

    @property
    def precision(self) -> int:  # type: ignore[override]
        return self._precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)
