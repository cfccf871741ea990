"""The training methods, as dataclass configs, and ``binarize_`` which applies one to a float model.

A method says which quantizers replace which layers and what the optimizer must do around them.
``binarize_(model, method)`` swaps ``nn.Conv2d`` / ``nn.Linear`` modules in place:

============  ===================================  ========================  ======================
method        weights                              activations (inputs)      layers kept float
============  ===================================  ========================  ======================
``float``     (nothing changes)                    -                         all
``bnn``       ``sign`` (STE, latent clip)          ``sign`` (STE)            none (first input real)
``binaryconnect``  ``sign`` / ``stochastic_sign``  real                      first and last
``bwn``       ``scaled_sign``                      real                      first and last
``xnor``      ``scaled_sign``                      ``sign`` (+ K map)        first and last
``bireal``    ``magnitude_aware_sign``             ``approx_sign``           first and last
``biper``     ``periodic_sign`` (+ output scale)   ``approx_sign``           first and last
``addernet``  AdderConv2d (L1 distance)            real                      first conv, all Linear
============  ===================================  ========================  ======================

Rules ``binarize_`` applies (documented here because they change the model):

- A layer marked with :func:`mark_float_` (attribute ``onebit_keep_float = True`` on it or on any
  module containing it) always stays float: the way a model says "this is full precision by
  design" (e.g. the 1x1 convolution of Bi-Real Net's downsampling shortcut).
- "First" and "last" are the first and last ``nn.Conv2d`` / ``nn.Linear`` in registration order
  (``model.named_modules()``), which for ordinary models is execution order; pass ``keep_float``
  where it is not. The first layer never gets an input quantizer (its input is the raw data).
- Methods that binarize activations (BNN, XNOR-Net, Bi-Real, BiPer) must not feed ``sign`` with
  post-ReLU values (``sign(relu(x))`` is constant +1): every ``nn.ReLU`` module of the model is
  replaced, by ``nn.Hardtanh`` for BNN (the paper's activation) and by ``nn.Identity`` for XNOR-Net,
  Bi-Real and BiPer (the sign follows BatchNorm directly). ``F.relu`` calls inside a ``forward``
  cannot be seen and are left alone: write such models with ``nn.ReLU`` modules.
- XNOR-Net: inside every ``nn.Sequential``, a run ``Conv2d, BatchNorm2d, [activations...],
  MaxPool2d|AvgPool2d`` becomes ``Conv2d, Pool, BatchNorm2d, [activations...]`` (module names
  unchanged, so state dicts still load). The next binary convolution then sees
  ``BatchNorm -> sign -> BinConv -> Pool``, the paper's block order, and pooling never acts on
  binary values. Nothing else is reordered.
- Weights and biases of converted layers are copied (a pretrained float model can be binarized),
  except AdderNet, whose filters start from N(0, 1) because an L1-distance layer has nothing in
  common with a trained cross-correlation.
- The method is stored as ``model.onebit_method``; a model that already has one, or already
  contains onebit layers, is refused.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from onebit import quantizers
from onebit.nn.adder import AdderConv2d
from onebit.nn.layers import LatentClipWarning, QuantConv2d, QuantLinear
from onebit.optim import biper_regularizer, param_groups

__all__ = [
    "Method",
    "FloatBaseline",
    "BNN",
    "BinaryConnect",
    "BWN",
    "XNORNet",
    "BiReal",
    "BiPer",
    "AdderNet",
    "get_method",
    "list_methods",
    "binarize_",
    "mark_float_",
    "xnor_reorder_",
    "KEEP_FLOAT_ATTR",
]

_log = logging.getLogger(__name__)

#: Module attribute that keeps a layer (or every layer inside a module) float under ``binarize_``.
KEEP_FLOAT_ATTR = "onebit_keep_float"

_METHODS: dict[str, type[Method]] = {}
#: set on a ReLU a method adds on purpose (XNOR-Net's relu option): binarize_ keeps it
_KEEP_RELU_ATTR = "onebit_keep_relu"
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Identity, nn.LeakyReLU, nn.PReLU, nn.Tanh)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d)
_CONVERTIBLE = (nn.Conv2d, nn.Linear)


def _register(cls: type[Method]) -> type[Method]:
    _METHODS[cls.name] = cls
    return cls


@dataclass
class Method:
    """Base of the method configs. Class attributes describe the method; dataclass fields are its
    options; ``get_config()`` / :func:`get_method` round-trip them."""

    name: ClassVar[str] = ""
    #: whether inputs of converted layers are binarized (then nn.ReLU modules are replaced)
    binarizes_activations: ClassVar[bool] = False
    #: what replaces nn.ReLU when activations are binarized
    relu_replacement: ClassVar[type[nn.Module] | None] = None
    #: first and last layer stay float (False only for BNN)
    keep_first_last_float: ClassVar[bool] = True
    #: weight decay for binary latent weights; None = the same as every other parameter
    binary_weight_decay: ClassVar[float | None] = None
    #: the recipe trains binary weights without latent clipping on purpose (no LatentClipWarning)
    unclipped_by_design: ClassVar[bool] = False

    # -- what goes into the layers ------------------------------------------------------------
    def input_quantizer(self) -> Any:
        """Quantizer spec for the inputs of converted layers (None: real inputs)."""
        return None

    def weight_quantizer(self) -> Any:
        """Quantizer spec for the weights of converted layers (None: float weights)."""
        return None

    def conv_options(self) -> dict[str, Any]:
        """Extra keyword arguments for :class:`QuantConv2d` (input_scaling, pad_value, output_scale)."""
        return {}

    def linear_options(self) -> dict[str, Any]:
        """Extra keyword arguments for :class:`QuantLinear`."""
        return {}

    # -- what the optimizer needs -------------------------------------------------------------
    @property
    def latent_clip(self) -> bool:
        """Whether latent weights must be clamped to [-1, 1] after every step
        (:func:`onebit.optim.clip_latent_weights_` does it, per layer)."""
        q = quantizers.get(self.weight_quantizer())
        return bool(getattr(q, "needs_latent_clip", False))

    def param_groups(self, model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups: binary latent weights get ``binary_weight_decay`` (when the
        method sets one), everything else ``weight_decay``."""
        bwd = weight_decay if self.binary_weight_decay is None else self.binary_weight_decay
        return param_groups(model, weight_decay, binary_weight_decay=bwd)

    def regularizer(self, model: nn.Module) -> torch.Tensor | None:
        """An extra loss term the method adds to the task loss (None for most methods)."""
        return None

    # -- conversion ---------------------------------------------------------------------------
    def default_keep_float(self, layers: list[tuple[str, nn.Module]]) -> set[str]:
        """Names of the candidate layers that stay float when ``keep_float`` is not given."""
        if not self.keep_first_last_float or not layers:
            return set()
        return {layers[0][0], layers[-1][0]}

    def check_layer(self, name: str, module: nn.Module) -> None:
        """Raise ValueError when ``module`` cannot be converted by this method."""

    def convert(self, module: nn.Module, *, real_input: bool) -> nn.Module | None:
        """The replacement of ``module`` (a plain nn.Conv2d / nn.Linear), or None to leave it."""
        iq = None if real_input else self.input_quantizer()
        wq = self.weight_quantizer()
        if isinstance(module, nn.Conv2d):
            new: nn.Module = QuantConv2d(
                module.in_channels, module.out_channels, module.kernel_size, module.stride,
                module.padding, module.dilation, module.groups, module.bias is not None,
                module.padding_mode, device=module.weight.device, dtype=module.weight.dtype,
                input_quantizer=iq, weight_quantizer=wq, **self.conv_options(),
            )
        else:
            new = QuantLinear(
                module.in_features, module.out_features, module.bias is not None,
                device=module.weight.device, dtype=module.weight.dtype,
                input_quantizer=iq, weight_quantizer=wq, **self.linear_options(),
            )
        _copy_params(module, new)
        if getattr(new, "scale", None) is not None:
            new.reset_output_scale_()  # type: ignore[operator]
        return new

    def prepare_(self, model: nn.Module) -> None:
        """Structural changes applied before the layers are swapped (XNOR-Net reorders)."""

    def get_config(self) -> dict[str, Any]:
        """``{"name": ..., **options}``; ``get_method(config)`` rebuilds an equal method."""
        return {"name": self.name, **dataclasses.asdict(self)}


