"""Finding, checking and reading the dataset files on disk (or downloading them once).

A dataset is looked for, in order: an explicit ``root=``; ``$CNNBOOK_DATA``; the user's
cache (``~/.cache/cnnbook``); system locations (Debian's ``dataset-fashion-mnist``); and
only then downloaded through torchvision into the cache. Every file is checked before use,
and when nothing is found one error lists every place searched and how to get the data.

The readers return plain arrays: ``images`` as uint8 ``(N, C, H, W)`` and ``labels`` as
int64 ``(N,)``. `cnnbook.data` turns them into loaders.
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:
    from numpy._core.multiarray import _reconstruct as _numpy_reconstruct  # NumPy 2
except ImportError:
    from numpy.core.multiarray import _reconstruct as _numpy_reconstruct  # NumPy 1

from cnnbook.config import cache_dir, data_search_path


class DatasetNotFoundError(FileNotFoundError):
    """No copy of a dataset was found anywhere and it could not be downloaded."""


class DownloadSkipped(Exception):
    """Raised by a ``download`` function that chose not to download (it says why)."""


class CorruptDatasetError(ValueError):
    """A dataset file exists but is truncated, corrupt or of the wrong shape."""


@dataclass(frozen=True)
class Split:
    """One split of a dataset as arrays: uint8 images (N, C, H, W) and int64 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray
    source: Path  # the folder it was read from

    def subset(self, n: int | None, seed: int = 0) -> Split:
        """A copy of a fixed class-balanced subset of ``n`` examples (`balanced_subset`), in
        dataset order; of all of them if ``n`` is None."""
        keep = balanced_subset(self.labels, len(self.labels) if n is None else n, seed)
        return Split(self.images[keep], self.labels[keep], self.source)


