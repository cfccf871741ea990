"""The runtime's Model: torch-free loading and running, thread safety, inputs it refuses."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import onebit.runtime as rt
from onebit.deploy import convert, save

from _deploy_helpers import assert_matches_torch, bnn_sequential


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, object]:
    torch_model = bnn_sequential()
    graph = convert(torch_model, example_input_shape=(3, 8, 8), class_names=list("vwxyz"),
                    normalization={"mean": [0.1, 0.2, 0.3], "std": [0.5, 0.25, 2.0]})
    path = tmp_path_factory.mktemp("rt") / "model.onebit"
    save(graph, path)
    return path, torch_model


def _batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 8, 8)).astype(np.float32)


def test_runs_like_torch(saved):
    path, torch_model = saved
    model = rt.load(path)
    x = _batch(16)
    assert_matches_torch(torch_model, model(x), x)
    np.testing.assert_array_equal(model.predict(x), model(x).argmax(1))
    assert model.class_names == list("vwxyz") and model.input_shape == (3, 8, 8)


def test_loads_and_runs_with_torch_blocked(saved):
    """The whole load-and-run path works in a process where ``import torch`` fails."""
    path, _ = saved
    x = _batch(4)
    expected = rt.load(path)(x)
    code = (
        "import sys, json, numpy as np\n"
        "sys.modules['torch'] = None\n"
        "import onebit.runtime as rt\n"
        f"m = rt.load({str(path)!r}, num_threads=1)\n"
        f"x = np.array(json.loads({json.dumps(x.tolist())!r}), dtype=np.float32)\n"
        "out = m(x)\n"
        "assert not any(k == 'torch' or k.startswith('torch.') for k, v in sys.modules.items()\n"
        "               if v is not None)\n"
        "print(json.dumps(out.tolist()))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.array(json.loads(result.stdout), np.float32), expected)


def test_concurrent_calls_give_identical_results(saved):
    path, _ = saved
    model = rt.load(path, num_threads=1)
    inputs = [_batch(int(n), seed=s) for s, n in enumerate([1, 3, 8, 5, 2, 7])]
    expected = [model(x) for x in inputs]
    results: dict[tuple[int, int], np.ndarray] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(worker: int) -> None:
        try:
            barrier.wait()
            for rep in range(5):
                for i, x in enumerate(inputs):
                    results[(worker, rep * 10 + i)] = model(x)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 4 * 5 * len(inputs)
    for (_, key), out in results.items():
        np.testing.assert_array_equal(out, expected[key % 10])


def test_thread_counts_agree(saved):
    path, _ = saved
    x = _batch(6)
    np.testing.assert_array_equal(rt.load(path, num_threads=1)(x), rt.load(path, num_threads=2)(x))


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_num_threads(saved, bad):
    with pytest.raises(ValueError, match="num_threads must be a positive int"):
        rt.load(saved[0], num_threads=bad)


def test_input_checks(saved):
    model = rt.load(saved[0])
    with pytest.raises(ValueError, match=r"add the batch axis, e.g. x\[None\]"):
        model(_batch(1)[0])
    with pytest.raises(ValueError, match=r"must have shape \(N, 3, 8, 8\)"):
        model(np.zeros((2, 3, 8, 9), np.float32))
    with pytest.raises(TypeError, match="preprocess"):
        model(np.zeros((2, 3, 8, 8), np.uint8))
    out64 = model(_batch(2).astype(np.float64))  # other float dtypes are converted
    np.testing.assert_array_equal(out64, model(_batch(2)))


def test_preprocess_scales_and_normalises(saved):
    model = rt.load(saved[0])
    images = np.random.default_rng(3).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    x = model.preprocess(images)
    mean = np.array([0.1, 0.2, 0.3], np.float32)[:, None, None]
    std = np.array([0.5, 0.25, 2.0], np.float32)[:, None, None]
    expected = (images.transpose(0, 3, 1, 2).astype(np.float32) / 255 - mean) / std
    np.testing.assert_allclose(x, expected, rtol=1e-6)
    np.testing.assert_array_equal(model.preprocess(images.transpose(0, 3, 1, 2)), x)
    with pytest.raises(TypeError, match="uint8"):
        model.preprocess(images.astype(np.float32))
    with pytest.raises(ValueError, match="do not fit"):
        model.preprocess(images[:, :4])


def test_bits_values_never_leave_the_model(saved):
    graph = rt.load_graph(saved[0])
    infos = graph.validate()
    kinds = [infos[n.output].kind for n in graph.nodes]
    assert "bits" in kinds  # the two binary convs hand over packed bits
    assert infos[graph.output].kind == "float"


def test_elementwise_ops_never_touch_the_callers_input():
    """Elementwise ops may overwrite the call's own temporaries, never the input array."""
    graph = rt.Graph(
        nodes=[rt.Node("relu", ["input"], "a"), rt.Node("hardtanh", ["a"], "b",
                                                        {"min_val": -0.5, "max_val": 0.5}),
               rt.Node("add", ["b", "input"], "c")],
        tensors={}, input_shape=(6,), output="c")
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(2, 6)
    before = x.copy()
    out = rt.Model(graph)(x)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(out, np.clip(np.maximum(before, 0), -0.5, 0.5) + before)
    # the output value may also feed a later node: that node must not overwrite it
    graph.nodes.append(rt.Node("relu", ["c"], "d"))
    np.testing.assert_array_equal(rt.Model(graph)(x), out)


def test_an_empty_batch_gives_empty_logits(saved):
    path, _ = saved
    model = rt.load(path)
    y = model(np.zeros((0, 3, 8, 8), np.float32))
    assert y.shape == (0, 5) and y.dtype == np.float32
    assert model.predict(np.zeros((0, 3, 8, 8), np.float32)).shape == (0,)
