"""Write a small ``.onebit`` model and its test data for ``tools/check_wheel.sh``.

Run with the build tree's Python (it needs torch)::

    python tools/wheel_fixture.py OUT_DIR

``OUT_DIR`` gets ``model.onebit`` (a Bi-Real ``fmnist_cnn`` with random weights and BatchNorm
statistics, so every fold is exercised), ``images.npy`` (512 random blocky uint8 28x28 images),
``labels.npy`` (the PyTorch float simulation's predictions on them) and ``logits.npy`` (the
runtime's logits in this build). The wheel must reproduce the logits bit for bit.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch

import onebit
import onebit.runtime as rt
from onebit.deploy import convert, save
from onebit.models import create


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = create("fmnist_cnn", num_classes=10, in_channels=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onebit.binarize_(model, "bireal")
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.2)
            m.bias.data.copy_(torch.rand(c, generator=gen) - 0.5)
    model.eval()
    norm = {"mean": [0.286], "std": [0.353]}
    # blocky random patterns with random contrast
    rng = np.random.default_rng(2)
    coarse = rng.random((512, 7, 7)) * rng.random((512, 1, 1))
    images = (255 * np.kron(coarse, np.ones((4, 4)))).astype(np.uint8)
    x = ((images[:, None] / np.float32(255) - 0.286) / 0.353).astype(np.float32)
    # centre the classifier's logits on these images so that the predictions spread over classes
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias -= model(torch.from_numpy(x)).mean(0)
        labels = model(torch.from_numpy(x)).argmax(1).numpy()
    save(convert(model, example_input_shape=(1, 28, 28), normalization=norm), out / "model.onebit")
    runtime = rt.load(out / "model.onebit", num_threads=1)
    x = runtime.preprocess(images)
    np.save(out / "images.npy", images)
    np.save(out / "labels.npy", labels.astype(np.int64))
    np.save(out / "logits.npy", runtime(x))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
