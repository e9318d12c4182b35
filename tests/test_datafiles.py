"""cnnbook.datafiles: finding, checking and reading the dataset files (or downloading them once)."""

import gzip
import io
import os
import pickle
import pickletools
import re
import shlex
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnbook.datafiles
from cnnbook import CorruptDatasetError, DatasetNotFoundError, read_cifar10, read_fashion_mnist
from cnnbook.config import cache_dir
from cnnbook.datafiles import (
    CIFAR10_BATCHES,
    CIFAR10_HOW_TO_GET,
    CIFAR10_PICKLE_LAYOUT,
    FASHION_MNIST_FILES,
    FASHION_MNIST_HOW_TO_GET,
    FASHION_MNIST_SYSTEM,
)

# ----------------------------------------------------------------------- Fashion-MNIST


@pytest.fixture
def copy_fashion_mnist(fashion_mnist_folder):
    """``copy_fashion_mnist(folder, compressed=True)``: put the four real IDX files into
    ``folder``, as shipped (.gz) or uncompressed, and return ``folder``."""

    def copy(folder: Path, compressed: bool = True) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name in FASHION_MNIST_FILES:
            source = fashion_mnist_folder / f"{name}.gz"
            if compressed:
                shutil.copy(source, folder / source.name)
            else:
                (folder / name).write_bytes(gzip.decompress(source.read_bytes()))
        return folder

    return copy


def cut_file(path: Path, keep: int) -> None:
    """Truncate ``path`` to its first ``keep`` bytes, like an interrupted copy."""
    path.write_bytes(path.read_bytes()[:keep])


def assert_same_splits(found, expected) -> None:
    for a, b in zip(found, expected, strict=True):
        assert np.array_equal(a.images, b.images)  # much faster than np.testing on 150 MB
        assert np.array_equal(a.labels, b.labels)


def test_fashion_mnist_is_found_in_the_system_folder(fashion_mnist_folder, monkeypatch):
    assert FASHION_MNIST_SYSTEM == Path("/usr/share/datasets/fashion-mnist")  # Debian's package
    # The tests hide the real system folder; put the test data in its place.
    monkeypatch.setattr(cnnbook.datafiles, "FASHION_MNIST_SYSTEM", fashion_mnist_folder)
    train, test = read_fashion_mnist()
    assert train.source == test.source == fashion_mnist_folder
    assert train.images.shape == (60_000, 1, 28, 28) and train.images.dtype == np.uint8
    assert test.images.shape == (10_000, 1, 28, 28) and test.images.dtype == np.uint8
    assert train.labels.dtype == test.labels.dtype == np.int64
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert train.images.max() == 255 and train.images.min() == 0


def test_fashion_mnist_in_torchvisions_layout(tmp_path, fashion_mnist, copy_fashion_mnist):
    raw = copy_fashion_mnist(tmp_path / "FashionMNIST" / "raw", compressed=False)
    found = read_fashion_mnist(root=tmp_path)
    assert found[0].source == raw
    assert_same_splits(found, fashion_mnist)


def test_fashion_mnist_in_a_fashion_mnist_folder_of_gz_files(tmp_path, fashion_mnist, copy_fashion_mnist):
    folder = copy_fashion_mnist(tmp_path / "fashion-mnist")
    found = read_fashion_mnist(root=tmp_path)
    assert found[0].source == folder
    assert_same_splits(found, fashion_mnist)


def test_fashion_mnist_found_through_cnnbook_data(tmp_path, monkeypatch, copy_fashion_mnist):
    folder = copy_fashion_mnist(tmp_path / "fashion-mnist")
    monkeypatch.setenv("CNNBOOK_DATA", str(tmp_path))
    train, _ = read_fashion_mnist()
    assert train.source == folder