def _copy_params(src: nn.Module, dst: nn.Module) -> None:
    with torch.no_grad():
        dst.weight.copy_(src.weight)  # type: ignore[operator]
        if getattr(src, "bias", None) is not None:
            dst.bias.copy_(src.bias)  # type: ignore[union-attr,operator]
    dst.train(src.training)


@_register
@dataclass
class FloatBaseline(Method):
    """Full-precision baseline: ``binarize_`` leaves the model unchanged (and records the method)."""

    name: ClassVar[str] = "float"


@_register
@dataclass
class BNN(Method):
    """Binarized Neural Networks (Courbariaux, Hubara et al. 2016, arXiv:1602.02830).

    Every layer's weights are ``sign(W)`` (STE ``1[|W| <= 1]``, latent weights clipped to [-1, 1]);
    every layer's input but the first is ``sign(x)`` (STE ``1[|x| <= 1]``). ReLU -> Hardtanh.
    ``pad_value`` is the padding of binarized inputs (0.0 as training frameworks, or -1.0 / +1.0).
    ``output_bn``: when the model's last layer is an ``nn.Linear`` (binarized, as BNN binarizes
    every layer), a ``BatchNorm1d`` is appended after it, as in the authors' networks: otherwise the
    logits are integer dot products of +/-1 vectors (up to +/- fan-in) and the softmax saturates.
    """

    name: ClassVar[str] = "bnn"
    binarizes_activations: ClassVar[bool] = True
    relu_replacement: ClassVar[type[nn.Module] | None] = nn.Hardtanh
    keep_first_last_float: ClassVar[bool] = False
    pad_value: float = 0.0
    output_bn: bool = True

    def input_quantizer(self) -> Any:
        return {"name": "sign", "clip": 1.0}

    def weight_quantizer(self) -> Any:
        return {"name": "sign", "clip": 1.0}

    def conv_options(self) -> dict[str, Any]:
        return {"pad_value": self.pad_value}


