"""cnnbook.config: profiles, the data search path, the device and seeding."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnbook
import cnnbook.data
from cnnbook.config import (
    PROFILES,
    active_profile,
    cache_dir,
    data_search_path,
    device_name,
    resolve_profile,
    try_gpu,
)

# ------------------------------------------------------------------------------ profiles


def test_quick_profile_has_a_compute_cap_and_full_has_none():
    assert cnnbook.PROFILES["quick"].train_flops == 2_000_000_000_000
    assert cnnbook.PROFILES["full"].train_flops is None


def test_full_is_the_default_profile():
    assert active_profile().name == "full"


def test_profile_from_the_environment(monkeypatch):
    monkeypatch.setenv("CNNBOOK_PROFILE", "quick")
    assert active_profile().name == "quick"


def test_use_profile_switches_and_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("CNNBOOK_PROFILE", "full")
    profile = cnnbook.use_profile("quick")
    assert profile is PROFILES["quick"]
    assert active_profile().name == "quick"


def test_use_profile_rejects_unknown_names_listing_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown profile 'fast'") as err:
        cnnbook.use_profile("fast")
    assert "Valid profiles: full, quick, reduced" in str(err.value)
    assert active_profile().name == "full"  # the failed call changed nothing


def test_invalid_profile_in_the_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv("CNNBOOK_PROFILE", "turbo")
    with pytest.raises(ValueError) as err:
        active_profile()
    message = str(err.value)
    assert "CNNBOOK_PROFILE='turbo' is not valid" in message
    assert "Valid profiles: full, quick, reduced" in message


def test_resolve_profile_takes_a_profile_or_its_name_else_the_active_one():
    cnnbook.use_profile("quick")
    assert resolve_profile(None) is PROFILES["quick"]
    assert resolve_profile("full") is PROFILES["full"]
    assert resolve_profile(PROFILES["reduced"]) is PROFILES["reduced"]
    with pytest.raises(ValueError, match="Unknown profile 'fast'. Valid profiles: full, quick, reduced"):
        resolve_profile("fast")


def test_a_profile_passed_to_a_data_loader_wins_over_the_active_one(fashion_mnist, monkeypatch, capsys):
    monkeypatch.setattr(cnnbook.data, "read_fashion_mnist", lambda root=None: fashion_mnist)
    cnnbook.use_profile("quick")
    train_iter, test_iter = cnnbook.load_data_fashion_mnist(256, profile="full")
    assert (train_iter.num_examples, test_iter.num_examples) == (60_000, 10_000)
    assert capsys.readouterr().out == "", "nothing was cut, so nothing is said"
    train_iter, _ = cnnbook.load_data_fashion_mnist(256)  # the active profile: quick
    assert train_iter.num_examples == 40_816 and "quick profile: Fashion-MNIST cut" in capsys.readouterr().out
    assert active_profile().name == "quick"


def test_max_examples_counts_pixel_values():
    quick, full = PROFILES["quick"], PROFILES["full"]
    assert quick.max_examples("train", 1 * 28 * 28) == 32_000_000 // 784 == 40_816
    assert quick.max_examples("test", 1 * 28 * 28) == 2_000_000 // 784 == 2_551
    assert quick.max_examples("train", 3 * 32 * 32) == 10_416
    # Large images would leave too few examples: the floor keeps 500.
    assert quick.max_examples("train", 3 * 224 * 224) == 500
    assert full.max_examples("train", 784) is None
    assert full.max_examples("test", 784) is None


def test_reduced_profile_cuts_only_images_enlarged_to_224():
    reduced = PROFILES["reduced"]
    assert reduced.max_examples("train", 1 * 224 * 224) == 3_061
    assert reduced.max_examples("test", 1 * 224 * 224) == 612
    # CIFAR-10 (50,000 + 10,000 at 3x32x32) and Fashion-MNIST at 28x28 fit whole.
    assert reduced.max_examples("train", 3 * 32 * 32) == 50_000
    assert reduced.max_examples("test", 3 * 32 * 32) == 10_000
    assert reduced.max_examples("train", 28 * 28) > 60_000
    assert (reduced.epochs, reduced.train_flops) == (None, None)  # same epochs and batches as full


def test_cap_epochs():
    assert PROFILES["quick"].cap_epochs(10) == 5
    assert PROFILES["quick"].cap_epochs(3) == 3
    assert PROFILES["full"].cap_epochs(100) == 100


def test_cap_seeds():
    assert PROFILES["quick"].cap_seeds(3) == 1
    assert PROFILES["full"].cap_seeds(5) == 5


# ------------------------------------------------------------------------------ devices


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_try_gpu_falls_back_to_the_cpu_here():
    assert try_gpu() == torch.device("cpu")
    assert try_gpu(3) == torch.device("cpu")


def test_try_gpu_without_accelerators_is_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert try_gpu() == torch.device("cpu")


def test_device_name_of_the_cpu_says_cores_and_threads():
    name = device_name("cpu")
    assert "cores" in name and f"{torch.get_num_threads()} torch threads" in name


# ------------------------------------------------------------------------------ seeding


def _draws():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_seed_everything_makes_runs_repeat():
    cnnbook.seed_everything(123)
    first = _draws()
    cnnbook.seed_everything(123)
    assert _draws() == first
    cnnbook.seed_everything(124)
    assert _draws() != first


# ------------------------------------------------------------------------------ data places


def test_data_search_path_order(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNBOOK_DATA", str(tmp_path / "from-env"))
    assert data_search_path(tmp_path / "explicit") == [
        tmp_path / "explicit",
        tmp_path / "from-env",
        tmp_path / "xdg-cache" / "cnnbook",
    ]


def test_data_search_path_without_root_or_environment(tmp_path):
    assert data_search_path() == [cache_dir()] == [tmp_path / "xdg-cache" / "cnnbook"]


def test_data_search_path_expands_the_home_folder():
    assert data_search_path("~/datasets")[0] == Path.home() / "datasets"


def test_cache_dir_defaults_to_the_home_cache(monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "cnnbook"


def test_bf16_is_fast_follows_the_cpu_s_instructions(monkeypatch):
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert cnnbook.bf16_is_fast("cpu") == native
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not cnnbook.bf16_is_fast(torch.device("cpu"))  # AVX2 only: emulated, about 10x slower
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert cnnbook.bf16_is_fast("cpu")


def test_bf16_is_fast_on_gpus_from_ampere_on(monkeypatch):
    for capability, fast in (((7, 5), False), ((8, 0), True), ((9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device, c=capability: c)
        assert cnnbook.bf16_is_fast("cuda:0") == fast
    assert not cnnbook.bf16_is_fast("meta")
