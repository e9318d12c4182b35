"""The reference the benchmark measures against: *Dive into Deep Learning*'s ``train_ch6``.

Written as d2l writes it, on purpose: a torchvision-style ``Dataset`` that decodes one image
at a time, a ``DataLoader`` with worker processes, a copy to the device per batch, two host
synchronisations per batch (``float(loss)`` and the accuracy count), the animated plot
redrawn five times per epoch and an evaluation that synchronises after every batch. Only
the order of the examples is cnnbook's (`SamePermutations`), so that both loops see the
same batches and their accuracies can be compared.
"""

from __future__ import annotations

import io

import torch
from matplotlib.figure import Figure
from torch import nn
from torch.utils.data import DataLoader, Sampler

from cnnbook.data import ImageArrayDataset
from cnnbook.datafiles import Split


class SamePermutations(Sampler):
    """Shuffles as `DeviceLoader(..., seed=seed)` does: each epoch ``randperm`` from one seeded generator.

    Given to the reference loop's DataLoader, it makes both loops see the examples in the same
    order, so their accuracies differ only by rounding, not by luck. It costs nothing per batch.
    """

    def __init__(self, num_examples: int, seed: int = 0):
        self.num_examples = num_examples
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.num_examples

    def __iter__(self):
        return iter(torch.randperm(self.num_examples, generator=self.generator).tolist())


def d2l_loaders(train: Split, test: Split, batch_size: int, resize: int | None, workers: int, seed: int = 0):
    """The reference data path: per-image PIL + transforms in DataLoader worker processes."""
    from torchvision import transforms

    steps = [transforms.ToTensor()]
    if resize:
        steps.insert(0, transforms.Resize(resize))
    transform = transforms.Compose(steps)
    # As d2l's load_data_fashion_mnist: no persistent_workers, so each pass starts its workers anew.
    options = {"batch_size": batch_size, "num_workers": workers}
    return (
        DataLoader(
            ImageArrayDataset(train, transform), sampler=SamePermutations(len(train.labels), seed), **options
        ),
        DataLoader(ImageArrayDataset(test, transform), shuffle=False, **options),
    )


def d2l_evaluate_accuracy(net: nn.Module, data_iter, device: torch.device) -> float:
    """d2l's ``evaluate_accuracy_gpu``: one host sync per batch."""
    net.eval()
    correct, total = 0.0, 0
    with torch.no_grad():
        for X, y in data_iter:
            X, y = X.to(device), y.to(device)
            correct += float((net(X).argmax(dim=1) == y).sum())
            total += y.numel()
    return correct / total


def d2l_train_epoch(net, train_iter, test_iter, optimizer, device, figure: Figure) -> tuple[float, float]:
    """One epoch of d2l's ``train_ch6``; returns (mean training loss, test accuracy)."""
    loss = nn.CrossEntropyLoss()
    net.train()
    loss_sum, correct, seen = 0.0, 0.0, 0
    num_batches = len(train_iter)
    for i, (X, y) in enumerate(train_iter):
        optimizer.zero_grad()
        X, y = X.to(device), y.to(device)
        y_hat = net(X)
        l = loss(y_hat, y)
        l.backward()
        optimizer.step()
        with torch.no_grad():
            loss_sum += float(l * X.shape[0])  # host sync 1
            correct += float((y_hat.argmax(dim=1) == y).sum())  # host sync 2
            seen += X.shape[0]
        if (i + 1) % max(num_batches // 5, 1) == 0 or i == num_batches - 1:
            figure.savefig(io.BytesIO(), format="png")  # d2l's Animator redraws its figure
    return loss_sum / seen, d2l_evaluate_accuracy(net, test_iter, device)