@_register
@dataclass
class BinaryConnect(Method):
    """BinaryConnect (Courbariaux, Bengio, David 2015, arXiv:1511.00363): binary weights only.

    Weights ``sign(W)`` or, with ``stochastic=True``, ``+1`` with probability
    ``clip((W + 1) / 2, 0, 1)`` in training (deterministic sign at test time); STE gradient,
    latent weights clipped to [-1, 1]. Activations stay real (ReLU kept).
    """

    name: ClassVar[str] = "binaryconnect"
    stochastic: bool = False

    def weight_quantizer(self) -> Any:
        return {"name": "stochastic_sign" if self.stochastic else "sign", "clip": 1.0}


@_register
@dataclass
class BWN(Method):
    """Binary-Weight-Networks (Rastegari et al. 2016): weights ``alpha * sign(W)``,
    ``alpha = ||W_c||_1 / n`` per output channel; activations stay real."""

    name: ClassVar[str] = "bwn"

    def weight_quantizer(self) -> Any:
        return {"name": "scaled_sign", "clip": 1.0}


@_register
@dataclass
class XNORNet(Method):
    """XNOR-Net (Rastegari et al. 2016, arXiv:1603.05279).

    Weights ``alpha * sign(W)``, inputs ``sign(I)`` (STE), convolution outputs scaled by the ``K``
    map when ``k_map=True`` (the paper; the official code omits it). ReLU -> Identity;
    ``Conv, BN, act, Pool`` runs in ``nn.Sequential`` are reordered so each binary conv sees
    ``BN -> sign`` and pools after.

    Options from the paper, all off by default:

    - ``beta=True``: binary dense layers scale their outputs by ``beta = ||x||_1 / n`` per input
      vector (``QuantLinear(input_scaling="xnor_beta")``, the K map's dense form).
    - ``input_bits=k`` (k > 1): inputs through the k-bit quantizer ``q_k`` on [-1, 1] instead of
      ``sign``; K and beta need 1-bit inputs (set ``k_map=False``). Deploys as a ``kbit`` op
      followed by a float convolution on the quantized values (binary weights stored packed).
    - ``relu=True``: a ReLU after every binary conv (``BN -> sign -> BinConv -> ReLU -> Pool``).
    - ``binary_gradients=True``: in training the gradient flowing back into every binary layer's
      output is binarized, ``max|g| * sign(g)`` per layer (:func:`onebit.nn.binary_gradient`).
    """

    name: ClassVar[str] = "xnor"
    binarizes_activations: ClassVar[bool] = True
    relu_replacement: ClassVar[type[nn.Module] | None] = nn.Identity
    k_map: bool = True
    pad_value: float = 0.0
    beta: bool = False
    input_bits: int = 1
    relu: bool = False
    binary_gradients: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.input_bits, bool) or not isinstance(self.input_bits, int) or \
                not 1 <= self.input_bits <= 8:
            raise ValueError(f"XNOR-Net input_bits must be an integer in [1, 8]; got "
                             f"{self.input_bits!r}")
        if self.input_bits > 1 and (self.k_map or self.beta):
            raise ValueError(f"XNOR-Net input_bits={self.input_bits}: the K map and beta scale "
                             "binary (1-bit) inputs only; set k_map=false and beta=false")

    def input_quantizer(self) -> Any:
        if self.input_bits > 1:
            return {"name": "kbit", "bits": self.input_bits}
        return {"name": "sign", "clip": 1.0}

    def weight_quantizer(self) -> Any:
        return {"name": "scaled_sign", "clip": 1.0}

    def conv_options(self) -> dict[str, Any]:
        return {"input_scaling": "xnor_k" if self.k_map else None, "pad_value": self.pad_value,
                "binary_grad": self.binary_gradients}

    def linear_options(self) -> dict[str, Any]:
        return {"input_scaling": "xnor_beta" if self.beta else None,
                "binary_grad": self.binary_gradients}

    def convert(self, module: nn.Module, *, real_input: bool) -> nn.Module | None:
        new = super().convert(module, real_input=real_input)
        if self.relu and isinstance(new, QuantConv2d) and not real_input:
            relu = nn.ReLU()
            setattr(relu, _KEEP_RELU_ATTR, True)
            return nn.Sequential(OrderedDict(conv=new, relu=relu))
        return new

    def prepare_(self, model: nn.Module) -> None:
        moved = xnor_reorder_(model)
        if moved:
            _log.info("XNOR-Net block order: moved pooling before BatchNorm in %s", ", ".join(moved))


