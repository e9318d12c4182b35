"""Figures: the live training plot, `plot_history` for finished runs, image grids, and
what a classifier gets wrong (`confusion_matrix`, `plot_confusion_matrix`, `show_misclassified`).

The live plot draws with matplotlib's object API (no pyplot state) and shows the figure
as a PNG in a Jupyter display that is replaced after every epoch, so the notebook keeps
exactly one final figure, which is what the rendered book shows. Outside Jupyter it
prints one line per epoch instead.

Every figure is shown at 100 CSS pixels per inch of its size (a 5-inch plot is 500 pixels
wide on the page) from a PNG with twice as many pixels, so it stays sharp on HiDPI screens.
"""

from __future__ import annotations

import io
import struct
import zlib
from contextlib import closing

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.text import Text

from cnnbook.progress import in_jupyter

PIXELS_PER_INCH = 100  # a figure's size on the page: a 5-inch plot shows 500 CSS pixels wide
PAGE_WIDTH = 6.8  # inches: the book's text column is about 690 CSS pixels wide; wider figures shrink
DENSITY = 2  # image pixels per CSS pixel: sharp on HiDPI ("retina") screens


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

    Object API, no pyplot state. By default each plot is 5 x 3.2 inches, and a row of them
    is at most as wide as the page, so its text shows at full size. Example:
    ``fig, (left, right) = cnnbook.new_figure(ncols=2)``.
    """
    _show_figures_in_jupyter()
    fig = Figure(figsize=figsize or (min(5 * ncols, PAGE_WIDTH), 3.2 * nrows), layout="constrained")
    return fig, fig.subplots(nrows, ncols)


def figure_png(fig: Figure, pixels_per_inch: int = PIXELS_PER_INCH, density: int = DENSITY) -> bytes:
    """The figure as PNG bytes, ``density`` image pixels for every CSS pixel it is shown at.

    The PNG records how it is meant to be shown, in two text entries that the book's browser
    test reads to measure the text size a reader sees: ``cnnbook:css-width`` (the width in
    CSS pixels, ``pixels_per_inch`` per inch of the figure) and ``cnnbook:smallest-text`` (the
    height of its smallest text, in the PNG's own pixels).
    """
    dpi = pixels_per_inch * density
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)  # draws the figure: tick labels get their text
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    record = {"cnnbook:css-width": f"{fig.get_figwidth() * pixels_per_inch:.0f}"}
    if texts:
        record["cnnbook:smallest-text"] = f"{min(t.get_fontsize() for t in texts) * dpi / 72:.1f}"
    return _with_text_chunks(buffer.getvalue(), record)


def figure_metadata(png: bytes) -> dict[str, str]:
    """The ``cnnbook:`` text entries of a PNG made by `figure_png` (empty for other PNGs)."""
    entries, position = {}, 8  # after the PNG signature: chunks of length, type, data, CRC
    while position + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[position : position + 8])
        if kind == b"tEXt":
            key, _, value = png[position + 8 : position + 8 + length].partition(b"\0")
            if key.startswith(b"cnnbook:"):
                entries[key.decode("latin-1")] = value.decode("latin-1")
        position += 12 + length
    return entries


def _with_text_chunks(png: bytes, entries: dict[str, str]) -> bytes:
    """``png`` with a tEXt chunk per entry, placed right after the header chunk (IHDR, 25 bytes)."""
    chunks = b""
    for key, value in entries.items():
        body = b"tEXt" + key.encode("latin-1") + b"\0" + value.encode("latin-1")
        chunks += struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    return png[:33] + chunks + png[33:]


def _png_and_width(fig: Figure) -> tuple[bytes, dict]:
    """What Jupyter displays for a figure: the sharp PNG, and the width to show it at."""
    png = figure_png(fig)
    return png, {"width": int(figure_metadata(png)["cnnbook:css-width"])}


def _show_figures_in_jupyter() -> None:
    """Let a cell that ends with a `Figure` display it as a PNG (what the inline backend does
    for pyplot figures). Registered on first use, never at import."""
    if in_jupyter():
        from IPython import get_ipython

        get_ipython().display_formatter.formatters["image/png"].for_type(Figure, _png_and_width)


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
        png, width = _png_and_width(fig)
        self._handle.update(
            {"image/png": png, "text/plain": history.epoch_line(-1)}, metadata={"image/png": width}, raw=True
        )


def show_images(
    images, titles=None, num_cols: int = 8, scale: float = 1.2, cmap="gray", suptitle: str | None = None
) -> Figure:
    """A grid of images (tensor or array, N x C x H x W or N x H x W) with optional titles.

    Each image is ``scale`` inches wide, less if the row would be wider than the page: a grid
    is never shrunk to fit, so its titles show at their full size (9 points).

    Example: ``show_images(X[:16], titles=get_fashion_mnist_labels(y[:16]))``.
    """
    images = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images)
    if images.ndim == 4:
        images = images.transpose(0, 2, 3, 1)
        if images.shape[-1] == 1:
            images = images[..., 0]
    num_rows = -(-len(images) // num_cols)
    scale = min(scale, PAGE_WIDTH / num_cols)
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
                ax.set_title(str(titles[i]), fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def _check_num_classes(num_classes) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer of at least 2, got {num_classes!r}.")


def _predictions(net, data_iter, num_classes: int):
    """Yield ``(X, y, predicted)`` for each batch of ``data_iter``, on ``net``'s device, in eval mode.

    Checks that ``net`` scores ``num_classes`` classes and that every label is a class index.
    """
    _check_num_classes(num_classes)
    parameter = next(net.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    batches = data_iter.to(device) if hasattr(data_iter, "to") else data_iter
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for X, y in batches:
                X, y = X.to(device), y.to(device)
                scores = net(X)
                if scores.ndim != 2 or scores.shape[1] != num_classes:
                    raise ValueError(
                        f"The network gives scores of shape {tuple(scores.shape)} for a batch of "
                        f"{X.shape[0]}, but num_classes is {num_classes}: "
                        f"expected ({X.shape[0]}, {num_classes})."
                    )
                bad = (y < 0) | (y >= num_classes)
                if bad.any():
                    raise ValueError(
                        f"Label {int(y[bad][0])} is not a class index: with num_classes={num_classes} "
                        f"labels must be 0 to {num_classes - 1}."
                    )
                yield X, y, scores.argmax(dim=1)
    finally:
        net.train(was_training)


def confusion_matrix(net, data_iter, num_classes: int) -> torch.Tensor:
    """How often ``net`` predicts each class for each true class, over all batches of ``data_iter``.

    Returns a ``num_classes x num_classes`` int64 tensor on the CPU: row ``i`` counts the
    examples of true class ``i``, column ``j`` those predicted as class ``j``. The diagonal
    holds the correct predictions, a row's sum the examples of that class, so
    ``matrix.diag() / matrix.sum(dim=1)`` is the accuracy per class. The network runs in
    evaluation mode on its own device (and is put back in the mode it was in).

    Example: ``counts = confusion_matrix(net, test_iter, 10)``.
    """
    _check_num_classes(num_classes)
    counts = torch.zeros(num_classes * num_classes, dtype=torch.long)
    for _, y, predicted in _predictions(net, data_iter, num_classes):
        pairs = (y * num_classes + predicted).cpu()
        counts += torch.bincount(pairs, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def plot_confusion_matrix(matrix, class_names=None, title: str | None = None, ax=None) -> Figure | None:
    """Draw a confusion matrix (true class by row, as `confusion_matrix` returns it).

    Each cell shows its count; its colour is the count as a fraction of its row (of the true
    class), so rows of different sizes compare. ``class_names`` label the rows and columns.
    Returns the new figure (or draws on ``ax`` if given, and returns None).

    Example: ``plot_confusion_matrix(counts, cnnbook.CIFAR10_CLASSES)``.
    """
    counts = np.asarray(matrix.detach().cpu() if hasattr(matrix, "detach") else matrix)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"A confusion matrix is square; got shape {counts.shape}.")
    n = counts.shape[0]
    names = [str(i) for i in range(n)] if class_names is None else [str(c) for c in class_names]
    if len(names) != n:
        raise ValueError(f"{len(names)} class names for a {n}x{n} confusion matrix.")
    fig = None
    if ax is None:
        _show_figures_in_jupyter()
        side = max(3.5, 0.55 * n + 1.5)
        fig = Figure(figsize=(side + 0.8, side), layout="constrained")
        ax = fig.add_subplot()
    row_sums = counts.sum(axis=1, keepdims=True)
    fractions = counts / np.maximum(row_sums, 1)
    image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            dark = fractions[i, j] > 0.5  # white text on dark cells
            ax.text(
                j,
                i,
                f"{counts[i, j]:,}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark else "black",
            )
    ax.set_xticks(range(n), names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.figure.colorbar(image, ax=ax, label="fraction of the true class", shrink=0.8)
    if title:
        ax.set_title(title)
    return fig


def show_misclassified(
    net,
    data_iter,
    class_names,
    num_images: int = 18,
    num_cols: int = 6,
    scale: float = 1.5,
    suptitle: str | None = None,
) -> Figure:
    """A grid of the first ``num_images`` examples of ``data_iter`` that ``net`` gets wrong.

    Each image is titled with its true class over the class the network predicted
    ("true: cat", "predicted: dog"), large enough to read at a page's width. The images are
    shown as `show_images` shows them (normalised colour images rescaled to [0, 1]).
    Batches are read in order until enough mistakes are found.

    Example: ``show_misclassified(net, test_iter, cnnbook.CIFAR10_CLASSES)``.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}.")
    names = [str(c) for c in class_names]
    images, titles = [], []
    with closing(_predictions(net, data_iter, len(names))) as batches:  # closing: eval mode ends at once
        for X, y, predicted in batches:
            for i in (predicted != y).nonzero().flatten().tolist():
                images.append(X[i].float().cpu())
                titles.append(f"true: {names[int(y[i])]}\npredicted: {names[int(predicted[i])]}")
            if len(images) >= num_images:
                break
    images, titles = images[:num_images], titles[:num_images]
    if not images:
        _show_figures_in_jupyter()
        fig = Figure(figsize=(4, 1), layout="constrained")
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, "no misclassified examples", ha="center", va="center")
        return fig
    return show_images(
        torch.stack(images), titles, num_cols=min(num_cols, len(images)), scale=scale, suptitle=suptitle
    )
