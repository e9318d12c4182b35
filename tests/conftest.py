"""Shared fixtures: real data subsets, loaded once per session, and an isolated environment.

Every test runs with an empty cnnbook cache of its own (``$XDG_CACHE_HOME`` points into
``tmp_path``), without ``$CNNBOOK_DATA`` and ``$CNNBOOK_PROFILE``, and with no profile
chosen by ``use_profile``, so no test sees another's settings or the developer's files.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import cnnbook
import cnnbook.config
from cnnbook.datafiles import FASHION_MNIST_SYSTEM

REPO = Path(__file__).resolve().parents[1]


def _shared_data_root(dataset: str) -> Path | None:
    """The data folder holding ``dataset``'s folder: ``$CNNBOOK_DATA`` or ``../shared/data``."""
    for candidate in (os.environ.get("CNNBOOK_DATA"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / dataset).is_dir():
            return Path(candidate)
    return None


# Read before the fixtures below clear $CNNBOOK_DATA. Fashion-MNIST comes from Debian's
# package where it is installed, else from the shared data folder (a GPU machine has no apt).
SHARED_DATA = _shared_data_root("cifar10")
_fashion_shared = _shared_data_root("fashion-mnist")
FASHION_MNIST_ROOT = (
    _fashion_shared / "fashion-mnist"
    if _fashion_shared and not FASHION_MNIST_SYSTEM.is_dir()
    else FASHION_MNIST_SYSTEM
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """An empty cache, no data or profile variables, and the full profile (unless a test picks)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("CNNBOOK_DATA", raising=False)
    monkeypatch.delenv("CNNBOOK_PROFILE", raising=False)
    monkeypatch.setattr(cnnbook.config, "_chosen_profile", None)


@pytest.fixture(scope="session")
def fashion_mnist():
    """The whole of Fashion-MNIST as (train, test) `Split`s, from Debian's package (or $CNNBOOK_DATA)."""
    if not FASHION_MNIST_ROOT.is_dir():
        pytest.skip(f"no Fashion-MNIST in {FASHION_MNIST_ROOT}: apt-get install dataset-fashion-mnist")
    return cnnbook.read_fashion_mnist(root=FASHION_MNIST_ROOT)


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


@pytest.fixture(scope="session")
def cifar10_root():
    """The folder holding ``cifar10/*.npz`` (CI's ``../shared/data``)."""
    if SHARED_DATA is None:
        pytest.skip("CIFAR-10 not available: set CNNBOOK_DATA to a folder with cifar10/*.npz")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cifar10(cifar10_root):
    """The whole of CIFAR-10 as (train, test) `Split`s, read once per session (about 4 s)."""
    return cnnbook.read_cifar10(root=cifar10_root)


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
