"""Tests for onebit.data: the IDX format, the dataset loaders (lookup, checksums, download) and
the batch transforms."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import tarfile
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from onebit.data import (
    CHECKSUMS,
    DATASETS,
    MIRRORS,
    ChecksumError,
    DatasetNotFoundError,
    IDXFormatError,
    list_datasets,
    load_dataset,
    read_idx,
    search_places,
    write_idx,
)
from onebit.data import sources
from onebit.data.catalog import SYSTEM_DIRS
from onebit.data.transforms import (
    BatchLoader,
    Compose,
    ImageDataset,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    crop,
    dataset_transforms,
    hflip_where,
    images_to_tensor,
)

DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# IDX format

@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 5), (1, 1, 1, 9), (0, 4), (4, 1, 3)])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, shape, suffix):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    path = tmp_path / f"a{suffix}"
    write_idx(path, array)
    raw = path.read_bytes()
    assert raw.startswith(b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype).newbyteorder("=") and back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable
    with open(path, "rb") as f:  # file objects work too
        np.testing.assert_array_equal(read_idx(f), array)


def test_idx_exact_bytes():
    # int16, shape (1, 2): magic 00 00 0B 02, dims big-endian, then big-endian payload
    buf = io.BytesIO()
    write_idx(buf, np.array([[1, -2]], dtype=np.int16))
    assert buf.getvalue() == (b"\x00\x00\x0b\x02" + b"\x00\x00\x00\x01\x00\x00\x00\x02"
                              + b"\x00\x01\xff\xfe")
    # and a hand-written uint8 file reads back as expected
    data = b"\x00\x00\x08\x02" + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes(range(6))
    np.testing.assert_array_equal(read_idx(io.BytesIO(data)), np.arange(6).reshape(2, 3))


def test_write_idx_rejects_unsupported(tmp_path):
    with pytest.raises(TypeError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "x", np.array(3, dtype=np.uint8))
    assert not (tmp_path / "x").exists()


def _idx_bytes(array) -> bytes:
    buf = io.BytesIO()
    write_idx(buf, array)
    return buf.getvalue()


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b"\x01" + b[1:], "bad IDX magic"),
    (lambda b: b[:2] + b"\x07" + b[3:], "unknown IDX dtype code 0x07"),
    (lambda b: b[:-1], "truncated payload"),
    (lambda b: b + b"\x00", "trailing bytes"),
    (lambda b: b[:6], "truncated IDX header"),
    (lambda b: b[:3], "too short"),
    (lambda b: b[:3] + b"\x00" + b[4:], "0 dimensions"),
])
def test_idx_corruptions_raise_clear_errors(tmp_path, mutate, message):
    good = _idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(mutate(good))
    with pytest.raises(IDXFormatError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    gz = tmp_path / "bad-idx3-ubyte.gz"  # the same corruption inside a valid gzip stream
    gz.write_bytes(gzip.compress(mutate(good)))
    with pytest.raises(IDXFormatError, match=message):
        read_idx(gz)


def test_idx_corrupted_gzip(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(_idx_bytes(np.zeros((50, 50), np.uint8)))[:-12])
    with pytest.raises(IDXFormatError, match="not a valid gzip stream"):
        read_idx(path)


# ---------------------------------------------------------------------------------------------
# dataset loaders on generated files

@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No user data, no system package, no network: every place is under tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("ONEBIT_DATA_DIR", raising=False)
    monkeypatch.delenv("ONEBIT_DOWNLOAD_TIMEOUT", raising=False)
    for name in list(SYSTEM_DIRS):
        monkeypatch.setitem(SYSTEM_DIRS, name, ())
    for name in list(MIRRORS):
        monkeypatch.setitem(MIRRORS, name, ())
    return tmp_path


def make_idx_dataset(directory: Path, monkeypatch, dataset="mnist", seed=0, n=(5, 3), gz=True):
    """Write a small MNIST-like dataset and point the checksum table at it."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    table = {}
    arrays = {}
    for split, count in zip(("train", "test"), n):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        arrays[split] = (images, labels)
        for base, array in zip(DATASETS[dataset].files[split], (images, labels)):
            raw = _idx_bytes(array)
            packed = gzip.compress(raw, mtime=0)
            (directory / (base + (".gz" if gz else ""))).write_bytes(packed if gz else raw)
            table[base], table[base + ".gz"] = md5(raw), md5(packed)
    monkeypatch.setitem(CHECKSUMS, dataset, table)
    return arrays


