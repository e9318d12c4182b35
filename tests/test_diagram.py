"""cnnbook.diagram: a model's diagram comes from its traced graph, with the right shapes,
branches side by side, normalisation and activations folded into the layer before them,
and a clear error for a forward that cannot be traced."""

import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.text import Text
from torch import nn

from cnnbook.diagram import draw_model, model_graph


def conv_bn(c_in, c_out, k):
    conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU())


class TwoBranches(nn.Module):
    """A small Inception-style block: a 1x1 branch and a 1x1-then-3x3 branch, concatenated."""

    def __init__(self):
        super().__init__()
        self.short = conv_bn(8, 4, 1)
        self.long = nn.Sequential(conv_bn(8, 2, 1), conv_bn(2, 6, 3))

    def forward(self, x):
        return torch.cat([self.short(x), self.long(x)], dim=1)


class Skip(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(conv_bn(8, 8, 3), conv_bn(8, 8, 3))

    def forward(self, x):
        return x + self.body(x)


def test_branches_sit_side_by_side_and_meet_in_the_concatenation():
    boxes = {b.text(): b for b in model_graph(TwoBranches(), (1, 8, 5, 5))}
    assert list(boxes) == [
        "input\n8x5x5",
        "Conv2d 1x1\n+ BatchNorm2d + ReLU\n4x5x5",
        "Conv2d 1x1\n+ BatchNorm2d + ReLU\n2x5x5",
        "Conv2d 3x3\n+ BatchNorm2d + ReLU\n6x5x5",
        "concatenate\n10x5x5",
    ]
    short, first, second = (boxes[t] for t in list(boxes)[1:4])
    assert (short.row, first.row, second.row) == (1, 1, 2)
    assert short.x < first.x == second.x, "the two branches share a row, each keeps its column"
    cat = boxes["concatenate\n10x5x5"]
    assert cat.row == 3 and len(cat.inputs) == 2 and cat.kind == "merge"


def test_a_skip_connection_feeds_the_addition_from_the_input():
    boxes = model_graph(Skip(), (1, 8, 4, 4))
    add = boxes[-1]
    assert add.label == "add" and add.shape == (8, 4, 4)
    assert boxes[0].name in add.inputs and len(add.inputs) == 2
    assert [b.row for b in boxes] == [0, 1, 2, 3]


def test_layers_are_labelled_with_kernel_stride_and_groups():
    net = nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1, stride=2), nn.MaxPool2d(2), nn.Flatten()
    )
    labels = [b.label for b in model_graph(net, (1, 8, 8, 8))]
    assert labels == ["input", "Conv2d 3x3, depthwise", "Conv2d 1x1, stride 2", "MaxPool2d 2x2", "Flatten"]


def test_an_activation_after_a_branching_layer_stays_a_box_of_its_own():
    class Fork(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.relu = nn.Conv2d(2, 2, 1), nn.ReLU()

        def forward(self, x):
            y = self.conv(x)
            return self.relu(y) + y  # y feeds two layers: folding the ReLU into conv would hide that

    labels = [b.label for b in model_graph(Fork(), (1, 2, 3, 3))]
    assert labels == ["input", "Conv2d 1x1", "ReLU", "add"]


def test_draw_model_returns_a_figure_with_one_text_per_box():
    fig = draw_model(TwoBranches(), (1, 8, 5, 5), title="two branches")
    assert isinstance(fig, Figure)
    texts = [t.get_text() for t in fig.findobj(Text)]
    assert "concatenate\n10x5x5" in texts and "two branches" in texts
    assert fig.get_figwidth() <= 6.8, "wider than the page: the text would shrink"


def test_a_forward_that_cannot_be_traced_says_what_to_do():
    class DataDependent(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(ValueError, match="cannot trace DataDependent.forward .*Draw its blocks one by one"):
        model_graph(DataDependent(), (1, 3))
