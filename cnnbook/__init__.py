"""cnnbook: the helper package of the book *Convolutional Neural Networks in PyTorch*.

This file is the table of contents: it re-exports what the chapters use, so a chapter
reads ``import cnnbook`` and then ``cnnbook.train(...)``. Importing does nothing else.
"""

import importlib

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
from cnnbook.diagram import draw_model
from cnnbook.history import History
from cnnbook.inspection import ShapeMismatchError, layer_table
from cnnbook.loader import Augment, DeviceLoader
from cnnbook.plot import (
    confusion_matrix,
    new_figure,
    plot_confusion_matrix,
    plot_history,
    show_images,
    show_misclassified,
)
from cnnbook.train import TrainingDivergedError, accuracy, evaluate_accuracy, init_xavier, train

__version__ = "0.1.0"

# The slider explorers need the notebook stack (ipywidgets), which `pip install cnnbook` does
# not bring: they load on first use, so that the rest works in a plain script.
NOTEBOOK_HELPERS = {
    "ConvExplorer": "cnnbook.explorers",
    "Explorer": "cnnbook.widgets",
    "TrainingExplorer": "cnnbook.explorers",
}


def __getattr__(name: str):
    """Load a notebook helper on first use, or say what to install for it."""
    if name not in NOTEBOOK_HELPERS:
        raise AttributeError(f"module 'cnnbook' has no attribute {name!r}")
    try:
        module = importlib.import_module(NOTEBOOK_HELPERS[name])
    except ModuleNotFoundError as missing:
        raise ModuleNotFoundError(
            f"cnnbook.{name} needs {missing.name}, part of the notebook stack: "
            "pip install 'cnnbook[notebooks]' (or run the book's `make lab`)"
        ) from missing
    return getattr(module, name)


__all__ = [
    "accuracy",
    "active_profile",
    "Augment",
    "balanced_subset",
    "bf16_is_fast",
    "CheckpointError",
    "cifar10_class_subset",
    "CIFAR10_CLASSES",
    "confusion_matrix",
    "ConvExplorer",
    "CorruptDatasetError",
    "DatasetNotFoundError",
    "device_name",
    "DeviceLoader",
    "draw_model",
    "evaluate_accuracy",
    "Explorer",
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
    "plot_confusion_matrix",
    "plot_history",
    "PROFILES",
    "read_cifar10",
    "read_fashion_mnist",
    "save_checkpoint",
    "seed_everything",
    "ShapeMismatchError",
    "show_images",
    "show_misclassified",
    "train",
    "TrainingDivergedError",
    "TrainingExplorer",
    "try_gpu",
    "use_profile",
]
