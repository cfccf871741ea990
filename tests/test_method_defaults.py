"""The papers' defaults of every method and quantizer (METHODS.md: the paper by default, the
official code's variant behind a named option), checked through behaviour where it can be, plus
edge cases of the training helpers: an all-zero output channel frozen to +1, and BiPer's stage
switch reaching every layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from onebit import methods, quantizers
from onebit.methods import BNN, BWN, AdderNet, BinaryConnect, BiPer, BiReal, XNORNet, binarize_
from onebit.nn import QuantConv2d, QuantLinear


def _cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 8), nn.ReLU(), nn.Linear(8, 3),
    )


def _weight_grad(q: nn.Module, w: torch.Tensor) -> torch.Tensor:
    w = w.clone().requires_grad_(True)
    q(w).backward(torch.ones_like(w))
    return w.grad


def _w() -> torch.Tensor:
    torch.manual_seed(1)
    w = torch.randn(3, 2, 3, 3) * 0.8
    w[0, 0, 0, 0] = 1.5  # outside the clip range: its STE gradient is 0
    return w


# --------------------------------------------------------------------------------------------
# quantizers: default arguments, each checked by what the quantizer computes
# --------------------------------------------------------------------------------------------
def test_magnitude_aware_sign_defaults_to_the_papers_gradient():
    w = _w()
    q = quantizers.MagnitudeAwareSign()
    assert q.detach_scale is False and q.clip == 1.0
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    expect = alpha * (w.abs() <= 1).to(w.dtype)  # paper: d(alpha sign W)/dW = alpha 1[|W| <= 1]
    torch.testing.assert_close(_weight_grad(q, w), expect.expand_as(w))
    # the official code's variant only behind the option
    torch.testing.assert_close(_weight_grad(quantizers.MagnitudeAwareSign(detach_scale=True), w),
                               (w.abs() <= 1).to(w.dtype))


def test_sign_quantizers_default_to_clip_one():
    w = _w()
    mask = (w.abs() <= 1).to(w.dtype)
    for q in (quantizers.Sign(), quantizers.StochasticSign().eval()):
        assert q.clip == 1.0
        torch.testing.assert_close(_weight_grad(q, w), mask)
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], requires_grad=True)
    quantizers.Sign()(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_scaled_sign_defaults_to_the_xnor_papers_gradient():
    w = _w()
    q = quantizers.ScaledSign()
    assert q.clip == 1.0 and q.needs_latent_clip
    n = w[0].numel()
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    expect = 1.0 / n + alpha * (w.abs() <= 1).to(w.dtype)
    torch.testing.assert_close(_weight_grad(q, w), expect)


def test_periodic_sign_defaults_to_omega0_20_stage_2():
    q = quantizers.PeriodicSign()
    assert q.omega0 == 20.0 and q.stage == 2 and q.precision == 1
    w = torch.linspace(-0.3, 0.3, 13)
    assert torch.equal(q(w), torch.where(torch.sin(20 * w) < 0, -1.0, 1.0))
    torch.testing.assert_close(_weight_grad(q, w), 20 * torch.cos(20 * w))


def test_approx_sign_defaults_to_no_normalisation():
    q = quantizers.ApproxSign().train()
    assert q.normalize_std is False
    x = torch.tensor([[-1.5, -0.5, 0.0, 0.25, 0.75, 3.0]], requires_grad=True)
    q(x * 10).sum().backward()  # scaling x by 10 changes F'(10x), which a normalisation would undo
    expect = (2 - 2 * (10 * x.detach()).abs()).clamp_min(0) * 10
    torch.testing.assert_close(x.grad, expect)


def test_kbit_defaults_to_two_bits():
    q = quantizers.KBit()
    assert q.bits == 2 and q.precision == 2
    x = torch.linspace(-1, 1, 101)
    torch.testing.assert_close(q(x).unique(), torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0]))


# --------------------------------------------------------------------------------------------
# methods: the paper's configuration by default
# --------------------------------------------------------------------------------------------
def _binary_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (QuantConv2d, QuantLinear))]


def test_bireal_ablations_swap_one_ingredient_each():
    """approx_sign=False: BNN's STE for the activations; magnitude_aware=False: plain sign
    weights with the 1[|W| <= 1] gradient; everything else stays Bi-Real's."""
    assert BiReal().approx_sign is True and BiReal().magnitude_aware is True
    w = _w()
    x = torch.linspace(-1.5, 1.5, 61)
    for approx, magnitude in ((False, True), (True, False)):
        m = BiReal(approx_sign=approx, magnitude_aware=magnitude)
        layers = _binary_layers(binarize_(_cnn(), m))
        assert layers and m.binary_weight_decay == 0.0 and not m.latent_clip
        for layer in layers:
            if approx:
                assert isinstance(layer.input_quantizer, quantizers.ApproxSign)
            else:
                assert type(layer.input_quantizer) is quantizers.Sign
                xs = x.clone().requires_grad_(True)
                layer.input_quantizer(xs).sum().backward()
                torch.testing.assert_close(xs.grad, (x.abs() <= 1).to(x.dtype))
            if magnitude:
                assert isinstance(layer.weight_quantizer, quantizers.MagnitudeAwareSign)
            else:
                assert type(layer.weight_quantizer) is quantizers.Sign
                torch.testing.assert_close(_weight_grad(layer.weight_quantizer, w),
                                           (w.abs() <= 1).to(w.dtype))
                torch.testing.assert_close(layer.weight_quantizer(w),
                                           torch.where(w >= 0, 1.0, -1.0))
    assert methods.get_method({"name": "bireal", "approx_sign": False}).approx_sign is False
    with pytest.raises(TypeError, match="approx_sign must be true or false"):
        BiReal(approx_sign="no")


