"""cnnbook.models: the models later chapters and the benchmark reuse, identical to the
chapters' own definitions, with the parameter counts and output shapes the book states."""

import ast
from pathlib import Path

import nbformat
import pytest
import torch
from torch import nn

from cnnbook import models

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def chapter_function(chapter: str, name: str):
    """The function ``name`` as a chapter's code cell defines it (run alone, with torch and nn)."""
    notebook = nbformat.read(CHAPTERS / chapter, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type != "code" or f"def {name}(" not in cell.source:
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.FunctionDef) and node.name == name:
                namespace = {"torch": torch, "nn": nn}
                exec(compile(ast.Module([node], type_ignores=[]), chapter, "exec"), namespace)
                return namespace[name]
    raise AssertionError(f"{chapter} defines no function {name}()")


@pytest.mark.parametrize(
    "chapter, name, library",
    [("01-lenet.ipynb", "lenet", models.lenet), ("02-alexnet.ipynb", "alexnet", models.alexnet)],
)
def test_the_library_model_is_the_chapters_definition(chapter, name, library):
    ours, theirs = library(), chapter_function(chapter, name)()
    assert repr(ours) == repr(theirs)  # the same layers with the same settings, in order
    shapes = {key: value.shape for key, value in ours.state_dict().items()}
    assert shapes == {key: value.shape for key, value in theirs.state_dict().items()}


def test_lenet_has_61706_parameters_and_maps_28x28_images_to_10_scores():
    net = models.lenet()
    assert count_parameters(net) == 61_706  # d2l's LeNet-5
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_lenet_needs_28x28_images():
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        models.lenet()(torch.zeros(2, 1, 32, 32))


def test_alexnet_for_224x224_fashion_mnist():
    net = models.alexnet()
    assert count_parameters(net) == 46_764_746
    assert net.eval()(torch.zeros(1, 1, 224, 224)).shape == (1, 10)


def test_alexnet_with_other_channels_and_classes():
    net = models.alexnet(in_channels=3, num_classes=100)
    assert net[0].in_channels == 3 and net[-1].out_features == 100
    assert count_parameters(net) == 46_764_746 + 2 * 96 * 11 * 11 + 90 * (4096 + 1)
    assert net.eval()(torch.zeros(1, 3, 224, 224)).shape == (1, 100)


def test_resnet18_has_d2ls_11_2_million_parameters_and_any_input_size():
    net = models.resnet18()
    assert count_parameters(net) == 11_178_378
    assert net.eval()(torch.zeros(2, 1, 96, 96)).shape == (2, 10)
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)  # global pooling: any size from 28 up
    colour = models.resnet18(in_channels=3, num_classes=100)
    assert colour.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 100)


def test_a_residual_block_adds_its_input_or_a_1x1_projection():
    same = models.Residual(8, 8)
    assert same.shortcut is None
    assert same(torch.zeros(2, 8, 6, 6)).shape == (2, 8, 6, 6)
    halving = models.Residual(8, 16, stride=2)
    assert isinstance(halving.shortcut, nn.Conv2d) and halving.shortcut.kernel_size == (1, 1)
    assert halving(torch.zeros(2, 8, 6, 6)).shape == (2, 16, 3, 3)


def test_a_residual_block_with_a_zero_body_passes_on_relu_of_its_input():
    block = models.Residual(4, 4).eval()
    for conv in (block.conv1, block.conv2):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(block(x), torch.relu(x))
