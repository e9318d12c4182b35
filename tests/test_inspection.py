"""cnnbook.inspection: the per-layer table of shapes, parameters, memory and FLOPs."""

import pytest
import torch
from torch import nn

from cnnbook import ShapeMismatchError, layer_table


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
