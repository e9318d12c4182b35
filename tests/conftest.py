"""Shared fixtures: where the test data is, real data subsets read once, and an isolated,
offline environment for every test.

**Data.** The fixtures below are the only way a test reaches a dataset. Before any test
runs, `TEST_DATA` looks for:

- Fashion-MNIST's four ``.gz`` files in ``$CNNBOOK_DATA/fashion-mnist`` (copied there by a
  user), ``../shared/data/fashion-mnist``, or Debian's ``/usr/share/datasets/fashion-mnist``
  (``apt-get install dataset-fashion-mnist``);
- CIFAR-10's ``.npz`` batches in ``$CNNBOOK_DATA/cifar10`` or ``../shared/data/cifar10``
  (CI sets ``CNNBOOK_DATA=../shared/data``).

Without Fashion-MNIST the tests that need it fail, saying how to get it; without CIFAR-10
they are skipped, saying how to get it (chapters/conftest.py does the same for the chapters).

**Isolation.** Every test runs with an empty cnnbook cache of its own (``$XDG_CACHE_HOME``
points into ``tmp_path``), without ``$CNNBOOK_DATA`` and ``$CNNBOOK_PROFILE``, with no
profile chosen by ``use_profile``, and with cnnbook's system location (Debian's folder)
moved to an empty path, so no test sees another's settings or the developer's files. A test
that wants the data where a user keeps it asks for `data_in_env`.

**Offline.** A download is a test failure: cnnbook's downloaders, torchvision's, and socket
connections to anything but this machine fail the test that tried. A test of the download
path passes its own fake ``download=`` function.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchvision.datasets.utils
from torch import nn

import cnnbook
import cnnbook.config
import cnnbook.datafiles
from cnnbook.datafiles import (
    CIFAR10_BATCHES,
    CIFAR10_TEST,
    FASHION_MNIST_FILES,
    FASHION_MNIST_SYSTEM,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"  # CI's and developers' data folder (see its README)

# --------------------------------------------------------------------- where the test data is

HOW_TO_GET_FASHION_MNIST = (
    "apt-get install dataset-fashion-mnist, or copy the four .gz files into $CNNBOOK_DATA/fashion-mnist/"
)
HOW_TO_GET_CIFAR10 = (
    "set CNNBOOK_DATA to a folder holding cifar10/*.npz (CI and developers: "
    "CNNBOOK_DATA=../shared/data, see ../shared/data/README.md)"
)


def _has_fashion_mnist(folder: Path) -> bool:
    return all((folder / f"{name}.gz").is_file() for name in FASHION_MNIST_FILES)


def _has_cifar10_npz(root: Path) -> bool:
    return all((root / "cifar10" / f"{name}.npz").is_file() for name in (*CIFAR10_BATCHES, CIFAR10_TEST))


@dataclass(frozen=True)
class FoundData:
    """Where the test session found each dataset (``None``: not found) and where it looked."""

    fashion_mnist: Path | None  # the folder of the four .gz files
    cifar10_root: Path | None  # the folder holding cifar10/*.npz
    fashion_mnist_places: tuple[Path, ...]
    cifar10_places: tuple[Path, ...]


def find_test_data(environ=os.environ) -> FoundData:
    """Look for the test data in ``$CNNBOOK_DATA``, ``../shared/data`` and Debian's folder."""
    roots = [Path(environ["CNNBOOK_DATA"])] if environ.get("CNNBOOK_DATA") else []
    roots.append(SHARED_DATA)
    fashion_places = (*(root / "fashion-mnist" for root in roots), FASHION_MNIST_SYSTEM)
    return FoundData(
        fashion_mnist=next((p for p in fashion_places if _has_fashion_mnist(p)), None),
        cifar10_root=next((r for r in roots if _has_cifar10_npz(r)), None),
        fashion_mnist_places=fashion_places,
        cifar10_places=tuple(root / "cifar10" for root in roots),
    )


# Read once, at import, before the autouse fixture below clears $CNNBOOK_DATA.
TEST_DATA = find_test_data()


def _places(places) -> str:
    return ", ".join(str(p) for p in places)


