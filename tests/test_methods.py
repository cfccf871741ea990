"""binarize_: which layers each method converts, with which quantizers; ReLU replacement; the
XNOR-Net reordering; method configs; the errors for what cannot be converted."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import onebit
from onebit import quantizers as Q
from onebit.methods import (
    AdderNet,
    BiPer,
    BiReal,
    BinaryConnect,
    BNN,
    BWN,
    FloatBaseline,
    XNORNet,
    binarize_,
    get_method,
    list_methods,
    mark_float_,
)
from onebit.nn import AdderConv2d, LatentClipWarning, QuantConv2d, QuantLinear

LAYERS = ["0", "4", "8", "10", "13"]  # conv, conv, conv, linear, linear


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),   # 0-3
        nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),  # 4-7
        nn.Conv2d(8, 8, 3, padding=1), nn.Flatten(),                                     # 8-9
        nn.Linear(8 * 2 * 2, 16), nn.BatchNorm1d(16), nn.ReLU(),                         # 10-12
        nn.Linear(16, 10),                                                               # 13
    )


def layer_types(model):
    return {n: type(model.get_submodule(n)) for n in LAYERS}


def qname(q):
    return None if q is None else q.name


EXPECT = {
    # method: (float layers, weight quantizer, input quantizer of converted layers but the first)
    "bnn": (set(), "sign", "sign"),
    "binaryconnect": ({"0", "13"}, "sign", None),
    "bwn": ({"0", "13"}, "scaled_sign", None),
    "xnor": ({"0", "13"}, "scaled_sign", "sign"),
    "bireal": ({"0", "13"}, "magnitude_aware_sign", "approx_sign"),
    "biper": ({"0", "13"}, "periodic_sign", "approx_sign"),
}


@pytest.mark.parametrize("name", list(EXPECT))
def test_binarize_converts_exactly_the_right_layers(name):
    model = small_cnn()
    before = {n: model.get_submodule(n).weight.detach().clone() for n in LAYERS}
    out = binarize_(model, name)
    assert out is model and model.onebit_method.name == name
    float_layers, wq, iq = EXPECT[name]
    for n in LAYERS:
        m = model.get_submodule(n)
        if name == "bnn" and n == LAYERS[-1]:  # BNN appends a BatchNorm1d to its last layer
            assert isinstance(m, nn.Sequential) and isinstance(m[1], nn.BatchNorm1d)
            m = m[0]
        if n in float_layers:
            assert type(m) in (nn.Conv2d, nn.Linear), n
            continue
        assert isinstance(m, (QuantConv2d, QuantLinear)), n
        assert isinstance(m, QuantConv2d) == (n in ("0", "4", "8")), n
        assert qname(m.weight_quantizer) == wq
        assert qname(m.input_quantizer) == (None if n == "0" else iq), n
        assert torch.equal(m.weight.detach(), before[n])  # weights copied
    if name == "biper":
        for n in ("4", "8", "10"):
            assert model.get_submodule(n).scale is not None
    if name == "xnor":
        assert all(model.get_submodule(n).input_scaling == "xnor_k" for n in ("4", "8"))
    x = torch.randn(3, 1, 8, 8)
    y = model(x)
    y.sum().backward()
    assert y.shape == (3, 10) and torch.isfinite(y).all()


def test_bnn_first_layer_input_stays_real_and_all_weights_binary():
    model = binarize_(small_cnn(), BNN(output_bn=False))
    assert model.get_submodule("0").input_quantizer is None
    assert all(model.get_submodule(n).weight_quantizer.name == "sign" for n in LAYERS)
    mlp = binarize_(nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)), BNN(output_bn=False))
    assert mlp[0].input_quantizer is None and qname(mlp[2].input_quantizer) == "sign"
    assert isinstance(mlp[1], nn.Hardtanh)


@pytest.mark.parametrize("name, repl", [("bnn", nn.Hardtanh), ("xnor", nn.Identity), ("bireal", nn.Identity),
                                        ("biper", nn.Identity), ("bwn", nn.ReLU),
                                        ("binaryconnect", nn.ReLU), ("addernet", nn.ReLU)])
def test_relu_replacement(name, repl):
    model = binarize_(small_cnn(), name)
    acts = [type(m) for m in model if type(m) in (nn.ReLU, nn.Hardtanh, nn.Identity)]
    assert acts == [repl] * 3


def test_xnor_reorders_conv_bn_act_pool():
    model = binarize_(small_cnn(), XNORNet())
    names = list(model._modules)
    assert names == ["0", "3", "1", "2", "4", "7", "5", "6", "8", "9", "10", "11", "12", "13"]
    kinds = [type(m).__name__ for m in model]
    assert kinds[:8] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "Identity",
                         "QuantConv2d", "MaxPool2d", "BatchNorm2d", "Identity"]
    # the state dict of the float model still loads (names kept)
    fresh = small_cnn()
    sd = {k: v for k, v in fresh.state_dict().items()}
    model.load_state_dict(sd, strict=False)
    # without the k map the layers carry no input scaling
    plain = binarize_(small_cnn(), XNORNet(k_map=False))
    assert plain.get_submodule("4").input_scaling is None


def test_addernet_converts_convs_but_the_first_and_no_linear():
    model = small_cnn()
    binarize_(model, AdderNet(eta=0.1))
    types = layer_types(model)
    assert types == {"0": nn.Conv2d, "4": AdderConv2d, "8": AdderConv2d, "10": nn.Linear, "13": nn.Linear}
    assert model.get_submodule("4").bias is None and model.get_submodule("8").bias is not None
    assert model.get_submodule("8").eta == 0.1
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_float_baseline_is_a_noop():
    model = small_cnn()
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    binarize_(model, FloatBaseline())
    assert layer_types(model) == layer_types(small_cnn())
    assert all(torch.equal(sd[k], v) for k, v in model.state_dict().items())
    assert model.onebit_method.name == "float"


def test_keep_float_names_and_callable():
    model = binarize_(small_cnn(), "xnor", keep_float=["0", "8", "13"])
    t = layer_types(model)
    assert t["4"] is QuantConv2d and t["10"] is QuantLinear and t["8"] is nn.Conv2d
    model = binarize_(small_cnn(), "bwn", keep_float=lambda name, m: isinstance(m, nn.Linear))
    t = layer_types(model)
    assert t["0"] is QuantConv2d and t["10"] is nn.Linear and t["13"] is nn.Linear
    assert model.get_submodule("0").input_quantizer is None
    with pytest.raises(ValueError) as e:
        binarize_(small_cnn(), "xnor", keep_float=["0", "classifier"])
    assert "classifier" in str(e.value) and "13" in str(e.value)
    with pytest.raises(TypeError, match="keep_float"):
        binarize_(small_cnn(), "xnor", keep_float="0")


def test_errors_for_unconvertible_models():
    with pytest.raises(ValueError, match="no nn.Conv2d or nn.Linear"):
        binarize_(nn.Sequential(nn.ReLU(), nn.Flatten()), "bnn")
    model = binarize_(small_cnn(), "bnn")
    with pytest.raises(ValueError, match="already binarized"):
        binarize_(model, "xnor")
    holder = nn.Sequential(nn.Conv2d(1, 2, 3), QuantConv2d(2, 2, 3, weight_quantizer="sign"), nn.Linear(2, 2))
    with pytest.raises(ValueError, match="already contains onebit layers"):
        binarize_(holder, "bwn")
    dilated = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3, dilation=2), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ValueError, match="dilation") as e:
        binarize_(dilated, "addernet")
    assert "keep_float" in str(e.value)
    assert type(dilated[1]) is nn.Conv2d  # untouched after the error
    grouped = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Conv2d(4, 4, 3, groups=2), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="groups"):
        binarize_(grouped, "addernet")

    class MyConv(nn.Conv2d):
        pass

    custom = nn.Sequential(nn.Conv2d(1, 2, 3), MyConv(2, 2, 3), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(ValueError, match="MyConv"):
        binarize_(custom, "xnor")
    with pytest.raises(ValueError, match="convert nothing"):
        binarize_(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2)), "xnor")
    # nothing was modified by the refused calls
    assert not hasattr(custom, "onebit_method")


def test_get_method_names_options_and_errors():
    assert list_methods() == ["float", "bnn", "binaryconnect", "bwn", "xnor", "bireal", "biper", "addernet"]
    for name in list_methods():
        m = get_method(name)
        assert m.name == name
        assert get_method(m.get_config()) == m
    cfg = get_method("biper", omega0=10.0, stage=1).get_config()
    assert cfg == {"name": "biper", "omega0": 10.0, "stage": 1, "pad_value": 0.0,
                   "normalize_input": False, "tau": 0.0}
    assert get_method(cfg) == BiPer(omega0=10.0, stage=1)
    with pytest.raises(ValueError) as e:
        get_method("xnornet")
    for name in list_methods():
        assert name in str(e.value)
    with pytest.raises(TypeError) as e:
        get_method("xnor", kmap=False)
    assert "k_map" in str(e.value)
    with pytest.raises(ValueError, match="stage"):
        BiPer(stage=3)


def test_methods_carry_optimizer_needs():
    assert BNN().latent_clip and BinaryConnect().latent_clip and BinaryConnect(stochastic=True).latent_clip
    assert not BiReal().latent_clip and not BiPer().latent_clip and not FloatBaseline().latent_clip
    assert BiReal.binary_weight_decay == 0.0 and BNN.binary_weight_decay is None
    model = binarize_(small_cnn(), BiReal())
    groups = {g["name"]: g for g in model.onebit_method.param_groups(model, weight_decay=5e-4)}
    assert groups["binary_weights"]["weight_decay"] == 0.0 and groups["other"]["weight_decay"] == 5e-4
    ids = {id(p) for p in groups["binary_weights"]["params"]}
    assert ids == {id(model.get_submodule(n).weight) for n in ("4", "8", "10")}


def test_bireal_binarize_does_not_warn_but_other_unclipped_use_does():
    with warnings.catch_warnings():
        warnings.simplefilter("error", LatentClipWarning)
        binarize_(small_cnn(), BiReal(detach_scale=True))
        binarize_(small_cnn(), "bnn")


def test_biper_stages_and_regularizer():
    method = BiPer(stage=1, tau=0.05)
    model = binarize_(small_cnn(), method)
    w = model.get_submodule("4").weight
    x = torch.randn(2, 1, 8, 8)
    assert model.get_submodule("4").quantized_weight().unique().numel() > 2  # sin: real values
    reg = method.regularizer(model)
    expect = 0.05 * sum(torch.sin(20 * model.get_submodule(n).weight).pow(2).mean() for n in ("4", "8", "10"))
    torch.testing.assert_close(reg, expect)
    method.set_stage_(model, 2)
    assert method.stage == 2 and model.get_submodule("4").weight_quantizer.stage == 2
    assert set(model.get_submodule("4").quantized_weight().unique().tolist()) <= {-1.0, 1.0}
    assert model(x).shape == (2, 10)
    assert torch.equal(model.get_submodule("4").weight, w)
    assert BiPer().regularizer(model) is None
    with pytest.raises(ValueError, match="periodic"):
        BiPer().set_stage_(small_cnn(), 2)


def test_top_level_exports():
    for name in ("binarize_", "BNN", "BinaryConnect", "BWN", "XNORNet", "BiReal", "BiPer", "AdderNet",
                 "FloatBaseline"):
        assert getattr(onebit, name) is not None
    assert onebit.binarize_ is binarize_ and onebit.BWN is BWN
    assert Q.get(BNN().weight_quantizer()).needs_latent_clip


def test_marked_layers_stay_float_under_every_rule():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.shortcut = mark_float_(nn.Sequential(nn.AvgPool2d(1), nn.Conv2d(4, 4, 1)))

        def forward(self, x):
            return self.conv(x) + self.shortcut(x)

    def net():
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), Block(), Block(), nn.Flatten(), nn.Linear(64, 3))

    for name in ("bnn", "xnor", "bireal", "addernet"):
        model = binarize_(net(), name)
        for i in (1, 2):
            assert type(model[i].shortcut[1]) is nn.Conv2d, (name, i)
            assert type(model[i].conv) is not nn.Conv2d, (name, i)
    model = binarize_(net(), "bwn", keep_float=["0"])
    assert type(model[1].shortcut[1]) is nn.Conv2d and type(model[4]) is not nn.Linear
    with pytest.raises(ValueError, match="convert nothing"):
        binarize_(mark_float_(net()), "bnn")


@pytest.fixture
def one_thread():
    """Small ops on a shared 2-core machine run far faster without OpenMP contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", list_methods())
