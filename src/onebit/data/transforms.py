"""Batch transforms and batch iteration for training (torch).

Every transform takes a whole batch ``[N, C, H, W]`` on any device and returns a batch on the same
device: augmentation is drawn per sample but applied in one vectorised operation per batch, which
on a 2-core CPU is far faster than per-sample transforms in DataLoader workers.

* :class:`Normalize` ``y = (x - mean[c]) / std[c]``.
* :class:`RandomCrop` pads by ``padding`` (value ``fill``) and crops ``size`` at a random offset
  per sample (the CIFAR recipe "pad 4, random 32x32 crop" of He et al. 2016).
* :class:`RandomHorizontalFlip` mirrors each sample with probability ``p``.
* :class:`Compose` chains them. :func:`dataset_transforms` gives the usual train/test pipelines.
* :func:`images_to_tensor` turns uint8 ``[N, H, W, C]`` arrays into float ``[N, C, H, W]`` in
  [0, 1]; :class:`ImageDataset` is the matching ``torch.utils.data.Dataset``; :class:`BatchLoader`
  iterates shuffled, converted, transformed batches (usable as a Lightning dataloader).

Random transforms draw from ``generator`` (a CPU ``torch.Generator``) when given, else from torch's
global generator, so a seeded run is reproducible on every device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from onebit.data.catalog import DATASETS, canonical_name

__all__ = [
    "BatchLoader",
    "Compose",
    "ImageDataset",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "crop",
    "dataset_transforms",
    "hflip_where",
    "images_to_tensor",
]

Transform = Callable[[torch.Tensor], torch.Tensor]


def _check_batch(x: torch.Tensor, who: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{who} takes a batch [N, C, H, W], got {shape}; add a batch dimension "
                         "with x.unsqueeze(0) for a single image")


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    if isinstance(value, int):
        pair = (value, value)
    else:
        pair = tuple(int(v) for v in value)
        if len(pair) != 2:
            raise ValueError(f"{what} must be an int or a pair (h, w), got {value!r}")
    if min(pair) < 0:
        raise ValueError(f"{what} must be >= 0, got {value!r}")
    return pair  # type: ignore[return-value]


class Compose:
    """Apply transforms in order: ``Compose([a, b])(x) == b(a(x))``."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose takes callables, got {t!r}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class Normalize:
    """``y[:, c] = (x[:, c] - mean[c]) / std[c]`` on a float batch ``[N, C, H, W]``.

    ``mean`` / ``std`` have one value per channel, or a single value used for every channel.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"Normalize needs as many means as stds (>= 1), got {mean} / {std}")
        if min(self.std) <= 0:
            raise ValueError(f"Normalize: every std must be > 0, got {std}")
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch(x, "Normalize")
        if not x.is_floating_point():
            raise TypeError(f"Normalize takes a float batch, got {x.dtype}; convert uint8 images "
                            "with images_to_tensor (scales to [0, 1])")
        c = x.shape[1]
        if len(self.mean) not in (1, c):
            raise ValueError(f"Normalize has {len(self.mean)} channel statistics but the batch has "
                             f"{c} channels")
        key = (x.device, x.dtype)
        if key not in self._cache:
            mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            inv_std = 1.0 / torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            self._cache[key] = (mean, inv_std)
        mean, inv_std = self._cache[key]
        return (x - mean) * inv_std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


def crop(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: tuple[int, int],
         padding: tuple[int, int] = (0, 0), fill: float = 0.0) -> torch.Tensor:
    """Per-sample crop: ``out[n] = pad(x)[n, :, top[n]:top[n]+h, left[n]:left[n]+w]``.

    ``padding = (ph, pw)`` pads ``ph`` rows above and below and ``pw`` columns left and right
    with ``fill`` first; ``top`` / ``left`` index the padded image. One gather for the whole batch.
    """
    _check_batch(x, "crop")
    n, c = x.shape[:2]
    th, tw = size
    ph, pw = padding
    if ph or pw:
        x = F.pad(x, (pw, pw, ph, ph), mode="constant", value=fill)
    h, w = x.shape[-2:]
    top = top.to(device=x.device, dtype=torch.long)
    left = left.to(device=x.device, dtype=torch.long)
    if top.shape != (n,) or left.shape != (n,):
        raise ValueError(f"crop needs one top and one left offset per sample ({n}), got "
                         f"{tuple(top.shape)} and {tuple(left.shape)}")
    if n and (int(top.min()) < 0 or int(left.min()) < 0 or int(top.max()) + th > h
              or int(left.max()) + tw > w):
        raise ValueError(f"crop offsets out of range for a {th}x{tw} crop of {h}x{w}")
    rows = (top[:, None] + torch.arange(th, device=x.device))[:, None, :, None]
    cols = (left[:, None] + torch.arange(tw, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return x[batch, chans, rows, cols]


class RandomCrop:
    """Pad by ``padding`` (value ``fill``), then crop ``size`` at a random offset per sample.

    ``size`` and ``padding`` are an int or a pair ``(h, w)``. With ``size = 32, padding = 4`` on
    32x32 images every sample is shifted by -4..4 pixels in each direction (zeros fill the border).
    """

    def __init__(self, size: int | Sequence[int], padding: int | Sequence[int] = 0,
                 fill: float = 0.0, generator: torch.Generator | None = None):
        self.size = _pair(size, "RandomCrop size")
        if min(self.size) < 1:
            raise ValueError(f"RandomCrop size must be >= 1, got {size!r}")
        self.padding = _pair(padding, "RandomCrop padding")
        self.fill = float(fill)
        self.generator = generator

    def sample_offsets(self, n: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``(top, left)`` for ``n`` images of ``height x width`` (before padding)."""
        h, w = height + 2 * self.padding[0], width + 2 * self.padding[1]
        th, tw = self.size
        if th > h or tw > w:
            raise ValueError(f"RandomCrop: a {th}x{tw} crop does not fit a {height}x{width} image "
                             f"padded by {self.padding}")
        top = torch.randint(0, h - th + 1, (n,), generator=self.generator)
        left = torch.randint(0, w - tw + 1, (n,), generator=self.generator)
        return top, left

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch(x, "RandomCrop")
        top, left = self.sample_offsets(x.shape[0], x.shape[2], x.shape[3])
        return crop(x, top, left, self.size, self.padding, self.fill)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding}, fill={self.fill})"


