"""The deploy passes' rules that change no value, only the graph (a clip moved past pooling and
flatten, chains of clips before a sign, BatchNorm folds that must or must not happen), and the
threshold clamp: each checked on the graph itself and against torch, so that a pass that does
too little or too much shows."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import onebit.runtime as rt
from onebit.deploy import convert
from onebit.deploy.passes import thresholds
from onebit.nn import QuantConv2d, QuantLinear

SIGN = {"name": "sign"}


def _ops(graph: rt.Graph) -> list[str]:
    return [n.op for n in graph.nodes]


def _compare(model: nn.Module, shape: tuple[int, ...], scale: float = 1.0) -> rt.Graph:
    x = (scale * np.random.default_rng(1).standard_normal((8, *shape))).astype(np.float32)
    graph = convert(model, example_input_shape=shape)
    got = rt.Model(graph)(x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * max(1.0, float(np.abs(ref).max())))
    return graph


def _randomize_bn(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)   # > 0: may pass a max-pool
                m.bias.copy_(torch.randn(c, generator=g) * 0.3)


def _quiet(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


@pytest.mark.parametrize("n", [1, 7, 64, 576])
def test_thresholds_reproduce_the_sign_for_every_accumulator_even_far_out(n):
    """T is clamped to [-(n+1), n+1]: a bias that puts the threshold beyond the reachable
    accumulators must still give the constant decision at acc = -n and acc = n."""
    mult = np.array([1, 1, 1, 1, -1, -1, -1, -1, 0.5, -0.25, 0, 0], np.float32)
    bias = np.array([-(n + 5), -n, n, n + 5, -(n + 5), -n, n, n + 5, -n / 2 + 0.25, 3, 1, -1],
                    np.float32)
    t, flip = thresholds(mult, bias, n)
    acc = np.arange(-n, n + 1, dtype=np.int64)[:, None]
    want_neg = acc * mult.astype(np.float64) + bias < 0
    got_neg = np.where(flip.astype(bool), acc > t, acc < t)
    np.testing.assert_array_equal(got_neg, want_neg)
    assert np.all(np.abs(t) <= n + 1)


def test_a_clip_before_an_xnor_k_conv_stays_because_k_reads_its_magnitude():
    """XNOR-Net's K map averages |x| of the conv's input: a Hardtanh before the sign changes K
    where |x| > 1, so the clip may not be bypassed there (inputs scaled so that many are)."""
    torch.manual_seed(0)
    model = _quiet(lambda: nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.Hardtanh(),
        QuantConv2d(8, 8, 3, padding=1, bias=False, input_quantizer=SIGN,
                    weight_quantizer="scaled_sign", input_scaling="xnor_k"),
        nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 6 * 6, 4)))
    _randomize_bn(model, 0)
    model.eval()
    graph = _compare(model, (2, 6, 6), scale=3.0)
    assert "hardtanh" in _ops(graph)


def test_chained_clips_before_a_sign_all_go():
    torch.manual_seed(0)
    model = _quiet(lambda: nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
        nn.Hardtanh(), nn.Hardtanh(-0.5, 0.5),
        QuantConv2d(8, 8, 3, padding=1, bias=False, input_quantizer=SIGN, weight_quantizer=SIGN),
        nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 6 * 6, 4)))
    _randomize_bn(model, 1)
    graph = _compare(model.eval(), (2, 6, 6))
    assert "hardtanh" not in _ops(graph)


@pytest.mark.parametrize("act", [nn.Hardtanh(), nn.ReLU()], ids=["hardtanh", "relu"])
def test_a_clip_moves_past_maxpool_and_flatten(act):
    """conv -> BN -> act -> maxpool -> flatten -> binary linear: the act moves past both (two
    swaps), ending right before the sign, where a Hardtanh then disappears; a ReLU stays (sign
    of a ReLU output is +1 everywhere) but after the flatten."""
    torch.manual_seed(0)
    model = _quiet(lambda: nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), act, nn.MaxPool2d(2),
        nn.Flatten(),
        QuantLinear(8 * 3 * 3, 6, input_quantizer=SIGN, weight_quantizer=SIGN), nn.Linear(6, 4)))
    _randomize_bn(model, 2)
    graph = _compare(model.eval(), (2, 6, 6))
    ops = _ops(graph)
    if isinstance(act, nn.Hardtanh):
        assert "hardtanh" not in ops
    else:
        assert ops.index("relu") > ops.index("flatten") > ops.index("maxpool2d")


class _BranchAfterConv(nn.Module):
    """y = conv(x); bn(y) + y: the conv output has two readers, so the BN may not fold into it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(6 * 5 * 5, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.head(self.bn(y) + y)


def test_batchnorm_on_a_shared_value_is_not_folded():
    torch.manual_seed(0)
    model = _BranchAfterConv()
    _randomize_bn(model, 3)
    graph = _compare(model.eval(), (3, 5, 5))
    assert "channel_affine" in _ops(graph)


def test_batchnorm_on_the_input_stays_and_later_ones_still_fold():
    """The first BN reads the graph input (nothing to fold into); the pass must go on to the
    next BN, which folds into its conv."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 6, 3, bias=False), nn.BatchNorm2d(6),
                          nn.ReLU(), nn.Flatten(), nn.Linear(6 * 3 * 3, 4))
    _randomize_bn(model, 4)
    graph = _compare(model.eval(), (3, 5, 5))
    assert _ops(graph).count("channel_affine") == 1


@pytest.mark.parametrize("head", ["input", "maxpool"])
def test_batchnorm_after_a_maxpool_of_a_non_affine_value_stays(head):
    """maxpool -> BN (positive scale): the BN may pass the max-pool only into an affine producer.
    Here the pool reads the graph input, or another max-pool, so the BN stays as it is."""
    torch.manual_seed(0)
    first = [] if head == "input" else [nn.Conv2d(3, 3, 3, padding=1, bias=False),
                                        nn.MaxPool2d(2, stride=1, padding=1)]
    model = nn.Sequential(*first, nn.MaxPool2d(2), nn.BatchNorm2d(3),
                          nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.Flatten(),
                          nn.Linear(6 * 3 * 3, 4))
    _randomize_bn(model, 5)
    graph = _compare(model.eval(), (3, 6, 6) if head == "input" else (3, 5, 5))
    assert "channel_affine" in _ops(graph)


def test_batchnorm_after_a_maxpool_of_a_conv_folds_into_the_conv():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.MaxPool2d(2),
                          nn.BatchNorm2d(6), nn.Flatten(), nn.Linear(6 * 3 * 3, 4))
    _randomize_bn(model, 6)
    graph = _compare(model.eval(), (3, 6, 6))
    assert "channel_affine" not in _ops(graph)


# ------------------------------------------------------------------ exact_thresholds
def _sign_layer(kind: str, out: int = 5, cin: int = 3) -> nn.Module:
    torch.manual_seed(0)
    layer = _quiet(lambda: QuantConv2d(cin, out, 3, bias=False, input_quantizer=SIGN,
                                       weight_quantizer="scaled_sign") if kind == "conv" else
                   QuantLinear(cin * 9, out, bias=False, input_quantizer=SIGN,
                               weight_quantizer="scaled_sign"))
    return layer.eval()


def _bn_with_thresholds(layer: nn.Module, ts: list[float], negative: list[bool]) -> nn.Module:
    """A BatchNorm after ``layer`` whose output changes sign at accumulator ts[o] (between
    integers for a strict threshold; the scale's sign picks the side that is negative)."""
    out = len(ts)
    bn = (nn.BatchNorm2d if isinstance(layer, nn.Conv2d) else nn.BatchNorm1d)(out).eval()
    alpha = layer.binary_weight()[1].double()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor(ts, dtype=torch.float64) * alpha)
        bn.running_var.fill_(1.0)
        bn.weight.copy_(torch.tensor([-1.0 if n else 1.0 for n in negative]))
        bn.bias.zero_()
    return bn


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_exact_thresholds_at_the_ends_of_the_range(kind):
    """Channels that are -1 (or +1) for every accumulator, and ones that flip right after the
    smallest or right before the largest accumulator: every decision over [-n, n] as torch's."""
    from onebit.deploy.passes import exact_thresholds

    layer = _sign_layer(kind)
    n = 27
    ts = [n + 10.0, -n - 10.0, -n + 0.5, n - 0.5, 0.5]
    bn = _bn_with_thresholds(layer, ts, [False, False, False, True, True])
    t, flip = exact_thresholds(layer, [bn], n)
    acc = torch.arange(-n, n + 1, dtype=torch.float32)
    if kind == "conv":
        z = bn(layer.output_affine(acc.view(1, 1, -1, 1).expand(1, 5, -1, 1).contiguous(),
                                   layer.binary_weight()[1]))[0, :, :, 0]
    else:
        z = bn(layer.output_affine(acc.view(-1, 1).expand(-1, 5).contiguous(),
                                   layer.binary_weight()[1])).T
    want = (z < 0).numpy()
    a = acc.numpy().astype(np.int64)[None, :]
    got = np.where(flip[:, None].astype(bool), a > t[:, None], a < t[:, None])
    np.testing.assert_array_equal(got, want)
    assert want[0].all() and not want[1].any()            # the constant channels
    assert want[2].sum() == 1 and want[3].sum() == 1      # one accumulator each at the ends
    assert np.all(np.abs(t) <= n + 1)


def test_exact_thresholds_decline_what_they_cannot_evaluate():
    from onebit.deploy.passes import exact_thresholds

    layer = _sign_layer("conv")
    bn = _bn_with_thresholds(layer, [0.5] * 5, [False] * 5)
    assert exact_thresholds(layer, [bn], 27) is not None
    assert exact_thresholds(nn.Conv2d(3, 5, 3), [bn], 27) is None          # no binary_weight
    float_w = _quiet(lambda: QuantConv2d(3, 5, 3, input_quantizer=SIGN, weight_quantizer=None))
    assert exact_thresholds(float_w.eval(), [bn], 27) is None              # float weights
    assert exact_thresholds(layer, [None], 27) is None                     # a non-BN fold
    assert exact_thresholds(layer, [bn, nn.Identity()], 27) is None


# ------------------------------------------------------------------ materialize
def _pnode(op: str, **arrays) -> "object":
    from onebit.deploy.trace import PNode

    return PNode(op=op, inputs=["x"], output="y", name="n", attrs={},
                 arrays={k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()})


@pytest.mark.parametrize("value", [0.0, 1.0, 2.0])
def test_materialize_keeps_every_bias_and_multiplier_but_zero_bias_and_unit_multiplier(value):
    """Optional tensors are left out only when they change nothing (bias 0, multiplier 1):
    constant biases and multipliers of any other value are written."""
    from onebit.deploy.passes import materialize

    w = np.arange(8.0).reshape(2, 1, 2, 2)
    nodes = [_pnode("conv2d", weight=w, mult=[value + 1.0, value + 1.0], bias=[value, value]),
             _pnode("adder_conv2d", weight=w, mult=[value, value], bias=[value, value])]
    nodes[0].attrs = {"stride": [1, 1], "padding": [0, 0, 0, 0], "groups": 1, "dilation": [1, 1]}
    nodes[1].attrs = {"stride": [1, 1], "padding": [0, 0, 0, 0]}
    graph_nodes, tensors = materialize(nodes)
    assert [g.op for g in graph_nodes] == ["conv2d", "adder_conv2d"]
    conv_t = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("000.")}
    adder_t = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("001.")}
    np.testing.assert_array_equal(conv_t["weight"], w * (value + 1.0))
    assert ("bias" in conv_t) == (value != 0.0)
    np.testing.assert_array_equal(adder_t["weight"], w)
    assert ("multiplier" in adder_t) == (value != 1.0)
    assert ("bias" in adder_t) == (value != 0.0)
    if value == 2.0:
        np.testing.assert_array_equal(adder_t["multiplier"], [2.0, 2.0])
        np.testing.assert_array_equal(adder_t["bias"], [2.0, 2.0])
        np.testing.assert_array_equal(conv_t["bias"], [2.0, 2.0])


def test_prelu_weights_reach_the_runtime():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.PReLU(4), nn.Flatten(), nn.Linear(4 * 3 * 3, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.1, -0.5, 2.0, 0.0]))
    _compare(model.eval(), (3, 5, 5))