def test_bireal_defaults_to_the_papers_gradient_in_a_model():
    m = BiReal()
    assert m.detach_scale is False and m.pad_value == 0.0
    model = binarize_(_cnn(), m)
    layers = _binary_layers(model)
    assert layers
    w = _w()
    for layer in layers:
        assert isinstance(layer.weight_quantizer, quantizers.MagnitudeAwareSign)
        assert layer.weight_quantizer.detach_scale is False
        assert isinstance(layer.input_quantizer, quantizers.ApproxSign)
        assert layer.input_quantizer.normalize_std is False
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(_weight_grad(layers[0].weight_quantizer, w),
                               alpha * (w.abs() <= 1).to(w.dtype))
    # weight decay 0 on binary weights, no latent clip (the paper's recipe)
    assert m.binary_weight_decay == 0.0 and not m.latent_clip
    groups = m.param_groups(model, 5e-4)
    binary = {id(layer.weight) for layer in layers}
    for g in groups:
        if any(id(p) in binary for p in g["params"]):
            assert g["weight_decay"] == 0.0


def test_bnn_defaults():
    m = BNN()
    assert m.pad_value == 0.0 and m.output_bn is True and m.latent_clip
    model = binarize_(_cnn(), m)
    layers = _binary_layers(model)
    assert len(layers) == 5  # every layer, first and last included
    assert layers[0].input_quantizer is None  # the first layer's input stays real
    for layer in layers:
        assert isinstance(layer.weight_quantizer, quantizers.Sign) and layer.weight_quantizer.clip == 1.0
    for layer in layers[1:]:
        assert isinstance(layer.input_quantizer, quantizers.Sign) and layer.input_quantizer.clip == 1.0
    assert not any(isinstance(x, nn.ReLU) for x in model.modules())
    assert any(isinstance(x, nn.Hardtanh) for x in model.modules())


def test_binaryconnect_defaults_to_deterministic_sign():
    m = BinaryConnect()
    assert m.stochastic is False and m.latent_clip
    model = binarize_(_cnn(), m)
    for layer in _binary_layers(model):
        assert type(layer.weight_quantizer) is quantizers.Sign and layer.input_quantizer is None
    assert any(isinstance(x, nn.ReLU) for x in model.modules())  # activations stay real


