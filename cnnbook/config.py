"""Settings every chapter shares: the profile, where data lives, which device to use, seeds.

Nothing here runs at import time. A chapter's setup cell calls what it needs, e.g.::

    cnnbook.use_profile("quick")   # or set CNNBOOK_PROFILE=quick before starting Jupyter
    device = cnnbook.try_gpu()
    cnnbook.seed_everything(0)
"""

from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PROFILE_ENV = "CNNBOOK_PROFILE"
DATA_ENV = "CNNBOOK_DATA"


@dataclass(frozen=True)
class Profile:
    """A training budget. ``None`` means "whatever the chapter's code asks for".

    Data caps are counted in pixel values (examples x channels x height x width as the model
    sees them), so a budget buys many small images or few large ones: 32M values are about
    40,000 Fashion-MNIST images, 10,000 CIFAR images, or 640 images at 224x224. The chapter's
    code never changes between profiles; the library applies the caps.
    """

    name: str
    train_values: int | None = None  # cap on the training set, in pixel values
    test_values: int | None = None  # cap on the test set, in pixel values
    epochs: int | None = None  # cap on epochs
    min_examples: int = 500  # never cut a set below this many examples
    # Cap on the compute of one `cnnbook.train` call, in FLOPs (forward and backward over the
    # training batches, forward over the test batches). Pixel caps suit small nets, but a
    # 100-layer net costs over 100 times more per pixel than LeNet, so `train` uses fewer
    # batches per epoch when a run would cost more than this (see `train.compute_cap`).
    train_flops: int | None = None
    seeds: int | None = None  # cap on how many seeds a chapter repeats a run with

    def max_examples(self, split: str, values_per_example: int) -> int | None:
        """How many examples of ``split`` ('train' or 'test') this profile allows, or None."""
        budget = self.train_values if split == "train" else self.test_values
        if budget is None:
            return None
        return max(self.min_examples, budget // values_per_example)

    def cap_epochs(self, num_epochs: int) -> int:
        """The number of epochs to run under this profile."""
        return num_epochs if self.epochs is None else min(num_epochs, self.epochs)

    def cap_seeds(self, num_seeds: int) -> int:
        """How many of a chapter's ``num_seeds`` repetitions of a run to make under this profile."""
        return num_seeds if self.seeds is None else min(num_seeds, self.seeds)


PROFILES = {
    # Exactly what the chapter's code says: the runs whose outputs the book shows.
    "full": Profile("full"),
    # For tests and slow laptops: fixed class-balanced subsets and few epochs, still enough
    # that every curve goes down and accuracies end well above chance.
    "quick": Profile(
        "quick",
        train_values=32_000_000,
        test_values=2_000_000,
        epochs=5,
        train_flops=2_000_000_000_000,
        seeds=1,
    ),
    # For storing a chapter that needs a GPU when only a CPU is at hand: the same code and
    # epochs, with only the big images cut. 153.6M pixel values are exactly CIFAR-10's
    # 50,000 training images, so 28x28 and 32x32 sets stay whole while 224x224 images are
    # cut to a class-balanced ~3,000 (test: 10,000 CIFAR images, ~600 at 224x224).
    "reduced": Profile("reduced", train_values=153_600_000, test_values=30_720_000),
}

_chosen_profile: str | None = None  # set by use_profile(); otherwise the environment decides


def _check_profile_name(name: str) -> str:
    if name not in PROFILES:
        raise ValueError(
            f"Unknown profile {name!r}. Valid profiles: {', '.join(sorted(PROFILES))}. "
            f"Set one with cnnbook.use_profile('quick') or {PROFILE_ENV}=quick."
        )
    return name


def use_profile(name: str) -> Profile:
    """Switch the active profile for this Python process and return it.

    Example: ``cnnbook.use_profile("quick")`` before loading data and training.
    """
    global _chosen_profile
    _chosen_profile = _check_profile_name(name)
    return PROFILES[name]


def active_profile() -> Profile:
    """The profile in force: the one given to `use_profile`, else ``$CNNBOOK_PROFILE``, else full."""
    if _chosen_profile is not None:
        return PROFILES[_chosen_profile]
    name = os.environ.get(PROFILE_ENV, "").strip() or "full"
    try:
        return PROFILES[_check_profile_name(name)]
    except ValueError as err:
        raise ValueError(f"{PROFILE_ENV}={name!r} is not valid. {err}") from None


def resolve_profile(profile: Profile | str | None = None) -> Profile:
    """The profile a call runs under: ``profile`` (a `Profile` or its name), else the active one.

    The public entry points (`cnnbook.train`, the ``load_data_...`` functions, the explorers)
    take ``profile=None`` and resolve it once with this; below them the profile is an argument.
    """
    if profile is None:
        return active_profile()
    return profile if isinstance(profile, Profile) else PROFILES[_check_profile_name(profile)]


def data_search_path(root: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for datasets, in order.

    An explicit ``root`` comes first, then ``$CNNBOOK_DATA``, then the user's cache
    (``~/.cache/cnnbook``). System locations are added per dataset by `cnnbook.data`.
    """
    places = []
    if root is not None:
        places.append(Path(root).expanduser())
    if os.environ.get(DATA_ENV):
        places.append(Path(os.environ[DATA_ENV]).expanduser())
    places.append(cache_dir())
    return places


def cache_dir() -> Path:
    """Where downloads go: ``$XDG_CACHE_HOME/cnnbook`` or ``~/.cache/cnnbook``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnbook"


def try_gpu(i: int = 0) -> torch.device:
    """The i-th CUDA GPU if there is one, else Apple's MPS, else the CPU (d2l's ``try_gpu``)."""
    if torch.cuda.is_available() and i < torch.cuda.device_count():
        return torch.device(f"cuda:{i}")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_name(device: torch.device | str) -> str:
    """A human-readable name for a device, e.g. ``'NVIDIA H100 80GB HBM3'`` or the CPU model."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"{_cpu_model()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has finished the work queued on it (GPU calls return before it is
    done), so that a clock read afterwards measures finished work. A no-op on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bf16_is_fast(device: torch.device | str) -> bool:
    """Whether ``device`` computes in bfloat16 natively, so that bfloat16 autocast pays.

    True on an NVIDIA GPU from Ampere on (compute capability 8.0) and on a CPU with
    AVX-512 BF16 or AMX instructions. Elsewhere bfloat16 is emulated: on a CPU with AVX2
    only, a training step of a small CNN measured about 10x slower than in float32. Use it
    as ``torch.autocast(device.type, torch.bfloat16, enabled=cnnbook.bf16_is_fast(device))``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def seed_everything(seed: int = 0) -> None:
    """Seed Python's, NumPy's and PyTorch's random generators (on every device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA and MPS generators too