@_register
@dataclass
class BiReal(Method):
    """Bi-Real Net (Liu et al. 2018, arXiv:1808.00278).

    Inputs ``sign(x)`` with the ApproxSign gradient; weights ``(||W_c||_1 / n) * sign(W)`` with the
    paper's gradient (``detach_scale=True``: the official code's). No latent clipping, weight decay
    0 on binary weights. ReLU -> Identity. ``binarize_`` does not add shortcuts: build the model
    from :class:`onebit.nn.BiRealBlock` (one real shortcut around every binary conv).

    Ablations of the paper's ingredients (both on by default): ``approx_sign=False`` trains the
    activations' sign with the plain straight-through estimator ``1[|x| <= 1]`` (BNN's) instead
    of ApproxSign's piecewise-linear gradient; ``magnitude_aware=False`` uses plain ``sign(W)``
    weights (gradient ``1[|W| <= 1]``, still without latent clipping) instead of the
    magnitude-aware sign. The shortcut ablation is a model choice (e.g. ``resnet20`` with
    ``block="basic"`` against ``block="bireal"``).
    """

    name: ClassVar[str] = "bireal"
    binarizes_activations: ClassVar[bool] = True
    relu_replacement: ClassVar[type[nn.Module] | None] = nn.Identity
    binary_weight_decay: ClassVar[float | None] = 0.0
    unclipped_by_design: ClassVar[bool] = True
    detach_scale: bool = False
    pad_value: float = 0.0
    approx_sign: bool = True
    magnitude_aware: bool = True

    def __post_init__(self) -> None:
        for field in ("detach_scale", "approx_sign", "magnitude_aware"):
            if not isinstance(getattr(self, field), bool):
                raise TypeError(f"Bi-Real {field} must be true or false; got "
                                f"{getattr(self, field)!r}")

    @property
    def latent_clip(self) -> bool:
        return False  # the paper's recipe, kept in the magnitude_aware=False ablation too

    def input_quantizer(self) -> Any:
        return {"name": "approx_sign"} if self.approx_sign else {"name": "sign", "clip": 1.0}

    def weight_quantizer(self) -> Any:
        if not self.magnitude_aware:
            return {"name": "sign", "clip": 1.0}
        return {"name": "magnitude_aware_sign", "detach_scale": self.detach_scale}

    def conv_options(self) -> dict[str, Any]:
        return {"pad_value": self.pad_value}


