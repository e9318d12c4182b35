"""What a classifier gets wrong: `confusion_matrix` counts (true class by row), and the two
figures drawn from it, `plot_confusion_matrix` and `show_misclassified`.

The model is a tiny lookup that predicts the class written into each image's first pixel,
so every count is known in advance.
"""

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

import cnnbook
from cnnbook import DeviceLoader, confusion_matrix, plot_confusion_matrix, show_misclassified
from cnnbook.plot import figure_png

NAMES = ("cat", "dog", "truck")


class FirstPixel(nn.Module):
    """Scores ``num_classes`` classes: the class whose index is the first pixel's byte value."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.num_classes = num_classes
        self.bias = nn.Parameter(torch.zeros(num_classes))  # gives the model a device

    def forward(self, X):
        predicted = (X[:, 0, 0, 0] * 255).round().long().clamp(0, self.num_classes - 1)
        return nn.functional.one_hot(predicted, self.num_classes).float() + self.bias


def loader(labels, predictions, batch_size=4):
    """A DeviceLoader of 4x4 grey images whose first pixel holds the class to predict."""
    images = torch.randint(0, 256, (len(labels), 1, 4, 4), dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.tensor(predictions, dtype=torch.uint8)
    return DeviceLoader(images, torch.tensor(labels), batch_size)


# true:      0  0  0  1  1  1  1  2  2
# predicted: 0  0  1  1  1  0  2  2  1
LABELS = [0, 0, 0, 1, 1, 1, 1, 2, 2]
PREDICTED = [0, 0, 1, 1, 1, 0, 2, 2, 1]
EXPECTED = [[2, 1, 0], [1, 2, 1], [0, 1, 1]]


def test_counts_true_class_by_row_over_every_batch():
    net = FirstPixel().train()
    counts = confusion_matrix(net, loader(LABELS, PREDICTED), 3)
    assert counts.dtype == torch.int64 and counts.device.type == "cpu"
    assert counts.tolist() == EXPECTED
    assert counts.sum(dim=1).tolist() == [3, 4, 2]  # examples per true class
    assert net.training, "the network is put back in training mode"


def test_the_diagonal_over_the_row_sums_is_the_accuracy_per_class():
    counts = confusion_matrix(FirstPixel(), loader(LABELS, PREDICTED), 3)
    per_class = counts.diag() / counts.sum(dim=1)
    torch.testing.assert_close(per_class, torch.tensor([2 / 3, 2 / 4, 1 / 2]))
    assert counts.diag().sum() / counts.sum() == pytest.approx(5 / 9)


def test_works_on_any_iterable_of_batches():
    batches = [(torch.zeros(2, 1, 4, 4), torch.tensor([0, 2]))]  # first pixel 0: predicts class 0
    assert confusion_matrix(FirstPixel(), batches, 3).tolist() == [[1, 0, 0], [0, 0, 0], [1, 0, 0]]


@pytest.mark.parametrize("num_classes", [4, 2])
def test_a_num_classes_the_network_does_not_score_is_refused(num_classes):
    with pytest.raises(ValueError, match=f"num_classes is {num_classes}: expected"):
        confusion_matrix(FirstPixel(3), loader(LABELS, PREDICTED), num_classes)


@pytest.mark.parametrize("num_classes", [0, 1, 2.5, "3", True])
def test_num_classes_must_be_an_integer_of_at_least_two(num_classes):
    with pytest.raises(ValueError, match="num_classes must be an integer of at least 2"):
        confusion_matrix(FirstPixel(), loader(LABELS, PREDICTED), num_classes)


@pytest.mark.parametrize("bad_label", [3, -1])
def test_labels_out_of_range_are_refused(bad_label):
    labels = [*LABELS[:-1], bad_label]
    with pytest.raises(ValueError, match=f"Label {bad_label} is not a class index.*0 to 2"):
        confusion_matrix(FirstPixel(), loader(labels, PREDICTED), 3)


def test_plot_confusion_matrix_labels_classes_and_counts():
    counts = torch.tensor(EXPECTED)
    fig = plot_confusion_matrix(counts, NAMES, title="tiny")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(NAMES)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(NAMES)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("predicted class", "true class", "tiny")
    assert [t.get_text() for t in ax.texts] == [str(c) for row in EXPECTED for c in row]
    shown = ax.images[0].get_array()
    assert shown[1].tolist() == pytest.approx([0.25, 0.5, 0.25])  # colour: fraction of the true class
    assert figure_png(fig).startswith(b"\x89PNG")


def test_plot_confusion_matrix_onto_a_given_axis_and_bad_shapes():
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_confusion_matrix([[3, 1], [0, 4]], ax=ax) is None
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1"]
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="2 class names for a 3x3"):
        plot_confusion_matrix(torch.zeros(3, 3), ["a", "b"])


def test_show_misclassified_titles_true_and_predicted_class():
    net = FirstPixel().train()
    fig = show_misclassified(net, loader(LABELS, PREDICTED), NAMES, num_images=3, num_cols=2)
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == [
        "true: cat\npredicted: dog",
        "true: dog\npredicted: cat",
        "true: dog\npredicted: truck",
    ]
    assert all(ax.title.get_fontsize() >= 9 for ax in shown)  # readable at a page's width
    assert net.training
    assert figure_png(fig).startswith(b"\x89PNG")


def test_show_misclassified_shows_what_there_is():
    fig = show_misclassified(FirstPixel(), loader(LABELS, PREDICTED), NAMES)  # asks for 18, 4 exist
    assert len([ax for ax in fig.axes if ax.images]) == 4
    perfect = show_misclassified(FirstPixel(), loader(LABELS, LABELS), NAMES)
    assert [t.get_text() for ax in perfect.axes for t in ax.texts] == ["no misclassified examples"]
    with pytest.raises(ValueError, match="Label 3 is not a class index"):
        show_misclassified(FirstPixel(), loader([0, 3], [0, 0]), NAMES)
    with pytest.raises(ValueError, match="num_classes is 2"):
        show_misclassified(FirstPixel(), loader(LABELS, PREDICTED), NAMES[:2])


def test_exported():
    assert {"confusion_matrix", "plot_confusion_matrix", "show_misclassified"} <= set(cnnbook.__all__)
