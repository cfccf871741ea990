"""Where dataset files are looked for, how they are verified, and how they are downloaded.

Search order (first hit wins): the ``data_dir`` argument, the ``ONEBIT_DATA_DIR`` environment
variable, ``~/.cache/onebit``, then the directories a system package installs the dataset to
(Fashion-MNIST: Debian's ``/usr/share/datasets/fashion-mnist``). In each of the user's places the
dataset may sit in a sub-directory named after it (``fashion_mnist/``, ``fashion-mnist/``, or
torchvision's ``FashionMNIST/raw/``) or directly in the place itself.

Every file is checked against the MD5 table :data:`onebit.data.catalog.CHECKSUMS` on every load.
Downloads go to ``<first user place>/<dataset>/``, through a temporary file that is renamed only
after its checksum matched, so an interrupted or corrupted download never looks like a good file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from onebit.data.catalog import CHECKSUMS, DATASETS, MIRRORS, SYSTEM_DIRS
from onebit.errors import OnebitError

__all__ = [
    "ChecksumError",
    "DatasetNotFoundError",
    "DownloadError",
    "SearchPlace",
    "default_cache_dir",
    "download_file",
    "download_timeout",
    "expected_md5",
    "md5_hex",
    "search_places",
]

log = logging.getLogger("onebit.data")

ENV_DATA_DIR = "ONEBIT_DATA_DIR"
ENV_TIMEOUT = "ONEBIT_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT_S = 5.0

# sub-directory names a dataset may sit in, inside one of the user's places
_SUBDIRS = {
    "fashion_mnist": ("fashion_mnist", "fashion-mnist", "FashionMNIST/raw"),
    "mnist": ("mnist", "MNIST/raw"),
    "cifar10": ("cifar10", "cifar-10"),
}


class DatasetNotFoundError(OnebitError, FileNotFoundError):
    """The dataset's files are in none of the places looked and could not be downloaded."""


class ChecksumError(OnebitError, ValueError):
    """A dataset file exists but its MD5 is not the published one (corrupt or another file)."""


class DownloadError(OnebitError, OSError):
    """One download attempt failed (network, HTTP status, or a checksum mismatch)."""


@dataclass(frozen=True)
class SearchPlace:
    """One directory searched for a dataset, with why it is searched (for error messages)."""

    directory: Path
    origin: str


def default_cache_dir() -> Path:
    """``~/.cache/onebit``: where downloads go when neither data_dir nor ONEBIT_DATA_DIR is set."""
    return Path.home() / ".cache" / "onebit"


def download_timeout() -> float:
    """Seconds a download may wait for the server (``ONEBIT_DOWNLOAD_TIMEOUT``, default 5)."""
    raw = os.environ.get(ENV_TIMEOUT)
    if raw is None or raw == "":
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{ENV_TIMEOUT}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{ENV_TIMEOUT} must be > 0 seconds, got {raw!r}")
    return value


def user_roots(data_dir: str | os.PathLike[str] | None) -> list[SearchPlace]:
    """The user's places in search order (they also decide where downloads go: the first one)."""
    roots = []
    if data_dir is not None:
        roots.append(SearchPlace(Path(data_dir).expanduser(), "data_dir argument / --data-dir"))
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        roots.append(SearchPlace(Path(env).expanduser(), f"${ENV_DATA_DIR}"))
    roots.append(SearchPlace(default_cache_dir(), "default cache"))
    return roots


def search_places(dataset: str,
                  data_dir: str | os.PathLike[str] | None = None) -> list[SearchPlace]:
    """Every directory searched for ``dataset``, in order (see the module docstring)."""
    places: list[SearchPlace] = []
    for root in user_roots(data_dir):
        for sub in _SUBDIRS.get(dataset, (dataset,)):
            places.append(SearchPlace(root.directory / sub, root.origin))
        places.append(SearchPlace(root.directory, root.origin))
    for system_dir in SYSTEM_DIRS.get(dataset, ()):
        places.append(SearchPlace(Path(system_dir), "system package"))
    return places


def download_dir(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where a download of ``dataset`` is written: ``<first user place>/<dataset>``."""
    return user_roots(data_dir)[0].directory / dataset


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def expected_md5(dataset: str, filename: str) -> str:
    """The MD5 the catalogue holds for ``filename`` of ``dataset`` (KeyError names the file)."""
    table = CHECKSUMS.get(dataset, {})
    if filename not in table:
        raise KeyError(f"no checksum known for {dataset}/{filename}; known files: "
                       f"{', '.join(sorted(table))}")
    return table[filename]


def checksum_error(path: Path | str, expected: str, actual: str, what: str = "") -> ChecksumError:
    extra = f" ({what})" if what else ""
    return ChecksumError(
        f"{path}: checksum mismatch{extra}: expected MD5 {expected}, got {actual}. The file is "
        "corrupted, truncated or not the canonical one: delete it and get it again "
        "(it is downloaded anew where the machine has internet).")


def download_file(dataset: str, filename: str, dest_dir: Path, verify) -> Path:
    """Download ``filename`` of ``dataset`` from its mirrors into ``dest_dir``.

    ``verify(tmp_path)`` raises :class:`ChecksumError` for a bad file; the file is renamed into
    place only after it passed. Each mirror gets :func:`download_timeout` seconds to answer.
    Raises :class:`DownloadError` listing every mirror's failure.
    """
    timeout = download_timeout()
    failures = []
    for base in MIRRORS.get(dataset, ()):
        url = base + filename
        try:
            return _download_one(url, dest_dir / filename, verify, timeout)
        except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts, ChecksumError
            failures.append(f"{url}: {exc}")
            log.info("download of %s failed: %s", url, exc)
    if not failures:
        failures.append(f"no download mirror is known for {dataset}")
    raise DownloadError("download failed:\n    " + "\n    ".join(failures))


def _download_one(url: str, target: Path, verify, timeout: float) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        log.info("downloading %s -> %s", url, target)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out, 1 << 20)
        verify(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def missing_data_error(dataset: str, missing: str, places: list[SearchPlace],
                       download_note: str) -> DatasetNotFoundError:
    """The error raised when a dataset file is nowhere: what, where looked, how to get it."""
    info = DATASETS[dataset]
    looked = "\n".join(f"    {p.directory}  ({p.origin})" for p in places)
    return DatasetNotFoundError(
        f"{info.title} ({dataset}) not found: missing {missing}.\n"
        f"  Looked in:\n{looked}\n"
        f"  {download_note}\n"
        f"  To get it: {info.how_to_get}; then point onebit at the directory with data_dir=... "
        f"(CLI: --data-dir DIR) or the environment variable {ENV_DATA_DIR}=DIR, or put the files "
        f"in {default_cache_dir() / dataset}.")
