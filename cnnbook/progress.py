"""A one-line progress report with an ETA that updates in place (Jupyter or terminal)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Notebook, nbval, nbclient)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def format_seconds(seconds: float) -> str:
    """``75.3`` -> ``'1:15'``; ``3725`` -> ``'1:02:05'``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Shows ``epoch 2/10 · batch 120/235 · 41% · ETA 0:31``, redrawn at most twice a second.

    It only reads the host's clock, so it adds no GPU synchronisation: on a GPU the host
    runs a few batches ahead, which makes the ETA slightly optimistic, never slower.

    draw: show the line (``False``: show nothing).
    report: also called after every batch as ``report(fraction_done, text)``, e.g.
        ``report(0.41, "epoch 2/10 · batch 120/235")``: a slider explorer moves its own
        progress bar so, and stops the run by raising an exception from it (Cancel).
    """

    def __init__(
        self,
        num_epochs: int,
        batches_per_epoch: int,
        interval: float = 0.5,
        draw: bool = True,
        report: Callable[[float, str], None] | None = None,
    ):
        self.total = num_epochs * batches_per_epoch
        self.num_epochs, self.batches_per_epoch = num_epochs, batches_per_epoch
        self.interval, self.draw, self.report = interval, draw, report
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._handle = None
        if draw and in_jupyter():
            from IPython.display import display

            self._handle = display({"text/plain": "starting..."}, raw=True, display_id=True)

    def batch_done(self, epoch: int, batch: int) -> None:
        """Call after every batch (0-based epoch and batch); reports, and redraws when due."""
        done = epoch * self.batches_per_epoch + batch + 1
        where = f"epoch {epoch + 1}/{self.num_epochs} · batch {batch + 1}/{self.batches_per_epoch}"
        if self.report is not None:
            self.report(done / self.total, where)
        now = time.perf_counter()
        if self.draw and now - self._last_draw >= self.interval:
            self._last_draw = now
            elapsed = now - self.start
            eta = elapsed / done * (self.total - done)
            self.show(
                f"{where} · {done / self.total:.0%} · elapsed {format_seconds(elapsed)}"
                f" · ETA {format_seconds(eta)}"
            )

    def show(self, text: str) -> None:
        """Replace the progress line with ``text``."""
        if self._handle is not None:
            self._handle.update({"text/plain": text}, raw=True)
        else:
            sys.stderr.write("\r" + text.ljust(100))
            sys.stderr.flush()

    def close(self, text: str) -> None:
        """Leave ``text`` as the final state of the progress line (if it is drawn)."""
        if not self.draw:
            return
        self.show(text)
        if self._handle is None:
            sys.stderr.write("\n")
