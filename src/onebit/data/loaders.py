"""``load_dataset``: Fashion-MNIST, MNIST and CIFAR-10 as uint8 NumPy arrays (no torch needed).

Every load looks the files up (see :mod:`onebit.data.sources`), verifies their MD5 against the
catalogue, downloads what is missing where the machine has internet, and validates the decoded
arrays (shapes, dtypes, label range) before returning ``(images [N, H, W, C] uint8,
labels [N] int64)``.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

from onebit.data.catalog import DATASETS, canonical_name
from onebit.data.idx import IDXFormatError, decompress_if_gzip, parse_idx
from onebit.data.sources import (
    ChecksumError,
    DownloadError,
    SearchPlace,
    checksum_error,
    download_dir,
    download_file,
    expected_md5,
    md5_file,
    md5_hex,
    missing_data_error,
    search_places,
)

__all__ = ["load_dataset"]

SPLITS = ("train", "test")
_NOT_ATTEMPTED = "Download not attempted (download=False; download=True fetches it with internet)."
CIFAR_TARBALL = "cifar-10-python.tar.gz"
CIFAR_DIR = "cifar-10-batches-py"


def load_dataset(name: str, split: str = "train", data_dir: str | os.PathLike[str] | None = None,
                 download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of a dataset as ``(images, labels)``.

    Args:
        name: ``"fashion_mnist"``, ``"mnist"`` or ``"cifar10"`` (see :func:`list_datasets`;
            ``"fashion-mnist"`` and other spellings are accepted).
        split: ``"train"`` or ``"test"``.
        data_dir: a directory searched first (also where downloads go when given).
        download: fetch missing files from the canonical mirrors (short timeout; checksum
            verified; written atomically).

    Returns:
        ``images``: uint8 ``[N, H, W, C]`` (C = 1 for the MNISTs, 3 for CIFAR-10, RGB);
        ``labels``: int64 ``[N]`` in ``[0, num_classes)``.

    Raises:
        ValueError: unknown name or split.
        DatasetNotFoundError: the files are nowhere (the message lists every place looked and how
            to get the data).
        ChecksumError: a file exists but is not the canonical one (the message names the file, the
            expected and the actual MD5).
    """
    dataset = canonical_name(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for {dataset}; use one of {', '.join(SPLITS)}")
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False, got {download!r}")
    places = search_places(dataset, data_dir)
    if dataset == "cifar10":
        images, labels = _load_cifar(dataset, split, places, data_dir, download)
    else:
        images, labels = _load_idx_pair(dataset, split, places, data_dir, download)
    return images, labels


# ---------------------------------------------------------------------------------------------
# IDX datasets (MNIST, Fashion-MNIST)

def _load_idx_pair(dataset, split, places, data_dir, download):
    info = DATASETS[dataset]
    image_name, label_name = info.files[split]
    images = _load_idx_member(dataset, image_name, places, data_dir, download)
    labels = _load_idx_member(dataset, label_name, places, data_dir, download)
    h, w, c = info.image_shape
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (h, w):
        raise IDXFormatError(f"{dataset}/{image_name}: expected uint8 images [N, {h}, {w}], got "
                             f"{images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise IDXFormatError(f"{dataset}/{label_name}: expected uint8 labels [N], got "
                             f"{labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise IDXFormatError(f"{dataset} {split}: {len(images)} images but {len(labels)} labels")
    _check_label_range(dataset, labels, info.num_classes)
    return images.reshape(len(images), h, w, c), labels.astype(np.int64)


def _load_idx_member(dataset: str, base: str, places: list[SearchPlace], data_dir,
                     download: bool) -> np.ndarray:
    for place in places:
        for filename in (base + ".gz", base):
            path = place.directory / filename
            if path.is_file():
                return parse_idx(_verified_idx_bytes(dataset, base, path), str(path))
    note = _NOT_ATTEMPTED
    if download:
        try:
            path = download_file(dataset, base + ".gz", download_dir(dataset, data_dir),
                                 lambda p: _verified_idx_bytes(dataset, base, p))
        except DownloadError as exc:
            note = _download_note(exc)
        else:
            return parse_idx(_verified_idx_bytes(dataset, base, path), str(path))
    raise missing_data_error(dataset, f"{base}.gz (or {base})", places, note)


def _download_note(exc: DownloadError) -> str:
    return "Download failed (no internet?):\n    " + str(exc).split("\n", 1)[-1].strip()


def _verified_idx_bytes(dataset: str, base: str, path: Path) -> bytes:
    """The decompressed content of ``path`` after its MD5 matched (file or content checksum)."""
    data = path.read_bytes()
    want_content = expected_md5(dataset, base)
    if not data.startswith(b"\x1f\x8b"):
        actual = md5_hex(data)
        if actual != want_content:
            raise checksum_error(path, want_content, actual)
        return data
    want_file = expected_md5(dataset, base + ".gz")
    actual_file = md5_hex(data)
    try:
        content = decompress_if_gzip(data, str(path))
    except IDXFormatError:
        if actual_file == want_file:  # cannot happen for the canonical file; be explicit anyway
            raise
        raise checksum_error(path, want_file, actual_file, "and it is not a valid gzip stream")
    if actual_file == want_file:
        return content
    actual_content = md5_hex(content)
    if actual_content != want_content:
        raise ChecksumError(
            f"{path}: checksum mismatch: expected MD5 {want_file} (canonical .gz file) or "
            f"{want_content} (its decompressed content), got {actual_file} (file) and "
            f"{actual_content} (content). The file is corrupted or not the canonical one: delete "
            "it and get it again (it is downloaded anew where the machine has internet).")
    return content


def _check_label_range(dataset: str, labels: np.ndarray, num_classes: int) -> None:
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"{dataset}: labels must lie in [0, {num_classes}), found "
                         f"[{int(labels.min())}, {int(labels.max())}]")


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (the "python version": pickled batches, as a tarball or its extracted directory)

class _CifarUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR-10's batch files only.

    CIFAR-10 is distributed as Python pickles, and unpickling can run arbitrary code. onebit
    unpickles only files whose MD5 matched the published checksum of the official release (checked
    just before), and in addition refuses every global except the NumPy array reconstructors that
    those files reference, so even a file that slipped past the checksum cannot call anything else.
    onebit's own files never use pickle.
    """

    _ALLOWED = {
        # _codecs.encode only turns a str into bytes: Python 3 writes bytes that way in protocol 2
        ("_codecs", "encode"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"CIFAR-10 batch refers to {module}.{name}, which a "
                                         "CIFAR-10 batch never does; the file is not genuine")
        return super().find_class(module, name)


def _decode_cifar_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _CifarUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"{source}: not a CIFAR-10 batch ({exc})") from exc
    if not isinstance(batch, dict):
        raise ValueError(f"{source}: not a CIFAR-10 batch (a {type(batch).__name__}, not a dict)")
    batch = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{source}: CIFAR-10 batch lacks 'data'/'labels' (keys: {sorted(batch)})")
    images = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{source}: expected uint8 data [N, 3072], got {images.dtype} "
                         f"{images.shape}")
    if labels.shape != (len(images),):
        raise ValueError(f"{source}: {len(images)} images but labels of shape {labels.shape}")
    # rows are 1024 red, 1024 green, 1024 blue values of a 32x32 image -> [N, 32, 32, 3]
    images = images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def _checked(data: bytes, dataset: str, member: str, source: str) -> bytes:
    want = expected_md5(dataset, member)
    actual = md5_hex(data)
    if actual != want:
        raise checksum_error(source, want, actual)
    return data


def _cifar_from_dir(dataset: str, batch_dir: Path, names) -> list:
    return [_decode_cifar_batch(_checked((batch_dir / n).read_bytes(), dataset, n,
                                         str(batch_dir / n)), str(batch_dir / n)) for n in names]


def _verify_tarball(dataset: str, path: Path) -> None:
    want, actual = expected_md5(dataset, CIFAR_TARBALL), md5_file(path)
    if actual != want:
        raise checksum_error(path, want, actual)


def _cifar_from_tar(dataset: str, tarball: Path, names) -> list:
    _verify_tarball(dataset, tarball)
    found: dict[str, bytes] = {}
    wanted = {f"{CIFAR_DIR}/{n}": n for n in names}
    try:
        with tarfile.open(tarball, mode="r:gz") as tar:
            for member in tar:  # read members into memory; nothing is extracted to disk
                if member.name in wanted and member.isfile():
                    handle = tar.extractfile(member)
                    assert handle is not None
                    found[wanted[member.name]] = handle.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ValueError(f"{tarball}: cannot read the tarball ({exc})") from exc
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"{tarball}: the tarball lacks "
                         f"{', '.join(f'{CIFAR_DIR}/{n}' for n in missing)}")
    return [_decode_cifar_batch(_checked(found[n], dataset, n, f"{tarball}:{CIFAR_DIR}/{n}"),
                                f"{tarball}:{CIFAR_DIR}/{n}") for n in names]


def _load_cifar(dataset, split, places, data_dir, download):
    info = DATASETS[dataset]
    names = info.files[split]
    batches = None
    for place in places:
        batch_dir = place.directory / CIFAR_DIR
        if batch_dir.is_dir() and all((batch_dir / n).is_file() for n in names):
            batches = _cifar_from_dir(dataset, batch_dir, names)
            break
        if (place.directory / CIFAR_TARBALL).is_file():
            batches = _cifar_from_tar(dataset, place.directory / CIFAR_TARBALL, names)
            break
    if batches is None:
        note = _NOT_ATTEMPTED
        if download:
            try:
                path = download_file(dataset, CIFAR_TARBALL, download_dir(dataset, data_dir),
                                     lambda p: _verify_tarball(dataset, p))
            except DownloadError as exc:
                note = _download_note(exc)
            else:
                batches = _cifar_from_tar(dataset, path, names)
        if batches is None:
            raise missing_data_error(dataset, f"{CIFAR_TARBALL} (or {CIFAR_DIR}/ with "
                                     f"{', '.join(names)})", places, note)
    images = np.ascontiguousarray(np.concatenate([b[0] for b in batches]))
    labels = np.concatenate([b[1] for b in batches])
    _check_label_range(dataset, labels, info.num_classes)
    return images, labels