@_register
@dataclass
class BiPer(Method):
    """BiPer (Vargas et al., CVPR 2024): weights through the periodic function.

    Stage 1 ``sin(omega0 W)``, stage 2 ``sign(sin(omega0 W))`` with gradient ``omega0 cos(omega0 W)``;
    inputs ``sign(x)`` with the ApproxSign gradient (``normalize_input=True``: the official code's
    per-sample std normalisation in training); a learnable per-output-channel scale on every
    converted layer. ReLU -> Identity. ``tau > 0`` adds the official loss term
    ``tau * mean(sin^2(omega0 W))`` per layer (see :meth:`regularizer`). Switch stages with
    :meth:`set_stage_`.
    """

    name: ClassVar[str] = "biper"
    binarizes_activations: ClassVar[bool] = True
    relu_replacement: ClassVar[type[nn.Module] | None] = nn.Identity
    omega0: float = 20.0
    stage: int = 2
    pad_value: float = 0.0
    normalize_input: bool = False
    tau: float = 0.0

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise ValueError(f"BiPer stage must be 1 (sin) or 2 (sign of sin); got {self.stage!r}")
        if not self.omega0 > 0:
            raise ValueError(f"BiPer omega0 must be > 0; got {self.omega0!r}")
        if self.tau < 0:
            raise ValueError(f"BiPer tau must be >= 0; got {self.tau!r}")

    def input_quantizer(self) -> Any:
        return {"name": "approx_sign", "normalize_std": self.normalize_input}

    def weight_quantizer(self) -> Any:
        return {"name": "periodic_sign", "omega0": self.omega0, "stage": self.stage}

    def conv_options(self) -> dict[str, Any]:
        return {"pad_value": self.pad_value, "output_scale": True}

    def linear_options(self) -> dict[str, Any]:
        return {"output_scale": True}

    def regularizer(self, model: nn.Module) -> torch.Tensor | None:
        if self.tau == 0:
            return None

        return biper_regularizer(model, self.tau)

    def set_stage_(self, model: nn.Module, stage: int) -> nn.Module:
        """Switch every periodic weight quantizer of ``model`` (and this config) to ``stage``;
        latent weights carry over (stage 2 starts from stage 1's weights)."""
        found = False
        for m in model.modules():
            if isinstance(m, quantizers.PeriodicSign):
                m.set_stage(stage)
                found = True
        if not found:
            raise ValueError("set_stage_: the model has no periodic_sign quantizer; binarize_ it with BiPer first")
        self.stage = int(stage)
        return model


@_register
@dataclass
class AdderNet(Method):
    """AdderNet (Chen et al., CVPR 2020, arXiv:1912.13200): every ``nn.Conv2d`` but the first becomes
    an :class:`onebit.nn.AdderConv2d` (``Y = -sum |X - F|``, adaptive learning rate ``eta``); all
    ``nn.Linear`` stay float. Filters start from N(0, 1) (weights are not copied)."""

    name: ClassVar[str] = "addernet"
    eta: float = 0.2

    def default_keep_float(self, layers: list[tuple[str, nn.Module]]) -> set[str]:
        convs = [n for n, m in layers if isinstance(m, nn.Conv2d)]
        return {n for n, m in layers if not isinstance(m, nn.Conv2d)} | set(convs[:1])

    def check_layer(self, name: str, module: nn.Module) -> None:
        if not isinstance(module, nn.Conv2d):
            return
        problems = []
        if module.groups != 1:
            problems.append(f"groups={module.groups}")
        if module.dilation != (1, 1):
            problems.append(f"dilation={module.dilation}")
        if isinstance(module.padding, str):
            problems.append(f"padding={module.padding!r}")
        if module.padding_mode != "zeros":
            problems.append(f"padding_mode={module.padding_mode!r}")
        if problems:
            raise ValueError(
                f"AdderNet cannot convert {name!r} ({', '.join(problems)}): AdderConv2d supports "
                f"groups=1, dilation=1 and numeric zero padding only; keep it float with "
                f"keep_float=[..., {name!r}]"
            )

    def convert(self, module: nn.Module, *, real_input: bool) -> nn.Module | None:
        if not isinstance(module, nn.Conv2d):
            return None
        new = AdderConv2d(
            module.in_channels, module.out_channels, module.kernel_size, module.stride,
            module.padding, bias=module.bias is not None, eta=self.eta,  # type: ignore[arg-type]
            device=module.weight.device, dtype=module.weight.dtype,
        )
        new.train(module.training)
        return new


