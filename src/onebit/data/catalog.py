"""What onebit knows about each dataset: shapes, classes, normalisation, files, checksums, mirrors.

Checksums are MD5 (the values the datasets' publishers give). Every file has two entries:

* ``<name>.gz`` (or the tarball): the MD5 of the canonical download, as published
  (Fashion-MNIST: github.com/zalandoresearch/fashion-mnist#get-the-data; MNIST: the values
  torchvision checks; CIFAR-10: www.cs.toronto.edu/~kriz/cifar.html, also torchvision's);
* ``<name>`` (or ``cifar-10-batches-py/<batch>``): the MD5 of the decompressed content. A copy that
  was re-compressed (Debian's ``dataset-fashion-mnist`` package ships such ``.gz`` files, whose
  bytes differ from the canonical archive while the content is identical) is accepted when its
  content matches. The content values for Fashion-MNIST were checked against Debian's copy on the
  development machine and agree with those published by several independent loaders.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CHECKSUMS", "DATASETS", "DatasetInfo", "MIRRORS", "SYSTEM_DIRS", "list_datasets"]


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset as :func:`onebit.data.load_dataset` returns it.

    ``image_shape`` is ``(H, W, C)`` like the returned uint8 arrays; ``input_size`` is the
    ``(C, H, W)`` a model sees. ``mean`` / ``std`` are per channel, of the training images scaled
    to [0, 1] (population statistics over all training pixels), for ``(x - mean) / std``.
    """

    name: str
    title: str
    image_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_train: int
    num_test: int
    homepage: str
    #: split -> the files it needs (IDX base names without ``.gz``; CIFAR batch names)
    files: dict[str, tuple[str, ...]]
    #: how a user without internet gets the data (used in the missing-data error)
    how_to_get: str

    @property
    def input_size(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image as a model input."""
        h, w, c = self.image_shape
        return (c, h, w)

    @property
    def in_channels(self) -> int:
        return self.image_shape[2]


_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

DATASETS: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist",
        title="Fashion-MNIST",
        image_shape=(28, 28, 1),
        num_classes=10,
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                     "Sneaker", "Bag", "Ankle boot"),
        mean=(0.2860,),
        std=(0.3530,),
        num_train=60000,
        num_test=10000,
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        files=_IDX_FILES,
        how_to_get="on Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist` (installs "
                   "/usr/share/datasets/fashion-mnist/); or download the four "
                   "*-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist",
    ),
    "mnist": DatasetInfo(
        name="mnist",
        title="MNIST",
        image_shape=(28, 28, 1),
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)),
        mean=(0.1307,),
        std=(0.3081,),
        num_train=60000,
        num_test=10000,
        homepage="http://yann.lecun.com/exdb/mnist/",
        files=_IDX_FILES,
        how_to_get="download the four *-ubyte.gz files from "
                   "https://ossci-datasets.s3.amazonaws.com/mnist/",
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        title="CIFAR-10",
        image_shape=(32, 32, 3),
        num_classes=10,
        class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                     "ship", "truck"),
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        num_train=50000,
        num_test=10000,
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        files={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        how_to_get="download cifar-10-python.tar.gz (the 'CIFAR-10 python version') from "
                   "https://www.cs.toronto.edu/~kriz/cifar.html; the tarball or its extracted "
                   "cifar-10-batches-py/ directory both work",
    ),
}

#: dataset -> file name -> MD5 (see the module docstring).
CHECKSUMS: dict[str, dict[str, str]] = {
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "cifar10": {
        "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
    },
}

#: dataset -> base URLs tried in order; a file's URL is ``base + file name``.
MIRRORS: dict[str, tuple[str, ...]] = {
    "fashion_mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}

#: dataset -> directories a system package installs it to (searched after the user's places).
SYSTEM_DIRS: dict[str, tuple[str, ...]] = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
}

_ALIASES = {"fashionmnist": "fashion_mnist", "fmnist": "fashion_mnist", "cifar_10": "cifar10"}


def canonical_name(name: str) -> str:
    """``"Fashion-MNIST"`` -> ``"fashion_mnist"``; raises ``ValueError`` listing known names."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(list_datasets())}")
    return key


def list_datasets() -> list[str]:
    """Names accepted by :func:`onebit.data.load_dataset`, sorted."""
    return sorted(DATASETS)