def balanced_subset(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of a fixed subset of ``n`` examples with (nearly) equal counts per class.

    The same ``labels``, ``n`` and ``seed`` always give the same indices, in dataset order.
    """
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class, extra = divmod(n, len(classes))
    picked = []
    for k, c in enumerate(classes):
        members = np.flatnonzero(labels == c)
        take = min(len(members), per_class + (k < extra))
        picked.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(picked))


# --------------------------------------------------------------------------- Fashion-MNIST

FASHION_MNIST_DIRS = ("fashion-mnist", "FashionMNIST/raw", ".")  # layouts inside a root
FASHION_MNIST_SYSTEM = Path("/usr/share/datasets/fashion-mnist")  # Debian: dataset-fashion-mnist
# IDX files: name -> (magic number, shape). The magic says "unsigned bytes, k dimensions".
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte": (2051, (60000, 28, 28)),
    "train-labels-idx1-ubyte": (2049, (60000,)),
    "t10k-images-idx3-ubyte": (2051, (10000, 28, 28)),
    "t10k-labels-idx1-ubyte": (2049, (10000,)),
}
FASHION_MNIST_HOW_TO_GET = (
    "  - Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist\n"
    "  - or put the four IDX files (train-images-idx3-ubyte.gz, ...) from\n"
    "    https://github.com/zalandoresearch/fashion-mnist into a folder and set CNNBOOK_DATA to it\n"
    "  - or go online once: cnnbook downloads them into ~/.cache/cnnbook through torchvision"
)


def read_idx(path: Path, magic: int, shape: tuple[int, ...]) -> np.ndarray:
    """Read one IDX file (``.gz`` or uncompressed) and check its header and size."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error, ValueError) as err:
        raise CorruptDatasetError(
            f"Cannot read {path}: {err}. The file is truncated or corrupt; delete it and get it again."
        ) from None
    ndim = len(shape)
    header = 4 + 4 * ndim
    expected_size = header + int(np.prod(shape))
    found_magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    found_shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if found_magic != magic or found_shape != shape or len(raw) != expected_size:
        raise CorruptDatasetError(
            f"{path} is not the expected IDX file: expected magic {magic}, shape {shape} and "
            f"{expected_size:,} bytes, found magic {found_magic}, shape {found_shape} and "
            f"{len(raw):,} bytes. The file is truncated or corrupt; delete it and get it again."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_idx_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def _fashion_mnist_in(folder: Path) -> dict[str, Path] | None:
    files = {name: _find_idx_file(folder, name) for name in FASHION_MNIST_FILES}
    return files if all(files.values()) else None


def _download_fashion_mnist(target: Path) -> None:
    import torchvision

    torchvision.datasets.FashionMNIST(str(target), train=True, download=True)
    torchvision.datasets.FashionMNIST(str(target), train=False, download=True)
    (target / "fashion-mnist").mkdir()
    for gz in (target / "FashionMNIST" / "raw").glob("*.gz"):
        shutil.move(str(gz), target / "fashion-mnist" / gz.name)
    shutil.rmtree(target / "FashionMNIST")


def read_fashion_mnist(
    root: str | os.PathLike | None = None, download: Callable[[Path], None] | None = None
) -> tuple[Split, Split]:
    """Fashion-MNIST as a (train, test) pair of `Split`, found offline first, else downloaded.

    ``download`` fills a folder with the four IDX files; the default uses torchvision.
    """
    places = [p / sub for p in data_search_path(root) for sub in FASHION_MNIST_DIRS]
    places.append(FASHION_MNIST_SYSTEM)
    folder = _first_folder_with(places, _fashion_mnist_in)
    if folder is None:
        searched = [_describe_place(p, [[f"{n}.gz", n] for n in FASHION_MNIST_FILES]) for p in places]
        cache = _download_into_cache(
            "fashion-mnist", download or _download_fashion_mnist, searched, FASHION_MNIST_HOW_TO_GET
        )
        # The download lands in a layout (cache/fashion-mnist/), so search the cache's layouts.
        folder = _first_folder_with([cache / sub for sub in FASHION_MNIST_DIRS], _fashion_mnist_in)
        if folder is None:
            raise DatasetNotFoundError(
                f"The download into {cache} finished without the four Fashion-MNIST files.\n"
                f"Get it with:\n{FASHION_MNIST_HOW_TO_GET}"
            )
    files = _fashion_mnist_in(folder)
    with _how_to_get_on_error(FASHION_MNIST_HOW_TO_GET):
        arrays = {name: read_idx(files[name], *spec) for name, spec in FASHION_MNIST_FILES.items()}
    train = Split(
        arrays["train-images-idx3-ubyte"][:, None], arrays["train-labels-idx1-ubyte"].astype(np.int64), folder
    )
    test = Split(
        arrays["t10k-images-idx3-ubyte"][:, None], arrays["t10k-labels-idx1-ubyte"].astype(np.int64), folder
    )
    return train, test


# -------------------------------------------------------------------------------- CIFAR-10

CIFAR10_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
CIFAR10_TEST = "test_batch"
CIFAR10_PER_BATCH = 10_000
CIFAR10_HOW_TO_GET = (
    "  - put the original Python batches (the folder cifar-10-batches-py from\n"
    "    https://www.cs.toronto.edu/~kriz/cifar.html) into a folder and set CNNBOOK_DATA to it\n"
    "  - or a folder cifar10/ of .npz batches (x: uint8 N x 32 x 32 x 3, y: labels) there\n"
    "  - or go online once: cnnbook downloads it into ~/.cache/cnnbook through torchvision"
)


# The globals an original batch names: numpy's array reconstructor (``numpy.core`` in the
# files, written by NumPy 1 under Python 2; ``numpy._core`` since NumPy 2), and the array and
# dtype classes. Unpickling calls whatever a pickle names, so a plain ``pickle.load`` runs any
# code a planted file asks for; the reader loads these and refuses everything else.
CIFAR10_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
CIFAR10_PICKLE_LAYOUT = (
    "a dict with 'data' (a uint8 array of N rows of 3072 bytes: 1024 red, 1024 green, 1024 blue) "
    "and 'labels' (a list of N ints), besides 'batch_label' and 'filenames'"
)


class _ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle names a global that no CIFAR-10 batch uses; ``args[0]`` is ``module.name``."""


class _CifarBatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 batch, loading only the globals in `CIFAR10_PICKLE_GLOBALS`."""

    def find_class(self, module: str, name: str):
        try:
            return CIFAR10_PICKLE_GLOBALS[module, name]
        except KeyError:
            raise _ForbiddenGlobal(f"{module}.{name}") from None


def _read_cifar_pickle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            # The batches are protocol-2 pickles written by Python 2: latin1 turns its byte
            # strings into str, as NumPy expects for the array's bytes.
            batch = _CifarBatchUnpickler(f, encoding="latin1").load()
    except _ForbiddenGlobal as err:
        raise CorruptDatasetError(
            f"{path} is not a CIFAR-10 batch: unpickling it would call {err.args[0]}, which no "
            "CIFAR-10 batch uses, so it was not loaded (a pickle can run any code it names). "
            "Delete the file and get the dataset again."
        ) from None
    except Exception as err:  # any other unpickling failure means a truncated or corrupt file
        raise CorruptDatasetError(
            f"Cannot read the CIFAR-10 batch {path}: {type(err).__name__}: {err}. The file is "
            "truncated or corrupt; delete it and get it again."
        ) from None
    data, labels = (batch.get("data"), batch.get("labels")) if isinstance(batch, dict) else (None, None)
    rows_of_pixels = isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.shape[1:] == (3072,)
    list_of_ints = isinstance(labels, list) and all(type(y) is int for y in labels)
    if not (rows_of_pixels and list_of_ints):
        raise CorruptDatasetError(
            f"{path} is not a CIFAR-10 batch: expected {CIFAR10_PICKLE_LAYOUT}; found "
            f"{_describe_pickled(batch)}. Delete the file and get the dataset again."
        )
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def _describe_pickled(batch: object) -> str:
    """What a pickled batch holds, in a few words: its type, and for a dict its keys and values."""
    if not isinstance(batch, dict):
        return f"a {type(batch).__name__}"
    parts = []
    for key, value in batch.items():
        if isinstance(value, np.ndarray):
            parts.append(f"{key!r}: {value.dtype} array of shape {value.shape}")
        elif isinstance(value, list):
            kinds = sorted({type(v).__name__ for v in value})
            parts.append(f"{key!r}: list of {len(value)} ({', '.join(kinds) or 'empty'})")
        else:
            parts.append(f"{key!r}: {type(value).__name__}")
    return "a dict with " + ("; ".join(parts) or "no keys")


def _read_cifar_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path) as batch:
            images, labels = batch["x"], batch["y"].astype(np.int64)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise CorruptDatasetError(
            f"Cannot read the CIFAR-10 batch {path}: {type(err).__name__}: {err}. The file is "
            "truncated or corrupt; delete it and get it again."
        ) from None
    if images.dtype != np.uint8 or images.shape[1:] != (32, 32, 3):
        raise CorruptDatasetError(
            f"{path} holds images of shape {images.shape} and dtype {images.dtype}; expected "
            "uint8 of shape (N, 32, 32, 3)."
        )
    return images.transpose(0, 3, 1, 2), labels


CIFAR10_LAYOUTS = {"cifar-10-batches-py": ("", _read_cifar_pickle), "cifar10": (".npz", _read_cifar_npz)}


def _cifar10_in(folder: Path) -> tuple[Path, str, Callable] | None:
    for sub, (suffix, reader) in CIFAR10_LAYOUTS.items():
        names = [*CIFAR10_BATCHES, CIFAR10_TEST]
        if all((folder / sub / f"{n}{suffix}").is_file() for n in names):
            return folder / sub, suffix, reader
    return None


def _download_cifar10(target: Path) -> None:
    import torchvision

    torchvision.datasets.CIFAR10(str(target), train=True, download=True)
    archive = target / "cifar-10-python.tar.gz"
    if archive.exists():
        archive.unlink()


def _read_cifar_batch(path: Path, reader: Callable) -> tuple[np.ndarray, np.ndarray]:
    images, labels = reader(path)
    if images.shape[0] != CIFAR10_PER_BATCH or labels.shape != (CIFAR10_PER_BATCH,):
        raise CorruptDatasetError(
            f"{path} holds {images.shape[0]} images and {labels.shape[0]} labels; every CIFAR-10 "
            f"batch holds {CIFAR10_PER_BATCH}. The file is truncated or not a CIFAR-10 batch."
        )
    if labels.min() < 0 or labels.max() > 9:
        raise CorruptDatasetError(f"{path} has labels outside 0..9: not a CIFAR-10 batch.")
    return images, labels


def read_cifar10(
    root: str | os.PathLike | None = None, download: Callable[[Path], None] | None = None
) -> tuple[Split, Split]:
    """CIFAR-10 as a (train, test) pair of `Split`, found offline first, else downloaded.

    Reads the original pickled batches (``cifar-10-batches-py/``) or ``.npz`` batches
    (``cifar10/``) under each searched folder.
    """
    places = data_search_path(root)
    folder = _first_folder_with(places, _cifar10_in)
    if folder is None:
        searched = [
            _describe_place(p / sub, [[f"{n}{suffix}"] for n in (*CIFAR10_BATCHES, CIFAR10_TEST)])
            for p in places
            for sub, (suffix, _) in CIFAR10_LAYOUTS.items()
        ]
        folder = _download_into_cache("cifar-10", download or _download_cifar10, searched, CIFAR10_HOW_TO_GET)
        if _cifar10_in(folder) is None:
            raise DatasetNotFoundError(
                f"The download into {folder} finished without the CIFAR-10 batches.\n"
                f"Get it with:\n{CIFAR10_HOW_TO_GET}"
            )
    batch_dir, suffix, reader = _cifar10_in(folder)
    with _how_to_get_on_error(CIFAR10_HOW_TO_GET):
        train = [_read_cifar_batch(batch_dir / f"{n}{suffix}", reader) for n in CIFAR10_BATCHES]
        test_images, test_labels = _read_cifar_batch(batch_dir / f"{CIFAR10_TEST}{suffix}", reader)
    train_split = Split(
        np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), batch_dir
    )
    return train_split, Split(test_images, test_labels, batch_dir)