# ----------------------------------------------------------------------------------------------
# lookup
# ----------------------------------------------------------------------------------------------
def list_methods() -> list[str]:
    """Names accepted by :func:`get_method` and :func:`binarize_`."""
    return list(_METHODS)


def get_method(spec: Any, **kwargs: Any) -> Method:
    """A method from its name (``"xnor"``; ``kwargs`` are its options), a config dict
    ``{"name": ..., **options}`` or a :class:`Method` (returned as is).

    Raises ValueError for an unknown name (listing the known ones) and TypeError for an option
    the method does not have (naming the ones it has).
    """
    if isinstance(spec, Method):
        if kwargs:
            raise TypeError(f"options {sorted(kwargs)} cannot be applied to an existing method {spec!r}")
        return spec
    if isinstance(spec, dict):
        config = dict(spec)
        spec = config.pop("name", None)
        kwargs = {**config, **kwargs}
    if not isinstance(spec, str):
        raise TypeError(f"a method is a name ({', '.join(_METHODS)}), a config dict or a Method; got {spec!r}")
    cls = _METHODS.get(spec.lower())
    if cls is None:
        raise ValueError(f"unknown method {spec!r}; known methods: {', '.join(_METHODS)}")
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise TypeError(
            f"method {cls.name!r} got unexpected option(s) {', '.join(unknown)}; it accepts: "
            f"{', '.join(fields) if fields else '(no options)'}"
        )
    return cls(**kwargs)


# ----------------------------------------------------------------------------------------------
# binarize_
# ----------------------------------------------------------------------------------------------
def xnor_reorder_(model: nn.Module) -> list[str]:
    """Inside every ``nn.Sequential`` of ``model``, turn ``Conv2d, BatchNorm2d, [activations...],
    MaxPool2d|AvgPool2d`` into ``Conv2d, Pool, BatchNorm2d, [activations...]`` (XNOR-Net block
    order). Module names are kept. Returns the qualified names of the pools that moved."""
    moved: list[str] = []
    for prefix, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        items = list(seq._modules.items())
        out: list[tuple[str, nn.Module | None]] = []
        i = 0
        while i < len(items):
            if (
                isinstance(items[i][1], nn.Conv2d)
                and i + 1 < len(items)
                and isinstance(items[i + 1][1], nn.BatchNorm2d)
            ):
                j = i + 2
                while j < len(items) and isinstance(items[j][1], _ACTIVATIONS):
                    j += 1
                if j < len(items) and isinstance(items[j][1], _POOLS):
                    out += [items[i], items[j], items[i + 1], *items[i + 2 : j]]
                    moved.append(f"{prefix}.{items[j][0]}" if prefix else items[j][0])
                    i = j + 1
                    continue
            out.append(items[i])
            i += 1
        if [n for n, _ in out] != [n for n, _ in items]:
            seq._modules.clear()
            seq._modules.update(out)
    return moved


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def mark_float_(module: nn.Module) -> nn.Module:
    """Mark ``module`` (and every layer inside it) to stay full precision under :func:`binarize_`,
    whatever the method; returns ``module``. Sets ``module.onebit_keep_float = True``."""
    setattr(module, KEEP_FLOAT_ATTR, True)
    return module


def _marked_float(model: nn.Module, layers: list[tuple[str, nn.Module]]) -> set[str]:
    prefixes = [n for n, m in model.named_modules() if getattr(m, KEEP_FLOAT_ATTR, False) is True]
    return {
        n for n, _ in layers
        if any(p == "" or n == p or n.startswith(p + ".") for p in prefixes)
    }


