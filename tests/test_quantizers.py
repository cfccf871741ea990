"""Quantizers: forward and gradient against the formulas of METHODS.md, edges included; registry."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from onebit import quantizers as Q

DT = torch.float64
EPS = 1e-9


def grad_of(q, x, g=None):
    """(output, dL/dx) of q at x for the upstream gradient g (random when None)."""
    x = x.clone().requires_grad_(True)
    y = q(x)
    g = torch.randn_like(y) if g is None else g
    (dx,) = torch.autograd.grad(y, x, g)
    return y.detach(), dx, g


def ref_sign(x):
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


# edge values: 0 (both signs), +-1 exactly, just inside/outside, far away
EDGES = torch.tensor(
    [0.0, -0.0, 1e-300, -1e-300, 0.5, -0.5, 1.0, -1.0, 1 - EPS, -1 + EPS, 1 + EPS, -1 - EPS, 3.0, -3.0],
    dtype=DT,
)


# ---------------------------------------------------------------------------------------------
# sign (STE)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("clip", [1.0, 0.5, None])
def test_sign_forward_and_ste_gradient(clip):
    x = torch.cat([EDGES, torch.randn(200, dtype=DT) * 2])
    y, dx, g = grad_of(Q.get("sign", clip=clip), x)
    assert torch.equal(y, ref_sign(x))
    assert y[0] == 1 and y[1] == 1  # sign(0) = sign(-0) = +1
    mask = torch.ones_like(x) if clip is None else (x.abs() <= clip).to(DT)
    assert torch.equal(dx, g * mask)


def test_sign_gradient_edges_exact():
    _, dx, _ = grad_of(Q.Sign(), EDGES, torch.ones_like(EDGES))
    expect = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]  # |x| <= 1 passes, 1 + eps does not
    assert dx.tolist() == expect


def test_binary_quantizers_map_zero_to_plus_one():
    z = torch.tensor([[0.0, -0.0], [0.0, -0.0]], dtype=DT)
    for q in (Q.Sign(), Q.ApproxSign(), Q.StochasticSign().eval(), Q.PeriodicSign(stage=2), Q.KBit(1)):
        assert torch.equal(q(z), torch.ones_like(z)), q
    for q in (Q.ScaledSign(), Q.MagnitudeAwareSign()):
        w = torch.tensor([[0.0, 2.0], [-0.0, -4.0]], dtype=DT)
        assert torch.equal(q(w) > 0, torch.tensor([[True, True], [True, False]])), q


# ---------------------------------------------------------------------------------------------
# approx_sign (Bi-Real)
# ---------------------------------------------------------------------------------------------
def test_approx_sign_gradient_formula_and_edges():
    x = torch.cat([EDGES, torch.linspace(-1.5, 1.5, 301, dtype=DT)])
    y, dx, g = grad_of(Q.ApproxSign(), x)
    assert torch.equal(y, ref_sign(x))
    piecewise = torch.where(
        (x >= -1) & (x < 0), 2 + 2 * x, torch.where((x >= 0) & (x < 1), 2 - 2 * x, torch.zeros_like(x))
    )
    torch.testing.assert_close(dx, g * piecewise, rtol=0, atol=1e-12)
    _, d1, _ = grad_of(Q.ApproxSign(), torch.tensor([0.0, 1.0, -1.0, 0.5, -0.25], dtype=DT),
                       torch.ones(5, dtype=DT))
    torch.testing.assert_close(d1, torch.tensor([2.0, 0.0, 0.0, 1.0, 1.5], dtype=DT))


def test_approx_sign_gradient_is_derivative_of_polynomial():
    # F(x) = -1 (x < -1); 2x + x^2 on [-1, 0); 2x - x^2 on [0, 1); 1 (x >= 1); autograd of F
    x = torch.linspace(-1.7, 1.7, 341, dtype=DT)
    x = x[(x.abs() - 1).abs() > 1e-6]  # off the kinks
    xr = x.clone().requires_grad_(True)
    F = torch.where(xr < -1, -torch.ones_like(xr),
                    torch.where(xr < 0, 2 * xr + xr**2, torch.where(xr < 1, 2 * xr - xr**2, torch.ones_like(xr))))
    (dF,) = torch.autograd.grad(F.sum(), xr)
    _, dx, _ = grad_of(Q.ApproxSign(), x, torch.ones_like(x))
    torch.testing.assert_close(dx, dF, rtol=0, atol=1e-12)


def test_approx_sign_normalize_std_changes_gradient_only_in_training():
    x = torch.randn(3, 4, 5, 5, dtype=DT) * 3
    q = Q.ApproxSign(normalize_std=True)
    y, dx, g = grad_of(q, x)
    assert torch.equal(y, ref_sign(x))
    std = torch.sqrt(x.var(dim=(1, 2, 3), keepdim=True) + 1e-5)
    # chain rule through x / std: dL/dx = d/dx [sum g * F'(x/std) ...] computed by autograd
    xr = x.clone().requires_grad_(True)
    x0 = xr / torch.sqrt(xr.var(dim=(1, 2, 3), keepdim=True) + 1e-5)
    h = (2 - 2 * x0.abs()).clamp_min(0).detach()
    (ref,) = torch.autograd.grad((x0 * h * g).sum(), xr)
    torch.testing.assert_close(dx, ref)
    assert not torch.allclose(dx, g * (2 - 2 * x.abs()).clamp_min(0))
    _, dx_eval, _ = grad_of(q.eval(), x, g)
    torch.testing.assert_close(dx_eval, g * (2 - 2 * x.abs()).clamp_min(0))
    assert std.numel() == 3


# ---------------------------------------------------------------------------------------------
# stochastic_sign (BinaryConnect)
# ---------------------------------------------------------------------------------------------
def test_stochastic_sign_probability_is_hard_sigmoid():
    torch.manual_seed(0)
    levels = torch.tensor([-2.0, -1.0, -0.6, 0.0, 0.3, 0.9, 1.0, 2.0], dtype=DT)
    n = 20000
    w = levels.repeat_interleave(n)
    y = Q.StochasticSign().train()(w).view(len(levels), n)
    assert set(y.unique().tolist()) <= {-1.0, 1.0}
    p_hat = (y > 0).to(DT).mean(1)
    p = ((levels + 1) / 2).clamp(0, 1)
    assert torch.all((p_hat - p).abs() < 0.015), (p_hat, p)
    # saturated ends are deterministic
    assert torch.all(y[levels >= 1] == 1) and torch.all(y[levels <= -1] == -1)


def test_stochastic_sign_eval_is_sign_and_backward_is_ste():
    x = torch.cat([EDGES, torch.randn(50, dtype=DT)])
    q = Q.StochasticSign()
    y, dx, g = grad_of(q.eval(), x)
    assert torch.equal(y, ref_sign(x))
    assert torch.equal(dx, g * (x.abs() <= 1).to(DT))
    _, dx_t, _ = grad_of(q.train(), x, g)
    assert torch.equal(dx_t, g * (x.abs() <= 1).to(DT))


# ---------------------------------------------------------------------------------------------
# scaled_sign (BWN / XNOR) and magnitude_aware_sign (Bi-Real)
# ---------------------------------------------------------------------------------------------
WEIGHTS = [
    torch.randn(4, 3, 3, 3, dtype=DT, generator=torch.Generator().manual_seed(1)) * 0.9,
    torch.randn(5, 7, dtype=DT, generator=torch.Generator().manual_seed(2)) * 1.2,
]


@pytest.mark.parametrize("w", WEIGHTS, ids=["conv", "linear"])
def test_scaled_sign_forward_alpha_and_gradient(w):
    w = w.clone()
    w.view(-1)[:3] = torch.tensor([1.0, -1.0, 1 + 1e-9], dtype=DT)  # edges of the mask
    q = Q.ScaledSign()
    y, dx, g = grad_of(q, w)
    n = w[0].numel()
    alpha = torch.stack([w[c].abs().sum() / n for c in range(w.shape[0])])
    alpha_b = alpha.view(-1, *([1] * (w.dim() - 1)))
    torch.testing.assert_close(y, alpha_b * ref_sign(w), rtol=0, atol=1e-15)
    torch.testing.assert_close(q.last_alpha, alpha_b, rtol=0, atol=1e-15)
    mask = (w.abs() <= 1).to(DT)
    torch.testing.assert_close(dx, g * (1.0 / n + alpha_b * mask), rtol=0, atol=1e-15)
    assert mask.view(-1)[:3].tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("w", WEIGHTS, ids=["conv", "linear"])
def test_magnitude_aware_sign_paper_and_official_gradients(w):
    y, dx, g = grad_of(Q.MagnitudeAwareSign(detach_scale=False), w)
    n = w[0].numel()
    alpha = w.abs().flatten(1).sum(1).div(n).view(-1, *([1] * (w.dim() - 1)))
    mask = (w.abs() <= 1).to(DT)
    torch.testing.assert_close(y, alpha * ref_sign(w), rtol=0, atol=1e-15)
    torch.testing.assert_close(dx, g * alpha * mask, rtol=0, atol=1e-15)
    # official code: scale detached, straight-through of clamp(w, -1, 1)
    y2, dx2, _ = grad_of(Q.MagnitudeAwareSign(detach_scale=True), w, g)
    wr = w.clone().requires_grad_(True)
    clipped = wr.clamp(-1.0, 1.0)
    off = (alpha * ref_sign(w)).detach() - clipped.detach() + clipped
    (ref,) = torch.autograd.grad(off, wr, g)
    torch.testing.assert_close(y2, alpha * ref_sign(w), rtol=0, atol=1e-15)
    torch.testing.assert_close(dx2, ref, rtol=0, atol=0)


def test_scaled_sign_rejects_1d_weight():
    with pytest.raises(ValueError, match=">= 2 dims"):
        Q.ScaledSign()(torch.randn(5))


# ---------------------------------------------------------------------------------------------
# periodic_sign (BiPer)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("omega0", [20.0, 3.0])
def test_periodic_sign_stage1_is_sine_with_true_gradient(omega0):
    w = torch.randn(6, 4, dtype=DT) * 0.3
    q = Q.PeriodicSign(omega0=omega0, stage=1)
    y, dx, g = grad_of(q, w)
    torch.testing.assert_close(y, torch.sin(omega0 * w), rtol=0, atol=0)
    torch.testing.assert_close(dx, g * omega0 * torch.cos(omega0 * w))
    assert q.precision == 32 and not q.is_binary


@pytest.mark.parametrize("omega0", [20.0, 3.0])
def test_periodic_sign_stage2_square_wave_and_cosine_gradient(omega0):
    w = torch.randn(500, dtype=DT) * 0.5
    q = Q.PeriodicSign(omega0=omega0, stage=2)
    y, dx, g = grad_of(q, w)
    # square wave: +1 where omega0*w mod 2pi lies in [0, pi), else -1
    phase = torch.remainder(omega0 * w, 2 * math.pi)
    away = ((phase % math.pi) > 1e-9) & ((phase % math.pi) < math.pi - 1e-9)
    square = torch.where(phase < math.pi, 1.0, -1.0).to(DT)
    assert torch.equal(y[away], square[away])
    assert torch.equal(y, ref_sign(torch.sin(omega0 * w)))
    torch.testing.assert_close(dx, g * omega0 * torch.cos(omega0 * w), rtol=0, atol=1e-12)
    assert q.precision == 1 and q.is_binary


def test_periodic_sign_at_and_around_multiples_of_pi():
    omega0 = 20.0
    k = torch.arange(-4, 5, dtype=DT)
    d = 1e-7
    q = Q.PeriodicSign(omega0=omega0, stage=2)
    just_above = q((k * math.pi + d) / omega0)
    just_below = q((k * math.pi - d) / omega0)
    parity = torch.where(k.remainder(2) == 0, 1.0, -1.0).to(DT)  # sign of sin just above k*pi
    assert torch.equal(just_above, parity)
    assert torch.equal(just_below, -parity)
    assert q(torch.zeros(1, dtype=DT)).item() == 1.0  # sin(0) = 0 -> +1
    # gradient at the switching points: omega0 * cos(k pi) = +-omega0
    _, dx, _ = grad_of(q, k * math.pi / omega0, torch.ones_like(k))
    torch.testing.assert_close(dx, omega0 * parity, rtol=0, atol=1e-9)


def test_periodic_sign_output_scale_init_is_mean_abs_sine():
    w = torch.randn(3, 2, 3, 3, dtype=DT) * 0.1
    q2 = Q.PeriodicSign(omega0=20.0, stage=2)
    torch.testing.assert_close(q2.output_scale_init(w), torch.sin(20 * w).abs().flatten(1).mean(1))
    assert torch.equal(Q.PeriodicSign(stage=1).output_scale_init(w), torch.ones(3, dtype=DT))
    with pytest.raises(ValueError, match="stage"):
        Q.PeriodicSign(stage=3)
    with pytest.raises(ValueError, match="omega0"):
        Q.PeriodicSign(omega0=0.0)


# ---------------------------------------------------------------------------------------------
# kbit (XNOR-Net k-bit)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_kbit_levels_formula_and_gradient(bits):
    x = torch.cat([EDGES, torch.linspace(-1.3, 1.3, 1001, dtype=DT)])
    y, dx, g = grad_of(Q.KBit(bits), x)
    m = 2**bits - 1
    xc = x.clamp(-1, 1)
    expect = 2 * (torch.floor(m * (xc + 1) / 2 + 0.5) / m - 0.5)
    assert torch.equal(y, expect)
    levels = torch.tensor([2 * (i / m - 0.5) for i in range(m + 1)], dtype=DT)
    assert torch.all(torch.isclose(y[:, None], levels[None, :], atol=1e-12).any(1))
    inside = x.abs() <= 1
    assert torch.all((y[inside] - x[inside]).abs() <= 1.0 / m + 1e-12)  # half a step is 1/m
    assert torch.equal(dx, g * inside.to(DT))
    assert Q.KBit(bits).precision == bits


def test_kbit_one_bit_is_sign():
    x = torch.cat([EDGES, torch.randn(100, dtype=DT)])
    y, dx, g = grad_of(Q.KBit(1), x)
    assert torch.equal(y, ref_sign(x))  # exactly, tiny negatives included
    assert torch.equal(dx, g * (x.abs() <= 1).to(DT))
    far = x.abs() > 1e-6  # away from 0 the formula agrees
    assert torch.equal(y[far], 2 * (torch.floor((x[far].clamp(-1, 1) + 1) / 2 + 0.5) - 0.5))
    with pytest.raises(ValueError, match="bits"):
        Q.KBit(0)
    with pytest.raises(ValueError, match="bits"):
        Q.KBit(2.5)


def test_identity():
    x = torch.randn(10, dtype=DT)
    y, dx, g = grad_of(Q.get("identity"), x)
    assert torch.equal(y, x) and torch.equal(dx, g)
    assert Q.get("identity").precision == 32


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------
NAMES = ["sign", "approx_sign", "stochastic_sign", "scaled_sign", "magnitude_aware_sign",
         "periodic_sign", "kbit", "identity"]

NON_DEFAULT = {
    "sign": {"clip": 0.75},
    "approx_sign": {"normalize_std": True},
    "stochastic_sign": {"clip": None},
    "scaled_sign": {"clip": 2.0},
    "magnitude_aware_sign": {"detach_scale": True},
    "periodic_sign": {"omega0": 7.5, "stage": 1},
    "kbit": {"bits": 3},
    "identity": {},
}


def test_list_quantizers_has_every_method_quantizer():
    assert set(NAMES) <= set(Q.list_quantizers())


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    q = Q.get(name, **NON_DEFAULT[name])
    cfg = q.get_config()
    assert cfg["name"] == name
    for k, v in NON_DEFAULT[name].items():
        assert cfg[k] == v
    q2 = Q.get(cfg)
    assert type(q2) is type(q) and q2.get_config() == cfg
    q3 = Q.get(name)
    assert Q.get(q3.get_config()).get_config() == q3.get_config()
    # same math after the round trip
    w = torch.randn(4, 6, dtype=DT) * 0.5
    if name != "stochastic_sign":
        assert torch.equal(q(w), q2(w))


def test_flags():
    expect = {  # name: (precision, is_binary, needs_latent_clip)
        "sign": (1, True, True),
        "approx_sign": (1, True, False),
        "stochastic_sign": (1, True, True),
        "scaled_sign": (1, True, True),
        "magnitude_aware_sign": (1, True, False),
        "periodic_sign": (1, True, False),
        "identity": (32, False, False),
    }
    for name, (p, b, c) in expect.items():
        q = Q.get(name)
        assert (q.precision, q.is_binary, q.needs_latent_clip) == (p, b, c), name


def test_get_accepts_module_callable_none_and_dict_overrides():
    m = nn.Tanh()
    assert Q.get(m) is m
    assert Q.get(None) is None
    wrapped = Q.get(torch.tanh)
    assert isinstance(wrapped, Q.FunctionQuantizer) and wrapped.precision == 32
    x = torch.randn(5)
    assert torch.equal(wrapped(x), torch.tanh(x))
    assert Q.get(wrapped.get_config()).fn is torch.tanh
    assert Q.get({"name": "kbit", "bits": 2}, bits=4).bits == 4


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError) as e:
        Q.get("sgn")
    for name in NAMES:
        assert name in str(e.value)
    with pytest.raises(ValueError, match="name"):
        Q.get({"clip": 1.0})


def test_wrong_kwarg_names_accepted_ones():
    with pytest.raises(TypeError) as e:
        Q.get("sign", clipp=1.0)
    assert "clipp" in str(e.value) and "clip" in str(e.value).split("accepts")[1]
    with pytest.raises(TypeError, match="omega0"):
        Q.get("periodic_sign", freq=20)
    with pytest.raises(TypeError):
        Q.get(nn.Identity(), clip=1.0)
    with pytest.raises(TypeError):
        Q.get(3.0)
    with pytest.raises(ValueError, match="clip"):
        Q.get("sign", clip=-1.0)


def test_register_custom_quantizer_class_and_function():
    @Q.register_quantizer("test_half_sign")
    class HalfSign(Q.Quantizer):
        _config_keys = ("scale",)

        def __init__(self, scale: float = 0.5) -> None:
            super().__init__()
            self.scale = scale

        def forward(self, x):
            return self.scale * Q.SignSTEFunction.apply(x, 1.0)

    @Q.register_quantizer("test_round")
    def my_round(x):
        return torch.round(x)

    try:
        q = Q.get("test_half_sign", scale=0.25)
        assert Q.get(q.get_config()).scale == 0.25
        assert torch.equal(q(torch.tensor([-2.0, 0.0])), torch.tensor([-0.25, 0.25]))
        r = Q.get("test_round")
        assert r.get_config() == {"name": "test_round"} and r.precision == 32
        assert torch.equal(r(torch.tensor([0.4, 1.6])), torch.tensor([0.0, 2.0]))
        with pytest.raises(ValueError, match="already registered"):
            Q.register_quantizer("test_round")(my_round)
    finally:
        Q._REGISTRY.pop("test_half_sign", None)
        Q._REGISTRY.pop("test_round", None)
