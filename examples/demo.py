"""The main job (``make demo`` / ``python examples/demo.py``): train, export, deploy, compare.

1. trains a binary network (``fmnist_cnn`` binarized by a method, Bi-Real by default) on
   Fashion-MNIST for a short schedule, with Lightning's progress bar;
2. converts it to a ``.onebit`` file (BatchNorm folded, binary weights packed at 1 bit each);
3. runs the torch-free runtime on the whole test set and prints, side by side, the accuracy of the
   float-simulated model (PyTorch, eval mode) and of the packed model, how many predictions agree,
   the largest logit difference, the file sizes (float32 weights vs ``.onebit``) and the latency of
   the packed model against the same architecture in PyTorch float32, batch 1, one thread.

Everything it prints is measured in this run; ``--json`` also writes the figures to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "run"]


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python examples/demo.py", description=__doc__.splitlines()[0])
    p.add_argument("--method", default="bireal",
                   help="binarization method (see `onebit list methods`); default bireal")
    p.add_argument("--epochs", type=int, default=2, help="training epochs (default 2)")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST directory (default: searched)")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--train-subset", type=int, default=None,
                   help="train on the first N images only (a quicker run)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return p.parse_args(argv)


def _config(a: argparse.Namespace) -> dict[str, Any]:
    from onebit.train.config import validate

    out = Path(a.out)
    raw = {
        "name": out.name,
        "model": {"name": "fmnist_cnn"},
        "method": {"name": a.method},
        "data": {"name": "fashion_mnist", "data_dir": a.data_dir, "batch_size": 128,
                 "val_size": 5000 if a.train_subset is None else max(1, a.train_subset // 10),
                 "train_subset": a.train_subset,
                 "augment": {"crop_padding": 2, "hflip": True}},
        "optim": {"name": "adam", "lr": 2e-3, "weight_decay": 0.0},
        "schedule": {"name": "cosine"},
        "trainer": {"max_epochs": a.epochs, "ckpt_every_n_steps": 200},
        "output": {"dir": str(out.parent), "tensorboard": False},
    }
    return validate(raw)


def _median_ms(fn, repeats: int = 30) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def run(a: argparse.Namespace) -> dict[str, Any]:
    import torch
    from tqdm import tqdm

    import onebit.runtime as rt
    from onebit.data import DATASETS, load_dataset
    from onebit.deploy import convert, save
    from onebit.models import create
    from onebit.train.artifacts import load_weights_file
    from onebit.train.build import build_model, dataset_meta, load_weights_
    from onebit.train.runner import run_dir_of, train

    cfg = _config(a)
    print(f"[1/3] training fmnist_cnn with {a.method} on Fashion-MNIST for {a.epochs} epochs",
          flush=True)
    t0 = time.perf_counter()
    train(cfg, overwrite=True)
    train_s = time.perf_counter() - t0
    run_dir = run_dir_of(cfg)

    print("[2/3] converting to .onebit", flush=True)
    state, config = load_weights_file(run_dir / "model.safetensors")
    model, _ = build_model(config)
    load_weights_(model, state, str(run_dir))
    model.eval()
    meta = dataset_meta(config)
    info = DATASETS["fashion_mnist"]
    graph = convert(model, example_input_shape=tuple(meta.input_size),
                    class_names=list(info.class_names),
                    normalization={"mean": list(meta.mean), "std": list(meta.std)})
    onebit_path = run_dir / "model.onebit"
    file_bytes = save(graph, onebit_path)
    float_bytes = 4 * sum(p.numel() for p in model.parameters())

    print("[3/3] float-simulated (PyTorch) vs packed (onebit runtime) on the test set", flush=True)
    images, labels = load_dataset("fashion_mnist", "test", data_dir=a.data_dir)
    packed = rt.load(onebit_path, num_threads=1)
    x_all = packed.preprocess(images)
    sim_logits, run_logits = [], []
    batch = 500
    with torch.no_grad():
        for i in tqdm(range(0, len(x_all), batch), desc="test set", unit="batch", leave=False):
            x = x_all[i:i + batch]
            sim_logits.append(model(torch.from_numpy(x)).numpy())
            run_logits.append(packed(x))
    sim = np.concatenate(sim_logits)
    got = np.concatenate(run_logits)
    sim_pred, run_pred = sim.argmax(1), got.argmax(1)
    scale = float(np.abs(sim).max())
    # Binary parts are exact integers in both; float parts differ by summation order (a few ulps).
    # Where a float-simulated BatchNorm output lands within rounding of a sign threshold, the two
    # can binarize it differently: such images show a larger logit difference.
    close = np.abs(sim - got).max(1) <= 1e-4 * max(scale, 1.0)

    # latency: packed runtime vs the same architecture in float32 PyTorch, batch 1, 1 thread
    float_model = create("fmnist_cnn", num_classes=10, in_channels=1).eval()
    x1 = x_all[:1]
    torch.set_num_threads(1)
    with torch.no_grad():
        torch_ms = _median_ms(lambda: float_model(torch.from_numpy(x1)))
    onebit_ms = _median_ms(lambda: packed(x1))

    res = {
        "method": a.method, "epochs": a.epochs, "train_wall_s": round(train_s, 1),
        "float_simulated_accuracy": float((sim_pred == labels).mean()),
        "packed_accuracy": float((run_pred == labels).mean()),
        "identical_predictions": int((sim_pred == run_pred).sum()), "test_images": int(len(labels)),
        "max_logit_abs_diff": float(np.abs(sim - got).max()), "max_logit_abs": scale,
        "images_logits_within_1e-4": int(close.sum()),
        "float32_weight_bytes": int(float_bytes), "onebit_file_bytes": int(file_bytes),
        "latency_ms_batch1_1thread": {"onebit_runtime": onebit_ms, "torch_float32": torch_ms},
        "onebit_file": str(onebit_path),
    }
    print()
    print(f"method {a.method}, {a.epochs} epochs, trained in {train_s:.0f} s")
    print(f"  accuracy, float-simulated (PyTorch):  {100 * res['float_simulated_accuracy']:.2f}%")
    print(f"  accuracy, packed (onebit runtime):    {100 * res['packed_accuracy']:.2f}%")
    print(f"  identical predictions: {res['identical_predictions']} / {res['test_images']}; "
          f"logits within 1e-4 (relative) on {int(close.sum())} images; max |difference| "
          f"{res['max_logit_abs_diff']:.2e} (logits up to {scale:.1f})")
    print(f"  size: float32 weights {float_bytes / 1024:.1f} KiB, {onebit_path.name} "
          f"{file_bytes / 1024:.1f} KiB ({float_bytes / file_bytes:.1f}x smaller)")
    print(f"  latency, batch 1, 1 thread: onebit runtime {onebit_ms:.3f} ms, PyTorch float32 "
          f"{torch_ms:.3f} ms ({torch_ms / onebit_ms:.2f}x)")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return res


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    if a.epochs < 1:
        print("demo: --epochs must be >= 1", file=sys.stderr)
        return 2
    from onebit.data.sources import ChecksumError, DatasetNotFoundError

    try:
        run(a)
    except (DatasetNotFoundError, ChecksumError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
