"""The fast data path: a whole dataset held once as uint8 tensors, batched on the device.

A classic ``DataLoader`` decodes every image on the CPU, one at a time, in worker
processes, then copies each batch to the GPU. For datasets that fit in memory (MNIST,
CIFAR: 50-200 MB as uint8) that is wasted work. `DeviceLoader` keeps the uint8 images on
the training device and does per batch, on that device: gather by a shuffled index,
convert to float, resize, augment and normalise. No worker processes, no per-batch copy.

Nothing in the batch loop copies from the CPU to the GPU either. Such a copy from ordinary
(pageable) memory makes the CPU wait until the GPU has finished all the work queued
before it, so the CPU can no longer queue the next step while the GPU runs this one: on a
GPU, a few small copies per batch made CIFAR-10 training several times slower. The
shuffled order and the random augmentation are therefore drawn for a whole epoch at once
and copied once per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnbook import distributed
from cnnbook.datafiles import balanced_subset


@dataclass(frozen=True)
class Augment:
    """Random training-time augmentation done on whole batches on the device.

    crop_padding: pad by this many pixels (zeros), then crop back at a random offset per image.
    flip: mirror each image left-right with probability 1/2.
    """

    crop_padding: int = 4
    flip: bool = True

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Random choices for ``n`` images, one row each: vertical shift, horizontal shift, flip (0/1)."""
        shifts = torch.randint(0, 2 * self.crop_padding + 1, (n, 2), generator=generator)
        flips = (torch.rand(n, 1, generator=generator) < 0.5).long()
        return torch.cat([shifts, flips], dim=1)


