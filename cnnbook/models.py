"""Models that more than one chapter (or the benchmark) uses, identical to the chapters'.

Each chapter builds its models in front of the reader; when a later chapter or
``python -m cnnbook bench`` needs one again it comes from here, and the chapter that
introduced it checks that both definitions agree.
"""

from __future__ import annotations

from torch import nn


def lenet() -> nn.Sequential:
    """LeNet-5 as in chapter 1 (and d2l): two conv blocks (conv, sigmoid, avg pool), then 400-120-84-10."""
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, 10),
    )  # fmt: skip


def alexnet(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """AlexNet for 224x224 input as in chapter 2 (and d2l): five conv layers, three dense layers."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 96, kernel_size=11, stride=4, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Flatten(),
        nn.Linear(6400, 4096), nn.ReLU(), nn.Dropout(p=0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(p=0.5),
        nn.Linear(4096, num_classes),
    )  # fmt: skip