@pytest.fixture(scope="session")
def fashion_mnist_folder() -> Path:
    """The folder of Fashion-MNIST's four original ``.gz`` files; the test fails without it."""
    if TEST_DATA.fashion_mnist is None:
        pytest.fail(
            f"Fashion-MNIST not found in {_places(TEST_DATA.fashion_mnist_places)}: "
            f"{HOW_TO_GET_FASHION_MNIST}",
            pytrace=False,
        )
    return TEST_DATA.fashion_mnist


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    """The folder holding ``cifar10/*.npz``; tests that need it are skipped without it."""
    if TEST_DATA.cifar10_root is None:
        pytest.skip(f"CIFAR-10 not found in {_places(TEST_DATA.cifar10_places)}: {HOW_TO_GET_CIFAR10}")
    return TEST_DATA.cifar10_root


@pytest.fixture(scope="session")
def fashion_mnist(fashion_mnist_folder):
    """The whole of Fashion-MNIST as (train, test) `Split`s, read once per session."""
    return cnnbook.read_fashion_mnist(root=fashion_mnist_folder)


@pytest.fixture(scope="session")
def cifar10(cifar10_root):
    """The whole of CIFAR-10 as (train, test) `Split`s, read once per session (about 4 s)."""
    return cnnbook.read_cifar10(root=cifar10_root)


@pytest.fixture(scope="session")
def data_folder(tmp_path_factory, fashion_mnist_folder) -> Path:
    """A folder laid out as a user's ``$CNNBOOK_DATA``: ``fashion-mnist/`` and, where found,
    ``cifar10/``, each a link to the session's copy."""
    folder = tmp_path_factory.mktemp("cnnbook-data")
    (folder / "fashion-mnist").symlink_to(fashion_mnist_folder)
    if TEST_DATA.cifar10_root is not None:
        (folder / "cifar10").symlink_to(TEST_DATA.cifar10_root / "cifar10")
    return folder


@pytest.fixture
def data_in_env(data_folder, monkeypatch) -> Path:
    """``$CNNBOOK_DATA`` set to `data_folder`, so cnnbook finds the data as a user's would."""
    monkeypatch.setenv("CNNBOOK_DATA", str(data_folder))
    return data_folder


