"""What the methods need around the optimizer: latent-weight clipping, parameter groups, BiPer's
loss term.

AdderNet's adaptive learning rate (``eta * sqrt(k) / ||grad||_2`` per layer) needs nothing here: it
is applied inside :func:`onebit.nn.functional.adder_conv2d`'s backward, as in the official code, so
any optimizer sees the scaled gradient.

Typical loop::

    binarize_(model, "bnn")
    opt = torch.optim.Adam(param_groups(model, weight_decay=1e-4))
    LatentClip(model).attach(opt)          # clamps after every opt.step()
    ...
    loss = task_loss + (model.onebit_method.regularizer(model) or 0)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from onebit.quantizers import PeriodicSign

__all__ = [
    "binary_weight_layers",
    "clip_latent_weights_",
    "param_groups",
    "LatentClip",
    "biper_regularizer",
    "biper_tau",
]


def binary_weight_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(name, layer)`` for every layer of ``model`` whose ``weight_quantizer`` is binary."""
    for name, m in model.named_modules():
        q = getattr(m, "weight_quantizer", None)
        if isinstance(q, nn.Module) and getattr(q, "is_binary", False) and isinstance(
            getattr(m, "weight", None), torch.Tensor
        ):
            yield name, m


@torch.no_grad()
def clip_latent_weights_(model: nn.Module, bound: float = 1.0) -> int:
    """Clamp, in place, the latent weights of every layer whose ``weight_quantizer`` has
    ``needs_latent_clip`` to ``[-bound, bound]`` (BNN / BinaryConnect: "latent weights are clipped to
    [-1, 1] after every optimizer step", so that the STE gradient ``1[|w| <= 1]`` never vanishes).
    Returns the number of weight tensors clamped."""
    count = 0
    for m in model.modules():
        q = getattr(m, "weight_quantizer", None)
        if getattr(q, "needs_latent_clip", False) and isinstance(getattr(m, "weight", None), torch.Tensor):
            m.weight.clamp_(-bound, bound)
            count += 1
    return count


def param_groups(
    model: nn.Module, weight_decay: float, binary_weight_decay: float = 0.0
) -> list[dict[str, Any]]:
    """Parameter groups for a torch optimizer: the latent weights of binary layers (those whose
    weight quantizer is binary) in one group with ``binary_weight_decay`` (Bi-Real: 0, weight decay
    only drags latent weights towards the sign boundary), every other trainable parameter with
    ``weight_decay``. Empty groups are left out; each group has a ``"name"`` key
    (``"binary_weights"`` / ``"other"``) for logging."""
    binary_ids = {id(m.weight) for _, m in binary_weight_layers(model)}
    binary, other = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (binary if id(p) in binary_ids else other).append(p)
    groups = []
    if binary:
        groups.append({"params": binary, "weight_decay": float(binary_weight_decay), "name": "binary_weights"})
    if other:
        groups.append({"params": other, "weight_decay": float(weight_decay), "name": "other"})
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return groups


class LatentClip:
    """Callable that runs :func:`clip_latent_weights_` on a model.

    Call it after ``optimizer.step()``, or ``attach(optimizer)`` to register it as the optimizer's
    step post-hook (``optimizer.register_step_post_hook``), which returns a removable handle.
    """

    def __init__(self, model: nn.Module, bound: float = 1.0) -> None:
        self.model = model
        self.bound = float(bound)

    def __call__(self, *args: Any, **kwargs: Any) -> int:
        return clip_latent_weights_(self.model, self.bound)

    def attach(self, optimizer: torch.optim.Optimizer) -> Any:
        return optimizer.register_step_post_hook(self)


def biper_regularizer(model: nn.Module, tau: float) -> torch.Tensor:
    """BiPer's official loss term: ``sum over periodic layers of tau * mean(sin^2(omega0 * W))``
    (each layer's mean over its own weights, the per-layer terms summed, as the official CIFAR
    code does; written there as ``0.5 - 0.5 cos(2 omega0 W)``), with tau 0.037 in stage 1 and
    0.0468 in stage 2 in the official scripts (see :func:`biper_tau` for their schedule).
    Gradient ``tau * omega0 * sin(2 omega0 W) / numel(W)`` per weight.
    """
    terms = []
    for m in model.modules():
        q = getattr(m, "weight_quantizer", None)
        if isinstance(q, PeriodicSign) and isinstance(getattr(m, "weight", None), torch.Tensor):
            terms.append(torch.sin(q.omega0 * m.weight).pow(2).mean())
    if not terms:
        raise ValueError("biper_regularizer: the model has no periodic_sign layers; binarize_ it with BiPer first")
    return float(tau) * torch.stack(terms).sum()


def biper_tau(epoch: int, epochs: int, tau_min: float, tau_max: float) -> float:
    """The official exponential schedule of BiPer's tau:
    ``tau = A * e^(epoch / epochs) + B`` with ``A = (tau_max - tau_min) / (e - 1)``, ``B = tau_min - A``
    (``tau_min`` at epoch 0, ``tau_max`` at ``epoch = epochs``)."""
    if epochs <= 0:
        raise ValueError(f"epochs must be > 0; got {epochs}")
    a = (tau_max - tau_min) / (math.e - 1)
    return a * math.exp(epoch / epochs) + (tau_min - a)