def test_every_method_learns_a_separable_task(name, one_thread):
    """A few Adam steps on 4 noisy prototypes: each binarized model must fit them (latent
    clipping attached, the method's parameter groups)."""
    from onebit.optim import LatentClip

    g = torch.Generator().manual_seed(0)
    protos = torch.randn(4, 1, 8, 8, generator=g)

    def batch(n):
        y = torch.randint(0, 4, (n,), generator=g)
        return protos[y] + 0.8 * torch.randn(n, 1, 8, 8, generator=g), y

    torch.manual_seed(0)
    model = binarize_(nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 4)), name)
    opt = torch.optim.Adam(model.onebit_method.param_groups(model, 0.0), lr=1e-2)
    LatentClip(model).attach(opt)
    losses = []
    for _ in range(40):
        x, y = batch(64)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    x, y = batch(512)
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5]), losses
    assert acc > 0.8, acc


def test_bnn_appends_batchnorm_after_binary_last_linear():
    """BNN binarizes the classifier too; a BatchNorm1d after it keeps the logits in range."""
    from onebit.models import create

    model = onebit.binarize_(create("fmnist_cnn", in_channels=1, width=0.25), "bnn")
    last = model.classifier[-1]
    assert isinstance(last, nn.Sequential) and isinstance(last[0], QuantLinear)
    assert isinstance(last[1], nn.BatchNorm1d) and last[1].num_features == 10
    plain = onebit.binarize_(create("fmnist_cnn", in_channels=1, width=0.25),
                             onebit.BNN(output_bn=False))
    assert isinstance(plain.classifier[-1], QuantLinear)
    # without BN the logits are integers: dot products of +/-1 vectors of length 256 (+ bias)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        plain.classifier[-1].bias.zero_()
        logits = plain.eval()(x)
    assert torch.equal(logits, logits.round())
