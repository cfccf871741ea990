"""Datasets for onebit: the IDX format, Fashion-MNIST / MNIST / CIFAR-10 loaders with checksums.

This package imports without torch (NumPy only). The torch pieces (augmentation, tensors, batch
iteration) live in :mod:`onebit.data.transforms`, which imports torch itself.

Example::

    from onebit.data import load_dataset, DATASETS
    images, labels = load_dataset("fashion_mnist", "train")   # uint8 [60000, 28, 28, 1], int64
    DATASETS["fashion_mnist"].mean                            # (0.2860,)
"""

from __future__ import annotations

from onebit.data.catalog import CHECKSUMS, DATASETS, MIRRORS, DatasetInfo, list_datasets
from onebit.data.idx import IDXFormatError, read_idx, write_idx
from onebit.data.loaders import load_dataset
from onebit.data.sources import (
    ChecksumError,
    DatasetNotFoundError,
    DownloadError,
    default_cache_dir,
    search_places,
)

__all__ = [
    "CHECKSUMS",
    "DATASETS",
    "MIRRORS",
    "ChecksumError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DownloadError",
    "IDXFormatError",
    "default_cache_dir",
    "list_datasets",
    "load_dataset",
    "read_idx",
    "search_places",
    "write_idx",
]
