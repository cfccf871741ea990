"""The runtime-only install: ``onebit predict / bench / inspect`` and every CLI error path work with
neither torch nor yaml importable (nor lightning, safetensors, matplotlib): one line, status 2.

The CLI runs in a subprocess whose ``sitecustomize`` blocks those imports, as in an environment
where only NumPy (and onebit) is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from onebit.data.idx import write_idx

BLOCKED = ("torch", "yaml", "lightning", "safetensors", "matplotlib", "torchvision")

_SITECUSTOMIZE = textwrap.dedent(f"""
    import sys

    class _Blocker:
        blocked = {BLOCKED!r}

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.blocked:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, _Blocker())
""")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    src = Path(__file__).resolve().parents[2] / "src"
    paths = [str(site), str(src), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    pytest.importorskip("torch")  # building the model file needs torch; the CLI run does not
    import onebit.models as M
    from onebit.deploy import convert, save
    from onebit.methods import binarize_

    out = tmp_path_factory.mktemp("model") / "m.onebit"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = M.create("fmnist_cnn", width=0.25, hidden=16, in_channels=1)
        binarize_(model, "bnn")
    graph = convert(model.eval(), example_input_shape=(1, 28, 28),
                    normalization={"mean": [0.5], "std": [0.25]})
    save(graph, out)
    return out


def onebit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onebit", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_blocker_blocks(env):
    proc = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True,
                          text=True)
    assert proc.returncode != 0 and "No module named 'torch'" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", "import yaml"], env=env, capture_output=True,
                          text=True)
    assert proc.returncode != 0


def test_predict_bench_inspect_without_torch_or_yaml(env, model_file, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (12, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "x.idx", images)
    write_idx(tmp_path / "y.idx", (np.arange(12) % 10).astype(np.uint8))
    proc = onebit(env, "predict", str(model_file), "--images", str(tmp_path / "x.idx"),
                  "--labels", str(tmp_path / "y.idx"))
    assert proc.returncode == 0, proc.stderr
    assert "accuracy" in proc.stdout and "on 12 images" in proc.stdout
    proc = onebit(env, "inspect", str(model_file))
    assert proc.returncode == 0, proc.stderr
    assert "bconv2d" in proc.stdout
    proc = onebit(env, "bench", str(model_file), "--batch-sizes", "1", "--threads", "1",
                  "--repeats", "2")
    assert proc.returncode == 0, proc.stderr
    assert "PyTorch not installed" in proc.stdout and "onebit ms" in proc.stdout
    proc = onebit(env, "--version")
    assert proc.returncode == 0 and proc.stdout.startswith("onebit ")


@pytest.mark.parametrize("args, words", [
    (["predict", "absent.onebit", "--images", "x.idx"], ["absent.onebit"]),
    (["bench", "absent.onebit"], ["absent.onebit"]),
    (["inspect", "absent.onebit"], ["absent.onebit"]),
    (["predict", "MODEL", "--images", "absent.idx"], ["absent.idx", "not found"]),
    (["predict", "MODEL", "--images", "IMAGES", "--labels", "IMAGES"], ["IDX image file"]),
    (["predict", "MODEL", "--images", "IMAGES", "--threads", "0"], ["positive"]),
    (["inspect", "GARBAGE"], ["garbage.onebit"]),
    (["list", "models"], ["needs torch", "onebit[train]"]),
    (["list", "methods"], ["onebit[train]"]),
    (["summary", "fmnist_cnn"], ["onebit[train]"]),
    (["train", "--config", "x.yaml"], ["needs yaml", "onebit[train]"]),
    (["eval", "run"], ["onebit[train]"]),
    (["eval", "m.onebit"], ["onebit predict"]),
    (["export", "run", "out.onebit"], ["onebit[train]"]),
    (["export", "run", "/nonexistent_dir/out.onebit"], ["does not exist"]),
    (["bogus"], ["invalid choice"]),
    (["predict"], ["required"]),
])
def test_every_error_is_one_line_with_status_2(env, model_file, tmp_path, args, words):
    images = tmp_path / "x.idx"
    write_idx(images, np.zeros((3, 28, 28), np.uint8))
    (tmp_path / "garbage.onebit").write_bytes(b"\x00" * 100)
    subst = {"MODEL": str(model_file), "IMAGES": str(images),
             "GARBAGE": str(tmp_path / "garbage.onebit")}
    proc = subprocess.run([sys.executable, "-m", "onebit", *[subst.get(a, a) for a in args]],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("onebit: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
