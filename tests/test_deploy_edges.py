"""Deploy edge cases the random-model tests do not reach: a clip from 0 right before a sign (which
must stay: sign(clip(x, 0, hi)) = +1 everywhere), BatchNorm with a tiny running variance (eps
matters in the fold), the NumPy pooling path with ceil_mode, k-bit rounding at exact ties in the
runtime, and the .onebit checksum covering the tensor table."""

from __future__ import annotations

import json
import struct
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import onebit.runtime as rt
from onebit.deploy import convert
from onebit.nn import QuantConv2d, QuantLinear
from onebit.runtime.container import read_container, write_container

SIGN = {"name": "sign"}


class _Clamp(nn.Module):
    def __init__(self, lo: float, hi: float) -> None:
        super().__init__()
        self.lo, self.hi = lo, hi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, self.lo, self.hi)


def _clip_net(clip: nn.Module) -> nn.Sequential:
    """float conv -> BN (shifted negative: most inputs of the clip are < 0) -> clip -> binary conv
    (sign input) -> BN -> flatten -> binary linear -> float linear."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = nn.Sequential(
            nn.Conv2d(2, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), clip,
            QuantConv2d(8, 8, 3, padding=1, bias=False, input_quantizer=SIGN, weight_quantizer=SIGN),
            nn.BatchNorm2d(8), nn.Hardtanh(), nn.Flatten(),
            QuantLinear(8 * 6 * 6, 6, input_quantizer=SIGN, weight_quantizer=SIGN),
            nn.Linear(6, 4),
        )
    with torch.no_grad():
        bn = model[1]
        bn.running_mean.fill_(0.5)  # conv outputs ~N(0, 1) - 0.5: about 70% negative
        bn.running_var.fill_(1.0)
        bn2 = model[4]
        bn2.running_mean.uniform_(-3, 3)
        bn2.running_var.uniform_(4, 9)
    return model.eval()


def _compare(model: nn.Module, shape: tuple[int, ...], atol: float = 1e-4) -> None:
    x = np.random.default_rng(1).standard_normal((8, *shape)).astype(np.float32)
    graph = convert(model, example_input_shape=shape)
    got = rt.Model(graph)(x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=atol * max(1.0, float(np.abs(ref).max())))


@pytest.mark.parametrize("clip", [nn.ReLU6(), nn.Hardtanh(0.0, 1.0),
                                  _Clamp(0.0, 2.0)],
                         ids=["relu6", "hardtanh_0_1", "clamp_0_2"])
def test_a_clip_from_zero_before_a_sign_is_kept(clip):
    model = _clip_net(clip)
    # the clip makes every input of the binary conv +1, which a dropped clip would change
    with torch.no_grad():
        x = torch.randn(8, 2, 6, 6, generator=torch.Generator().manual_seed(1))
        pre = model[:2](x)
    assert (pre < 0).float().mean() > 0.3
    _compare(model, (2, 6, 6))


@pytest.mark.parametrize("clip", [nn.Hardtanh(), nn.Hardtanh(-2.0, 0.0), _Clamp(-0.5, 3.0)],
                         ids=["hardtanh", "hardtanh_-2_0", "clamp_-0.5_3"])
def test_a_clip_around_zero_before_a_sign_is_dropped_exactly(clip):
    model = _clip_net(clip)
    graph = convert(model, example_input_shape=(2, 6, 6))
    assert "hardtanh" not in [n.op for n in graph.nodes[:3]]  # sign(clip(x)) = sign(x)
    _compare(model, (2, 6, 6))


def _tiny_var_bn(bn: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    c = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.rand(c, generator=g) * 0.02 - 0.01)
        bn.running_var.fill_(1e-4)  # eps = 1e-5 is 10% of it
        bn.weight.copy_(torch.rand(c, generator=g) + 0.5)
        bn.bias.copy_(torch.rand(c, generator=g) - 0.5)


def test_batchnorm_eps_is_folded_with_a_tiny_running_variance():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.Hardtanh(),
            QuantConv2d(4, 6, 3, padding=1, bias=False, input_quantizer=SIGN, weight_quantizer=SIGN),
            nn.BatchNorm2d(6), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(6 * 3 * 3, 5, bias=False), nn.BatchNorm1d(5),
        )
    with torch.no_grad():
        model[0].weight.mul_(0.01)  # conv outputs ~1e-2: the scale of sqrt(1e-4)
        model[7].weight.mul_(0.01)
    for i, bn in enumerate(m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        _tiny_var_bn(bn, i)
    with torch.no_grad():
        model[4].running_var.fill_(1e-4)
        model[4].running_mean.fill_(0.0)
    model.eval()
    graph = convert(model, example_input_shape=(2, 6, 6))
    assert "channel_affine" not in {n.op for n in graph.nodes}  # every BatchNorm was folded
    _compare(model, (2, 6, 6), atol=1e-4)


def test_batchnorm_eps_in_the_fold_of_a_float_layer():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=True), nn.BatchNorm1d(3, eps=1e-3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.01, 0.0, 0.0, 0.0], [0.0, 0.01, 0.0, 0.0],
                                            [0.0, 0.0, 0.0, 0.01]]))
        model[1].bias.zero_()
        model[2].running_var.fill_(1e-4)
    model.eval()
    x = np.eye(4, dtype=np.float32)[None].repeat(2, 0).reshape(2, 4, 2, 2)[:, :, :1, :1]
    graph = convert(model, example_input_shape=(4, 1, 1))
    out = rt.Model(graph)(np.ascontiguousarray(x))
    expect = model(torch.from_numpy(np.ascontiguousarray(x))).detach().numpy()
    # 0.01 / sqrt(1e-4 + 1e-3) = 0.3015...; without eps it would be 1.0
    np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-7)
    assert abs(float(expect[0, 0]) - 0.01 / np.sqrt(1.1e-3)) < 1e-5


# --------------------------------------------------------------------------------------------
# the NumPy pooling path (taken for inputs the compiled kernels do not take, e.g. float64)
# --------------------------------------------------------------------------------------------
POOLS = [  # (kernel, stride, padding, size): ceil_mode adds a last, partial window in each
    ((3, 3), (2, 2), (0, 0), (6, 8)),
    ((2, 2), (2, 2), (1, 1), (5, 5)),
    ((3, 2), (2, 3), (1, 0), (7, 9)),
    ((2, 2), (3, 3), (1, 1), (8, 7)),   # a ceil window that would start in the padding: dropped
    ((2, 2), (2, 2), (1, 0), (5, 4)),   # padding on the top only (the bottom needs none)
]


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("kernel, stride, padding, size", POOLS)
def test_numpy_pooling_fallback_matches_torch_with_ceil_mode(kernel, stride, padding, size,
                                                             ceil_mode):
    from onebit.runtime import float_ops

    x = np.random.default_rng(2).standard_normal((2, 3, *size))  # NCHW, float64
    t = torch.from_numpy(x)
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # NHWC for the runtime
    got = float_ops.maxpool2d(xh, kernel, stride, padding, (1, 1), ceil_mode)
    ref = nn.functional.max_pool2d(t, kernel, stride, padding, ceil_mode=ceil_mode).numpy()
    assert got.shape == ref.transpose(0, 2, 3, 1).shape
    np.testing.assert_array_equal(got, ref.transpose(0, 2, 3, 1))
    for include_pad in (True, False):
        got = float_ops.avgpool2d(xh, kernel, stride, padding, ceil_mode, include_pad, None)
        ref = nn.functional.avg_pool2d(t, kernel, stride, padding, ceil_mode=ceil_mode,
                                       count_include_pad=include_pad).numpy()
        assert got.shape == ref.transpose(0, 2, 3, 1).shape
        np.testing.assert_allclose(got, ref.transpose(0, 2, 3, 1), rtol=1e-12)


@pytest.mark.parametrize("size", [(7, 7), (8, 6)])
def test_numpy_maxpool_with_dilation_matches_torch(size):
    """Dilated windows take the sliding-window path; rows past the last window (floor mode)
    must not reach the output."""
    from onebit.runtime import float_ops

    x = np.random.default_rng(3).standard_normal((1, 2, *size))
    got = float_ops.maxpool2d(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), (2, 2), (2, 2),
                              (0, 0), (2, 2), False)
    ref = nn.functional.max_pool2d(torch.from_numpy(x), 2, 2, 0, dilation=2).numpy()
    np.testing.assert_array_equal(got, ref.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("groups", [2, 32])
def test_numpy_conv_path_grouped_dilated_in_several_chunks(groups):
    """The im2col path (grouped and depthwise convs): dilation and stride differ per axis, and
    each sample's output rows span several im2col chunks."""
    from onebit.runtime import float_ops

    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 32, 128, 130)).astype(np.float32)
    w = rng.standard_normal((32, 32 // groups, 3, 3)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    og = 32 // groups
    wmat = np.stack([float_ops.conv_weight_matrix(w[g * og:(g + 1) * og]) for g in range(groups)])
    got = float_ops.conv2d(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), wmat, b, (3, 3),
                           (1, 2), (1, 1), (2, 1), groups, 0.0)
    ref = nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                               stride=(1, 2), padding=1, dilation=(2, 1), groups=groups).numpy()
    assert got.shape == ref.transpose(0, 2, 3, 1).shape
    np.testing.assert_allclose(got, ref.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)


