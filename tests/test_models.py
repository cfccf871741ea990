"""Tests for onebit.models: the registry, every architecture (shapes, gradients, structure)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from onebit import models
from onebit.models import create, list_models, model_info, register_model
from onebit.models.cifar import BasicBlock
from onebit.models.imagenet import BiRealBlock

REQUIRED = ["alexnet", "birealnet18", "birealnet34", "fmnist_cnn", "lenet5_bn", "mlp", "resnet18",
            "resnet20", "vgg_small"]

# small variants keep the suite fast; the structure is the same at every width
SMALL = {
    "alexnet": {"width": 0.125},
    "birealnet18": {"width": 0.25},
    "birealnet34": {"width": 0.125},
    "resnet18": {"width": 0.25},
    "vgg_small": {"width": 0.125},
    "mlp": {"hidden": 64},
}


def build(name: str, in_channels: int, num_classes: int = 7, **extra) -> nn.Module:
    torch.manual_seed(0)
    return create(name, num_classes=num_classes, in_channels=in_channels,
                  **{**SMALL.get(name, {}), **extra})


def test_required_models_registered():
    assert set(REQUIRED) <= set(list_models())
    assert list_models() == sorted(list_models())
    assert list_models("resnet*") == ["resnet18", "resnet20"]


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("in_channels", [1, 3])
def test_forward_backward(name, in_channels):
    model = build(name, in_channels)
    _, h, w = model_info(name).default_input_size
    assert model.default_input_size == (in_channels, h, w)
    x = torch.randn(2, in_channels, h, w)
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", ["lenet5_bn", "fmnist_cnn", "vgg_small", "resnet20", "resnet18"])
@pytest.mark.parametrize("size", [28, 32])
def test_small_and_cifar_models_take_28_and_32(name, size):
    model = build(name, 1, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 1, size, size)).shape == (3, 10)


@pytest.mark.parametrize("name", ["birealnet18", "alexnet"])
def test_imagenet_models_take_small_inputs(name):
    model = build(name, 3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)


def test_parameter_counts_match_the_reference_architectures():
    # published parameter counts: torchvision's ResNet-18 / ResNet-34 (11,689,512 / 21,797,672
    # with 1000 classes; Bi-Real Net 18/34 only adds parameter-free shortcuts and avg-pools) and
    # the common CIFAR ResNet-18 (11,173,962 with 10 classes)
    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(create("birealnet18", num_classes=1000)) == 11_689_512
    assert count(create("birealnet34", num_classes=1000)) == 21_797_672
    assert count(create("resnet18", num_classes=10)) == 11_173_962
    assert 0.26e6 < count(create("resnet20")) < 0.28e6  # "0.27M" (He et al. 2016, Table 6)


def test_activations_are_modules_and_all_used():
    """Every activation is an nn.ReLU module that a method can swap, and each one runs."""
    for name in list_models():
        model = build(name, 3)
        calls: dict[str, int] = {}

        class Probe(nn.Module):
            def __init__(self, key):
                super().__init__()
                self.key = key

            def forward(self, x):
                calls[self.key] = calls.get(self.key, 0) + 1
                return torch.relu(x)

        keys = []
        for parent_name, parent in list(model.named_modules()):
            for child_name, child in list(parent.named_children()):
                if isinstance(child, nn.ReLU):
                    key = f"{parent_name}.{child_name}"
                    setattr(parent, child_name, Probe(key))
                    keys.append(key)
        assert keys, f"{name} has no nn.ReLU module"
        _, h, w = model_info(name).default_input_size
        model(torch.randn(2, 3, h, w))
        assert sorted(calls) == sorted(keys), f"{name}: some ReLU modules are never run"
        assert set(calls.values()) == {1}, f"{name}: a ReLU module is used twice"


def test_vgg_small_structure():
    model = create("vgg_small")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [128, 128, 256, 256, 512, 512]
    assert all(c.kernel_size == (3, 3) and c.bias is None for c in convs)
    # Conv -> BN -> ReLU (-> MaxPool) inside one Sequential, the pattern XNOR-Net reorders
    kinds = [type(m).__name__ for m in model.features]
    assert kinds[:9] == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU",
                         "MaxPool2d", "Conv2d", "BatchNorm2d"]
    assert kinds.count("MaxPool2d") == 3
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(8192, 10)]
    bnn = create("vgg_small", fc_hidden=(1024, 1024))
    assert [l.out_features for l in bnn.classifier if isinstance(l, nn.Linear)] == [1024, 1024, 10]
    assert len(create("vgg_small", width=0.5).features[0].weight) == 64


def test_birealnet_shortcut_around_every_conv():
    for name, units in (("birealnet18", 16), ("birealnet34", 32)):
        model = create(name)
        blocks = [m for m in model.modules() if isinstance(m, BiRealBlock)]
        assert len(blocks) == units
        convs3 = [m for m in model.modules()
                  if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
        assert len(convs3) == units and all(b.conv in convs3 for b in blocks)
        down = [b for b in blocks if not isinstance(b.shortcut, nn.Identity)]
        assert len(down) == 3
        for b in down:
            kinds = [type(m) for m in b.shortcut]
            assert kinds == [nn.AvgPool2d, nn.Conv2d, nn.BatchNorm2d]
            assert b.shortcut[1].kernel_size == (1, 1) and b.conv.stride == (2, 2)
        stem = [type(m) for m in model.stem]
        assert stem == [nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d]
        assert model.stem[0].kernel_size == (7, 7)


def test_resnet20_bireal_form_has_a_shortcut_around_every_conv():
    model = create("resnet20", num_classes=10, in_channels=1, block="bireal")
    plain = create("resnet20", num_classes=10, in_channels=1)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model) == count(plain)  # same convs, BNs and 1x1 downsampling convs
    blocks = [m for m in model.modules() if isinstance(m, BiRealBlock)]
    assert len(blocks) == 18 and [len(s) for s in model.layers] == [6, 6, 6]
    assert [b.conv.out_channels for b in blocks[::6]] == [16, 32, 64]
    assert [b.conv.stride for b in blocks if b.conv.stride != (1, 1)] == [(2, 2), (2, 2)]
    assert [type(m) for m in model.stem] == [nn.Conv2d, nn.BatchNorm2d]
    assert model.stem[0].kernel_size == (3, 3)
    # every unit adds its input: with the conv branch zeroed the block is its shortcut
    block = blocks[1].eval()
    with torch.no_grad():
        block.conv.weight.zero_()
        x = torch.randn(2, 16, 7, 7)
        torch.testing.assert_close(block(x), x)
    assert all(isinstance(b.act, nn.ReLU) for b in blocks)  # Bi-Real's pretraining clips them
    with pytest.raises(ValueError, match="block must be 'basic' or 'bireal'"):
        create("resnet20", block="preact")


def test_birealnet_block_computes_bn_conv_act_plus_x():
    torch.manual_seed(0)
    block = BiRealBlock(8, 8, activation="hardtanh").eval()
    x = torch.randn(2, 8, 6, 6) * 3
    bn = block.bn
    expect = (torch.nn.functional.conv2d(x.clamp(-1, 1), block.conv.weight, padding=1)
              - bn.running_mean[None, :, None, None]) / torch.sqrt(
        bn.running_var[None, :, None, None] + bn.eps) * bn.weight[None, :, None, None] \
        + bn.bias[None, :, None, None] + x
    torch.testing.assert_close(block(x), expect)
    with pytest.raises(ValueError, match="relu, hardtanh"):
        BiRealBlock(8, 8, activation="sign")


def test_birealnet_downsampling_shortcut_on_odd_sizes():
    block = BiRealBlock(4, 8, stride=2).eval()
    for size in (7, 8):
        assert block(torch.randn(1, 4, size, size)).shape == (1, 8, (size + 1) // 2, (size + 1) // 2)


def test_resnet_basic_block():
    torch.manual_seed(0)
    block = BasicBlock(4, 4).eval()
    with torch.no_grad():
        block.conv2.weight.zero_()
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(block(x), torch.relu(x))  # residual path off: relu(0 + x)
    assert isinstance(BasicBlock(4, 8, 2).shortcut, nn.Sequential)
    assert len([b for b in create("resnet20").modules() if isinstance(b, BasicBlock)]) == 9


def test_lenet_and_mlp_structure():
    lenet = create("lenet5_bn", in_channels=1)
    convs = [m for m in lenet.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(6, (5, 5)), (16, (5, 5)),
                                                                (120, (5, 5))]
    assert len([m for m in lenet.modules() if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d))]) == 4
    net = create("mlp", in_channels=1)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(784, 4096), (4096, 4096),
                                                                  (4096, 4096), (4096, 10)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in net) == 3
    deep = create("mlp", in_channels=1, hidden=32, depth=5, input_size=32)
    assert sum(isinstance(m, nn.Linear) for m in deep) == 6
    with pytest.raises(ValueError, match="input_size"):
        deep(torch.randn(2, 1, 28, 28))


def test_fmnist_cnn_is_small():
    model = create("fmnist_cnn", in_channels=1)
    params = sum(p.numel() for p in model.parameters())
    assert 0.3e6 < params < 2e6
    first = model.features[0]
    assert isinstance(first, nn.Conv2d) and first.out_channels <= 32


def test_create_errors():
    with pytest.raises(ValueError, match="known models: alexnet, birealnet18"):
        create("resnet-20")
    with pytest.raises(TypeError, match=r"'widht'.*width=1.0"):
        create("resnet20", widht=2)
    with pytest.raises(ValueError, match="num_classes"):
        create("resnet20", num_classes=0)
    with pytest.raises(ValueError, match="in_channels"):
        create("resnet20", in_channels=2.0)
    with pytest.raises(ValueError, match="width"):
        create("resnet20", width=0)
    with pytest.raises(ValueError, match="dropout"):
        create("alexnet", dropout=1.5)
    assert model_info("mlp").options == {"hidden": 4096, "depth": 3, "input_size": 28}
    assert model_info("fmnist_cnn").default_input_size == (1, 28, 28)
    assert model_info("birealnet18").default_input_size == (3, 224, 224)


def test_register_model(monkeypatch):
    monkeypatch.setattr(models.registry, "_REGISTRY", dict(models.registry._REGISTRY))

    @register_model(default_input_size=(2, 9, 9))
    def tiny(num_classes: int = 10, in_channels: int = 3, hidden: int = 4):
        """A tiny test model."""
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 81, hidden), nn.ReLU(),
                             nn.Linear(hidden, num_classes))

    assert "tiny" in list_models()
    m = create("tiny", num_classes=3, in_channels=2, hidden=5)
    assert m.default_input_size == (2, 9, 9) and m(torch.randn(1, 2, 9, 9)).shape == (1, 3)
    assert model_info("tiny").description == "A tiny test model."
    with pytest.raises(ValueError, match="already registered"):
        register_model(name="tiny")(lambda num_classes=10, in_channels=3: nn.Identity())
    with pytest.raises(TypeError, match="in_channels"):
        register_model(name="bad")(lambda num_classes=10: nn.Identity())


def _training_epoch_script():
    """benchmarks/training_epoch.py, the script that times a float training epoch."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "training_epoch.py"
    spec = importlib.util.spec_from_file_location("training_epoch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_time_training_epoch_runs():
    from onebit.data.transforms import BatchLoader

    time_training_epoch = _training_epoch_script().time_training_epoch

    torch.manual_seed(0)
    images = torch.randint(0, 256, (24, 28, 28, 1), dtype=torch.uint8)
    labels = torch.randint(0, 10, (24,))
    loader = BatchLoader(images, labels, 8)
    result = time_training_epoch(create("fmnist_cnn", in_channels=1, width=0.25), loader,
                                 warmup=1)
    assert result["timed_batches"] == 2 and result["batches_per_epoch"] == 3
    assert result["seconds_per_epoch"] > 0 and result["final_loss"] == result["final_loss"]
    with pytest.raises(ValueError, match="too few"):
        time_training_epoch(create("lenet5_bn", in_channels=1), BatchLoader(images, labels, 24))


def test_birealnet_downsampling_shortcut_stays_float_under_every_method():
    """Bi-Real Net's downsampling shortcut (AvgPool -> 1x1 conv -> BN) is full precision."""
    import onebit
    from onebit.methods import get_method, list_methods
    from onebit.nn import QuantConv2d

    for name in list_methods():
        for model_name, extra, downsampling in (("birealnet18", {}, 3),
                                                ("resnet20", {"block": "bireal"}, 2)):
            model = onebit.binarize_(create(model_name, num_classes=10, in_channels=3, **extra),
                                     get_method(name))
            shortcut_convs = [m for n, m in model.named_modules()
                              if ".shortcut." in n and isinstance(m, torch.nn.Conv2d)]
            assert len(shortcut_convs) == downsampling  # one per downsampling stage
            assert all(type(m) is torch.nn.Conv2d and not isinstance(m, QuantConv2d)
                       for m in shortcut_convs), (name, model_name)
