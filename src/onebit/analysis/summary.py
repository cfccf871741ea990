"""Per-layer model summary: precisions, parameters, memory, binary vs float MACs (like larq's).

For every module that owns parameters or floating buffers, one row: input and weight precision
(bits; 1 for a binary quantizer, 32 for real values), output shape, parameter counts, memory and
multiply-accumulates for one input sample. Counting rules:

* A convolution ``C_in -> C_out``, kernel ``kh x kw``, groups ``g``, output ``H_o x W_o`` does
  ``C_out * H_o * W_o * (C_in / g) * kh * kw`` MACs; a linear layer ``in -> out`` does
  ``in * out`` per input row. A MAC is *binary* when both its input and its weight are 1-bit
  (XNOR + popcount); otherwise it is a float MAC (a binary-weight, real-input layer such as
  BinaryConnect's still multiplies-free accumulates, but on real values: counted as float, as
  larq does). An AdderNet layer does the same count of ``|x - f|`` accumulations, listed as
  ``adds`` (no multiplications).
* Memory: a binary weight takes 1 bit, every other parameter and floating buffer (BatchNorm's
  running statistics, which deployment needs) 32 bits. ``float32_bytes`` is the whole model at
  32 bits; ``compression = float32_bytes / packed_bytes``.
* XNOR-Net's theoretical speed-up of a binary convolution over a float one (Rastegari et al.
  2016, Sec. 3.2), counting one binary operation as 1/64 of a float one:
  ``S = 64 * c * N_W / (c * N_W + 64)``, ``c`` input channels, ``N_W = kh * kw``
  (``c = 256``, 3x3: 62.27x).
* BiPer models (layers with the ``periodic_sign`` weight quantizer) also get ``biper``: the
  Laplace scale ``b`` fitted to all their latent weights, the omega0 in use with its relative
  quantization error, and the omega0 :func:`onebit.analysis.biper.recommend_omega0` gives for ``b``.

Example::

    from onebit.analysis.summary import summarize
    s = summarize(model, (1, 28, 28))
    print(s.render())
    s.totals.compression, s.totals.binary_mac_share
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from onebit.analysis.biper import (
    biper_relative_quantization_error,
    fit_laplace_scale,
    recommend_omega0,
)

__all__ = ["LayerRow", "Totals", "Summary", "summarize", "render", "xnor_speedup",
           "biper_omega0_report"]


def xnor_speedup(channels: int, kernel_elems: int) -> float:
    """``S = 64 c N_W / (c N_W + 64)``: XNOR-Net's speed-up of one binary convolution."""
    if channels < 1 or kernel_elems < 1:
        raise ValueError(f"channels and kernel_elems must be >= 1, got {channels}, {kernel_elems}")
    work = channels * kernel_elems
    return 64.0 * work / (work + 64.0)


@dataclass
class LayerRow:
    """One layer of the summary (counts are per input sample)."""

    name: str
    kind: str
    input_bits: int | None
    weight_bits: int | None
    output_shape: tuple[int, ...]
    params: int
    binary_params: int
    float_params: int
    trainable_params: int
    memory_bytes: float
    binary_macs: int = 0
    float_macs: int = 0
    adds: int = 0
    xnor_speedup: float | None = None


@dataclass
class Totals:
    """Whole-model totals; ``params`` includes floating buffers (BatchNorm statistics)."""

    params: int
    binary_params: int
    float_params: int
    trainable_params: int
    float32_bytes: float
    packed_bytes: float
    compression: float
    binary_macs: int
    float_macs: int
    adds: int
    binary_mac_share: float


@dataclass
class Summary:
    """Rows, totals and the input size the model was traced with."""

    input_size: tuple[int, ...]
    rows: list[LayerRow] = field(default_factory=list)
    totals: Totals | None = None
    biper: dict[str, float] | None = None

    def render(self) -> str:
        return render(self)

    def to_dict(self) -> dict[str, Any]:
        return {"input_size": list(self.input_size), "rows": [asdict(r) for r in self.rows],
                "totals": asdict(self.totals) if self.totals else None, "biper": self.biper}


def _bits(quantizer: Any) -> int:
    if quantizer is None:
        return 32
    return int(getattr(quantizer, "precision", 32))