def test_truncated_gz_file_is_reported_by_name(tmp_path, copy_fashion_mnist):
    folder = copy_fashion_mnist(tmp_path / "fashion-mnist")
    broken = folder / "train-images-idx3-ubyte.gz"
    cut_file(broken, 100_000)
    with pytest.raises(CorruptDatasetError) as err:
        read_fashion_mnist(root=tmp_path)
    assert f"Cannot read {broken}" in str(err.value)
    assert "truncated or corrupt; delete it and get it again" in str(err.value)
    assert str(err.value).endswith(f"Get a good copy with:\n{FASHION_MNIST_HOW_TO_GET}")


def test_gz_file_with_damaged_bytes_is_reported_by_name(tmp_path, copy_fashion_mnist):
    folder = copy_fashion_mnist(tmp_path / "fashion-mnist")
    broken = folder / "train-labels-idx1-ubyte.gz"
    data = bytearray(broken.read_bytes())
    data[100:200] = bytes(b ^ 0xFF for b in data[100:200])  # a damaged stretch of the deflate stream
    broken.write_bytes(bytes(data))
    with pytest.raises(CorruptDatasetError, match="train-labels-idx1-ubyte.gz"):
        read_fashion_mnist(root=tmp_path)


def test_truncated_uncompressed_idx_file_says_what_was_expected(tmp_path, copy_fashion_mnist):
    raw = copy_fashion_mnist(tmp_path / "FashionMNIST" / "raw", compressed=False)
    broken = raw / "t10k-labels-idx1-ubyte"
    cut_file(broken, 5_008)
    with pytest.raises(CorruptDatasetError) as err:
        read_fashion_mnist(root=tmp_path)
    assert str(err.value) == (
        f"{broken} is not the expected IDX file: expected magic 2049, shape (10000,) and 10,008 "
        "bytes, found magic 2049, shape (10000,) and 5,008 bytes. The file is truncated or "
        f"corrupt; delete it and get it again.\nGet a good copy with:\n{FASHION_MNIST_HOW_TO_GET}"
    )


def test_labels_file_in_place_of_images_is_refused(tmp_path, copy_fashion_mnist):
    raw = copy_fashion_mnist(tmp_path / "FashionMNIST" / "raw", compressed=False)
    shutil.copy(raw / "t10k-labels-idx1-ubyte", raw / "t10k-images-idx3-ubyte")
    with pytest.raises(CorruptDatasetError, match=r"t10k-images-idx3-ubyte is not .* found magic 2049"):
        read_fashion_mnist(root=tmp_path)


def test_nothing_found_and_a_failed_download_give_one_helpful_error(tmp_path, monkeypatch):
    monkeypatch.setattr(cnnbook.datafiles, "FASHION_MNIST_SYSTEM", tmp_path / "not-installed")
    monkeypatch.setenv("CNNBOOK_DATA", str(tmp_path / "my-data"))
    root = tmp_path / "explicit"

    def failing_download(target: Path) -> None:
        (target / "fashion-mnist").mkdir()
        (target / "fashion-mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08 half a file")
        raise ConnectionError("no internet")

    with pytest.raises(DatasetNotFoundError) as err:
        read_fashion_mnist(root=root, download=failing_download)

    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert err.value.__cause__ is None and err.value.__suppress_context__  # one error, no chain
    assert message.startswith("fashion-mnist not found. Looked in:\n")
    for base in (root, tmp_path / "my-data", cache_dir()):
        for place in (base / "fashion-mnist", base / "FashionMNIST" / "raw", base):
            assert f"\n  - {place}\n" in message
    assert f"\n  - {tmp_path / 'not-installed'}\n" in message
    assert "the download failed (ConnectionError: no internet)" in message
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert "set CNNBOOK_DATA" in message
    # Nothing half-downloaded stays behind for the next search to trip over.
    assert list(cache_dir().rglob("*")) == []


def test_incomplete_folder_is_named_with_the_missing_file(tmp_path, monkeypatch, copy_fashion_mnist):
    monkeypatch.setattr(cnnbook.datafiles, "FASHION_MNIST_SYSTEM", tmp_path / "not-installed")
    folder = copy_fashion_mnist(tmp_path / "fashion-mnist")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()

    def offline(target):
        raise OSError("offline")

    with pytest.raises(DatasetNotFoundError) as err:
        read_fashion_mnist(root=tmp_path, download=offline)
    assert f"{folder} (incomplete: missing t10k-labels-idx1-ubyte.gz)" in str(err.value)