class DeviceLoader:
    """Mini-batches ``(X, y)`` from uint8 images ``(N, C, H, W)`` and int64 labels ``(N,)``.

    Iterating gives ``len(loader)`` batches; with ``shuffle=True`` each pass uses a new
    permutation, so every example is seen exactly once per epoch in a new order. ``X`` is
    float32 in [0, 1] (or normalised with ``mean``/``std`` per channel), resized to
    ``resize`` if given. Call ``loader.to(device)`` to move the stored images once.

    Under ``torchrun`` every rank draws the same order and takes its own shard of it
    (`cnnbook.distributed.shard`): a shuffling (training) loader pads the shards to one size
    by reusing the first examples of the order, as DistributedSampler does, so every rank
    takes the same number of steps; a loader that keeps the order (evaluation) gives every
    example to exactly one rank, so counts summed over the ranks are exact.

    Example::

        loader = DeviceLoader(images, labels, batch_size=256, shuffle=True)
        for X, y in loader.to("cuda"):
            ...
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        resize: int | tuple[int, int] | None = None,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        augment: Augment | None = None,
        seed: int = 0,
    ):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"DeviceLoader wants uint8 images of shape (N, C, H, W); got {images.dtype} "
                f"of shape {tuple(images.shape)}."
            )
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}; "
                "expected one label per image."
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
        self.images, self.labels = images, labels.long()
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.resize = (resize, resize) if isinstance(resize, int) else resize
        self.mean, self.std = mean, std
        self._normalise = (
            None if mean is None else (_per_channel(mean, images.device), _per_channel(std, images.device))
        )
        # The order comes from a CPU generator so a run is reproducible on any device.
        self._order = torch.Generator().manual_seed(seed)
        self._copies: dict[torch.device, DeviceLoader] = {}

    @property
    def seed(self) -> int:
        """The seed the order and augmentation started from (at construction or the last `reseed`)."""
        return self._order.initial_seed()

    @property
    def device(self) -> torch.device:
        """Where the stored images live (and where batches are made)."""
        return self.images.device

    @property
    def num_examples(self) -> int:
        """How many examples the loader holds (under torchrun: all ranks' shards together)."""
        return self.images.shape[0]

    def __len__(self) -> int:
        """Batches per pass on this rank (ceiling division: the last batch may be short)."""
        return -(-distributed.shard_size(self.num_examples, pad=self.shuffle) // self.batch_size)

    def to(self, device: torch.device | str) -> DeviceLoader:
        """This loader with its images stored on ``device`` (copied once, then reused)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device == self.device:
            return self
        if device not in self._copies:
            copy = DeviceLoader.__new__(DeviceLoader)
            copy.__dict__.update(self.__dict__)
            copy.images, copy.labels = self.images.to(device), self.labels.to(device)
            if self._normalise is not None:
                copy._normalise = tuple(t.to(device) for t in self._normalise)
            copy._copies = {}
            self._copies[device] = copy
        return self._copies[device]

    def reseed(self, seed: int) -> None:
        """Restart the shuffling and augmentation from ``seed``: one reproducible order per run.

        The loader and its copies on other devices (`to`) share one generator, so this
        reseeds them all.
        """
        self._order.manual_seed(seed)

    def subset(self, n: int | None, seed: int = 0) -> DeviceLoader:
        """A new loader with this one's options over a fixed class-balanced subset of ``n`` of
        its examples (`balanced_subset` with ``seed``; all of them if ``n`` is None), on the same
        device, its order starting from ``seed``. This loader is left as it is.

        Example: ``train_iter.subset(2000)`` for a shorter experiment on the same data.
        """
        if n is None or n >= self.num_examples:
            images, labels = self.images, self.labels  # all of them: shared, not copied
        else:
            keep = torch.from_numpy(balanced_subset(self.labels.cpu().numpy(), n, seed)).to(self.device)
            images, labels = self.images[keep], self.labels[keep]
        options = {"resize": self.resize, "mean": self.mean, "std": self.std, "augment": self.augment}
        return DeviceLoader(images, labels, self.batch_size, self.shuffle, **options, seed=seed)

    def __iter__(self):
        n = self.num_examples
        if self.shuffle:
            order = torch.randperm(n, generator=self._order).to(self.device, non_blocking=True)
        else:
            order = torch.arange(n, device=self.device)
        draws = None
        if self.augment is not None:  # the whole epoch's random crops and flips, copied once
            draws = self.augment.draw(n, self._order).to(self.device, non_blocking=True)
        if distributed.world_size() > 1:  # under torchrun: this rank's shard of the same epoch
            mine = distributed.shard(n, pad=self.shuffle).to(self.device, non_blocking=True)
            order, draws = order[mine], None if draws is None else draws[mine]
            n = len(mine)
        for start in range(0, n, self.batch_size):
            batch = slice(start, start + self.batch_size)
            idx = order[batch]
            yield self.prepare(self.images[idx], None if draws is None else draws[batch]), self.labels[idx]

    def prepare(self, images: torch.Tensor, draws: torch.Tensor | None = None) -> torch.Tensor:
        """Turn a uint8 batch into the float batch the model sees (resize, augment, normalise).

        ``draws``: the batch's rows of `Augment.draw`, on the batch's device (the loop passes
        its epoch's draws); without them an augmenting loader draws new ones here.
        """
        X = images.float().div_(255)
        if self.resize is not None and tuple(X.shape[-2:]) != self.resize:
            X = F.interpolate(X, size=self.resize, mode="bilinear", align_corners=False)
        if self.augment is not None:
            if draws is None:
                draws = self.augment.draw(X.shape[0], self._order).to(X.device)
            X = augment_batch(X, self.augment, draws)
        if self._normalise is not None:
            mean, std = self._normalise
            X = (X - mean) / std
        return X


def _per_channel(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """Per-channel constants on ``device``, shaped to broadcast over a batch ``(N, C, H, W)``."""
    return torch.tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)


def augment_batch(X: torch.Tensor, augment: Augment, draws: torch.Tensor) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flips, for a whole batch at once.

    ``draws`` holds one row of `Augment.draw` per image, on ``X``'s device.
    """
    n, _, h, w = X.shape
    p = augment.crop_padding
    if p > 0:
        padded = F.pad(X, (p, p, p, p))
        # Each image's offset picks its crop window; a single gather takes them all.
        dy, dx = draws[:, 0:1], draws[:, 1:2]
        rows = (dy + torch.arange(h, device=X.device))[:, None, :, None]
        cols = (dx + torch.arange(w, device=X.device))[:, None, None, :]
        batch = torch.arange(n, device=X.device)[:, None, None, None]
        chans = torch.arange(X.shape[1], device=X.device)[None, :, None, None]
        X = padded[batch, chans, rows, cols]
    if augment.flip:
        flip = draws[:, 2].bool().view(n, 1, 1, 1)
        X = torch.where(flip, X.flip(3), X)
    return X