def test_load_generated_idx(isolated, monkeypatch):
    arrays = make_idx_dataset(isolated / "d", monkeypatch)
    for split in ("train", "test"):
        images, labels = load_dataset("mnist", split, data_dir=isolated / "d", download=False)
        assert images.dtype == np.uint8 and images.shape == (len(arrays[split][0]), 28, 28, 1)
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(images[..., 0], arrays[split][0])
        np.testing.assert_array_equal(labels, arrays[split][1])


def test_load_uncompressed_and_recompressed(isolated, monkeypatch):
    arrays = make_idx_dataset(isolated / "raw", monkeypatch, gz=False)
    images, _ = load_dataset("mnist", "train", data_dir=isolated / "raw")
    np.testing.assert_array_equal(images[..., 0], arrays["train"][0])
    # a re-compressed copy (other gzip bytes, same content) passes on the content checksum
    for f in (isolated / "raw").iterdir():
        (isolated / "re" / f"{f.name}.gz").parent.mkdir(exist_ok=True)
        (isolated / "re" / f"{f.name}.gz").write_bytes(gzip.compress(f.read_bytes(), 1, mtime=9))
    images, _ = load_dataset("mnist", "train", data_dir=isolated / "re")
    np.testing.assert_array_equal(images[..., 0], arrays["train"][0])


