"""cnnbook: the helper package of the book *Convolutional Neural Networks in PyTorch*.

This file is the table of contents: it re-exports what the chapters use, so a chapter
reads ``import cnnbook`` and then ``cnnbook.train(...)``. Importing does nothing else.
"""

from cnnbook import models
from cnnbook.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cnnbook.config import (
    PROFILES,
    active_profile,
    bf16_is_fast,
    device_name,
    seed_everything,
    try_gpu,
    use_profile,
)
from cnnbook.data import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    ImageArrayDataset,
    cifar10_class_subset,
    get_fashion_mnist_labels,
    load_data_cifar2,
    load_data_cifar10,
    load_data_fashion_mnist,
    load_data_fashion_mnist_classic,
)
from cnnbook.datafiles import (
    CorruptDatasetError,
    DatasetNotFoundError,
    balanced_subset,
    read_cifar10,
    read_fashion_mnist,
)
from cnnbook.explorers import ConvExplorer, TrainingExplorer
from cnnbook.history import History
from cnnbook.inspection import ShapeMismatchError, layer_table
from cnnbook.loader import Augment, DeviceLoader
from cnnbook.plot import new_figure, plot_history, show_images
from cnnbook.train import TrainingDivergedError, accuracy, evaluate_accuracy, init_xavier, train

__version__ = "0.1.0"

__all__ = [
    "accuracy",
    "active_profile",
    "Augment",
    "balanced_subset",
    "bf16_is_fast",
    "CheckpointError",
    "cifar10_class_subset",
    "CIFAR10_CLASSES",
    "ConvExplorer",
    "CorruptDatasetError",
    "DatasetNotFoundError",
    "device_name",
    "DeviceLoader",
    "evaluate_accuracy",
    "FASHION_MNIST_CLASSES",
    "get_fashion_mnist_labels",
    "History",
    "ImageArrayDataset",
    "init_xavier",
    "layer_table",
    "load_checkpoint",
    "load_data_cifar10",
    "load_data_cifar2",
    "load_data_fashion_mnist",
    "load_data_fashion_mnist_classic",
    "models",
    "new_figure",
    "plot_history",
    "PROFILES",
    "read_cifar10",
    "read_fashion_mnist",
    "save_checkpoint",
    "seed_everything",
    "ShapeMismatchError",
    "show_images",
    "train",
    "TrainingDivergedError",
    "TrainingExplorer",
    "try_gpu",
    "use_profile",
]