def test_a_download_lands_in_the_cache_and_is_found_next_time(
    tmp_path, monkeypatch, fashion_mnist, copy_fashion_mnist
):
    monkeypatch.setattr(cnnbook.datafiles, "FASHION_MNIST_SYSTEM", tmp_path / "not-installed")
    downloads = []

    def fake_download(target: Path) -> None:
        downloads.append(target)
        copy_fashion_mnist(target / "fashion-mnist")

    found = read_fashion_mnist(download=fake_download)
    assert len(downloads) == 1
    assert downloads[0].parent == cache_dir()  # staged inside the cache, then moved in place
    assert found[0].source == cache_dir() / "fashion-mnist"
    assert_same_splits(found, fashion_mnist)
    assert sorted(p.name for p in cache_dir().iterdir()) == ["fashion-mnist"]

    def must_not_download(target):
        raise AssertionError("downloaded again although the cache has the files")

    again = read_fashion_mnist(download=must_not_download)
    assert again[0].source == cache_dir() / "fashion-mnist"


def test_a_download_without_the_files_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(cnnbook.datafiles, "FASHION_MNIST_SYSTEM", tmp_path / "not-installed")
    with pytest.raises(DatasetNotFoundError, match="finished without the four Fashion-MNIST files"):
        read_fashion_mnist(download=lambda target: (target / "README").write_text("oops"))


# ------------------------------------------------------------- tests run offline (conftest.py)


@pytest.mark.parametrize("reader", [read_fashion_mnist, read_cifar10], ids=["fashion-mnist", "cifar10"])
def test_a_real_download_in_a_test_fails_that_test(request, tmp_path, reader):
    # cnnbook turns a failed download into DatasetNotFoundError; the test's failure gets through.
    with pytest.raises(pytest.fail.Exception, match=f"{re.escape(request.node.nodeid)} tried to download"):
        reader(root=tmp_path)


def test_a_download_through_torchvision_fails_the_test(tmp_path):
    import torchvision

    with pytest.raises(pytest.fail.Exception, match="tried to download through torchvision"):
        torchvision.datasets.FashionMNIST(str(tmp_path), download=True)


def test_connections_to_other_machines_fail_the_test_and_loopback_works():
    with pytest.raises(pytest.fail.Exception, match=r"tried to connect to \('192.0.2.1', 80\)"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)  # TEST-NET-1: never routed
    with socket.create_server(("127.0.0.1", 0)) as server:
        socket.create_connection(server.getsockname(), timeout=1).close()


# ---------------------------------------------------------------------------- CIFAR-10


def cifar10_folder(tmp_path: Path, cifar10_root: Path, replace: dict[str, object]) -> Path:
    """A ``cifar10/`` folder linking to the real batches, except ``replace`` (name -> bytes or None)."""
    folder = tmp_path / "cifar10"
    folder.mkdir()
    for name in (*CIFAR10_BATCHES, "test_batch"):
        file = f"{name}.npz"
        if name not in replace:
            os.symlink(cifar10_root / "cifar10" / file, folder / file)
        elif replace[name] is not None:
            (folder / file).write_bytes(replace[name])
    return folder


