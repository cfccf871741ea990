"""Whole-model latency: Bi-Real-18 and an XNOR ResNet-18 (224x224, 1000 classes, random weights)
in onebit's runtime, beside PyTorch float32 ResNet-18, at batch 1 and 8 and 1 and 2 threads; and
the .onebit file sizes beside float32 ResNet-18's weights.

Usage:
    python benchmarks/models.py [--repeats 10] [--threads 1 2] [--batch-sizes 1 8] [--out F.json]

Each thread count runs in its own process with OPENBLAS_NUM_THREADS / OMP_NUM_THREADS set to it
(NumPy's float matmuls, onebit's kernels, PyTorch and ONNX Runtime all get that many threads);
inside it the models run alternately; at more than one thread each call comes after a 50 ms
pause (so that the previous model's spinning worker threads do not hold a core), at one thread
the calls follow each other (``--settle-ms`` sets the pause for every thread count; on the
project's VMs, calls after a pause of 20 ms or more run slower for every model, and relatively
more so for the shorter ones). The medians of the repeats are reported, and the minima beside
them (on a shared machine, noise only ever adds time). The ResNet-18 here is
the standard ImageNet one (7x7/2 stem, max pool, [2, 2, 2, 2] basic blocks, 1.82 G MACs); the XNOR
model is that network binarized by ``binarize_(model, "xnor")`` (first and last layer float, K
map on). "Bi-Real-18, int8 float convs" is the same Bi-Real-18 converted with
``float_convs="int8"`` (the 7x7 stem and the 1x1 downsampling shortcuts in int8, calibrated on
random inputs; accuracy cost: ``benchmarks/int8_accuracy.py``). Beside them run what a user would pick instead in ONNX Runtime: the same float
ResNet-18 exported to ONNX (fp32), and its static int8 quantization (QDQ, per-channel int8
weights, uint8 activations, calibrated on sample inputs; see ``_ort.py``). Those rows need the
``bench`` extra (``pip install 'onebit[bench]'``) and are skipped with a note without it.

Targets (1 thread, batch 1): Bi-Real-18 >= 6x PyTorch fp32 ResNet-18 and >= 1.5x ONNX Runtime
int8 ResNet-18 on AVX2-only CPUs (>= 10x and >= 2.5x with AVX-512 VPOPCNTDQ and VNNI); batch 8,
2 threads against 1: >= 1.7x; the file <= 1/10 of float32 ResNet-18's weights.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import _machine
import _ort

from onebit.deploy import convert, save
from onebit.deploy.bench import alternating_times, thread_env
from onebit.methods import binarize_
from onebit.models import create


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                   nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))) + self.down(x))


def resnet18_imagenet(num_classes: int = 1000) -> nn.Module:
    """The standard ImageNet ResNet-18 (He et al. 2016), 11.7 M parameters."""
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                               nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
    return nn.Sequential(*layers)


def _random_bn_(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.1)
    return model.eval()


def _binary_models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bireal = binarize_(create("birealnet18", num_classes=1000), "bireal")
        xnor = binarize_(resnet18_imagenet(), "xnor")
    return {"Bi-Real-18": _random_bn_(bireal, 1), "XNOR ResNet-18": _random_bn_(xnor, 2)}


REFERENCE = "PyTorch float32 ResNet-18"
INT8_BIREAL = "Bi-Real-18, int8 float convs"
ORT_FP32 = "ONNX Runtime fp32 ResNet-18"
ORT_INT8 = "ONNX Runtime int8 ResNet-18"


def _settle_s(threads: int, settle_ms: float | None) -> float:
    """The pause before each call: 50 ms at more than one thread (PyTorch's and ONNX Runtime's
    worker threads spin for a while after a call and would hold the second core), none at one
    thread (no framework has a worker thread then) unless ``--settle-ms`` says otherwise."""
    if settle_ms is not None:
        return settle_ms / 1e3
    return 0.05 if threads > 1 else 0.0


def _child(files: dict[str, str], threads: int, batch_sizes: list[int], repeats: int,
           settle_ms: float | None = None) -> dict:
    import onebit.runtime as rt

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    reference = _random_bn_(resnet18_imagenet(), 3)
    others = {name: _ort.ort_session(path, threads) for name, path in files.items()
              if path.endswith(".onnx")}
    models = {name: rt.load(path, num_threads=threads) for name, path in files.items()
              if path.endswith(".onebit")}
    kernels = {name: m.kernel_choices() for name, m in models.items()}
    rows = []
    for batch in batch_sizes:
        x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224)).astype(np.float32)
        xt = torch.from_numpy(x)

        def run_torch() -> None:
            with torch.inference_mode():
                reference(xt)

        named = {REFERENCE: run_torch, **{n: (lambda f=f: f(x)) for n, f in others.items()},
                 **{n: (lambda m=m: m(x)) for n, m in models.items()}}
        samples = alternating_times(list(named.values()), repeats,
                                    settle_s=_settle_s(threads, settle_ms))
        med = dict(zip(named, (statistics.median(t) for t in samples)))
        low = dict(zip(named, (min(t) for t in samples)))
        for name in named:
            row = {"model": name, "batch": batch, "threads": threads,
                   "settle_ms": 1e3 * _settle_s(threads, settle_ms), "ms": 1e3 * med[name],
                   "min_ms": 1e3 * low[name], "speedup_vs_torch": med[REFERENCE] / med[name],
                   "speedup_of_min": low[REFERENCE] / low[name]}
            for rival in (ORT_FP32, ORT_INT8):
                if rival in med:
                    row["speedup_vs_" + rival.split()[2]] = med[rival] / med[name]
            rows.append(row)
    return {"rows": rows, "kernels": kernels}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--settle-ms", type=float, default=None,
                   help="pause before each call (default: 50 at more than 1 thread, 0 at 1)")
    p.add_argument("--child", nargs="+", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:  # NAME=PATH pairs; one thread count
        files = dict(item.split("=", 1) for item in args.child)
        print(json.dumps(_child(files, args.threads[0], args.batch_sizes, args.repeats,
                                args.settle_ms)))
        return 0

    machine = _machine.describe()
    print(_machine.header(machine))
    float_bytes = sum(4 * p.numel() for p in resnet18_imagenet().parameters())
    sizes = {"PyTorch float32 ResNet-18 (weights)": float_bytes}
    skipped = _ort.available()
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        if skipped is None:
            torch.manual_seed(0)
            fp32 = _ort.export_onnx(_random_bn_(resnet18_imagenet(), 3), (3, 224, 224),
                                    Path(tmp) / "resnet18.onnx")
            calib = np.random.default_rng(7).standard_normal((16, 3, 224, 224)).astype(np.float32)
            files[ORT_FP32] = fp32
            files[ORT_INT8] = _ort.quantize_int8(fp32, Path(tmp) / "resnet18_int8.onnx", calib)
            sizes[ORT_INT8 + " (file)"] = Path(files[ORT_INT8]).stat().st_size
        else:
            print(f"note: {skipped}")
        calib16 = np.random.default_rng(8).standard_normal((16, 3, 224, 224)).astype(np.float32)
        for name, model in _binary_models().items():
            path = Path(tmp) / (name.replace(" ", "_") + ".onebit")
            sizes[name] = save(convert(model, example_input_shape=(3, 224, 224)), path)
            files[name] = str(path)
            if name == "Bi-Real-18":  # the float convs (stem, 1x1 shortcuts) in int8
                name8 = INT8_BIREAL
                path = Path(tmp) / "Bi-Real-18_int8.onebit"
                sizes[name8] = save(convert(model, example_input_shape=(3, 224, 224),
                                            float_convs="int8", calibration=calib16), path)
                files[name8] = str(path)
        rows, kernels = [], {}
        for t in args.threads:
            settle = [] if args.settle_ms is None else ["--settle-ms", str(args.settle_ms)]
            cmd = [sys.executable, __file__, "--threads", str(t), "--repeats", str(args.repeats),
                   "--batch-sizes", *map(str, args.batch_sizes), *settle, "--child",
                   *(f"{k}={v}" for k, v in files.items())]
            done = subprocess.run(cmd, env=thread_env(t), capture_output=True, text=True)
            if done.returncode != 0:
                sys.stderr.write(done.stderr)
                return 1
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows += result["rows"]
            kernels.setdefault(t, result["kernels"])

    rivals = [r for r in ("int8", "fp32") if any("speedup_vs_" + r in row for row in rows)]
    settles = sorted({(r["threads"], r["settle_ms"]) for r in rows})
    print("pause before each call: " + ", ".join(f"{s:g} ms at {t} thread{'s' if t > 1 else ''}"
                                                  for t, s in settles))
    print(f"\n{'model':<30} {'batch':>5} {'threads':>7} {'median ms':>10} {'vs torch':>9} "
          + "".join(f"{'vs ORT ' + r:>12}" for r in rivals) + f" {'min ms':>9} {'vs torch':>9}")
    for r in rows:
        print(f"{r['model']:<30} {r['batch']:>5} {r['threads']:>7} {r['ms']:>10.2f} "
              f"{r['speedup_vs_torch']:>8.2f}x "
              + "".join(f"{r['speedup_vs_' + v]:>11.2f}x" for v in rivals)
              + f" {r['min_ms']:>9.2f} {r['speedup_of_min']:>8.2f}x")
    print(f"\n{'file':<40} {'bytes':>12} {'vs float32 ResNet-18':>21}")
    for name, size in sizes.items():
        print(f"{name:<40} {size:>12} {size / float_bytes:>20.3f}x")
    print()
    for t, per_model in kernels.items():
        for name, layers in per_model.items():
            if layers:  # per layer in the JSON; here how many layers ran each kernel
                counts = Counter(f"{k['kernel']} ({k['choice']})" for k in layers)
                print(f"kernels of {name}'s {len(layers)} binary convs ({t} thread"
                      f"{'s' if int(t) > 1 else ''}): "
                      + ", ".join(f"{n} x {k}" for k, n in counts.items()))
    if args.out:
        args.out.write_text(json.dumps({"machine": machine, "rows": rows, "bytes": sizes,
                                        "kernels": kernels, "skipped": skipped}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
