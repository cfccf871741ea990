"""The Lightning DataModule and a resumable, deterministic training batch loader.

Images stay uint8 ``[N, H, W, C]`` in memory and travel to the device as uint8 batches (4x less
traffic than float); the :class:`~onebit.train.module.OnebitModule` converts, augments and
normalises them on the device (``on_after_batch_transfer``).

Mid-epoch resumption. The training order of epoch ``e`` is a permutation drawn from a generator
seeded with ``(seed, e)``, sharded over ranks (rank ``r`` takes every ``world_size``-th sample of
the permutation, the tail dropped so every rank has as many batches). :class:`ResumableBatches`
counts the batches it has handed out in the current epoch and implements Lightning's
``state_dict`` / ``load_state_dict`` protocol for stateful loaders, so a checkpoint taken after
batch ``k`` of epoch ``e`` resumes with batch ``k + 1`` of the same permutation: no batch is lost or
seen twice, and the run ends after the same number of optimizer steps as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any, Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from onebit.data import load_dataset
from onebit.train.config import SYNTHETIC, ConfigError
from onebit.train.recipe import resolve_stage

__all__ = ["EpochSampler", "ResumableBatches", "OnebitDataModule", "split_train_val", "SYNTHETIC",
           "synthetic_dataset"]

def synthetic_dataset(split: str, seed: int = 1234) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 [N, H, W, C], int64 [N])`` of the ``synthetic`` dataset (deterministic)."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; use train or test")
    c, h, w = SYNTHETIC["input_size"]
    k = SYNTHETIC["num_classes"]
    proto = np.random.default_rng(seed).uniform(0.15, 0.85, size=(k, h, w, c))
    n = SYNTHETIC["num_train" if split == "train" else "num_test"]
    rng = np.random.default_rng(seed + (1 if split == "train" else 2))
    labels = rng.integers(0, k, size=n).astype(np.int64)
    images = proto[labels] + rng.normal(0.0, 0.2, size=(n, h, w, c))
    return (np.clip(images, 0.0, 1.0) * 255).round().astype(np.uint8), labels


class EpochSampler:
    """The sample order of one epoch: ``randperm(n)`` seeded with ``(seed, epoch)``, one rank's shard.

    ``set_epoch`` is called by Lightning at the start of every epoch (it looks for a ``sampler``
    attribute with ``set_epoch`` on the loader).
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        if n < world_size:
            raise ConfigError(f"{n} training samples cannot be split over {world_size} processes; "
                             "use fewer devices or more data")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n // self.world_size

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch (int64)."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed((self.seed * 1_000_003 + self.epoch) % (2**63))
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        per_rank = len(self)
        return order[self.rank : per_rank * self.world_size : self.world_size]


class _Batches(Dataset):
    """A map-style dataset whose item ``i`` is a whole batch (for worker processes)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batches: list[torch.Tensor]):
        self.images, self.labels, self.batches = images, labels, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.batches[i]
        return self.images[idx], self.labels[idx]


class ResumableBatches:
    """Training batches ``(uint8 [B, H, W, C], int64 [B])`` in :class:`EpochSampler` order.

    Implements ``state_dict`` / ``load_state_dict`` (Lightning saves them in every checkpoint):
    the state is the epoch and the number of batches handed out in it; after loading, the next
    iteration over the same epoch starts right after the last batch handed out. ``len()`` is
    always the full epoch's number of batches, as Lightning expects of a resumed loader.
    With ``num_workers > 0`` the batches are gathered in worker processes; the count still
    follows the batches handed to the training loop, not those prefetched.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 sampler: EpochSampler, drop_last: bool = True, num_workers: int = 0,
                 pin_memory: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.images, self.labels = images, labels
        self.batch_size, self.sampler, self.drop_last = batch_size, sampler, drop_last
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self._epoch, self._consumed = -1, 0
        self._resume: tuple[int, int] | None = None
        if len(self) == 0:
            raise ConfigError(f"{len(sampler)} training samples per process make no full batch of "
                             f"{batch_size}; lower data.batch_size or set data.drop_last=false")

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _epoch_batches(self) -> list[torch.Tensor]:
        idx = self.sampler.indices()
        return [idx[i * self.batch_size : (i + 1) * self.batch_size] for i in range(len(self))]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.sampler.epoch
        start = 0
        if self._resume is not None:
            if self._resume[0] == epoch:
                start = self._resume[1]
            self._resume = None
        self._epoch, self._consumed = epoch, start
        batches = self._epoch_batches()[start:]
        if self.num_workers == 0:
            for idx in batches:
                batch = (self.images[idx], self.labels[idx])
                self._consumed += 1
                yield batch
            return
        loader = DataLoader(_Batches(self.images, self.labels, batches), batch_size=None,
                            shuffle=False, num_workers=self.num_workers, pin_memory=self.pin_memory,
                            generator=_private_generator(self.sampler.seed))
        for batch in loader:
            self._consumed += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._epoch, "consumed": self._consumed, "num_batches": len(self),
                "seed": self.sampler.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("num_batches") != len(self) or state.get("seed") != self.sampler.seed:
            raise ValueError(
                "the checkpoint was taken with another data order (batch size, data size, devices "
                "or seed differ); resume with the run's own config"
            )
        self._resume = (int(state["epoch"]), int(state["consumed"]))