# --------------------------------------------------------------------- isolated and offline


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """An empty cache, no data or profile variables, the full profile (unless a test picks),
    and no system data folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("CNNBOOK_DATA", raising=False)
    monkeypatch.delenv("CNNBOOK_PROFILE", raising=False)
    monkeypatch.setattr(cnnbook.config, "_chosen_profile", None)
    monkeypatch.setattr(cnnbook.datafiles, "FASHION_MNIST_SYSTEM", tmp_path / "no-system-dataset")


def _is_this_machine(family: int, address) -> bool:
    """False for an internet address other than loopback (127.0.0.0/8, ::1, localhost);
    True for every other kind of socket (Unix sockets, netlink)."""
    if family not in (socket.AF_INET, socket.AF_INET6):
        return True
    host = address[0].decode() if isinstance(address[0], bytes) else str(address[0])
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost


@pytest.fixture(autouse=True)
def no_downloads(request, monkeypatch):
    """Fail the test that tries to download anything or connect to another machine.

    Raises `pytest.fail`'s exception, which is no `Exception`, so code that turns a failed
    download into an error message (as cnnbook's data search does) cannot hide the attempt.
    """
    test = request.node.nodeid

    def refuse(what: str):
        def refused(*args, **kwargs):
            pytest.fail(
                f"{test} tried to {what}: tests run offline. Pass a fake download= function "
                "or use the data fixtures in tests/conftest.py.",
                pytrace=True,
            )

        return refused

    monkeypatch.setattr(cnnbook.datafiles, "_download_fashion_mnist", refuse("download Fashion-MNIST"))
    monkeypatch.setattr(cnnbook.datafiles, "_download_cifar10", refuse("download CIFAR-10"))
    for name in ("download_url", "_urlretrieve"):  # what torchvision's datasets download with
        monkeypatch.setattr(torchvision.datasets.utils, name, refuse("download through torchvision"))
    for method in ("connect", "connect_ex"):
        original = getattr(socket.socket, method)

        def guarded(self, address, _original=original):
            if not _is_this_machine(self.family, address):
                refuse(f"connect to {address}")()
            return _original(self, address)

        monkeypatch.setattr(socket.socket, method, guarded)


# --------------------------------------------------------------------- data subsets


@pytest.fixture(scope="session")
def fashion_small(fashion_mnist):
    """A fixed class-balanced subset: 4,000 training and 1,000 test images as uint8 tensors."""
    train, test = fashion_mnist
    train_idx = cnnbook.balanced_subset(train.labels, 4000)
    test_idx = cnnbook.balanced_subset(test.labels, 1000)
    return SimpleNamespace(
        train_images=torch.from_numpy(train.images[train_idx]),
        train_labels=torch.from_numpy(train.labels[train_idx]),
        test_images=torch.from_numpy(test.images[test_idx]),
        test_labels=torch.from_numpy(test.labels[test_idx]),
    )


@pytest.fixture
def fashion_loaders(fashion_small):
    """``make(batch_size=128, n_train=4000)``: (train_iter, test_iter) `DeviceLoader`s on the subset."""

    def make(batch_size: int = 128, n_train: int = 4000, n_test: int = 1000):
        s = fashion_small
        train_iter = cnnbook.DeviceLoader(
            s.train_images[:n_train], s.train_labels[:n_train], batch_size, shuffle=True
        )
        test_iter = cnnbook.DeviceLoader(s.test_images[:n_test], s.test_labels[:n_test], 500)
        return train_iter, test_iter

    return make


@pytest.fixture
def cifar10_read_once(cifar10, cifar10_root, monkeypatch):
    """Make `cnnbook.data` reuse the session's CIFAR-10 arrays instead of re-reading the files."""

    def read_cifar10(root=None, download=None):
        assert Path(root) == cifar10_root
        return cifar10

    monkeypatch.setattr(cnnbook.data, "read_cifar10", read_cifar10)
    return cifar10_root


@pytest.fixture
def make_lenet():
    """``make_lenet()``: d2l's LeNet-5 (sigmoid, average pooling; 61,706 parameters).

    ``make_lenet(nn.ReLU, nn.MaxPool2d)`` is the modern variant that trains in few epochs.
    """

    def make(activation=nn.Sigmoid, pool=nn.AvgPool2d) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2), activation(), pool(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5), activation(), pool(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), activation(),
            nn.Linear(120, 84), activation(),
            nn.Linear(84, 10),
        )  # fmt: skip

    return make


# --------------------------------------------------------------------- a fake Jupyter kernel


class FakeDisplay:
    """One ``display(..., display_id=True)`` output: what it showed first and every update."""

    def __init__(self, data: dict):
        self.shown, self.metadata = [data], [None]

    def update(self, data: dict, raw: bool = False, metadata: dict | None = None) -> None:
        self.shown.append(data)
        self.metadata.append(metadata)


@pytest.fixture
def fake_jupyter(monkeypatch):
    """Make cnnbook believe it runs in a Jupyter kernel; returns what it displayed.

    ``fake_jupyter.displays`` lists the `FakeDisplay` outputs in order, and
    ``fake_jupyter.formatters`` the ``(type, function)`` pairs registered for ``image/png``.
    """
    import IPython
    import IPython.display

    seen = SimpleNamespace(displays=[], formatters=[])
    png = SimpleNamespace(for_type=lambda cls, function: seen.formatters.append((cls, function)))
    shell = SimpleNamespace(
        config={"IPKernelApp": {"connection_file": "kernel-fake.json"}},
        display_formatter=SimpleNamespace(formatters={"image/png": png}),
    )

    def display(data, raw=False, display_id=False):
        assert raw and display_id, "cnnbook displays raw data it can update"
        seen.displays.append(FakeDisplay(data))
        return seen.displays[-1]

    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    monkeypatch.setattr(IPython.display, "display", display)
    return seen
