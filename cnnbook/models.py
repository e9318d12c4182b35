"""Models that more than one chapter (or the benchmark) uses, identical to the chapters'.

Each chapter builds its models in front of the reader; when a later chapter or
``python -m cnnbook bench`` needs one again it comes from here, and the chapter that
introduced it checks that both definitions agree. `resnet18` is the one exception: it is
*Dive into Deep Learning*'s ResNet-18 for Fashion-MNIST, the residual network a d2l reader
has trained, so that the benchmark can compare loops on it.
"""

from __future__ import annotations

import torch
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


class Residual(nn.Module):
    """d2l's residual block: two 3x3 conv + batch norm, plus the input (1x1 conv where shapes change)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.bn1, self.bn2 = nn.BatchNorm2d(out_channels), nn.BatchNorm2d(out_channels)
        self.shortcut = None  # the identity, unless the block changes the shape
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.shortcut is None else self.shortcut(x)))


def resnet18(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """d2l's ResNet-18 (section 8.6): a 7x7 stem, four stages of two residual blocks, global pooling."""

    def stage(c_in: int, c_out: int, first: bool = False) -> nn.Sequential:
        stride = 1 if first else 2  # the stem already halved twice; later stages halve once each
        return nn.Sequential(Residual(c_in, c_out, stride), Residual(c_out, c_out))

    return nn.Sequential(
        nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        stage(64, 64, first=True), stage(64, 128), stage(128, 256), stage(256, 512),
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
        nn.Linear(512, num_classes),
    )  # fmt: skip
