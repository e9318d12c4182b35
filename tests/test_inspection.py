"""cnnbook.inspection: the per-layer table of shapes, parameters, memory and FLOPs, and the
wrong-size error that names the input sizes that fit (chapter 2's AlexNet counts included)."""

import pytest
import torch
from torch import nn

from cnnbook import ShapeMismatchError, layer_table, models
from cnnbook.inspection import fitting_sizes


def test_lenet_table_has_the_known_shapes_and_parameters(make_lenet):
    table = layer_table(make_lenet(), (1, 1, 28, 28))
    shapes = [r.output_shape for r in table.rows if r.kind in ("Conv2d", "AvgPool2d", "Flatten", "Linear")]
    assert shapes == [
        (1, 6, 28, 28), (1, 6, 14, 14), (1, 16, 10, 10), (1, 16, 5, 5),
        (1, 400), (1, 120), (1, 84), (1, 10),
    ]  # fmt: skip
    assert table.total_params == 61_706
    assert [r.params for r in table.rows if r.params] == [156, 2_416, 48_120, 10_164, 850]
    assert len(table.rows) == 12  # every leaf layer, activations included
    assert table.input_shape == (1, 1, 28, 28)


def test_conv_flops_are_two_per_multiply_add():
    conv = nn.Conv2d(3, 8, kernel_size=3)  # 3x32x32 -> 8x30x30
    row = layer_table(nn.Sequential(conv), (2, 3, 32, 32)).rows[0]
    assert row.output_shape == (2, 8, 30, 30)
    assert row.flops == 2 * (8 * 3 * 3 * 3) * (30 * 30) * 2  # 2 x Cout*Cin*k*k x Hout*Wout x batch


def test_linear_flops_are_two_times_in_times_out():
    row = layer_table(nn.Sequential(nn.Linear(400, 120)), (1, 400)).rows[0]
    assert row.flops == 2 * 400 * 120


def test_lenet_flops_and_memory_per_layer(make_lenet):
    table = layer_table(make_lenet(), (1, 1, 28, 28))
    conv1, conv2 = (r for r in table.rows if r.kind == "Conv2d")
    assert conv1.flops == 2 * 6 * 1 * 5 * 5 * 28 * 28
    assert conv2.flops == 2 * 16 * 6 * 5 * 5 * 10 * 10
    assert conv1.activation_bytes == 6 * 28 * 28 * 4  # float32
    assert table.total_flops == conv1.flops + conv2.flops + 2 * (400 * 120 + 120 * 84 + 84 * 10)


def test_table_as_text(make_lenet):
    text = str(layer_table(make_lenet(), (1, 1, 28, 28)))
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "output", "shape", "params", "activations", "FLOPs"]
    assert lines[1].split() == ["input", "1x1x28x28"]
    assert lines[2].split() == ["0", "Conv2d", "1x6x28x28", "156", "18.4", "KiB", "235.20", "K"]
    assert lines[-1].split()[:2] == ["total", "61,706"]


def test_wrong_input_shape_names_the_layer_that_failed(make_lenet):
    net = make_lenet()  # its first Linear expects 16*5*5 = 400 features, from 28x28 images
    with pytest.raises(ShapeMismatchError) as err:
        layer_table(net, (1, 1, 32, 32))
    message = str(err.value)
    assert message.startswith(
        "Shapes stop fitting at layer 7 (Linear(in_features=400, out_features=120, bias=True)), "
        "which got an input of shape 1x576 from the layer before."
    )
    assert "mat1 and mat2 shapes cannot be multiplied (1x576 and 400x120)" in message
    table = err.value.table
    assert [r.name for r in table.rows] == ["0", "1", "2", "3", "4", "5", "6"]  # up to Flatten
    assert table.rows[-1].output_shape == (1, 576)
    assert "6 Flatten" in message  # the layers that worked are shown too


def test_layer_table_leaves_the_model_as_it_was(make_lenet):
    net = make_lenet()
    net.train()
    before = [p.clone() for p in net.parameters()]
    layer_table(net, (1, 1, 28, 28))
    assert net.training
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert not net[0]._forward_hooks  # the measuring hooks are gone
    with pytest.raises(ShapeMismatchError):
        layer_table(net, (1, 1, 32, 32))
    assert net.training and not net[0]._forward_hooks


# ------------------------------------------- sizes that fit, and chapter 2's AlexNet counts


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