def _own_tensors(module: nn.Module) -> tuple[list[tuple[str, torch.Tensor, bool]], bool]:
    """Direct parameters (trainable flag) and floating buffers of ``module``."""
    out = [(n, p, p.requires_grad) for n, p in module.named_parameters(recurse=False)]
    out += [(n, b, False) for n, b in module.named_buffers(recurse=False)
            if b is not None and b.is_floating_point()]
    return out, bool(out)


def _is_conv(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) or type(m).__name__ == "AdderConv2d"


def biper_omega0_report(model: nn.Module, tolerance: float = 0.05) -> dict[str, float] | None:
    """For a model with BiPer layers (``periodic_sign`` weight quantizer): ``{"b": Laplace scale
    fitted to their latent weights, "omega0": the value in use (the first layer's),
    "relative_qe": its relative quantization error, "recommended_omega0": the recommendation for
    b, "recommended_relative_qe"}``; None for other models."""
    layers = [m for m in model.modules()
              if getattr(getattr(m, "weight_quantizer", None), "name", "") == "periodic_sign"]
    if not layers:
        return None
    b = fit_laplace_scale([m.weight.detach().cpu().numpy() for m in layers])
    omega0 = float(layers[0].weight_quantizer.omega0)
    best = recommend_omega0(b, tolerance)
    return {"b": b, "omega0": omega0,
            "relative_qe": float(biper_relative_quantization_error(omega0, b)),
            "recommended_omega0": best,
            "recommended_relative_qe": float(biper_relative_quantization_error(best, b))}