def test_int8_adder_inputs_saturate_symmetrically_at_127():
    """Inputs beyond the calibrated range clip to +-127 levels (never wrap, never -128): the
    same output as inputs exactly at +-127 scales."""
    from onebit.runtime import float_ops

    rng = np.random.default_rng(5)
    scale = np.float32(0.01)
    wq = rng.integers(-127, 128, (3, 3, 3, 2)).astype(np.int8)  # [O, kh, kw, C]
    edge = np.where(rng.random((1, 6, 6, 2)) < 0.5, -127.0, 127.0).astype(np.float32) * scale
    far = edge * np.float32(40.0)
    args = (wq, scale, (1, 1), (1, 1), np.ones(3, np.float32), np.zeros(3, np.float32), 1)
    np.testing.assert_array_equal(float_ops.adder_int8(far, *args),
                                  float_ops.adder_int8(edge, *args))


def test_pool_output_size_follows_torch_in_ceil_mode():
    from onebit.runtime.float_ops import window_out

    for size in range(1, 12):
        for k in (1, 2, 3):
            for s in (1, 2, 3):
                for p in range(0, k // 2 + 1):
                    for ceil_mode in (False, True):
                        if size + 2 * p < k:
                            continue
                        ref = nn.functional.max_pool2d(torch.zeros(1, 1, size, 1), (k, 1), (s, 1),
                                                       (p, 0), ceil_mode=ceil_mode).shape[2]
                        assert window_out(size, k, s, p, 1, ceil_mode) == ref, (size, k, s, p, ceil_mode)


# --------------------------------------------------------------------------------------------
# k-bit rounding at exact float32 ties: round half up in training and in the runtime
# --------------------------------------------------------------------------------------------
def test_runtime_kbit_rounds_exact_ties_up_like_training():
    from onebit.quantizers import KBitFunction
    from onebit.runtime.float_ops import kbit

    x = np.array([-0.4, 0.4, -1.0, 1.0, 0.0, -0.2, 0.2], dtype=np.float32)
    # 4 bits: 15 * (x + 1) / 2 is exactly 4.5 and 10.5 in float32 at x = -0.4 and 0.4
    v = np.float32(15) * (x[:2] + np.float32(1)) / np.float32(2)
    assert v.tolist() == [4.5, 10.5]
    got = kbit(x, 4)
    expect = np.float32(2) * (np.array([5, 11, 0, 15, 8, 6, 9], np.float32) / np.float32(15)
                              - np.float32(0.5))
    np.testing.assert_array_equal(got, expect)
    np.testing.assert_array_equal(got, KBitFunction.apply(torch.from_numpy(x), 4).numpy())


# --------------------------------------------------------------------------------------------
# the .onebit checksum covers the tensor table
# --------------------------------------------------------------------------------------------
def test_swapping_two_tensors_offsets_is_a_format_error(tmp_path):
    a = np.arange(6, dtype=np.float32)
    b = -np.arange(6, dtype=np.float32) - 1
    path = tmp_path / "m.onebit"
    write_container(path, {"graph": "test"}, {"a": a, "b": b})
    doc, tensors = read_container(path)
    np.testing.assert_array_equal(tensors["a"], a)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    oa, ob = header["a"]["data_offsets"], header["b"]["data_offsets"]
    assert oa != ob and oa[1] - oa[0] == ob[1] - ob[0]
    header["a"]["data_offsets"], header["b"]["data_offsets"] = ob, oa
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (n - len(head))
    assert len(head) == n  # same digits, same length: only the table changed
    path.write_bytes(raw[:8] + head + raw[8 + n:])
    with pytest.raises(rt.FormatError, match="checksum"):
        read_container(path)
