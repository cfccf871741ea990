"""The op registry (onebit.runtime.ops.OPS): every op has all its parts (declaration, check,
compile, torch reference, an emitter on the convert side), and on a one-op graph the runtime's
compiled op (and its in-place form) computes what its torch reference computes. Also: a graph is
validated once on the load path."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import onebit.deploy
import onebit.runtime as rt
import onebit.runtime.graph as graph_module
from onebit.deploy.torch_graph import REFERENCES, GraphTorchModule
from onebit.runtime.binary_ops import pack_signs
from onebit.runtime.ops import OPS, OpSpec

IMAGE = (4, 6, 6)
VECTOR = (12,)
_rng = np.random.default_rng(0)


def _f32(*shape: int) -> np.ndarray:
    return _rng.standard_normal(shape).astype(np.float32)


def _conv(**extra):
    return {"in_channels": 4, "out_channels": 5, "kernel": [3, 3], "stride": [1, 1],
            "padding": [1, 1], **extra}


def _pool(**extra):
    return {"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1], "ceil_mode": False, **extra}


def _transform():
    return {"multiplier": np.abs(_f32(5)) + 0.1, "bias": _f32(5)}


#: op -> (input shape, attrs, tensors by role, inputs); one valid node of each op
EXAMPLES = {
    "conv2d": (IMAGE, _conv(dilation=[1, 1], groups=1, pad_value=0.5),
               {"weight": _f32(5, 4, 3, 3), "bias": _f32(5)}, 1),
    "conv2d_int8": (IMAGE, _conv(dilation=[1, 1], act_scale=0.03, act_zero_point=120,
                                 act_bits=8, weight_bits=7),
                    {"weight": _f32(5, 4, 3, 3), "bias": _f32(5)}, 1),
    "bconv2d": (IMAGE, _conv(pad_value=1.0, xnor_k=True, output="float"),
                {"weight_bits": pack_signs(_f32(5, 3, 3, 4)), **_transform()}, 1),
    "linear": (VECTOR, {"in_features": 12, "out_features": 5},
               {"weight": _f32(5, 12), "bias": _f32(5)}, 1),
    "blinear": (VECTOR, {"in_features": 12, "out_features": 5, "output": "float"},
                {"weight_bits": pack_signs(_f32(5, 12)), **_transform()}, 1),
    "adder_conv2d": (IMAGE, _conv(), {"weight": _f32(5, 4, 3, 3), **_transform()}, 1),
    "adder_int8": (IMAGE, _conv(scale=0.05),
                   {"weight_q": _rng.integers(-127, 128, (5, 3, 3, 4)).astype(np.int8),
                    **_transform()}, 1),
    "channel_affine": (IMAGE, {}, {"scale": _f32(4), "shift": _f32(4)}, 1),
    "relu": (IMAGE, {}, {}, 1),
    "hardtanh": (IMAGE, {"min_val": -0.5, "max_val": 1.0}, {}, 1),
    "prelu": (IMAGE, {}, {"weight": _f32(4)}, 1),
    "sign": (IMAGE, {"output": "float"}, {}, 1),
    "kbit": (IMAGE, {"bits": 2}, {}, 1),
    "maxpool2d": (IMAGE, _pool(dilation=[1, 1]), {}, 1),
    "avgpool2d": (IMAGE, _pool(count_include_pad=False, divisor_override=None), {}, 1),
    "adaptive_avgpool2d": (IMAGE, {"output_size": [2, 4]}, {}, 1),
    "adaptive_maxpool2d": (IMAGE, {"output_size": [4, 2]}, {}, 1),
    "flatten": (IMAGE, {}, {}, 1),
    "add": (IMAGE, {}, {}, 2),
}


def _graph(op: str, after_temporary: bool) -> rt.Graph:
    """A graph running ``op`` on the input, or (``after_temporary``) on a temporary the op may
    overwrite (the output of a relu nothing else reads), which selects its in-place form."""
    shape, attrs, arrays, arity = EXAMPLES[op]
    nodes, x = [], "input"
    if after_temporary:
        nodes.append(rt.Node("relu", ["input"], "t"))
        x = "t"
    inputs = [x, "input"] if arity == 2 else [x]
    tensors = {f"{op}.{role}": a for role, a in arrays.items()}
    nodes.append(rt.Node(op, inputs, "y", dict(attrs), {r: f"{op}.{r}" for r in arrays}, op))
    return rt.Graph(nodes=nodes, tensors=tensors, input_shape=shape, output="y")


def test_every_op_has_every_part():
    assert set(OPS) == set(EXAMPLES) == set(REFERENCES)
    emitted = _string_constants(Path(onebit.deploy.__file__).parent)
    for name, spec in OPS.items():
        assert isinstance(spec, OpSpec) and spec.name == name
        assert spec.arity in (1, 2) and spec.semantics
        assert all(isinstance(a, str) for a in spec.attrs + spec.roles)
        assert callable(spec.check) and callable(spec.compile)
        assert spec.inplace is None or callable(spec.inplace)
        # an op that absorbs a reader or reads NCHW compiles those forms with its fuse
        assert (spec.absorbs is None and spec.nchw_input is None) or callable(spec.fuse), name
        assert name in emitted, f"nothing in onebit.deploy emits {name!r}"


def _string_constants(package: Path) -> set[str]:
    out: set[str] = set()
    for path in package.glob("*.py"):
        if path.name == "torch_graph.py":  # the references, not an emitter
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.add(node.value)
    return out


def test_declared_attributes_are_exactly_what_the_check_reads():
    """A node with all the declared attributes validates; dropping any one of them fails."""
    for op in OPS:
        graph = _graph(op, after_temporary=False)
        graph.validate()
        assert set(graph.nodes[-1].attrs) == set(OPS[op].attrs), op
        for key in OPS[op].attrs:
            broken = _graph(op, after_temporary=False)
            del broken.nodes[-1].attrs[key]
            with pytest.raises(rt.FormatError, match=f"missing attribute '{key}'"):
                broken.validate()


@pytest.mark.parametrize("after_temporary", [False, True], ids=["fresh", "in-place"])
@pytest.mark.parametrize("op", sorted(OPS))
def test_compiled_op_equals_its_torch_reference(op, after_temporary):
    graph = _graph(op, after_temporary)
    x = _rng.standard_normal((3, *graph.input_shape)).astype(np.float32)
    x_before = x.copy()
    out = rt.Model(graph, num_threads=1)(x)
    np.testing.assert_array_equal(x, x_before)  # the caller's input is never overwritten
    with torch.no_grad():
        ref = GraphTorchModule(graph)(torch.from_numpy(x)).numpy()
    assert out.shape == ref.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_inplace_forms_are_used_at_a_last_use(monkeypatch):
    """The executor takes an op's in-place form where its input is a temporary at its last use
    (and only there): count the calls of every in-place form."""
    calls: list[str] = []
    for name, spec in OPS.items():
        if spec.inplace is not None:
            def counted(node, tensors, r, _inner=spec.inplace, _name=name):
                calls.append(_name)
                return _inner(node, tensors, r)
            monkeypatch.setitem(OPS, name, replace(spec, inplace=counted))
    for op in OPS:
        calls.clear()
        rt.Model(_graph(op, after_temporary=False))
        assert calls == []
        rt.Model(_graph(op, after_temporary=True))
        assert calls == ([op] if OPS[op].inplace is not None else [])


def test_load_validates_the_graph_once(tmp_path, monkeypatch):
    graph = _graph("conv2d", after_temporary=True)
    path = tmp_path / "m.onebit"
    rt.save_graph(graph, path)
    seen = []
    inner = graph_module.validate_graph

    def counting(g):
        seen.append(g)
        return inner(g)

    monkeypatch.setattr(graph_module, "validate_graph", counting)
    model = rt.load(path)
    assert len(seen) == 1
    assert model.infos == inner(model.graph)