def test_bwn_and_xnor_defaults():
    assert BWN().latent_clip
    x = XNORNet()
    assert x.k_map is True and x.pad_value == 0.0 and x.latent_clip  # the paper's K map
    model = binarize_(_cnn(), x)
    layers = _binary_layers(model)
    assert layers
    convs = [layer for layer in layers if isinstance(layer, QuantConv2d)]
    assert convs and all(c.input_scaling == "xnor_k" for c in convs)
    for layer in layers:
        assert type(layer.weight_quantizer) is quantizers.ScaledSign
    # first and last layers stay float
    assert isinstance(model[0], nn.Conv2d) and not isinstance(model[0], QuantConv2d)
    assert type(model[-1]) is nn.Linear


def test_biper_defaults():
    m = BiPer()
    assert (m.omega0, m.stage, m.tau, m.normalize_input, m.pad_value) == (20.0, 2, 0.0, False, 0.0)
    model = binarize_(_cnn(), m)
    layers = _binary_layers(model)
    assert layers and m.regularizer(model) is None
    for layer in layers:
        assert layer.weight_quantizer.omega0 == 20.0 and layer.weight_quantizer.stage == 2
        assert layer.scale is not None  # the learnable per-channel scale
        assert layer.input_quantizer.normalize_std is False


def test_addernet_defaults_to_eta_0_2():
    assert AdderNet().eta == 0.2
    from onebit.nn import AdderConv2d

    assert AdderConv2d(2, 3, 3).eta == 0.2
    model = binarize_(_cnn(), "addernet")
    adders = [m for m in model.modules() if isinstance(m, AdderConv2d)]
    assert len(adders) == 2 and all(a.eta == 0.2 for a in adders)  # all convs but the first


def test_get_method_by_name_gives_the_defaults():
    for name in methods.list_methods():
        assert methods.get_method(name).get_config() == type(methods.get_method(name))().get_config()
    assert methods.get_method("bireal").detach_scale is False


# --------------------------------------------------------------------------------------------
# training helpers: edge cases
# --------------------------------------------------------------------------------------------
def test_biper_set_stage_switches_every_periodic_sign():
    m = BiPer(stage=1)
    model = binarize_(_cnn(), m)
    qs = [x for x in model.modules() if isinstance(x, quantizers.PeriodicSign)]
    assert len(qs) >= 3 and all(q.stage == 1 for q in qs)
    m.set_stage_(model, 2)
    assert [q.stage for q in qs] == [2] * len(qs)
    for layer in _binary_layers(model):
        assert set(layer.quantized_weight().unique().tolist()) <= {-1.0, 1.0}
    m.set_stage_(model, 1)
    assert [q.stage for q in qs] == [1] * len(qs) and m.stage == 1


@pytest.mark.filterwarnings("ignore::onebit.nn.LatentClipWarning")
def test_freezing_an_all_zero_output_channel_gives_plus_one():
    from onebit.train.runner import freeze_binary_weights_

    for wq in ("magnitude_aware_sign", "sign", "scaled_sign"):
        conv = QuantConv2d(2, 3, 3, bias=False, weight_quantizer=wq)
        lin = QuantLinear(4, 2, bias=False, weight_quantizer=wq)
        with torch.no_grad():
            conv.weight.normal_()
            conv.weight[1].zero_()  # alpha = 0: the quantized channel is all zeros
            lin.weight.uniform_(-1, 1)
            lin.weight[0].zero_()
        model = nn.Sequential(conv, nn.Flatten(), nn.Linear(3, 4), lin)
        assert freeze_binary_weights_(model) == 2
        assert torch.equal(conv.weight[1], torch.ones_like(conv.weight[1])), wq
        assert torch.equal(lin.weight[0], torch.ones_like(lin.weight[0])), wq
        for layer in (conv, lin):
            assert set(layer.weight.unique().tolist()) <= {-1.0, 1.0}
            assert torch.equal(layer.quantized_weight(), layer.weight)


