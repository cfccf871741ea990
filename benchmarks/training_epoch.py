"""Time a plain float training epoch of a registered model (how long one epoch takes on this CPU).

Command line (prints one line and a JSON record)::

    python benchmarks/training_epoch.py fmnist_cnn --dataset fashion_mnist --batch-size 128

The loop is the simplest one: SGD with momentum, cross-entropy, the dataset's normalisation,
batches from :class:`onebit.data.transforms.BatchLoader`. ``--batches N`` times the first ``N``
batches (after ``--warmup`` untimed ones) and extrapolates to the full epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from torch import nn

from onebit.data import DATASETS, load_dataset
from onebit.data.catalog import canonical_name
from onebit.data.transforms import BatchLoader, dataset_transforms
from onebit.models.registry import create

__all__ = ["time_training_epoch", "main"]


def time_training_epoch(model: nn.Module, loader: BatchLoader, max_batches: int | None = None,
                        warmup: int = 2, lr: float = 0.05) -> dict:
    """Train ``model`` over ``loader`` (one epoch, or ``max_batches`` timed batches) and time it.

    Returns ``{"seconds_per_epoch", "cpu_seconds_per_epoch", "timed_batches",
    "batches_per_epoch", "images_per_second", "final_loss"}``; per-epoch figures are extrapolated
    when fewer batches were timed. ``cpu_seconds_per_epoch`` is the process's CPU time (all
    threads): on a machine shared with other jobs it is a steadier figure than wall time (with one
    thread it approximates the wall time the epoch would take on an idle core).
    """
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    timed = images = 0
    loss = torch.tensor(float("nan"))
    start = cpu_start = None
    for i, (x, y) in enumerate(loader):
        if i == warmup:
            start, cpu_start = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if i >= warmup:
            timed += 1
            images += x.shape[0]
            if max_batches is not None and timed >= max_batches:
                break
    if start is None or timed == 0:
        raise ValueError(f"the loader has {len(loader)} batches: too few for {warmup} warm-up "
                         "batches plus at least one timed batch")
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    return {
        "seconds_per_epoch": seconds / timed * len(loader),
        "cpu_seconds_per_epoch": cpu_seconds / timed * len(loader),
        "timed_batches": timed,
        "batches_per_epoch": len(loader),
        "images_per_second": images / seconds,
        "final_loss": float(loss.detach()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/training_epoch.py",
                                     description="Time one float training epoch of a model.")
    parser.add_argument("model")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=None,
                        help="time only this many batches and extrapolate (default: full epoch)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    try:
        info = DATASETS[canonical_name(args.dataset)]
        images, labels = load_dataset(info.name, "train", data_dir=args.data_dir)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    model = create(args.model, num_classes=info.num_classes, in_channels=info.in_channels)
    loader = BatchLoader(images, labels, args.batch_size, shuffle=True, drop_last=True,
                         transform=dataset_transforms(info.name, train=True))
    result = time_training_epoch(model, loader, args.batches, args.warmup)
    params = sum(p.numel() for p in model.parameters())
    record = {"model": args.model, "dataset": info.name, "batch_size": args.batch_size,
              "threads": torch.get_num_threads(), "parameters": params, **result}
    print(f"{args.model} on {info.name}: {result['seconds_per_epoch']:.1f} s/epoch wall, "
          f"{result['cpu_seconds_per_epoch']:.1f} s CPU ({result['images_per_second']:.0f} "
          f"images/s, {params / 1e6:.2f} M parameters, {torch.get_num_threads()} threads)")
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
