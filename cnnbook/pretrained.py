"""Published weights, offline first: a trained network's weights from disk before the internet.

torchvision publishes trained weights for its models, for example ResNet-18 trained on
ImageNet, as files named after the model and the first 8 hex digits of the file's SHA-256:
``resnet18-f37072fd.pth``. `load_pretrained` looks for that file as `cnnbook.data` looks for
a dataset, in order:

1. a folder you name (``root=``);
2. ``$CNNBOOK_DATA/weights``, then the user's cache (``~/.cache/cnnbook/weights``);
3. torch's own cache, where torchvision saves what it downloads
   (``torch.hub.get_dir()/checkpoints``, usually ``~/.cache/torch/hub/checkpoints``).

It checks the file against the hash in its name, reads it without running any code
(``torch.load(weights_only=True)``), and returns the model with those weights. It downloads
only when asked (``download=True``, into torch's cache); otherwise a missing file raises an
error that lists where it looked, the address of the file and where to put it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torchvision
from torch import nn

from cnnbook.config import data_search_path


class WeightsNotFoundError(FileNotFoundError):
    """A model's published weights are in none of the places searched, and were not downloaded."""


class CorruptWeightsError(ValueError):
    """A weights file exists but does not match its published hash, or does not fit the model."""


def weights_url(arch: str, weights: str = "DEFAULT") -> str:
    """The address torchvision publishes ``arch``'s ``weights`` at, e.g. for ``("resnet18", "DEFAULT")``
    ``https://download.pytorch.org/models/resnet18-f37072fd.pth``.

    weights: a name of ``torchvision.models.get_model_weights(arch)``, such as
        ``"IMAGENET1K_V1"``, or ``"DEFAULT"`` for the best ones.
    """
    try:
        choices = torchvision.models.get_model_weights(arch)
    except ValueError:
        raise ValueError(
            f"torchvision has no model named {arch!r}; its models are listed by "
            "torchvision.models.list_models(), e.g. 'resnet18', 'mobilenet_v3_small'."
        ) from None
    names = [w.name for w in choices]
    if weights not in ("DEFAULT", *names):
        raise ValueError(f"{arch} has no weights {weights!r}; choose one of: DEFAULT, {', '.join(names)}.")
    return choices[weights].url


def weights_search_path(root: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for weights files, in order (see the module's description)."""
    places = [Path(root).expanduser()] if root is not None else []
    places += [place / "weights" for place in data_search_path()]  # $CNNBOOK_DATA, the user's cache
    places.append(Path(torch.hub.get_dir()) / "checkpoints")  # where torchvision downloads to
    return places


def find_weights(arch: str, weights: str = "DEFAULT", root: str | os.PathLike | None = None) -> Path:
    """The path of ``arch``'s published weights file on this machine, checked against its hash.

    Raises `WeightsNotFoundError`, saying where it looked and what to download where, when no
    folder of `weights_search_path` holds it, and `CorruptWeightsError` when the file found
    does not match the hash in its name (a broken download).
    """
    url = weights_url(arch, weights)
    name = url.rsplit("/", 1)[-1]
    places = weights_search_path(root)
    for place in places:
        path = place / name
        if path.is_file():
            _check_hash(path)
            return path
    looked = "\n".join(f"  - {place}" for place in places)
    raise WeightsNotFoundError(
        f"The {weights} weights of {arch} ({name}) are not on this machine. Looked in:\n{looked}\n"
        f"Get them with load_pretrained({arch!r}, download=True) where the internet is reachable, "
        f"or download {url}\nand put the file in one of those folders (for example "
        f"{places[-1]}), or pass root= the folder that holds it."
    )


def load_pretrained(
    arch: str = "resnet18",
    weights: str = "DEFAULT",
    root: str | os.PathLike | None = None,
    download: bool = False,
) -> nn.Module:
    """torchvision's ``arch`` with its published ``weights``, found offline first (`find_weights`).

    download: when the file is on no searched folder, download it into torch's cache (the
        hash is checked) instead of raising `WeightsNotFoundError`.

    Example: ``net = cnnbook.load_pretrained("resnet18")``, then replace its last layer,
    ``net.fc = nn.Linear(net.fc.in_features, 2)``, to adapt it to two classes.
    """
    try:
        path = find_weights(arch, weights, root)
    except WeightsNotFoundError:
        if not download:
            raise
        torch.hub.load_state_dict_from_url(weights_url(arch, weights), check_hash=True, weights_only=True)
        path = find_weights(arch, weights, root)
    model = torchvision.models.get_model(arch, weights=None)
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CorruptWeightsError(f"{path} does not hold {arch}'s weights: {error}") from None
    return model


def _check_hash(path: Path) -> None:
    """torchvision's file names end in the first hex digits of the file's SHA-256: compare them."""
    expected = path.stem.rsplit("-", 1)[-1]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(expected):
        raise CorruptWeightsError(
            f"{path} is damaged: its SHA-256 starts {digest[: len(expected)]}, its name says {expected}. "
            "Delete it and download it again."
        )