def summarize(model: nn.Module, input_size: tuple[int, ...] | list[int] | None = None) -> Summary:
    """Trace ``model`` on one zero input of ``input_size`` (``(C, H, W)``; default
    ``model.default_input_size``) and count per layer; see the module docstring."""
    if input_size is None:
        input_size = getattr(model, "default_input_size", None)
        if input_size is None:
            raise ValueError("summarize needs input_size=(C, H, W) for a model without "
                             "default_input_size")
    input_size = tuple(int(v) for v in input_size)
    if not input_size or min(input_size) < 1:
        raise ValueError(f"input_size must be positive ints like (C, H, W), got {input_size}")

    modules = [(n, m) for n, m in model.named_modules() if _own_tensors(m)[1]]
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    hooks = []
    for name, m in modules:
        def hook(mod, inputs, output, name=name):
            x = inputs[0] if inputs else None
            ishape = tuple(x.shape) if isinstance(x, torch.Tensor) else ()
            oshape = tuple(output.shape) if isinstance(output, torch.Tensor) else ()
            shapes.setdefault(name, (ishape, oshape))
        hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
        dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
        with torch.no_grad():
            model(torch.zeros((1, *input_size), device=device, dtype=dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)

    rows = []
    for name, m in modules:
        tensors, _ = _own_tensors(m)
        iq, wq = getattr(m, "input_quantizer", None), getattr(m, "weight_quantizer", None)
        has_weight = isinstance(getattr(m, "weight", None), torch.Tensor)
        weighted = _is_conv(m) or isinstance(m, nn.Linear)
        in_bits = _bits(iq) if weighted else None
        w_bits = _bits(wq) if weighted and has_weight else None
        binary = trainable = total = 0
        for pname, t, req in tensors:
            n = t.numel()
            total += n
            trainable += n if req else 0
            if pname == "weight" and w_bits == 1:
                binary += n
        float_params = total - binary
        ishape, oshape = shapes.get(name, ((), ()))
        row = LayerRow(name=name or "(model)", kind=type(m).__name__, input_bits=in_bits,
                       weight_bits=w_bits, output_shape=tuple(oshape[1:]), params=total,
                       binary_params=binary, float_params=float_params,
                       trainable_params=trainable, memory_bytes=binary / 8 + float_params * 4)
        macs = 0
        if _is_conv(m) and oshape:
            kh, kw = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * 2
            groups = getattr(m, "groups", 1)
            macs = int(torch.Size(oshape[1:]).numel()) * (m.in_channels // groups) * kh * kw
            if in_bits == 1 and w_bits == 1:
                row.xnor_speedup = xnor_speedup(m.in_channels // groups, kh * kw)
        elif isinstance(m, nn.Linear) and oshape:
            rows_per_sample = int(torch.Size(oshape[1:-1]).numel()) if len(oshape) > 2 else 1
            macs = rows_per_sample * m.in_features * m.out_features
        if type(m).__name__ == "AdderConv2d":
            row.adds = macs
        elif in_bits == 1 and w_bits == 1:
            row.binary_macs = macs
        else:
            row.float_macs = macs
        rows.append(row)

    params = sum(r.params for r in rows)
    binary = sum(r.binary_params for r in rows)
    f32 = params * 4.0
    packed = sum(r.memory_bytes for r in rows)
    bm, fm = sum(r.binary_macs for r in rows), sum(r.float_macs for r in rows)
    totals = Totals(params=params, binary_params=binary, float_params=params - binary,
                    trainable_params=sum(r.trainable_params for r in rows),
                    float32_bytes=f32, packed_bytes=packed,
                    compression=f32 / packed if packed else 1.0, binary_macs=bm, float_macs=fm,
                    adds=sum(r.adds for r in rows),
                    binary_mac_share=bm / (bm + fm) if bm + fm else 0.0)
    return Summary(input_size=input_size, rows=rows, totals=totals,
                   biper=biper_omega0_report(model))


def _num(n: float) -> str:
    return f"{int(n):,}" if n else "0"


def _size(nbytes: float) -> str:
    if nbytes >= 1 << 20:
        return f"{nbytes / (1 << 20):.2f} MiB"
    return f"{nbytes / 1024:.2f} KiB"


def render(summary: Summary) -> str:
    """The summary as a text table followed by the totals."""
    show_adds = any(r.adds for r in summary.rows)
    head = ["Layer", "Type", "In bits", "W bits", "Output", "Params", "1-bit", "Memory KiB",
            "1-bit MACs", "32-bit MACs"] + (["Adds"] if show_adds else []) + ["XNOR speed-up"]
    body = []
    for r in summary.rows:
        line = [r.name, r.kind, "-" if r.input_bits is None else str(r.input_bits),
                "-" if r.weight_bits is None else str(r.weight_bits),
                "x".join(map(str, r.output_shape)) or "-", _num(r.params), _num(r.binary_params),
                f"{r.memory_bytes / 1024:.2f}", _num(r.binary_macs), _num(r.float_macs)]
        if show_adds:
            line.append(_num(r.adds))
        line.append(f"{r.xnor_speedup:.2f}x" if r.xnor_speedup else "-")
        body.append(line)
    t = summary.totals
    total_line = ["Total", "", "", "", "", _num(t.params), _num(t.binary_params),
                  f"{t.packed_bytes / 1024:.2f}", _num(t.binary_macs), _num(t.float_macs)]
    if show_adds:
        total_line.append(_num(t.adds))
    total_line.append("")
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, total_line)]
    numeric = set(range(2, len(head)))

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(fmt(head))
    lines = [f"Input size (C, H, W): {tuple(summary.input_size)}; counts per sample", rule,
             fmt(head), rule, *map(fmt, body), rule, fmt(total_line), rule]
    lines.append(f"Params: {t.params:,} ({t.binary_params:,} binary, {t.float_params:,} float "
                 f"incl. BatchNorm statistics; {t.trainable_params:,} trainable)")
    lines.append(f"Size: float32 {_size(t.float32_bytes)}, packed {_size(t.packed_bytes)} "
                 f"(binary weights at 1 bit); compression {t.compression:.2f}x")
    macs = t.binary_macs + t.float_macs
    lines.append(f"MACs: {t.binary_macs:,} binary + {t.float_macs:,} float = {macs:,}; "
                 f"{100 * t.binary_mac_share:.1f}% binary"
                 + (f"; AdderNet |x - f| accumulations: {t.adds:,}" if t.adds else ""))
    if summary.biper is not None:
        bp = summary.biper
        lines.append(f"BiPer omega0: {bp['omega0']:g} in use (relative quantization error "
                     f"{bp['relative_qe']:.3f}); latent weights fit Laplace(0, b = {bp['b']:.4g}); "
                     f"recommended omega0 {bp['recommended_omega0']:.1f} (relative error "
                     f"{bp['recommended_relative_qe']:.3f}, within 5% of its limit)")
    return "\n".join(lines)
