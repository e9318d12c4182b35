"""Checkpoints that describe themselves, are written atomically and load safely.

A checkpoint is one dict with named keys (as nanoGPT's): ``model`` (the state_dict),
``optimizer``, ``epoch``, ``history``, ``config`` and ``version``. Saving writes a
temporary file next to the target and renames it into place, so an interrupted save
leaves the previous checkpoint intact. Loading uses ``torch.load(weights_only=True)``,
which refuses to run code hidden in a file (a plain ``torch.load`` unpickles anything).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from cnnbook import distributed
from cnnbook.files import replaced_atomically
from cnnbook.history import History

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not fit the model it is loaded into."""


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    epoch: int | None = None,
    history: History | None = None,
    config: dict | None = None,
) -> Path:
    """Save the model (and optionally optimizer, epoch, history, config) to ``path`` atomically.

    Under torchrun only rank 0 writes (every rank holds the same weights); the other ranks
    return at once, without waiting for the file.

    Example: ``save_checkpoint("alexnet.pt", net, optimizer, epoch=10, history=history)``.
    """
    path = Path(path)
    if not distributed.is_main_process():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "version": FORMAT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "epoch": epoch,
        "history": history.to_dict() if history is not None else None,
        "config": config or {},
    }
    with replaced_atomically(path, "wb") as f:  # Ctrl-C mid-save keeps the previous checkpoint
        torch.save(checkpoint, f)
    return path


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    map_location: torch.device | str | None = "cpu",
) -> dict:
    """Load a checkpoint into ``model`` (and ``optimizer``); return the whole checkpoint dict.

    ``checkpoint["history"]`` comes back as a `History`. Raises `CheckpointError` for a
    missing or unreadable file, or one saved from a different architecture (listing the
    mismatched keys and shapes).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path.resolve()}: the file does not exist.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(f"Cannot read the checkpoint {path}: {type(err).__name__}: {err}") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        checkpoint = {"model": checkpoint}  # a bare state_dict saved with torch.save(net.state_dict())
    problems = state_dict_mismatches(model.state_dict(), checkpoint["model"])
    if problems:
        raise CheckpointError(
            f"The checkpoint {path} was saved from a different architecture than "
            f"{type(model).__name__}:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    model.load_state_dict(checkpoint["model"])
    if optimizer is not None:
        if not checkpoint.get("optimizer"):
            raise CheckpointError(f"The checkpoint {path} holds no optimizer state to resume from.")
        optimizer.load_state_dict(checkpoint["optimizer"])
    if checkpoint.get("history") is not None:
        checkpoint["history"] = History.from_dict(checkpoint["history"])
    return checkpoint


def state_dict_mismatches(expected: dict, found: dict, limit: int = 20) -> list[str]:
    """Readable differences between a model's state_dict and a loaded one (empty if they fit)."""
    problems = [
        f"missing in the checkpoint: {k} {tuple(v.shape)}" for k, v in expected.items() if k not in found
    ]
    problems += [
        f"unexpected in the checkpoint: {k} {tuple(v.shape)}" for k, v in found.items() if k not in expected
    ]
    problems += [
        f"shape of {k}: model has {tuple(expected[k].shape)}, checkpoint has {tuple(found[k].shape)}"
        for k in expected
        if k in found and tuple(expected[k].shape) != tuple(found[k].shape)
    ]
    if len(problems) > limit:
        problems = problems[:limit] + [f"... and {len(problems) - limit} more"]
    return problems
