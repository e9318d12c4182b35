"""Figures: the live training plot, `plot_history` for finished runs, and image grids.

The live plot draws with matplotlib's object API (no pyplot state) and shows the figure
as a PNG in a Jupyter display that is replaced after every epoch, so the notebook keeps
exactly one final figure, which is what the rendered book shows. Outside Jupyter it
prints one line per epoch instead.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure

from cnnbook.progress import in_jupyter

CURVES = (  # (History attribute, legend label, line style)
    ("train_loss", "train loss", "-"),
    ("train_acc", "train acc", "--"),
    ("test_acc", "test acc", "-."),
)


def draw_history(history, ax, num_epochs: int | None = None) -> None:
    """Draw train loss, train accuracy and test accuracy per epoch onto a matplotlib axis."""
    for attr, label, style in CURVES:
        values = getattr(history, attr)
        ax.plot(history.epochs[: len(values)], values, style, marker="o", markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss / accuracy")
    ax.set_xlim(0.8, max(num_epochs or 1, len(history.epochs), 1) + 0.2)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="center right")


def plot_history(history, title: str | None = None, ax=None) -> Figure | None:
    """Plot a finished `History`; returns the new figure (or draws on ``ax`` if given)."""
    fig = None
    if ax is None:
        _show_figures_in_jupyter()
        fig = Figure(figsize=(5, 3.2), layout="constrained")
        ax = fig.add_subplot()
    draw_history(history, ax)
    ax.set_title(title or f"{history.device} · {history.profile} profile")
    return fig


def new_figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] | None = None):
    """A new matplotlib ``Figure`` and its axes; a Jupyter cell that ends with the figure shows it.

    Object API, no pyplot state. Example: ``fig, (left, right) = cnnbook.new_figure(ncols=2)``.
    """
    _show_figures_in_jupyter()
    fig = Figure(figsize=figsize or (5 * ncols, 3.2 * nrows), layout="constrained")
    return fig, fig.subplots(nrows, ncols)


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure rendered as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _show_figures_in_jupyter() -> None:
    """Let a cell that ends with a `Figure` display it as a PNG (what the inline backend does
    for pyplot figures). Registered on first use, never at import."""
    if in_jupyter():
        from IPython import get_ipython

        get_ipython().display_formatter.formatters["image/png"].for_type(Figure, figure_png)


class LivePlot:
    """A training plot that redraws in place after each epoch (Jupyter), else prints a line."""

    def __init__(self, num_epochs: int, title: str):
        self.num_epochs, self.title = num_epochs, title
        self._handle = None
        if in_jupyter():
            from IPython.display import display

            self._handle = display(
                {"text/plain": "(the training plot appears after the first epoch)"}, raw=True, display_id=True
            )

    def update(self, history) -> None:
        """Redraw with every epoch recorded so far in ``history``."""
        if self._handle is None:
            print(history.epoch_line(-1))
            return
        fig = Figure(figsize=(5, 3.2), layout="constrained")
        ax = fig.add_subplot()
        draw_history(history, ax, self.num_epochs)
        ax.set_title(self.title)
        self._handle.update({"image/png": figure_png(fig), "text/plain": history.epoch_line(-1)}, raw=True)


def show_images(
    images, titles=None, num_cols: int = 8, scale: float = 1.2, cmap="gray", suptitle: str | None = None
) -> Figure:
    """A grid of images (tensor or array, N x C x H x W or N x H x W) with optional titles.

    Example: ``show_images(X[:16], titles=get_fashion_mnist_labels(y[:16]))``.
    """
    images = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images)
    if images.ndim == 4:
        images = images.transpose(0, 2, 3, 1)
        if images.shape[-1] == 1:
            images = images[..., 0]
    num_rows = -(-len(images) // num_cols)
    _show_figures_in_jupyter()
    fig = Figure(figsize=(num_cols * scale, num_rows * scale * 1.15), layout="constrained")
    axes = fig.subplots(num_rows, num_cols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i < len(images):
            image = images[i]
            if image.ndim == 3 and image.dtype != np.uint8:  # float colour: scale to [0, 1]
                image = (image - image.min()) / max(float(image.max() - image.min()), 1e-8)
            ax.imshow(image, cmap=cmap if image.ndim == 2 else None)
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    return fig
