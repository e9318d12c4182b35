"""cnnbook.plot: training curves (live and finished), image grids, and figures in Jupyter."""

import io

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

import cnnbook
from cnnbook import History, plot_history, show_images
from cnnbook.plot import PAGE_WIDTH, LivePlot, figure_metadata, figure_png


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


def test_new_figure_gives_a_figure_and_its_axes():
    fig, (left, right) = cnnbook.new_figure(ncols=2)
    left.plot([1, 2], [3, 4])
    assert list(fig.get_size_inches()) == [PAGE_WIDTH, 3.2]  # two 5-inch plots would be shrunk to fit
    assert cnnbook.plot.figure_png(fig).startswith(b"\x89PNG")
    _, ax = cnnbook.new_figure(figsize=(4, 3))
    assert ax.figure.get_size_inches().tolist() == [4, 3]


def test_figures_show_as_png_in_jupyter(fake_jupyter, history):
    plot_history(history)
    [(kind, show)] = fake_jupyter.formatters  # a cell ending with a Figure shows it
    png, metadata = show(plot_history(history))
    assert kind is Figure and png.startswith(b"\x89PNG")
    assert metadata == {"width": 500}  # shown 500 CSS pixels wide, from a PNG of 1,000 pixels


def test_figures_are_drawn_at_twice_their_size_on_the_page_and_record_it(history):
    png = figure_png(plot_history(history))  # 5 x 3.2 inches at 100 CSS pixels per inch
    assert Image.open(io.BytesIO(png)).size == (1000, 640)
    record = figure_metadata(png)
    assert record["cnnbook:css-width"] == "500"
    # the smallest text is the legend's and the ticks' 10 points: 10/72 inch at 200 pixels per inch
    assert float(record["cnnbook:smallest-text"]) == pytest.approx(10 * 200 / 72, abs=0.1)
    assert Image.open(io.BytesIO(png)).text["cnnbook:css-width"] == "500"  # a valid PNG text chunk
    assert figure_metadata(b"\x89PNG\r\n\x1a\n") == {}  # another PNG: nothing recorded


def test_image_grids_fit_the_page_so_their_titles_are_not_shrunk(fashion_small):
    images = fashion_small.train_images[:24]
    fig = show_images(images, titles=["pullover"] * 24, num_cols=12)
    assert fig.get_figwidth() == pytest.approx(PAGE_WIDTH)  # 12 x 1.2 inches would not fit
    smallest = float(figure_metadata(figure_png(fig))["cnnbook:smallest-text"])
    assert smallest == pytest.approx(9 * 200 / 72, abs=0.1)  # the titles' 9 points


def growing_history(history: History):
    """Yield ``history`` as training records it: after epoch 1, then 2, then 3."""
    growing = History(device=history.device, device_name=history.device_name, profile=history.profile)
    for i in range(len(history.epochs)):
        growing.record(
            history.train_loss[i], history.train_acc[i], history.test_acc[i], 2.0, history.examples_per_sec[i]
        )
        yield growing


def test_live_plot_in_a_terminal_prints_one_line_per_epoch(history, capsys):
    live = LivePlot(num_epochs=3, title="LeNet")
    for recorded in growing_history(history):
        live.update(recorded)
    assert capsys.readouterr().out.splitlines() == [history.epoch_line(i) for i in range(3)]


def test_live_plot_in_jupyter_replaces_one_figure_after_every_epoch(history, fake_jupyter, capsys):
    live = LivePlot(num_epochs=3, title="LeNet")
    assert [d.shown for d in fake_jupyter.displays] == [
        [{"text/plain": "(the training plot appears after the first epoch)"}]
    ]
    for recorded in growing_history(history):
        live.update(recorded)
    assert len(fake_jupyter.displays) == 1, "one display, updated in place: the cell keeps one figure"
    updates = fake_jupyter.displays[0].shown[1:]
    assert [u["text/plain"] for u in updates] == [history.epoch_line(i) for i in range(3)]
    assert all(u["image/png"].startswith(b"\x89PNG") for u in updates)
    assert len({u["image/png"] for u in updates}) == 3  # a new figure each epoch
    assert fake_jupyter.displays[0].metadata[1:] == [{"image/png": {"width": 500}}] * 3  # sharp: 2x pixels
    assert capsys.readouterr().out == "", "in Jupyter the figure replaces the printed lines"
