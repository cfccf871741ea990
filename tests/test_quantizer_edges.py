"""Edge cases of the quantizers' arguments and math that the main quantizer tests do not pin."""

from __future__ import annotations

import pytest
import torch

from onebit import quantizers


@pytest.mark.parametrize("cls", [quantizers.Sign, quantizers.StochasticSign, quantizers.ScaledSign,
                                 quantizers.MagnitudeAwareSign])
def test_clip_must_be_positive(cls):
    for bad in (0, 0.0, -1.0):
        with pytest.raises(ValueError, match="clip must be > 0"):
            cls(clip=bad)
    assert cls(clip=1e-6).clip == 1e-6
    assert cls(clip=None).clip is None


def test_scaled_sign_gradient_with_one_output_channel():
    # n is the fan-in of one output filter, whatever the number of filters
    w = torch.tensor([[[[0.5, -0.25], [2.0, -0.75]]]], requires_grad=True)  # [1, 1, 2, 2]
    quantizers.ScaledSign()(w).sum().backward()
    alpha = w.detach().abs().mean()
    mask = (w.detach().abs() <= 1).float()
    torch.testing.assert_close(w.grad, 1 / 4 + alpha * mask)


@pytest.mark.parametrize("name", ["", 3, None])
def test_register_quantizer_rejects_an_empty_or_non_string_name(name):
    with pytest.raises(ValueError, match="non-empty string"):
        quantizers.register_quantizer(name)
    assert "" not in quantizers.list_quantizers()


@pytest.mark.parametrize("name", [n for n in quantizers.list_quantizers() if n != "function"])
def test_starves_unclipped_says_whether_the_gradient_vanishes_outside_one(name):
    q = quantizers.get(name)
    w = torch.full((2, 3), 2.0)
    w[1] = -2.0
    w.requires_grad_(True)
    q(w).sum().backward()
    starves = bool(torch.all(w.grad == 0))
    assert q.starves_unclipped is starves, (name, w.grad)


def test_an_unregistered_quantizer_subclass_has_an_empty_name():
    class Halve(quantizers.Quantizer):
        def forward(self, x):
            return x / 2

    q = Halve()
    assert q.name == "" and q.get_config() == {"name": ""}
    assert q.starves_unclipped is False and q.needs_latent_clip is False


def _approx_grad(x: torch.Tensor) -> torch.Tensor:
    return (2 - 2 * x.abs()).clamp_min(0)


def test_approx_sign_normalize_std_on_vectors_and_not_on_1d():
    torch.manual_seed(0)
    q = quantizers.ApproxSign(normalize_std=True).train()
    x = (torch.randn(3, 5) * 0.3).requires_grad_(True)  # [N, F]: each row normalised
    q(x).sum().backward()
    xr = x.detach().clone().requires_grad_(True)  # the same chain written out
    z = xr / torch.sqrt(xr.var(dim=1, keepdim=True) + 1e-5)
    quantizers.ApproxSignFunction.apply(z).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)
    assert not torch.allclose(x.grad, _approx_grad(x.detach()))
    v = (torch.randn(6) * 0.3).requires_grad_(True)  # 1-D: no sample axis, left as is
    q(v).sum().backward()
    torch.testing.assert_close(v.grad, _approx_grad(v.detach()))


def test_scaled_sign_last_alpha_is_none_until_the_first_forward():
    for q in (quantizers.ScaledSign(), quantizers.MagnitudeAwareSign()):
        assert q.last_alpha is None
        w = torch.randn(3, 2, 1, 1)
        q(w)
        torch.testing.assert_close(q.last_alpha, w.abs().mean(dim=(1, 2, 3), keepdim=True))


def test_periodic_sign_accepts_any_positive_finite_omega0():
    for omega0 in (0.5, 1e-3, 1.0, 20):
        assert quantizers.PeriodicSign(omega0=omega0).omega0 == float(omega0)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="omega0"):
            quantizers.PeriodicSign(omega0=bad)


def test_kbit_bits_range_is_1_to_24():
    for bits in (1, 2, 24):
        assert quantizers.KBit(bits).precision == bits
    for bad in (0, 25, True, 2.0):
        with pytest.raises(ValueError, match="bits"):
            quantizers.KBit(bad)


def test_function_quantizer_precision_is_a_positive_int():
    q = quantizers.FunctionQuantizer(torch.sign, precision=1)
    assert q.precision == 1 and q.is_binary
    assert quantizers.FunctionQuantizer(torch.sign, precision=2).precision == 2
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="precision"):
            quantizers.FunctionQuantizer(torch.sign, precision=bad)


def test_a_registered_function_quantizer_carries_its_name():
    def halve(x):
        return x / 2

    quantizers.register_quantizer("edge_test_halve")(halve)
    q = quantizers.get("edge_test_halve")
    assert q.name == "edge_test_halve" and q.get_config() == {"name": "edge_test_halve"}
    assert torch.equal(q(torch.tensor([2.0])), torch.tensor([1.0]))


def test_an_unknown_argument_error_lists_only_the_accepted_ones():
    with pytest.raises(TypeError, match=r"it accepts: clip$"):
        quantizers.get("sign", bogus=1)
    with pytest.raises(TypeError, match=r"it accepts: omega0, stage$"):
        quantizers.get("periodic_sign", bogus=1)