# ----------------------------------------------------------------------------- shared


@contextmanager
def _how_to_get_on_error(how_to_get: str):
    """Add the ways to get a good copy to the message of a `CorruptDatasetError` raised inside."""
    try:
        yield
    except CorruptDatasetError as err:
        raise CorruptDatasetError(f"{err}\nGet a good copy with:\n{how_to_get}") from None


def _first_folder_with(places: list[Path], finder: Callable) -> Path | None:
    for place in places:
        if place.is_dir() and finder(place) is not None:
            return place
    return None


def _describe_place(folder: Path, files: list[list[str]]) -> str:
    """The folder, plus the files it lacks when it holds some but not all of a dataset.

    ``files`` lists, per file, the names it may have (e.g. with or without ``.gz``).
    """
    missing = [names[0] for names in files if not any((folder / n).is_file() for n in names)]
    if 0 < len(missing) < len(files):
        return f"{folder} (incomplete: missing {', '.join(missing)})"
    return str(folder)


def _download_into_cache(
    name: str, download: Callable[[Path], None], searched: list[str], how_to_get: str
) -> Path:
    """Download into a temporary folder inside the cache; move it in only when complete.

    ``download`` fills the folder with the layout a search root has (e.g. ``fashion-mnist/``),
    so later searches find the files in the cache. Returns the cache folder.
    """
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-download-", dir=cache))
    try:
        download(staging)
        for item in staging.iterdir():
            target = cache / item.name
            if target.is_dir():
                shutil.rmtree(target)
            item.rename(target)
    except Exception as err:
        looked = "\n".join(f"  - {p}" for p in searched)
        why = (
            f"did not download it ({err})"
            if isinstance(err, DownloadSkipped)
            else f"the download failed ({type(err).__name__}: {err})"
        )
        raise DatasetNotFoundError(
            f"{name} not found. Looked in:\n{looked}\nand {why}.\nGet it with:\n{how_to_get}"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return cache
