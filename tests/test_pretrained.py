"""cnnbook.pretrained: published weights found offline first, checked, loaded; clear errors.

The tests never download: they make their own small checkpoint (a torchvision model's
state dict, named as torchvision names its files) and point the search at it.
"""

import hashlib

import pytest
import torch
import torchvision

import cnnbook.pretrained as pretrained
from cnnbook.pretrained import CorruptWeightsError, WeightsNotFoundError, find_weights, load_pretrained

ARCH = "mobilenet_v3_small"  # a small torchvision model: its state dict is 10 MB


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty caches: torch's (TORCH_HOME) and cnnbook's, and no $CNNBOOK_DATA."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNBOOK_DATA", raising=False)
    return tmp_path


@pytest.fixture
def checkpoint(tmp_path, monkeypatch):
    """A checkpoint made here, named as torchvision names its files, and published under that name."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(ARCH, weights=None)
    staging = tmp_path / "staging.pth"
    torch.save(model.state_dict(), staging)
    data = staging.read_bytes()
    name = f"{ARCH}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    monkeypatch.setattr(
        pretrained, "weights_url", lambda arch, weights="DEFAULT": f"https://example.invalid/{name}"
    )
    return name, data, model


def test_weights_in_a_named_folder_are_found_checked_and_loaded(caches, checkpoint):
    name, data, model = checkpoint
    folder = caches / "mine"
    folder.mkdir()
    (folder / name).write_bytes(data)
    assert find_weights(ARCH, root=folder) == folder / name
    loaded = load_pretrained(ARCH, root=folder)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)


def test_torchs_own_cache_is_searched_last(caches, checkpoint):
    name, data, _ = checkpoint
    hub = caches / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / name).write_bytes(data)
    assert find_weights(ARCH) == hub / name
    places = pretrained.weights_search_path(caches / "mine")
    assert places[0] == caches / "mine" and places[-1] == hub
    assert caches / "cache" / "cnnbook" / "weights" in places


def test_missing_weights_say_where_they_were_looked_for_and_what_to_download(caches, checkpoint):
    name, _, _ = checkpoint
    with pytest.raises(WeightsNotFoundError) as error:
        load_pretrained(ARCH, root=caches / "mine")
    message = str(error.value)
    assert f"https://example.invalid/{name}" in message
    for place in pretrained.weights_search_path(caches / "mine"):
        assert str(place) in message
    assert "download=True" in message


def test_a_damaged_file_is_refused(caches, checkpoint):
    name, data, _ = checkpoint
    (caches / name).write_bytes(data[:-100])  # a download cut short
    with pytest.raises(CorruptWeightsError, match="damaged.*download it again"):
        load_pretrained(ARCH, root=caches)


def test_weights_of_another_model_are_refused(caches, monkeypatch):
    torch.save(torchvision.models.get_model("resnet18", weights=None).state_dict(), caches / "x.pth")
    data = (caches / "x.pth").read_bytes()
    name = f"{ARCH}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    (caches / name).write_bytes(data)
    monkeypatch.setattr(
        pretrained, "weights_url", lambda arch, weights="DEFAULT": f"https://x.invalid/{name}"
    )
    with pytest.raises(CorruptWeightsError, match=f"does not hold {ARCH}'s weights"):
        load_pretrained(ARCH, root=caches)


def test_download_only_when_asked_and_into_torchs_cache(caches, checkpoint, monkeypatch):
    name, data, _ = checkpoint
    asked = []

    def fake_download(url, check_hash, weights_only):  # what torch.hub saves, without the internet
        asked.append((url, check_hash))
        hub = caches / "torch" / "hub" / "checkpoints"
        hub.mkdir(parents=True, exist_ok=True)
        (hub / name).write_bytes(data)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    with pytest.raises(WeightsNotFoundError):
        load_pretrained(ARCH)
    assert asked == []
    load_pretrained(ARCH, download=True)
    assert asked == [(f"https://example.invalid/{name}", True)]


def test_published_addresses_and_bad_names():
    assert pretrained.weights_url("resnet18") == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert pretrained.weights_url("resnet18", "IMAGENET1K_V1").endswith("resnet18-f37072fd.pth")
    with pytest.raises(ValueError, match="no model named 'resnet1'.*list_models"):
        pretrained.weights_url("resnet1")
    with pytest.raises(ValueError, match="choose one of: DEFAULT, IMAGENET1K_V1"):
        pretrained.weights_url("resnet18", "imagenet")
