"""cnnbook.plot and cnnbook.progress: training curves, image grids and the progress line."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from cnnbook import History, plot_history, show_images
from cnnbook.plot import figure_png
from cnnbook.progress import Progress, format_seconds, in_jupyter


@pytest.fixture
def history():
    h = History(device="cpu", device_name="CPU", profile="quick")
    for loss, train_acc, test_acc in [(1.2, 0.55, 0.60), (0.8, 0.70, 0.71), (0.6, 0.78, 0.77)]:
        h.record(loss, train_acc, test_acc, 2.0, 1000.0)
    return h


def test_plot_history_draws_the_three_curves(history):
    fig = plot_history(history)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    labels = ["train loss", "train acc", "test acc"]
    assert [line.get_label() for line in ax.get_lines()] == labels
    assert [text.get_text() for text in ax.get_legend().get_texts()] == labels
    curves = (history.train_loss, history.train_acc, history.test_acc)
    for line, values in zip(ax.get_lines(), curves, strict=True):
        assert list(line.get_xdata()) == [1, 2, 3]
        assert list(line.get_ydata()) == values
    assert ax.get_xlabel() == "epoch"
    assert ax.get_title() == "cpu · quick profile"
    assert figure_png(fig).startswith(b"\x89PNG")  # it renders


def test_plot_history_onto_a_given_axis(history):
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_history(history, title="LeNet", ax=ax) is None
    assert ax.get_title() == "LeNet" and len(ax.get_lines()) == 3


def test_show_images_makes_a_grid_with_titles(fashion_small):
    images = fashion_small.train_images[:10]
    fig = show_images(images, titles=[f"#{i}" for i in range(10)], num_cols=4)
    assert len(fig.axes) == 12  # 3 rows of 4
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 10
    assert [ax.get_title() for ax in shown] == [f"#{i}" for i in range(10)]
    np.testing.assert_array_equal(shown[3].images[0].get_array(), images[3, 0].numpy())
    assert len(show_images(images[:8], num_cols=4).axes) == 8  # exactly 2 rows, no empty third


def test_show_images_of_colour_floats(fashion_small):
    images = torch.rand(3, 3, 8, 8) * 4 - 2  # normalised colour images leave [0, 1]
    fig = show_images(images, num_cols=8)
    assert len(fig.axes) == 8
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == (8, 8, 3) and shown.min() == 0.0 and shown.max() == 1.0


@pytest.mark.parametrize(
    "seconds, text", [(0, "0:00"), (9.6, "0:10"), (75.3, "1:15"), (3599.4, "59:59"), (3725, "1:02:05")]
)
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_not_in_jupyter_under_pytest():
    assert in_jupyter() is False


def test_progress_line_in_a_terminal(capsys):
    progress = Progress(num_epochs=2, batches_per_epoch=10, interval=0.0)
    progress.batch_done(epoch=1, batch=4)  # the 15th of 20 batches
    progress.close("2/2 epochs in 1.0 s")
    err = capsys.readouterr().err
    assert "\repoch 2/2 · batch 5/10 · 75% · elapsed 0:00 · ETA 0:00" in err
    assert err.endswith("\r" + "2/2 epochs in 1.0 s".ljust(100) + "\n")