@pytest.mark.parametrize("gz", [True, False])
def test_corrupted_file_names_file_and_checksums(isolated, monkeypatch, gz):
    make_idx_dataset(isolated / "d", monkeypatch, gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    path = isolated / "d" / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as info:
        load_dataset("mnist", "train", data_dir=isolated / "d")
    message = str(info.value)
    assert str(path) in message and md5(bytes(data)) in message
    assert CHECKSUMS["mnist"][name] in message


def test_lookup_order(isolated, monkeypatch):
    # four places hold different (valid) data; the checksum table is set to the set the lookup
    # order should pick, so picking any other place fails with a ChecksumError
    sets = {}
    for key, directory in [("arg", isolated / "arg"), ("env", isolated / "env" / "mnist"),
                           ("cache", isolated / "home" / ".cache" / "onebit" / "MNIST" / "raw"),
                           ("system", isolated / "system")]:
        arrays = make_idx_dataset(directory, monkeypatch, seed=len(sets))
        sets[key] = (arrays["test"][1], dict(CHECKSUMS["mnist"]))
    monkeypatch.setitem(SYSTEM_DIRS, "mnist", (str(isolated / "system"),))
    monkeypatch.setenv("ONEBIT_DATA_DIR", str(isolated / "env"))

    def check(expected_key, data_dir=None):
        labels, table = sets[expected_key]
        monkeypatch.setitem(CHECKSUMS, "mnist", table)
        np.testing.assert_array_equal(load_dataset("mnist", "test", data_dir, False)[1], labels)

    check("arg", isolated / "arg")
    check("env")
    monkeypatch.delenv("ONEBIT_DATA_DIR")
    check("cache")
    for p in (isolated / "home" / ".cache").rglob("*.gz"):
        p.unlink()
    check("system")
    with pytest.raises(ChecksumError):  # the control: the table of another set is refused
        monkeypatch.setitem(CHECKSUMS, "mnist", sets["arg"][1])
        load_dataset("mnist", "test", download=False)


def test_search_places_order(isolated, monkeypatch):
    monkeypatch.setenv("ONEBIT_DATA_DIR", "/env/dir")
    monkeypatch.setitem(SYSTEM_DIRS, "fashion_mnist", (str(DEBIAN_FMNIST),))
    places = [str(p.directory) for p in search_places("fashion_mnist", "/arg")]
    home_cache = str(isolated / "home" / ".cache" / "onebit")
    assert places[0] == "/arg/fashion_mnist" and places[3] == "/arg"
    assert places[4] == "/env/dir/fashion_mnist" and places[7] == "/env/dir"
    assert places[8] == f"{home_cache}/fashion_mnist" and places[11] == home_cache
    assert places[-1] == str(DEBIAN_FMNIST)


def test_missing_data_error_message(isolated, monkeypatch):
    monkeypatch.setitem(SYSTEM_DIRS, "fashion_mnist", (str(isolated / "usr-share"),))
    monkeypatch.setenv("ONEBIT_DATA_DIR", str(isolated / "envdir"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion_mnist", "train", data_dir=isolated / "argdir", download=False)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message
    for place in search_places("fashion_mnist", isolated / "argdir"):
        assert str(place.directory) in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "ONEBIT_DATA_DIR" in message and "--data-dir" in message
    assert "download=False" in message
    assert isinstance(info.value, FileNotFoundError)


def test_unknown_name_and_split():
    with pytest.raises(ValueError, match="known datasets: cifar10, fashion_mnist, mnist"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="train, test"):
        load_dataset("mnist", "validation")
    assert list_datasets() == ["cifar10", "fashion_mnist", "mnist"]


# ---------------------------------------------------------------------------------------------
# downloads (file:// mirrors and monkeypatched urlopen; the machine has no internet)

def test_download_from_mirror(isolated, monkeypatch):
    arrays = make_idx_dataset(isolated / "mirror", monkeypatch)
    monkeypatch.setitem(MIRRORS, "mnist", ("http://127.0.0.1:9/nothing/",
                                           (isolated / "mirror").as_uri() + "/"))
    images, labels = load_dataset("mnist", "test", data_dir=isolated / "data")
    np.testing.assert_array_equal(labels, arrays["test"][1])
    got = sorted(p.name for p in (isolated / "data" / "mnist").iterdir())
    assert got == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]  # no temp files
    # the second load finds the downloaded files (the mirror may be gone)
    monkeypatch.setitem(MIRRORS, "mnist", ())
    np.testing.assert_array_equal(load_dataset("mnist", "test", data_dir=isolated / "data")[0],
                                  images)


def test_download_goes_to_cache_without_data_dir(isolated, monkeypatch):
    make_idx_dataset(isolated / "mirror", monkeypatch)
    monkeypatch.setitem(MIRRORS, "mnist", ((isolated / "mirror").as_uri() + "/",))
    load_dataset("mnist", "test")
    cache = isolated / "home" / ".cache" / "onebit"
    assert (cache / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()


def test_download_with_bad_checksum_keeps_nothing(isolated, monkeypatch):
    make_idx_dataset(isolated / "mirror", monkeypatch)
    bad = isolated / "mirror" / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07"))
    monkeypatch.setitem(MIRRORS, "mnist", ((isolated / "mirror").as_uri() + "/",))
    with pytest.raises(DatasetNotFoundError, match="checksum mismatch") as info:
        load_dataset("mnist", "test", data_dir=isolated / "data")
    assert bad.as_uri() in str(info.value)
    assert sorted(p.name for p in (isolated / "data" / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz"]


def test_download_fails_fast_with_timeout(isolated, monkeypatch):
    seen = []

    def fake_urlopen(url, timeout=None):
        seen.append((url, timeout))
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(sources.urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setitem(MIRRORS, "fashion_mnist", ("https://a.example/", "https://b.example/"))
    monkeypatch.setenv("ONEBIT_DOWNLOAD_TIMEOUT", "3.5")
    with pytest.raises(DatasetNotFoundError, match="no route to host"):
        load_dataset("fashion_mnist", "train", data_dir=isolated / "d")
    assert seen == [("https://a.example/train-images-idx3-ubyte.gz", 3.5),
                    ("https://b.example/train-images-idx3-ubyte.gz", 3.5)]
    monkeypatch.setenv("ONEBIT_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="ONEBIT_DOWNLOAD_TIMEOUT"):
        load_dataset("fashion_mnist", "train", data_dir=isolated / "d")


def test_unreachable_mirror_fails_quickly(isolated, monkeypatch):
    monkeypatch.setitem(MIRRORS, "mnist", ("http://127.0.0.1:9/",))  # closed port
    start = time.perf_counter()
    with pytest.raises(DatasetNotFoundError, match="Download failed"):
        load_dataset("mnist", "train", data_dir=isolated / "d")
    assert time.perf_counter() - start < 5


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (generated pickled batches)

def _cifar_batch(rng, n):
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    # like the real (Python 2) files: bytes keys, a uint8 array and a list of labels
    return {b"batch_label": b"x", b"labels": labels, b"data": data, b"filenames": [b"f"] * n}


def make_cifar(directory: Path, monkeypatch, tarball=False, seed=0):
    rng = np.random.default_rng(seed)
    batches = {n: _cifar_batch(rng, 3) for n in DATASETS["cifar10"].files["train"]}
    batches["test_batch"] = _cifar_batch(rng, 4)
    blobs = {name: pickle.dumps(b, protocol=2) for name, b in batches.items()}
    table = {name: md5(blob) for name, blob in blobs.items()}
    if tarball:
        directory.mkdir(parents=True, exist_ok=True)
        with tarfile.open(directory / "cifar-10-python.tar.gz", "w:gz") as tar:
            for name, blob in blobs.items():
                member = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                member.size = len(blob)
                tar.addfile(member, io.BytesIO(blob))
        table["cifar-10-python.tar.gz"] = md5((directory / "cifar-10-python.tar.gz").read_bytes())
    else:
        (directory / "cifar-10-batches-py").mkdir(parents=True)
        for name, blob in blobs.items():
            (directory / "cifar-10-batches-py" / name).write_bytes(blob)
    monkeypatch.setitem(CHECKSUMS, "cifar10", table)
    return batches


@pytest.mark.parametrize("tarball", [False, True])
def test_load_generated_cifar(isolated, monkeypatch, tarball):
    batches = make_cifar(isolated / "c", monkeypatch, tarball=tarball)
    images, labels = load_dataset("cifar10", "train", data_dir=isolated / "c")
    assert images.shape == (15, 32, 32, 3) and images.dtype == np.uint8
    rows = np.concatenate([batches[n][b"data"] for n in DATASETS["cifar10"].files["train"]])
    # pixel (y, x) of channel c is byte c*1024 + y*32 + x of the row
    for n, y, x, c in [(0, 0, 0, 0), (4, 31, 0, 2), (14, 5, 17, 1), (7, 31, 31, 2)]:
        assert images[n, y, x, c] == rows[n, c * 1024 + y * 32 + x]
    np.testing.assert_array_equal(labels, sum((batches[n][b"labels"] for n in
                                              DATASETS["cifar10"].files["train"]), []))
    test_images, test_labels = load_dataset("cifar10", "test", data_dir=isolated / "c")
    assert test_images.shape == (4, 32, 32, 3) and test_labels.dtype == np.int64


@pytest.mark.parametrize("tarball", [False, True])
def test_corrupted_cifar(isolated, monkeypatch, tarball):
    make_cifar(isolated / "c", monkeypatch, tarball=tarball)
    path = (isolated / "c" / "cifar-10-python.tar.gz" if tarball
            else isolated / "c" / "cifar-10-batches-py" / "test_batch")
    data = bytearray(path.read_bytes())
    data[-30] ^= 0x55
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="checksum mismatch") as info:
        load_dataset("cifar10", "test", data_dir=isolated / "c")
    assert str(path) in str(info.value) and md5(bytes(data)) in str(info.value)


def test_cifar_unpickler_refuses_foreign_globals(isolated, monkeypatch):
    make_cifar(isolated / "c", monkeypatch)
    evil = pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [0],
                         "x": subprocess.Popen}, protocol=4)
    (isolated / "c" / "cifar-10-batches-py" / "test_batch").write_bytes(evil)
    monkeypatch.setitem(CHECKSUMS["cifar10"], "test_batch", md5(evil))
    with pytest.raises(ValueError, match="subprocess.Popen"):
        load_dataset("cifar10", "test", data_dir=isolated / "c")


def test_cifar_missing(isolated):
    with pytest.raises(DatasetNotFoundError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", "test", data_dir=isolated / "none", download=False)


# ---------------------------------------------------------------------------------------------
# the real Fashion-MNIST (Debian's package), when installed

@pytest.mark.skipif(not DEBIAN_FMNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("ONEBIT_DATA_DIR", raising=False)
    content = gzip.decompress((DEBIAN_FMNIST / "t10k-labels-idx1-ubyte.gz").read_bytes())
    assert md5(content) == CHECKSUMS["fashion_mnist"]["t10k-labels-idx1-ubyte"]
    images, labels = load_dataset("fashion_mnist", "train", download=False)
    info = DATASETS["fashion_mnist"]
    assert images.shape == (info.num_train, 28, 28, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels), [6000] * 10)
    counts = np.bincount(images.ravel(), minlength=256)  # exact pixel statistics, no big temp
    values = np.arange(256) / 255.0
    mean = (counts * values).sum() / counts.sum()
    std = np.sqrt((counts * (values - mean) ** 2).sum() / counts.sum())
    assert abs(mean - info.mean[0]) < 1e-4 and abs(std - info.std[0]) < 1e-4
    test_images, test_labels = load_dataset("fashion-mnist", "test", download=False)
    assert test_images.shape == (info.num_test, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(test_labels), [1000] * 10)


def test_data_package_imports_without_torch():
    code = ("import sys; import onebit.data as d; d.load_dataset, d.read_idx, d.DATASETS; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# transforms

def test_crop_matches_direct_indexing():
    x = torch.randn(5, 3, 8, 7)
    top, left = torch.tensor([0, 4, 2, 6, 1]), torch.tensor([0, 3, 4, 1, 2])
    out = crop(x, top, left, (6, 5), padding=(2, 1), fill=-9.0)
    padded = np.full((5, 3, 12, 9), -9.0, np.float32)
    padded[:, :, 2:10, 1:8] = x.numpy()
    for n in range(5):
        t, l = int(top[n]), int(left[n])
        np.testing.assert_array_equal(out[n].numpy(), padded[n, :, t:t + 6, l:l + 5])
    with pytest.raises(ValueError, match="out of range"):
        crop(x, top + 1, left, (6, 5), padding=(2, 1))


def test_random_crop_covers_every_offset():
    x = torch.arange(2 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) + 1
    x = x.repeat(200, 1, 1, 1)
    t = RandomCrop(6, padding=2, generator=torch.Generator().manual_seed(0))
    out = t(x)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    seen = set()
    for n in range(out.shape[0]):
        hits = [(a, b) for a in range(5) for b in range(5)
                if torch.equal(out[n], padded[n, :, a:a + 6, b:b + 6])]
        assert len(hits) == 1
        seen.add(hits[0])
    assert seen == {(a, b) for a in range(5) for b in range(5)}


def test_hflip():
    x = torch.randn(4, 2, 3, 5)
    mask = torch.tensor([True, False, True, False])
    out = hflip_where(x, mask)
    for n in range(4):
        expect = x[n].numpy()[:, :, ::-1] if mask[n] else x[n].numpy()
        np.testing.assert_array_equal(out[n].numpy(), expect)
    assert torch.equal(RandomHorizontalFlip(p=0.0)(x), x)
    assert torch.equal(RandomHorizontalFlip(p=1.0)(x), x.flip(3))
    flips = RandomHorizontalFlip(generator=torch.Generator().manual_seed(1)).sample_mask(4000)
    assert 0.45 < flips.float().mean().item() < 0.55
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        RandomHorizontalFlip(p=1.5)


def test_normalize_and_compose():
    x = torch.rand(3, 3, 4, 4)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    out = Normalize(mean, std)(x)
    for c in range(3):
        np.testing.assert_allclose(out[:, c].numpy(), (x[:, c].numpy() - mean[c]) / std[c],
                                   rtol=1e-6, atol=1e-6)
    composed = Compose([lambda t: t * 2, Normalize((1.0,), (4.0,))])(x)
    torch.testing.assert_close(composed, (x * 2 - 1) / 4)
    with pytest.raises(ValueError, match="3 channels"):
        Normalize((0.1, 0.2), (1.0, 1.0))(x)
    with pytest.raises(TypeError, match="float"):
        Normalize((0.1,), (1.0,))(torch.zeros(1, 1, 2, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        Normalize((0.1,), (1.0,))(torch.zeros(1, 2, 2))


def test_dataset_transforms():
    cifar = dataset_transforms("cifar10", train=True)
    assert [type(t) for t in cifar.transforms] == [RandomCrop, RandomHorizontalFlip, Normalize]
    assert [type(t) for t in dataset_transforms("cifar10", train=False).transforms] == [Normalize]
    fm = dataset_transforms("fashion_mnist", train=True)
    assert [type(t) for t in fm.transforms] == [Normalize]
    assert fm.transforms[0].mean == DATASETS["fashion_mnist"].mean


def test_images_to_tensor_and_dataset():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    labels = np.array([3, 1, 0, 9])
    t = images_to_tensor(images)
    assert t.shape == (4, 3, 5, 6) and t.dtype == torch.float32
    assert t[2, 1, 4, 5].item() == pytest.approx(images[2, 4, 5, 1] / 255.0)
    ds = ImageDataset(images, labels)
    x, y = ds[2]
    torch.testing.assert_close(x, t[2])
    assert y.item() == 0 and len(ds) == 4
    with pytest.raises(ValueError, match="uint8"):
        images_to_tensor(images.astype(np.float32))


def test_batch_loader_epoch():
    n = 10
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1).repeat(2, axis=1)
    labels = np.arange(n)
    loader = BatchLoader(images, labels, 4, shuffle=True, transform=lambda x: x * 255.0,
                         generator=torch.Generator().manual_seed(0))
    assert len(loader) == 3
    seen = []
    for x, y in loader:
        assert x.shape[1:] == (1, 2, 1) and x.dtype == torch.float32
        torch.testing.assert_close(x[:, 0, 0, 0], y.float())  # image n holds the value n
        seen += y.tolist()
    assert sorted(seen) == list(range(n)) and seen != list(range(n))
    dropped = BatchLoader(images, labels, 4, drop_last=True)
    assert len(dropped) == 2 and [len(y) for _, y in dropped] == [4, 4]
    with pytest.raises(ValueError, match="batch_size"):
        BatchLoader(images, labels, 0)