def test_kbit_rounds_exact_float32_ties_half_up():
    # 4 bits: 15 * (x + 1) / 2 lands exactly on 4.5 and 10.5 in float32 at x = -0.4 and +0.4
    x = torch.tensor([-0.4, 0.4], dtype=torch.float32)
    v = 15 * (x + 1) / 2
    assert v.tolist() == [4.5, 10.5]
    # round half up (the documented rule, floor(v + 1/2)) gives 5 and 11; torch.round (half to
    # even) would give 4 and 10
    assert torch.round(v).tolist() == [4.0, 10.0]
    q = quantizers.KBit(4)(x)
    expect = 2 * (torch.tensor([5.0, 11.0]) / 15 - 0.5)
    assert torch.equal(q, expect)
    assert torch.equal(quantizers.KBitFunction.apply(x, 4), expect)
    # an odd multiple of 1/(2^k - 1) - 1 lands on every tie between two levels
    for bits in (2, 3, 5):
        levels = 2**bits - 1
        ties = torch.arange(levels, dtype=torch.float64) + 0.5
        xt = (2 * ties / levels - 1).float()
        vt = levels * (xt + 1) / 2
        on_tie = vt == vt.floor() + 0.5
        assert on_tie.any()
        got = quantizers.KBit(bits)(xt)
        assert torch.equal(got[on_tie], 2 * ((vt[on_tie].floor() + 1) / levels - 0.5))


# --------------------------------------------------------------------------------------------
# methods: what each one puts into the layers it converts
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", [BNN(), BinaryConnect(), BinaryConnect(stochastic=True), BWN(),
                                    XNORNet()], ids=lambda m: repr(m))
def test_straight_through_windows_are_the_papers(method):
    """Every STE passes the gradient where |x| <= 1 (the papers' window), for weights and, where
    the method binarizes them, for inputs: checked on the converted layers' gradients."""
    model = binarize_(_cnn(), method)
    layers = _binary_layers(model)
    assert layers
    w = _w() * 1.4            # some latent weights in (1, 1.4]: outside the window
    x = torch.linspace(-2.0, 2.0, 81)
    mask = (w.abs() <= 1).to(w.dtype)
    for layer in layers:
        q = layer.weight_quantizer.train()
        expect = mask
        if isinstance(q, quantizers.ScaledSign):  # XNOR-Net / BWN: d(alpha sign W)/dW
            alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
            expect = 1.0 / w[0].numel() + alpha * mask
        torch.testing.assert_close(_weight_grad(q, w), expect.expand_as(w))
        if layer.input_quantizer is not None:
            xs = x.clone().requires_grad_(True)
            layer.input_quantizer(xs).sum().backward()
            torch.testing.assert_close(xs.grad != 0, x.abs() <= 1)


def test_biper_output_scale_starts_at_the_fitted_gamma():
    """A converted BiPer layer's learnable scale starts at E|sin(omega0 W_c)| per channel (stage
    2, the quantization-error fit), not at ones."""
    model = binarize_(_cnn(), BiPer(omega0=20.0, stage=2))
    layers = _binary_layers(model)
    assert layers
    for layer in layers:
        w = layer.weight.detach()
        gamma = torch.sin(20.0 * w).abs().reshape(w.shape[0], -1).mean(dim=1)
        torch.testing.assert_close(layer.scale.detach().reshape(-1), gamma)
        assert not torch.allclose(layer.scale.detach().reshape(-1), torch.ones_like(gamma))


def test_xnor_options_default_off_and_validate_exactly():
    m = XNORNet()
    assert m.k_map is True and m.input_bits == 1
    assert m.beta is False and m.relu is False and m.binary_gradients is False
    assert XNORNet(input_bits=8, k_map=False).input_bits == 8
    for bad in (True, 0, 9, 2.0):
        with pytest.raises(ValueError, match="input_bits"):
            XNORNet(input_bits=bad, k_map=False)
    for opts in ({"input_bits": 2}, {"input_bits": 2, "k_map": False, "beta": True}):
        with pytest.raises(ValueError, match="K map and beta"):
            XNORNet(**opts)
    two = XNORNet(input_bits=2, k_map=False)
    assert two.input_quantizer() == {"name": "kbit", "bits": 2}
    assert XNORNet().input_quantizer() == {"name": "sign", "clip": 1.0}


