"""``python -m cnnbook bench --layouts``: one training step in NCHW against channels-last (NHWC).

The same network from the same initial weights takes training steps on the same random
batch in both memory layouts, in turn (interleaved, so a machine that slows down affects
both alike); each layout keeps its best round. This is the measurement behind
`cnnbook.train`'s default of channels-last on a CPU.

Example::

    python -m cnnbook bench --layouts --model resnet --device cpu
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from cnnbook.config import synchronize
from cnnbook.train import train_step


def seconds_per_step(
    net: nn.Module, X: torch.Tensor, y: torch.Tensor, lr: float, steps: int, amp: bool = False
) -> float:
    """Mean seconds of ``steps`` SGD training steps (`cnnbook.train.train_step`) of ``net`` on ``(X, y)``.

    ``amp``: forward and loss in bfloat16 autocast, as `cnnbook.train` runs them with ``amp=True``.
    """
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    synchronize(X.device)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(net, loss_fn, optimizer, X, y, amp)
    synchronize(X.device)
    return (time.perf_counter() - start) / steps


def random_batch(input_shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of random images of ``input_shape`` and random labels of 10 classes (as Fashion-MNIST's)."""
    return torch.rand(input_shape, device=device), torch.randint(0, 10, (input_shape[0],), device=device)


def copy_in_layout(net: nn.Module, X: torch.Tensor, channels_last: bool) -> tuple[nn.Module, torch.Tensor]:
    """A copy of ``net`` on ``X``'s device, and ``X``: both in channels-last if ``channels_last``."""
    net = copy.deepcopy(net).to(X.device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
        X = X.contiguous(memory_format=torch.channels_last)
    return net, X


def compare_layouts(
    net: nn.Module,
    input_shape: tuple[int, ...],
    lr: float,
    device: torch.device,
    steps: int = 5,
    rounds: int = 3,
) -> dict:
    """Seconds per training step of ``net`` in NCHW and in channels-last, and their ratio.

    ``input_shape`` is one batch's ``(N, C, H, W)``; the batch is random, with labels of 10
    classes (the benchmark's models classify Fashion-MNIST). Each layout first takes one
    untimed step (one-off costs: allocations, kernel choices), then ``rounds`` timed rounds
    of ``steps``.
    """
    X, y = random_batch(input_shape, device)
    nets = {"nchw": copy_in_layout(net, X, False), "channels_last": copy_in_layout(net, X, True)}
    best = {}
    for model, batch in nets.values():
        seconds_per_step(model, batch, y, lr, steps=1)
    for _ in range(rounds):
        for layout, (model, batch) in nets.items():
            seconds = seconds_per_step(model, batch, y, lr, steps)
            best[layout] = min(seconds, best.get(layout, seconds))
    return {
        "nchw_seconds_per_step": best["nchw"],
        "channels_last_seconds_per_step": best["channels_last"],
        "speedup": best["nchw"] / best["channels_last"],
    }