def _private_generator(seed: int) -> torch.Generator:
    """A generator for DataLoader's worker seeds, so that creating a loader never draws from (and
    shifts) torch's global random state: a resumed run then replays the uninterrupted one."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def split_train_val(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and the held-out validation part (a seeded permutation)."""
    if val_size >= n:
        raise ConfigError(f"data.val_size={val_size} leaves no training data out of {n} images; "
                         "lower data.val_size")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[val_size:]), np.sort(perm[:val_size])


class OnebitDataModule(L.LightningDataModule):
    """One dataset from :func:`onebit.data.load_dataset`: train / validation / test loaders.

    The validation set is ``val_size`` training images held out with a fixed seed (the test split
    is only used by ``test``). ``train_subset`` / ``test_subset`` keep the first N images (quick
    runs). Batches are uint8 NHWC; see the module docstring.
    """

    def __init__(self, name: str = "fashion_mnist", data_dir: str | None = None,
                 download: bool = True, batch_size: int = 128, eval_batch_size: int = 512,
                 num_workers: int = 0, val_size: int = 5000, seed: int = 0,
                 train_subset: int | None = None, test_subset: int | None = None,
                 drop_last: bool = True):
        super().__init__()
        self.name, self.data_dir, self.download = name, data_dir, download
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.val_size, self.seed = num_workers, val_size, seed
        self.train_subset, self.test_subset, self.drop_last = train_subset, test_subset, drop_last
        self._train: tuple[torch.Tensor, torch.Tensor] | None = None
        self._val: tuple[torch.Tensor, torch.Tensor] | None = None
        self._test: tuple[torch.Tensor, torch.Tensor] | None = None
        self._train_loader: ResumableBatches | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> "OnebitDataModule":
        """From a :class:`~onebit.train.recipe.Stage` (or a stage's config dict)."""
        if isinstance(cfg, dict):
            cfg = resolve_stage(cfg)
        d = cfg.data
        return cls(name=d.name, data_dir=d.data_dir, download=d.download,
                   batch_size=d.batch_size, eval_batch_size=d.eval_batch_size,
                   num_workers=d.num_workers, val_size=d.val_size, seed=cfg.seed,
                   train_subset=d.train_subset, test_subset=d.test_subset,
                   drop_last=d.drop_last)

    def _load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if self.name == "synthetic":
            return synthetic_dataset(split)

        return load_dataset(self.name, split, data_dir=self.data_dir, download=self.download)

    def prepare_data(self) -> None:
        # runs on one process per node: fetch (download) the files once before setup()
        if self._train is None:
            self._load("train")
        if self._test is None:
            self._load("test")

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and self._train is None:
            x, y = self._load("train")
            if self.train_subset is not None:
                x, y = x[: self.train_subset], y[: self.train_subset]
            tr, va = split_train_val(len(x), self.val_size, self.seed)
            self._train = (torch.from_numpy(np.ascontiguousarray(x[tr])), torch.from_numpy(y[tr]))
            self._val = (torch.from_numpy(np.ascontiguousarray(x[va])), torch.from_numpy(y[va]))
        if stage in (None, "test") and self._test is None:
            x, y = self._load("test")
            if self.test_subset is not None:
                x, y = x[: self.test_subset], y[: self.test_subset]
            self._test = (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))

    def split_sizes(self) -> dict[str, int]:
        """Images in the training, validation and test parts (reads the data if needed)."""
        if self._train is None or self._test is None:
            self.setup()
        return {"train": len(self._train[0]), "val": len(self._val[0]), "test": len(self._test[0])}

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def train_dataloader(self) -> ResumableBatches:
        if self._train is None:
            self.setup("fit")
        rank, world = self._rank_world()
        images, labels = self._train
        sampler = EpochSampler(len(images), self.seed, shuffle=True, rank=rank, world_size=world)
        pin = bool(torch.cuda.is_available())
        self._train_loader = ResumableBatches(images, labels, self.batch_size, sampler,
                                              drop_last=self.drop_last,
                                              num_workers=self.num_workers, pin_memory=pin)
        return self._train_loader

    def num_train_batches(self, world_size: int = 1) -> int:
        """Training batches per epoch and process (what ``len(train_dataloader())`` will be)."""
        if self._train is None:
            self.setup("fit")
        per_rank = len(self._train[0]) // world_size
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def _eval_loader(self, data: tuple[torch.Tensor, torch.Tensor]) -> DataLoader:
        return DataLoader(TensorDataset(*data), batch_size=self.eval_batch_size, shuffle=False,
                          num_workers=self.num_workers, generator=_private_generator(self.seed))

    def val_dataloader(self) -> DataLoader | list:
        if self._val is None:
            self.setup("fit")
        return self._eval_loader(self._val) if len(self._val[0]) else []

    def test_dataloader(self) -> DataLoader:
        if self._test is None:
            self.setup("test")
        return self._eval_loader(self._test)

    def plain_train_loader(self, batch_size: int | None = None, drop_last: bool = False
                           ) -> DataLoader:
        """The training images in a fixed order, no augmentation (BatchNorm re-estimation)."""
        if self._train is None:
            self.setup("fit")
        return DataLoader(TensorDataset(*self._train), batch_size=batch_size or self.batch_size,
                          shuffle=False, num_workers=self.num_workers, drop_last=drop_last,
                          generator=_private_generator(self.seed))