def test_xnor_relu_follows_every_binary_conv_but_the_first_layer():
    model = binarize_(_cnn(), XNORNet(relu=True))
    convs = [m for m in model.modules() if isinstance(m, QuantConv2d)]
    wrapped = [m for m in model.modules() if isinstance(m, nn.Sequential) and "relu" in m._modules]
    assert len(convs) == 2 and len(wrapped) == 2      # the first conv stays float
    for seq in wrapped:
        assert isinstance(seq.conv, QuantConv2d) and type(seq.relu) is nn.ReLU
    # the model's own ReLUs feeding signs are gone; the added ones stay ReLUs
    relus = [m for m in model.modules() if type(m) is nn.ReLU]
    assert len(relus) == 2


# --------------------------------------------------------------------------------------------
# XNOR-Net's block order: exactly the runs Conv, BN, [activations], Pool move
# --------------------------------------------------------------------------------------------
def _order(seq: nn.Sequential) -> list[str]:
    return [f"{n}:{type(m).__name__}" for n, m in seq.named_children()]


def test_xnor_reorder_moves_every_run_and_names_it():
    seq = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2), nn.AvgPool2d(2),
                        nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2), nn.ReLU(), nn.Hardtanh(),
                        nn.MaxPool2d(1))
    wrapper = nn.Module()
    wrapper.features = seq  # the root is not a Sequential: the run is found inside
    assert methods.xnor_reorder_(wrapper) == ["features.3", "features.6", "features.11"]
    assert _order(seq) == ["0:Conv2d", "3:MaxPool2d", "1:BatchNorm2d", "2:ReLU",
                           "4:Conv2d", "6:AvgPool2d", "5:BatchNorm2d",
                           "7:Conv2d", "11:MaxPool2d", "8:BatchNorm2d", "9:ReLU", "10:Hardtanh"]
    assert methods.xnor_reorder_(wrapper) == []  # already in block order


@pytest.mark.parametrize("layers", [
    [nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2)],              # no BatchNorm
    [nn.Identity(), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2)],  # no conv before the BN
    [nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU()],             # no pool: the run ends
    [nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)],
    [nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 2, 3)],  # a conv, not a pool
    [nn.Conv2d(1, 2, 3)],
], ids=["no-bn", "no-conv", "no-pool", "conv-bn", "conv-not-pool", "conv-only"])
def test_xnor_reorder_leaves_other_sequences_alone(layers):
    seq = nn.Sequential(*layers)
    before = _order(seq)
    assert methods.xnor_reorder_(seq) == []
    assert _order(seq) == before


def test_biper_omega0_must_be_positive():
    assert BiPer(omega0=0.5).omega0 == 0.5
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="omega0 must be > 0"):
            BiPer(omega0=bad)


def test_binarize_refusal_lists_the_first_five_onebit_layers():
    model = nn.Sequential(*[QuantLinear(2, 2) for _ in range(7)])
    with pytest.raises(ValueError) as err:
        binarize_(model, "bnn")
    assert "(0, 1, 2, 3, 4)" in str(err.value)


def test_addernet_with_a_linear_first_still_converts_the_later_convs():
    class LinearFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(4, 4)
            self.conv1 = nn.Conv2d(1, 2, 3)
            self.conv2 = nn.Conv2d(2, 2, 3)

    from onebit.nn import AdderConv2d

    model = binarize_(LinearFirst(), "addernet", keep_float=["conv1"])
    assert type(model.embed) is nn.Linear and type(model.conv1) is nn.Conv2d
    assert isinstance(model.conv2, AdderConv2d)


def test_bnn_output_batchnorm_only_after_a_converted_last_linear():
    fully_conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(),
                               nn.Conv2d(2, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    binarize_(fully_conv, BNN())
    assert not any(isinstance(m, nn.BatchNorm1d) for m in fully_conv.modules())
    kept_last = _cnn()
    binarize_(kept_last, BNN(), keep_float=["12"])
    assert type(kept_last[12]) is nn.Linear and isinstance(kept_last[10], QuantLinear)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in kept_last.modules())
    converted = binarize_(_cnn(), BNN())
    assert isinstance(converted[12], nn.Sequential) and isinstance(converted[12][1], nn.BatchNorm1d)