def _resolve_keep_float(
    keep_float: Any, method: Method, layers: list[tuple[str, nn.Module]]
) -> set[str]:
    if keep_float is None:
        return method.default_keep_float(layers)
    names = [n for n, _ in layers]
    if callable(keep_float):
        return {n for n, m in layers if keep_float(n, m)}
    if isinstance(keep_float, str) or not isinstance(keep_float, Iterable):
        raise TypeError(
            "keep_float must be None, a collection of layer names or a callable (name, module) -> bool; "
            f"got {keep_float!r}"
        )
    keep = set(keep_float)
    unknown = sorted(keep - set(names))
    if unknown:
        raise ValueError(
            f"keep_float names {unknown} are not nn.Conv2d / nn.Linear layers of the model; "
            f"its layers are: {', '.join(names)}"
        )
    return keep


def binarize_(model: nn.Module, method: Any, *, keep_float: Any = None) -> nn.Module:
    """Apply ``method`` (a :class:`Method`, a name from :func:`list_methods` or a config dict) to
    ``model`` in place and return it.

    ``keep_float``: None (the method's rule: first and last layer float, except BNN; AdderNet keeps
    the first conv and every Linear), a collection of qualified layer names that stay float
    (replacing the rule), or a callable ``(name, module) -> bool``. Layers marked with
    :func:`mark_float_` stay float in every case. See the module docstring for
    the ReLU replacement and XNOR-Net reordering rules.

    Raises ValueError for a model with no ``nn.Conv2d`` / ``nn.Linear``, one that is already
    binarized, a layer the method cannot convert (e.g. a dilated or grouped conv for AdderNet, a
    subclass of nn.Conv2d / nn.Linear with its own forward), or a choice that converts nothing.
    All checks run before the model is touched.
    """
    method = get_method(method)
    if getattr(model, "onebit_method", None) is not None:
        raise ValueError(
            f"this model was already binarized with {model.onebit_method.name!r}; build a fresh float "
            "model to apply another method"
        )
    done = [n for n, m in model.named_modules() if isinstance(m, (QuantConv2d, QuantLinear, AdderConv2d))]
    if done:
        raise ValueError(
            f"the model already contains onebit layers ({', '.join(done[:5])}); binarize_ converts "
            "float models only"
        )
    if isinstance(method, FloatBaseline):
        model.onebit_method = method
        return model

    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, _CONVERTIBLE)]
    if not layers:
        raise ValueError(
            f"binarize_ found no nn.Conv2d or nn.Linear in {type(model).__name__}; the {method.name!r} "
            "method converts those layers only"
        )
    keep = _resolve_keep_float(keep_float, method, layers) | _marked_float(model, layers)
    first = layers[0][0]

    plan: list[tuple[str, nn.Module]] = []
    for name, module in layers:
        if name in keep:
            continue
        if isinstance(method, AdderNet) and not isinstance(module, nn.Conv2d):
            continue  # AdderNet has no Linear form
        if type(module) not in _CONVERTIBLE:
            raise ValueError(
                f"cannot convert {name!r} ({type(module).__module__}.{type(module).__name__}): only plain "
                f"nn.Conv2d / nn.Linear are converted; keep it float with keep_float=[..., {name!r}]"
            )
        method.check_layer(name, module)
        plan.append((name, module))
    if not plan:
        raise ValueError(
            f"{method.name!r} would convert nothing: every layer of the model stays float "
            f"(kept: {', '.join(sorted(keep))}); pass keep_float to choose the float layers"
        )

    method.prepare_(model)
    with warnings.catch_warnings():
        if method.unclipped_by_design:
            warnings.simplefilter("ignore", LatentClipWarning)
        for name, module in plan:
            new = method.convert(module, real_input=name == first)
            if new is not None:
                _set_submodule(model, name, new)

    if method.binarizes_activations and method.relu_replacement is not None:
        for parent in list(model.modules()):
            for child_name, child in list(parent.named_children()):
                if type(child) is nn.ReLU and not getattr(child, _KEEP_RELU_ATTR, False):
                    setattr(parent, child_name, method.relu_replacement())
    if isinstance(method, BNN) and method.output_bn:
        last_name, last = plan[-1]
        if last_name == layers[-1][0] and isinstance(last, nn.Linear):
            new_last = model.get_submodule(last_name)
            _set_submodule(model, last_name,
                           nn.Sequential(new_last, nn.BatchNorm1d(last.out_features)))
    model.onebit_method = method
    return model
