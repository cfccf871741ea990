"""The executor's planned output buffers (Model._plan_buffers): values whose lifetimes overlap
never share memory, every step reads exactly what a run without planned buffers reads, the
caller owns what model(x) returns, and threads and batch sizes each get buffers of their own."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import onebit.runtime as rt
from onebit.deploy import convert
from onebit.nn import QuantConv2d
from onebit.runtime.graph import Graph

from _deploy_helpers import binarized, bnn_sequential


class _AliasBlock(nn.Module):
    """y = relu(BN(binconv(x))) runs in place in the conv's planned output; the max pool after it
    makes a value of the same size while y is still to be read by the add."""

    def __init__(self) -> None:
        super().__init__()
        sign = {"name": "sign"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.stem = nn.Conv2d(3, 16, 3, padding=1)
            self.conv = QuantConv2d(16, 16, 3, padding=1, bias=False, input_quantizer=sign,
                                    weight_quantizer=sign)
        self.bn = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(3, 1, 1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 8 * 8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv(self.stem(x))))
        return self.head(self.pool(y) + y)


def _graphs() -> dict[str, Graph]:
    cal = np.random.default_rng(5).standard_normal((4, 3, 32, 32)).astype(np.float32)
    bireal = binarized("birealnet18", "bireal", num_classes=7, width=0.25)
    return {
        "bireal": convert(bireal, example_input_shape=(3, 32, 32)),
        "bireal-int8": convert(bireal, example_input_shape=(3, 32, 32), float_convs="int8",
                               calibration=cal),
        "xnor": convert(binarized("resnet20", "xnor", num_classes=5),
                        example_input_shape=(3, 16, 16)),
        "bnn": convert(bnn_sequential(), example_input_shape=(3, 8, 8)),
        "alias": convert(_AliasBlock().eval(), example_input_shape=(3, 8, 8)),
    }


GRAPHS = _graphs()


def _x(graph: Graph, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *graph.input_shape)).astype(
        np.float32)


def _recording(model: rt.Model) -> list[list[np.ndarray]]:
    """Wrap every step so that it records copies of the inputs it reads, as it reads them."""
    seen: list[list[np.ndarray]] = []
    wrapped = []
    for fn, inputs, outputs in model._steps:
        def run(xs, nt, *into, _fn=fn):
            seen.append([np.array(v, copy=True) for v in xs])
            return _fn(xs, nt, *into)
        run.takes_out = getattr(fn, "takes_out", False)
        wrapped.append((run, inputs, outputs))
    model._steps = wrapped
    return seen


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_every_step_reads_what_an_unplanned_run_reads(name):
    """A slot reused while its value is still to be read would change some later step's input:
    compare every step's inputs, bit for bit, with the same model whose steps allocate."""
    graph = GRAPHS[name]
    planned, plain = rt.Model(graph, num_threads=2), rt.Model(graph, num_threads=2)
    assert any(p is not None for p in planned._slot_of)
    plain._slot_of = [None] * len(plain._slot_of)
    a, b = _recording(planned), _recording(plain)
    for n, seed in ((1, 0), (3, 1), (1, 2)):  # batch sizes change and come back
        x = _x(graph, n, seed)
        a.clear(), b.clear()
        ya, yb = planned(x), plain(x)
        np.testing.assert_array_equal(ya, yb)
        assert len(a) == len(b) == len(planned.steps)
        for i, (xa, xb) in enumerate(zip(a, b)):
            for va, vb in zip(xa, xb):
                assert va.dtype == vb.dtype and np.array_equal(va.view(np.uint8),
                                                               vb.view(np.uint8)), (name, i)


def test_the_caller_owns_the_output():
    """The logits of one call survive the next call; an output that is a view of a planned
    value (flatten of a pool) is copied out."""
    for graph in GRAPHS.values():
        model = rt.Model(graph)
        y1 = model(_x(graph, 2, 0))
        keep = y1.copy()
        model(_x(graph, 2, 1))
        np.testing.assert_array_equal(y1, keep)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.MaxPool2d(2),
                        nn.Flatten()).eval()
    graph = convert(net, example_input_shape=(3, 8, 8))
    model = rt.Model(graph)
    assert model._copy_output
    x1, x2 = _x(graph, 2, 3), _x(graph, 2, 4)
    y1 = model(x1)
    keep = y1.copy()
    y2 = model(x2)
    np.testing.assert_array_equal(y1, keep)
    assert not np.shares_memory(y1, y2)
    with torch.no_grad():
        np.testing.assert_allclose(y2, net(torch.from_numpy(x2)).numpy(), rtol=1e-5, atol=1e-5)


def test_threads_get_buffers_of_their_own():
    graph = GRAPHS["bireal-int8"]
    model = rt.Model(graph, num_threads=1)
    xs = [_x(graph, 1 + k % 3, 10 + k) for k in range(8)]
    expect = [model(x) for x in xs]
    got: list[np.ndarray | None] = [None] * len(xs)

    def worker(k: int) -> None:
        for _ in range(5):
            got[k] = model(xs[k])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e, g in zip(expect, got):
        np.testing.assert_array_equal(e, g)


def test_repeated_calls_write_into_the_same_few_buffers():
    """Every planned step writes into the same memory on each call of one batch size, and
    values share it: fewer distinct buffers than planned outputs, fewer bytes than all of them."""
    graph = GRAPHS["bireal-int8"]
    model = rt.Model(graph, num_threads=1)
    written: list[list[int]] = []
    steps = model._steps

    def record(fn):
        def run(xs, nt, *into):
            out = fn(xs, nt, *into)
            if into:
                written[-1].extend(a.__array_interface__["data"][0]
                                   for a in (out if isinstance(out, tuple) else (out,)))
            return out
        run.takes_out = getattr(fn, "takes_out", False)
        return run

    model._steps = [(record(fn), i, o) for fn, i, o in steps]
    for seed in (0, 1):
        written.append([])
        model(_x(graph, 2, seed))
    planned = [p for p in model._slot_of if p]
    n_values = sum(len(p) for p in planned)
    assert len(written[0]) == n_values and written[0] == written[1]
    assert len(set(written[0])) == len(model._slot_bytes) < n_values
    assert sum(model._slot_bytes) < sum(nbytes for p in planned for _, nbytes, *_ in p)
