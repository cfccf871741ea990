"""Whole-model latency: Bi-Real-18 and an XNOR ResNet-18 (224x224, 1000 classes, random weights)
in onebit's runtime, beside PyTorch float32 ResNet-18, at batch 1 and 8 and 1 and 2 threads; and
the .onebit file sizes beside float32 ResNet-18's weights.

Usage:
    python benchmarks/models.py [--repeats 10] [--threads 1 2] [--batch-sizes 1 8] [--out F.json]

Each thread count runs in its own process with OPENBLAS_NUM_THREADS / OMP_NUM_THREADS set to it
(NumPy's float matmuls, onebit's kernels and PyTorch all get that many threads); inside it the
three models run alternately; the medians of the repeats are reported, and the minima beside
them (on a shared machine, noise only ever adds time). The ResNet-18 here is
the standard ImageNet one (7x7/2 stem, max pool, [2, 2, 2, 2] basic blocks, 1.82 G MACs); the XNOR
model is that network binarized by ``binarize_(model, "xnor")`` (first and last layer float, K
map on). Targets: Bi-Real-18 at batch 1 on 1 thread >= 4x faster than PyTorch's float ResNet-18,
and its file <= 1/10 of float32 ResNet-18's weights.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

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


def _child(files: dict[str, str], threads: int, batch_sizes: list[int], repeats: int) -> list:
    import onebit.runtime as rt

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    reference = _random_bn_(resnet18_imagenet(), 3)
    models = {name: rt.load(path, num_threads=threads) for name, path in files.items()}
    rows = []
    for batch in batch_sizes:
        x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224)).astype(np.float32)
        xt = torch.from_numpy(x)

        def run_torch() -> None:
            with torch.inference_mode():
                reference(xt)

        fns = [run_torch] + [(lambda m=m: m(x)) for m in models.values()]
        samples = alternating_times(fns, repeats)
        med = [statistics.median(t) for t in samples]
        low = [min(t) for t in samples]
        for name, m, lo in zip(["PyTorch float32 ResNet-18", *models], med, low):
            rows.append({"model": name, "batch": batch, "threads": threads, "ms": 1e3 * m,
                         "min_ms": 1e3 * lo, "speedup_vs_torch": med[0] / m,
                         "speedup_of_min": low[0] / lo})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--child", nargs="+", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:  # NAME=PATH pairs; one thread count
        files = dict(item.split("=", 1) for item in args.child)
        print(json.dumps(_child(files, args.threads[0], args.batch_sizes, args.repeats)))
        return 0

    float_bytes = sum(4 * p.numel() for p in resnet18_imagenet().parameters())
    sizes = {"PyTorch float32 ResNet-18 (weights)": float_bytes}
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, model in _binary_models().items():
            path = Path(tmp) / (name.replace(" ", "_") + ".onebit")
            sizes[name] = save(convert(model, example_input_shape=(3, 224, 224)), path)
            files[name] = str(path)
        rows = []
        for t in args.threads:
            cmd = [sys.executable, __file__, "--threads", str(t), "--repeats", str(args.repeats),
                   "--batch-sizes", *map(str, args.batch_sizes), "--child",
                   *(f"{k}={v}" for k, v in files.items())]
            done = subprocess.run(cmd, env=thread_env(t), capture_output=True, text=True)
            if done.returncode != 0:
                sys.stderr.write(done.stderr)
                return 1
            rows += json.loads(done.stdout.strip().splitlines()[-1])

    print(f"{'model':<28} {'batch':>5} {'threads':>7} {'median ms':>10} {'vs torch':>9} "
          f"{'min ms':>9} {'vs torch':>9}")
    for r in rows:
        print(f"{r['model']:<28} {r['batch']:>5} {r['threads']:>7} {r['ms']:>10.2f} "
              f"{r['speedup_vs_torch']:>8.2f}x {r['min_ms']:>9.2f} {r['speedup_of_min']:>8.2f}x")
    print(f"\n{'file':<40} {'bytes':>12} {'vs float32 ResNet-18':>21}")
    for name, size in sizes.items():
        print(f"{name:<40} {size:>12} {size / float_bytes:>20.3f}x")
    if args.out:
        args.out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                        "rows": rows, "bytes": sizes}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
