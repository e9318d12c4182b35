"""The datasets of the book as ready-to-train iterables, with their class names.

Two paths to the same data:

* the fast path, `load_data_fashion_mnist` / `load_data_cifar10` / `load_data_cifar2`,
  returns `DeviceLoader`s that hold the images once and batch them on the device;
* the classic path, `load_data_fashion_mnist_classic` and `image_dataset`, returns the
  torchvision ``Dataset`` + ``DataLoader`` pair that most PyTorch code uses (chapter 3).

Under the quick profile (the active one, or the one passed as ``profile=``) the loaders
of both paths hold fixed, class-balanced subsets (`Split.subset`) and print one line
saying so.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from cnnbook import distributed
from cnnbook.config import Profile, resolve_profile
from cnnbook.datafiles import Split, read_cifar10, read_fashion_mnist
from cnnbook.loader import Augment, DeviceLoader

FASHION_MNIST_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


def get_fashion_mnist_labels(labels) -> list[str]:
    """The class names of Fashion-MNIST label numbers (d2l's helper of the same name)."""
    return [FASHION_MNIST_CLASSES[int(i)] for i in labels]


def _profile_subsets(
    train: Split, test: Split, dataset: str, values_per_example: int, profile: Profile
) -> tuple[Split, Split]:
    """The train and test examples ``profile`` allows, printing a note when it cuts them."""
    cut_train = train.subset(profile.max_examples("train", values_per_example))
    cut_test = test.subset(profile.max_examples("test", values_per_example))
    n_train, n_test = len(train.labels), len(test.labels)
    cut = len(cut_train.labels) < n_train or len(cut_test.labels) < n_test
    if cut and distributed.is_main_process():  # under torchrun, rank 0 says it for all
        print(
            f"{profile.name} profile: {dataset} cut to {len(cut_train.labels):,} of {n_train:,} training "
            f"and {len(cut_test.labels):,} of {n_test:,} test examples (class-balanced); "
            "CNNBOOK_PROFILE=full uses them all."
        )
    return cut_train, cut_test


def _values_per_example(images: np.ndarray, resize: int | None) -> int:
    channels, height, width = images.shape[1:]
    if resize:
        height = width = resize
    return channels * height * width


def _device_loaders(
    train: Split,
    test: Split,
    dataset: str,
    batch_size: int,
    profile: Profile,
    **options,
) -> tuple[DeviceLoader, DeviceLoader]:
    values = _values_per_example(train.images, options.get("resize"))
    train, test = _profile_subsets(train, test, dataset, values, profile)
    augment = options.pop("augment", None)
    train_iter = DeviceLoader(
        torch.from_numpy(train.images),
        torch.from_numpy(train.labels),
        batch_size,
        shuffle=True,
        augment=augment,
        **options,
    )
    test_iter = DeviceLoader(
        torch.from_numpy(test.images), torch.from_numpy(test.labels), batch_size, shuffle=False, **options
    )
    return train_iter, test_iter


def load_data_fashion_mnist(
    batch_size: int,
    resize: int | None = None,
    root: str | os.PathLike | None = None,
    profile: Profile | str | None = None,
) -> tuple[DeviceLoader, DeviceLoader]:
    """Fashion-MNIST as (train_iter, test_iter) of float images in [0, 1], 1x28x28 or resized.

    Same call shape as d2l's ``load_data_fashion_mnist``; the loaders are `DeviceLoader` objects.
    ``profile`` (default: the active one) decides how many examples they hold.
    Example: ``train_iter, test_iter = load_data_fashion_mnist(256)``.
    """
    train, test = read_fashion_mnist(root)
    return _device_loaders(train, test, "Fashion-MNIST", batch_size, resolve_profile(profile), resize=resize)


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W), scaled to [0, 1]."""
    x = torch.from_numpy(images).float().div_(255)
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).tolist())


def cifar10_class_subset(
    classes: tuple[str, ...], root: str | os.PathLike | None = None
) -> tuple[Split, Split]:
    """The CIFAR-10 images of the named classes, relabelled 0, 1, ... in the order given.

    Example: ``cifar10_class_subset(("airplane", "bird"))`` is CIFAR-2 (10,000 + 2,000 images).
    """
    unknown = [c for c in classes if c not in CIFAR10_CLASSES]
    if unknown or len(set(classes)) != len(classes) or not classes:
        raise ValueError(
            f"CIFAR-10 classes must be distinct names from: {', '.join(CIFAR10_CLASSES)}; "
            f"got {list(classes)}" + (f" ({', '.join(map(repr, unknown))} unknown)." if unknown else ".")
        )
    wanted = [CIFAR10_CLASSES.index(c) for c in classes]
    subsets = []
    for split in read_cifar10(root):
        keep = np.isin(split.labels, wanted)
        relabel = np.zeros(10, dtype=np.int64)
        relabel[wanted] = np.arange(len(wanted))
        subsets.append(Split(split.images[keep], relabel[split.labels[keep]], split.source))
    return subsets[0], subsets[1]


def load_data_cifar10(
    batch_size: int,
    augment: Augment | None = Augment(),
    classes: tuple[str, ...] = CIFAR10_CLASSES,
    root: str | os.PathLike | None = None,
    profile: Profile | str | None = None,
) -> tuple[DeviceLoader, DeviceLoader]:
    """CIFAR-10 (or the named classes of it) as (train_iter, test_iter), normalised per channel.

    The mean and std come from the training images of the chosen classes. ``augment``
    applies to the training loader only (random crop with padding and flips by default;
    ``None`` turns it off). ``profile`` (default: the active one) decides how many examples
    the loaders hold.
    """
    train, test = cifar10_class_subset(tuple(classes), root)
    mean, std = channel_stats(train.images)
    name = "CIFAR-10" if len(classes) == 10 else f"CIFAR-{len(classes)} ({', '.join(classes)})"
    profile = resolve_profile(profile)
    return _device_loaders(train, test, name, batch_size, profile, mean=mean, std=std, augment=augment)


def load_data_cifar2(
    batch_size: int, root: str | os.PathLike | None = None, profile: Profile | str | None = None
) -> tuple[DeviceLoader, DeviceLoader]:
    """CIFAR-2: airplanes (label 0) against birds (label 1), normalised, not augmented.

    10,000 training and 2,000 validation images, as in *Deep Learning with PyTorch*, ch. 8.
    """
    classes = ("airplane", "bird")
    return load_data_cifar10(batch_size, augment=None, classes=classes, root=root, profile=profile)


# ---------------------------------------------------------------- the classic path (chapter 3)


class ImageArrayDataset(Dataset):
    """A torchvision-style ``Dataset``: item ``i`` is ``(transform(PIL image), label)``.

    This is how ``torchvision.datasets.FashionMNIST`` and ``CIFAR10`` serve images: one
    at a time, converted to a PIL image and transformed on the CPU.
    """

    def __init__(self, split: Split, transform=None):
        self.images, self.labels, self.transform = split.images, split.labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image = self.images[i]
        image = Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[i])


def load_data_fashion_mnist_classic(
    batch_size: int,
    resize: int | None = None,
    num_workers: int = 4,
    root: str | os.PathLike | None = None,
    profile: Profile | str | None = None,
) -> tuple[DataLoader, DataLoader]:
    """Fashion-MNIST through ``Dataset`` + ``DataLoader`` exactly as d2l builds it.

    Every image goes through ``transforms.Resize`` (if asked) and ``ToTensor`` in worker
    processes. Kept for teaching and as the baseline of ``python -m cnnbook bench``.
    ``profile`` (default: the active one) decides how many examples they hold, as for
    `load_data_fashion_mnist`.
    """
    from torchvision import transforms

    steps = [transforms.ToTensor()]
    if resize:
        steps.insert(0, transforms.Resize(resize))
    transform = transforms.Compose(steps)
    train, test = read_fashion_mnist(root)
    values = _values_per_example(train.images, resize)
    train, test = _profile_subsets(train, test, "Fashion-MNIST", values, resolve_profile(profile))
    return (
        DataLoader(ImageArrayDataset(train, transform), batch_size, shuffle=True, num_workers=num_workers),
        DataLoader(ImageArrayDataset(test, transform), batch_size, shuffle=False, num_workers=num_workers),
    )
