"""What chapter 2 (AlexNet) relies on: the wrong-size error that names the sizes that fit,
and the parameter counts the chapter computes.

Checkpoint errors (wrong architecture, missing file, atomic save, ``weights_only``) are
covered in test_checkpoint.py; the quick profile's compute cap in
test_cifar_chapters_support.py.
"""

import pytest
import torch
from torch import nn

from cnnbook import ShapeMismatchError, layer_table, models
from cnnbook.inspection import fitting_sizes


def test_a_28x28_image_for_the_224_alexnet_names_the_sizes_that_fit():
    with pytest.raises(ShapeMismatchError) as err:
        layer_table(models.alexnet(), (1, 1, 28, 28))
    lines = str(err.value).splitlines()
    assert lines[0].startswith("Shapes stop fitting at layer 5 (MaxPool2d(")
    assert lines[0].endswith("which got an input of shape 1x256x2x2 from the layer before.")
    assert lines[1] == "Square inputs of 193x193 to 224x224 pixels fit this network."
    assert lines[2].startswith("PyTorch said: ")
    assert [r.name for r in err.value.table.rows] == ["0", "1", "2", "3", "4"]


def test_a_slightly_too_large_image_fails_at_the_first_dense_layer():
    with pytest.raises(ShapeMismatchError) as err:
        layer_table(models.alexnet(), (1, 1, 227, 227))
    message = str(err.value)
    assert message.startswith("Shapes stop fitting at layer 14 (Linear(in_features=6400, out_features=4096")
    assert "got an input of shape 1x9216" in message
    assert "Square inputs of 193x193 to 224x224 pixels fit this network." in message


def test_fitting_sizes_of_alexnet_and_lenet(make_lenet):
    assert fitting_sizes(models.alexnet(), (1, 1, 28, 28)) == list(range(193, 225))
    assert fitting_sizes(make_lenet(), (1, 1, 32, 32)) == [28, 29, 30, 31]


def test_fitting_sizes_searches_up_to_twice_the_given_size_and_at_least_256():
    # A size-agnostic network fits everything from its smallest size up to the search limit.
    agnostic = nn.Sequential(nn.Conv2d(1, 4, kernel_size=3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert fitting_sizes(agnostic, (1, 1, 200, 200)) == list(range(3, 401))
    assert fitting_sizes(agnostic, (1, 1, 8, 8)) == list(range(3, 257))
    assert fitting_sizes(agnostic, (1, 1, 8, 8), largest=10) == list(range(3, 11))


def test_the_wrong_number_of_channels_fits_no_size():
    with pytest.raises(ShapeMismatchError) as err:
        layer_table(models.alexnet(), (1, 3, 224, 224))
    assert "No square input with 3 channel(s) fits this network." in str(err.value)


def test_non_image_inputs_get_no_size_hint():
    with pytest.raises(ShapeMismatchError) as err:
        layer_table(nn.Sequential(nn.Linear(400, 120)), (1, 300))
    assert "Square inputs" not in str(err.value) and "No square input" not in str(err.value)


def test_fitting_sizes_leaves_the_model_as_it_was():
    net = models.alexnet()
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fitting_sizes(net, (1, 1, 28, 28))
    assert net.training
    after = net.state_dict()
    assert all(after[k].device.type == "cpu" and torch.equal(after[k], v) for k, v in before.items())


def imagenet_alexnet(groups: int = 1) -> nn.Sequential:
    """The chapter's original ImageNet AlexNet (3x227x227, LRN, 1,000 classes)."""
    return nn.Sequential(
        nn.Conv2d(3, 96, kernel_size=11, stride=4), nn.ReLU(),
        nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0), nn.MaxPool2d(3, stride=2),
        nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=groups), nn.ReLU(),
        nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0), nn.MaxPool2d(3, stride=2),
        nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=groups), nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=groups), nn.ReLU(),
        nn.MaxPool2d(3, stride=2), nn.Flatten(),
        nn.Dropout(p=0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),
        nn.Dropout(p=0.5), nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, 1000),
    )  # fmt: skip


def test_the_original_alexnet_counts_of_the_chapter():
    table = layer_table(imagenet_alexnet(), (1, 3, 227, 227))
    assert table.total_params == 62_378_344
    convs = [r for r in table.rows if r.kind == "Conv2d"]
    assert [r.output_shape[-1] for r in convs] == [55, 27, 13, 13, 13]
    assert sum(r.params for r in convs) == 3_747_200
    conv_flops = sum(r.flops for r in convs)
    assert 0.94 < conv_flops / table.total_flops < 0.96  # "about 95% of the compute"
    assert layer_table(imagenet_alexnet(groups=2), (1, 3, 227, 227)).total_params == 60_965_224
