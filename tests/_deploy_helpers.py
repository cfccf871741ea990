"""Shared pieces of the deploy/runtime tests: small models with non-trivial BatchNorm statistics."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

import onebit.models as M
from onebit.methods import binarize_
from onebit.nn import QuantConv2d, QuantLinear


def randomize_batchnorm_(model: nn.Module, gen: torch.Generator, negative: bool = True) -> None:
    """Give every BatchNorm random running statistics and affine parameters, so that folding is
    exercised (with ``negative``, about a third of the scales are negative: flipped thresholds)."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
            gamma = torch.rand(c, generator=gen) * 1.3 + 0.2
            if negative:
                gamma = torch.where(torch.rand(c, generator=gen) < 0.3, -gamma, gamma)
            m.weight.data.copy_(gamma)
            m.bias.data.copy_(torch.rand(c, generator=gen) - 0.5)


def binarized(name: str, method: str, seed: int = 0, **options) -> nn.Module:
    """``onebit.models.create(name, **options)`` binarized with ``method``, random BN, eval mode."""
    torch.manual_seed(seed)
    model = M.create(name, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        binarize_(model, method)
    randomize_batchnorm_(model, torch.Generator().manual_seed(seed + 1))
    return model.eval()


def bnn_sequential(pad_value: float = 0.0, seed: int = 0) -> nn.Sequential:
    """A small BNN-style network with every op kind the format tests need: a float stem, two
    chained binary convs (packed-bit hand-off), pooling, a binary and a float dense layer."""
    torch.manual_seed(seed)
    sign = {"name": "sign"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.Hardtanh(),
            QuantConv2d(8, 40, 3, padding=1, bias=False, input_quantizer=sign,
                        weight_quantizer=sign, pad_value=pad_value),
            nn.BatchNorm2d(40), nn.Hardtanh(),
            QuantConv2d(40, 16, 3, stride=2, padding=1, bias=False, input_quantizer=sign,
                        weight_quantizer=sign, pad_value=pad_value),
            nn.BatchNorm2d(16), nn.MaxPool2d(2), nn.Flatten(),
            QuantLinear(16 * 2 * 2, 12, input_quantizer=sign, weight_quantizer=sign),
            nn.BatchNorm1d(12), nn.Hardtanh(), nn.Linear(12, 5),
        )
    randomize_batchnorm_(model, torch.Generator().manual_seed(seed + 1))
    return model.eval()


def torch_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def assert_matches_torch(model: nn.Module, runtime_out: np.ndarray, x: np.ndarray) -> None:
    """Identical argmax, and logits within 1e-4 of the logit scale.

    Why that tolerance: the binary parts are exact integers in both, and the float parts (stem,
    classifier, BatchNorm, K map) are float32 in both but summed in another order (NumPy's BLAS vs
    PyTorch's conv), which moves each layer by a few ulps (~1e-7 relative); 1e-4 leaves room for
    depth while any real error (a wrong fold, a flipped threshold) is orders of magnitude larger.
    """
    ref = torch_logits(model, x)
    assert runtime_out.shape == ref.shape and runtime_out.dtype == np.float32
    np.testing.assert_array_equal(runtime_out.argmax(1), ref.argmax(1))
    tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(runtime_out, ref, rtol=0, atol=tol)