def hflip_where(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror (left-right) the samples where ``mask[n]`` is true: ``out[n] = x[n, :, :, ::-1]``."""
    _check_batch(x, "hflip_where")
    mask = mask.to(device=x.device, dtype=torch.bool)
    if mask.shape != (x.shape[0],):
        raise ValueError(f"hflip_where needs one flag per sample ({x.shape[0]}), got "
                         f"{tuple(mask.shape)}")
    return torch.where(mask[:, None, None, None], x.flip(3), x)


class RandomHorizontalFlip:
    """Mirror each sample left-right with probability ``p``."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must lie in [0, 1], got {p}")
        self.p = float(p)
        self.generator = generator

    def sample_mask(self, n: int) -> torch.Tensor:
        return torch.rand(n, generator=self.generator) < self.p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch(x, "RandomHorizontalFlip")
        return hflip_where(x, self.sample_mask(x.shape[0]))

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


def dataset_transforms(name: str, train: bool, augment: bool | None = None,
                       generator: torch.Generator | None = None) -> Compose:
    """The usual pipeline for a dataset: augmentation (train only) then normalisation.

    CIFAR-10 augments with ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()``; MNIST and
    Fashion-MNIST are not augmented by default (flipping digits changes them). ``augment``
    overrides the default for training (it is never applied when ``train`` is false).
    """
    info = DATASETS[canonical_name(name)]
    if augment is None:
        augment = info.name == "cifar10"
    steps: list[Transform] = []
    if train and augment:
        h, w, _ = info.image_shape
        steps.append(RandomCrop((h, w), padding=4, generator=generator))
        steps.append(RandomHorizontalFlip(generator=generator))
    steps.append(Normalize(info.mean, info.std))
    return Compose(steps)


def images_to_tensor(images: np.ndarray | torch.Tensor, device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 ``[N, H, W, C]`` (as :func:`onebit.data.load_dataset` returns) -> float
    ``[N, C, H, W]`` in [0, 1] (``x / 255``)."""
    t = torch.as_tensor(images)
    if t.dtype != torch.uint8 or t.ndim != 4:
        raise ValueError(f"images_to_tensor takes uint8 images [N, H, W, C], got {t.dtype} "
                         f"{tuple(t.shape)}")
    t = t.to(device) if device is not None else t
    return t.permute(0, 3, 1, 2).to(dtype).div_(255.0).contiguous()


def _as_nchw_uint8(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(images)
    if t.dtype != torch.uint8 or t.ndim != 4:
        raise ValueError(f"expected uint8 images [N, H, W, C], got {t.dtype} {tuple(t.shape)}")
    return t.permute(0, 3, 1, 2).contiguous()


def _as_labels(labels: np.ndarray | torch.Tensor, n: int) -> torch.Tensor:
    y = torch.as_tensor(labels)
    if y.ndim != 1 or y.shape[0] != n or y.is_floating_point():
        raise ValueError(f"expected integer labels [{n}], got {y.dtype} {tuple(y.shape)}")
    return y.to(torch.long)


class ImageDataset(torch.utils.data.Dataset):
    """A ``Dataset`` over uint8 ``[N, H, W, C]`` images: item ``i`` is ``(float [C, H, W] in
    [0, 1], int64 label)``, transformed by ``transform`` (a batch transform, applied to a batch of
    one). Images stay uint8 in memory (NCHW)."""

    def __init__(self, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                 transform: Transform | None = None):
        self.images = _as_nchw_uint8(images)
        self.labels = _as_labels(labels, self.images.shape[0])
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[index].unsqueeze(0).float().div_(255.0)
        if self.transform is not None:
            x = self.transform(x)
        return x[0], self.labels[index]


class BatchLoader:
    """Iterate ``(x, y)`` batches: x float ``[B, C, H, W]`` (``/255`` then ``transform``), y int64.

    Shuffles each epoch (``torch.randperm`` with ``generator``) when ``shuffle``; the uint8 batch
    is indexed, moved to ``device`` and converted there, so only bytes cross to the device.
    ``len()`` is the number of batches. Works as a Lightning train/val dataloader.
    """

    def __init__(self, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                 batch_size: int, shuffle: bool = False, drop_last: bool = False,
                 transform: Transform | None = None, device: torch.device | str | None = None,
                 generator: torch.Generator | None = None):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.images = _as_nchw_uint8(images)
        self.labels = _as_labels(labels, self.images.shape[0])
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.transform = transform
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.generator = generator

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.images.shape[0]
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        for b in range(len(self)):
            sl = slice(b * self.batch_size, min(n, (b + 1) * self.batch_size))
            if order is None:
                xb, yb = self.images[sl], self.labels[sl]
            else:
                idx = order[sl]
                xb, yb = self.images[idx], self.labels[idx]
            x = xb.to(self.device, non_blocking=True).float().div_(255.0)
            if self.transform is not None:
                x = self.transform(x)
            yield x, yb.to(self.device, non_blocking=True)