def test_cifar10_from_npz_batches(cifar10, cifar10_root):
    train, test = cifar10
    assert train.source == test.source == cifar10_root / "cifar10"
    assert train.images.shape == (50_000, 3, 32, 32) and train.images.dtype == np.uint8
    assert test.images.shape == (10_000, 3, 32, 32) and test.images.dtype == np.uint8
    assert train.labels.dtype == np.int64
    assert np.bincount(train.labels).tolist() == [5000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    with np.load(cifar10_root / "cifar10" / "data_batch_2.npz") as batch:  # channels first, in order
        np.testing.assert_array_equal(train.images[10_000], batch["x"][0].transpose(2, 0, 1))
        assert train.labels[10_000] == batch["y"][0]


class Python2Pickler(pickle._Pickler):
    """Writes protocol 2 as Python 2's cPickle wrote the original CIFAR-10 batches.

    Python 2's ``str`` was bytes, written as SHORT_BINSTRING/BINSTRING (Python 3 writes
    ``str`` as BINUNICODE and ``bytes`` as a call to ``_codecs.encode``), and NumPy 1 named
    its array reconstructor ``numpy.core.multiarray._reconstruct``.
    """

    dispatch = pickle._Pickler.dispatch.copy()
    numpy_reconstruct = np.zeros(0, np.uint8).__reduce__()[0]  # what NumPy pickles arrays with

    def save_python2_str(self, obj: str | bytes) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = dispatch[bytes] = save_python2_str

    def save_global(self, obj, name=None) -> None:
        if obj is self.numpy_reconstruct:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def python2_pickle(obj) -> bytes:
    f = io.BytesIO()
    Python2Pickler(f, protocol=2).dump(obj)
    return f.getvalue()


def original_batch(images: np.ndarray, labels: np.ndarray, batch_label: str) -> dict:
    """A batch laid out as the original files: rows of 3072 bytes (1024 red, 1024 green, 1024 blue)."""
    return {
        "batch_label": batch_label,
        "labels": labels.tolist(),
        "data": images.reshape(len(images), 3072),
        "filenames": [f"image_{i:05d}.png" for i in range(len(images))],
    }


def pickled_cifar10_folder(root: Path, first_batch: bytes) -> Path:
    """A ``cifar-10-batches-py/`` whose ``data_batch_1`` is ``first_batch``; the rest link to it."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "data_batch_1").write_bytes(first_batch)
    for name in (*CIFAR10_BATCHES[1:], "test_batch"):
        os.symlink(folder / "data_batch_1", folder / name)
    return folder


def test_cifar10_original_pickled_batches_read_identically(tmp_path, cifar10):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    train, test = cifar10
    batches = [*zip(np.split(train.images, 5), np.split(train.labels, 5), strict=True)]
    batches.append((test.images, test.labels))
    batch_labels = [*(f"training batch {i} of 5" for i in range(1, 6)), "testing batch 1 of 1"]
    for name, (images, labels), batch_label in zip(
        [*CIFAR10_BATCHES, "test_batch"], batches, batch_labels, strict=True
    ):
        (folder / name).write_bytes(python2_pickle(original_batch(images, labels, batch_label)))
    # The bytes the original data_batch_1 starts with (Python 2 numbered its memo from 1, not 0).
    first = (folder / "data_batch_1").read_bytes()
    assert first.startswith(b"\x80\x02}q\x00(U\x0bbatch_labelq\x01U\x15training batch 1 of 5q\x02")
    names = {arg for op, arg, _ in pickletools.genops(first) if op.name == "GLOBAL"}
    assert names == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    found = read_cifar10(root=tmp_path)
    assert found[0].source == folder
    assert_same_splits(found, cifar10)


def test_pickled_batch_written_by_python3_and_numpy2_reads_too(tmp_path, cifar10):
    test = cifar10[1]
    batch = original_batch(test.images, test.labels, "testing batch 1 of 1")
    written = pickle.dumps(batch, protocol=4)
    assert b"numpy._core.multiarray" in written  # NumPy 2's name for the reconstructor
    pickled_cifar10_folder(tmp_path, written)
    found_test = read_cifar10(root=tmp_path)[1]
    assert np.array_equal(found_test.images, test.images)
    assert np.array_equal(found_test.labels, test.labels)


def test_truncated_npz_batch_is_reported_by_name(tmp_path, cifar10_root):
    truncated = (cifar10_root / "cifar10" / "data_batch_1.npz").read_bytes()[:100_000]
    folder = cifar10_folder(tmp_path, cifar10_root, {"data_batch_1": truncated})
    with pytest.raises(CorruptDatasetError) as err:
        read_cifar10(root=tmp_path)
    assert f"Cannot read the CIFAR-10 batch {folder / 'data_batch_1.npz'}: BadZipFile" in str(err.value)
    assert str(err.value).endswith(f"Get a good copy with:\n{CIFAR10_HOW_TO_GET}"), "and the ways to get it"


def _npz_bytes(tmp_path: Path, **arrays) -> bytes:
    np.savez(tmp_path / "made.npz", **arrays)
    return (tmp_path / "made.npz").read_bytes()


def test_npz_batch_of_the_wrong_shape_is_refused(tmp_path, cifar10_root):
    wrong = _npz_bytes(tmp_path, x=np.zeros((10_000, 28, 28), np.uint8), y=np.zeros(10_000, np.int64))
    folder = cifar10_folder(tmp_path, cifar10_root, {"data_batch_1": wrong})
    with pytest.raises(CorruptDatasetError) as err:
        read_cifar10(root=tmp_path)
    assert str(err.value).startswith(
        f"{folder / 'data_batch_1.npz'} holds images of shape (10000, 28, 28) and dtype uint8; "
        "expected uint8 of shape (N, 32, 32, 3).\nGet a good copy with:\n"
    )
    assert "CNNBOOK_DATA" in str(err.value) and "torchvision" in str(err.value)


def test_npz_batch_with_too_few_images_is_refused(tmp_path, cifar10_root):
    short = _npz_bytes(tmp_path, x=np.zeros((5_000, 32, 32, 3), np.uint8), y=np.zeros(5_000, np.int64))
    folder = cifar10_folder(tmp_path, cifar10_root, {"data_batch_1": short})
    with pytest.raises(CorruptDatasetError) as err:
        read_cifar10(root=tmp_path)
    assert str(err.value).startswith(
        f"{folder / 'data_batch_1.npz'} holds 5000 images and 5000 labels; every CIFAR-10 batch holds 10000."
    )


def test_truncated_pickled_batch_is_reported_by_name(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batch = {"data": np.zeros((10_000, 3072), np.uint8), "labels": [0] * 10_000}
    for name in (*CIFAR10_BATCHES, "test_batch"):
        (folder / name).write_bytes(pickle.dumps(batch)[:1000])
    with pytest.raises(CorruptDatasetError, match=r"Cannot read the CIFAR-10 batch .*data_batch_1: "):
        read_cifar10(root=tmp_path)


def test_missing_batch_file_is_named(tmp_path, cifar10_root):
    folder = cifar10_folder(tmp_path, cifar10_root, {"data_batch_5": None})

    def offline(target):
        raise OSError("offline")

    with pytest.raises(DatasetNotFoundError) as err:
        read_cifar10(root=tmp_path, download=offline)
    message = str(err.value)
    assert f"{folder} (incomplete: missing data_batch_5.npz)" in message
    assert "cifar-10-batches-py" in message  # the other layout was looked for too
    assert "the download failed (OSError: offline)" in message
    assert list(cache_dir().rglob("*")) == []


# --------------------------------------------------- CIFAR-10 pickles that are not batches


class RunsCommand:
    """Unpickles into a call of ``os.system(command)``: what a planted "batch" can do."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


SYSTEM = f"{os.system.__module__}.system"  # posix.system


def planted_batches(tmp_path: Path, canary: Path) -> dict[str, bytes]:
    """Pickles that run ``touch canary`` when loaded: inside a batch laid out as the original
    (Python 2, protocol 2), and bare with protocol 5 (which names globals differently)."""
    command = f"touch {shlex.quote(str(canary))}"
    disguised = original_batch(np.zeros((10, 3, 32, 32), np.uint8), np.zeros(10, np.int64), "batch 1")
    disguised["filenames"] = RunsCommand(command)
    return {
        "inside an original batch": python2_pickle(disguised),
        "protocol 5": pickle.dumps(RunsCommand(command), protocol=5),
    }


@pytest.mark.parametrize("kind", ["inside an original batch", "protocol 5"])
def test_pickled_batch_that_would_run_a_command_is_refused_without_running_it(tmp_path, kind):
    canary = tmp_path / "CANARY"
    planted = planted_batches(tmp_path, canary)[kind]
    pickle.loads(planted, encoding="latin1")  # the control: a plain pickle.load runs the command
    assert canary.exists(), "the planted pickle should run its command when loaded with pickle"
    canary.unlink()

    folder = pickled_cifar10_folder(tmp_path / "data", planted)
    with pytest.raises(CorruptDatasetError) as err:
        read_cifar10(root=tmp_path / "data")

    assert not canary.exists(), "reading the batches ran the command in the pickle"
    assert str(err.value) == (
        f"{folder / 'data_batch_1'} is not a CIFAR-10 batch: unpickling it would call {SYSTEM}, which "
        "no CIFAR-10 batch uses, so it was not loaded (a pickle can run any code it names). Delete the "
        f"file and get the dataset again.\nGet a good copy with:\n{CIFAR10_HOW_TO_GET}"
    )


def test_cnnbook_data_command_does_not_run_a_planted_batch(tmp_path):
    canary = tmp_path / "CANARY"
    folder = pickled_cifar10_folder(tmp_path / "data", planted_batches(tmp_path, canary)["protocol 5"])
    result = subprocess.run(
        [sys.executable, "-m", "cnnbook", "data"],
        cwd=tmp_path,
        env={**os.environ, "CNNBOOK_DATA": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert not canary.exists(), "python -m cnnbook data ran the command in a planted pickle"
    assert result.returncode != 0
    assert f"{folder / 'data_batch_1'} is not a CIFAR-10 batch: unpickling it would call {SYSTEM}" in output
    assert "Delete the file and get the dataset again" in output
    assert "Traceback" not in output, "a bad file is a message, not a crash"


ROWS = np.zeros((10, 3072), np.uint8)  # ten black images in the original layout


@pytest.mark.parametrize(
    "batch, found",
    [
        ({"data": ROWS.astype(np.float32), "labels": [0] * 10}, "'data': float32 array of shape (10, 3072)"),
        (
            {"data": ROWS.reshape(10, 32, 32, 3), "labels": [0] * 10},
            "'data': uint8 array of shape (10, 32, 32, 3)",
        ),
        ({"data": ROWS, "labels": ["cat"] * 10}, "'labels': list of 10 (str)"),
        ({"data": ROWS, "fine_labels": [0] * 10}, "'fine_labels': list of 10 (int)"),  # CIFAR-100's key
    ],
)
def test_pickled_dict_of_the_wrong_layout_is_refused(tmp_path, batch, found):
    folder = pickled_cifar10_folder(tmp_path, python2_pickle(batch))
    with pytest.raises(CorruptDatasetError) as err:
        read_cifar10(root=tmp_path)
    assert str(err.value).startswith(f"{folder / 'data_batch_1'} is not a CIFAR-10 batch: expected a dict")
    assert found in str(err.value)


def test_pickled_list_is_refused_with_the_layout_expected(tmp_path):
    folder = pickled_cifar10_folder(tmp_path, python2_pickle([np.zeros(3072, np.uint8), 3]))
    with pytest.raises(CorruptDatasetError) as err:
        read_cifar10(root=tmp_path)
    assert str(err.value) == (
        f"{folder / 'data_batch_1'} is not a CIFAR-10 batch: expected {CIFAR10_PICKLE_LAYOUT}; found a "
        f"list. Delete the file and get the dataset again.\nGet a good copy with:\n{CIFAR10_HOW_TO_GET}"
    )


def test_cnnbook_data_says_it_did_not_try_to_download_rather_than_that_a_download_failed(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cnnbook", "data", "--root", str(tmp_path / "nothing")],
        cwd=tmp_path,
        env={**{k: v for k, v in os.environ.items() if k != "CNNBOOK_DATA"}, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "CIFAR-10: cifar-10 not found. Looked in:" in result.stdout
    assert "and did not download it (python -m cnnbook data only looks; add --download" in result.stdout
    assert "failed" not in result.stdout and "Traceback" not in result.stdout + result.stderr
