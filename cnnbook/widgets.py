"""Exercise sliders: experiments a reader re-runs in JupyterLab and browses on the website.

An `Explorer` shows one slider per setting and, below them, the result for the chosen
settings. `Explorer.show` computes a result for every combination of slider positions and
keeps each in its own ``HTML`` widget. The sliders pick among them *in the browser*: each
slider is ``jslink``-ed to the ``selected_index`` of nested ``Stack`` widgets (one level
per slider), so no Python runs when a slider moves. When the notebook is saved with its
widget state (``python -m cnnbook execute`` does that), the website, where no kernel runs,
still switches between the stored results.

With a running kernel, **Run** computes the chosen settings again in a background thread,
with a progress bar, the result redrawn in place, and a **Cancel** button: the kernel stays
free to receive the click, and the experiment stops at its next call of ``progress``.
`cnnbook.explorers` holds the experiments the chapters use (training runs, convolutions).

Example::

    def square(progress, x):
        return f"<b>{x} squared is {x * x}</b>"

    Explorer(square, {"x": range(5)}, title="Squares").show()
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import threading
import time
from collections.abc import Callable, Sequence

import ipywidgets as widgets
from matplotlib.figure import Figure
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from cnnbook.plot import figure_metadata, figure_png
from cnnbook.progress import in_jupyter

NOT_COMPUTED = "<i>Not computed yet: press Run (needs a running kernel).</i>"


class ExperimentCancelled(Exception):
    """Raised inside an experiment by its ``progress`` callback once Cancel was pressed."""


def figure_html(fig: Figure) -> str:
    """A matplotlib figure as an ``<img>`` tag holding a small, sharp PNG (64 colours: a few KB).

    The PNG is `cnnbook.plot.figure_png`'s, twice the pixels it is shown at, and keeps the
    entries that record its size on the page.
    """
    png = figure_png(fig)
    record = figure_metadata(png)
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=64)
    text = PngInfo()
    for key, value in record.items():
        text.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="png", optimize=True, pnginfo=text)
    return png_html(buffer.getvalue(), width=int(record["cnnbook:css-width"]), pixelated=False)


def png_html(png: bytes, width: int | None = None, title: str = "", pixelated: bool = True) -> str:
    """An ``<img>`` tag showing PNG bytes, optionally ``width`` CSS pixels wide.

    ``pixelated``: enlarge a small image with square, sharp pixels (feature maps), not blurred.
    """
    rendering = ";image-rendering:pixelated" if pixelated else ""
    style = f' style="width:{width}px;max-width:100%{rendering}"' if width else ""
    alt = f' alt="{html.escape(title)}"' if title else ""
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}"{style}{alt}>'


def _label(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class Explorer:
    """Sliders over a grid of settings; below them, the result of ``experiment`` for each.

    experiment: ``experiment(progress, **settings)`` returns an HTML string or a matplotlib
        ``Figure``. It should call ``progress(fraction, text="")`` often (every batch): the call
        updates the progress bar and raises `ExperimentCancelled` after Cancel was pressed.
        ``None`` for a subclass that overrides `compute` instead.
    sliders: slider name -> the values it offers, e.g. ``{"lr": [0.1, 0.3, 0.9]}``.
    start: slider name -> the value it starts at (default: each slider's first value).
    live: show Run, Cancel and a progress bar (a cheap experiment may go without them).
    run_on_change: with a kernel, also run (after ``debounce`` seconds without further moves)
        when a slider stops on settings that have no result yet.
    """

    def __init__(
        self,
        experiment: Callable | None,
        sliders: dict[str, Sequence],
        *,
        title: str = "",
        start: dict | None = None,
        live: bool = True,
        run_on_change: bool = False,
        debounce: float = 0.5,
    ):
        if not sliders:
            raise ValueError("An Explorer needs at least one slider, e.g. sliders={'lr': [0.1, 0.3]}.")
        self.experiment = experiment
        self.options = {name: list(values) for name, values in sliders.items()}
        for name, values in self.options.items():
            if not values:
                raise ValueError(f"Slider {name!r} offers no values; give a list such as [0.1, 0.3].")
        # The names sit in HTML widgets, not in the sliders' descriptions: the HTML manager would
        # hand a description to MathJax 2's API, which the site's MathJax 3 lacks (an error).
        # A choice between two values (yes/no, on/off) reads better as a toggle than as a slider.
        self.sliders = [
            widgets.ToggleButtons(options=[(_label(v), v) for v in values], style={"button_width": "60px"})
            if len(values) == 2
            else widgets.SelectionSlider(options=[(_label(v), v) for v in values], continuous_update=True,
                                         layout=widgets.Layout(width="240px"))
            for values in self.options.values()
        ]  # fmt: skip
        for name, slider in zip(self.options, self.sliders, strict=True):
            if start and name in start:
                slider.value = start[name]
        self.live = live
        self.results: dict[tuple[int, ...], widgets.HTML] = {}  # slider positions -> result
        self.computed: set[tuple[int, ...]] = set()
        self.links: list[widgets.Link] = []  # slider -> Stack, run by the browser
        self.results_view = self._nested_stacks(())
        self.run_button = widgets.Button(description="Run", tooltip="compute the chosen settings")
        self.cancel_button = widgets.Button(description="Cancel", disabled=True)
        self.progress = widgets.FloatProgress(value=0.0, min=0.0, max=1.0)
        self.status = widgets.HTML()
        self.run_button.on_click(lambda _: self.run())
        self.cancel_button.on_click(lambda _: self.cancel())
        controls = [widgets.HBox([self.run_button, self.cancel_button, self.progress])] if live else []
        header = [widgets.HTML(f"<b>{html.escape(title)}</b>")] if title else []
        self.widget = widgets.VBox(
            header + [widgets.HBox([widgets.HBox([widgets.HTML(f"{html.escape(name)}&nbsp;"), slider])
                                    for name, slider in zip(self.options, self.sliders, strict=True)],
                                   layout=widgets.Layout(flex_flow="row wrap"))]
            + controls + [self.status, self.results_view]
        )  # fmt: skip
        self.last_error: BaseException | None = None
        self._last_report = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        if live:  # a slider's move matters to the kernel only where Run can compute
            for slider in self.sliders:
                slider.observe(lambda _: self._say_what_run_computes(), names="index")
                if run_on_change:
                    slider.observe(lambda _: self._run_soon(debounce), names="index")

    def _nested_stacks(self, prefix: tuple[int, ...]):
        """One ``Stack`` per slider level, its ``selected_index`` linked in the browser to the slider."""
        level = len(prefix)
        if level == len(self.sliders):
            self.results[prefix] = widgets.HTML(NOT_COMPUTED)
            return self.results[prefix]
        slider = self.sliders[level]
        children = [self._nested_stacks(prefix + (i,)) for i in range(len(slider.options))]
        stack = widgets.Stack(children, selected_index=slider.index)
        self.links.append(widgets.jslink((slider, "index"), (stack, "selected_index")))
        return stack

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # -- settings and results -------------------------------------------------------------
    def index(self) -> tuple[int, ...]:
        """The sliders' current positions."""
        return tuple(slider.index for slider in self.sliders)

    def settings(self, index: tuple[int, ...] | None = None) -> dict:
        """The settings at slider positions ``index`` (default: where the sliders are)."""
        index = self.index() if index is None else index
        return {name: values[i] for (name, values), i in zip(self.options.items(), index, strict=True)}

    def describe(self, index: tuple[int, ...]) -> str:
        """``'lr 0.3, epochs 4'``: the settings at ``index`` as text."""
        return ", ".join(f"{name} {_label(value)}" for name, value in self.settings(index).items())

    def show_result(self, index: tuple[int, ...], result) -> None:
        """Store ``result`` (HTML or a Figure) as what the sliders show at positions ``index``."""
        self.results[index].value = figure_html(result) if isinstance(result, Figure) else str(result)
        self.computed.add(index)

    def compute(self, index: tuple[int, ...], progress: Callable) -> None:
        """Run the experiment for the settings at ``index`` and show its result there."""
        self.show_result(index, self.experiment(progress, **self.settings(index)))

    def targets(self) -> list[tuple[int, ...]]:
        """The positions `precompute` runs the experiment for: every combination."""
        return list(itertools.product(*(range(len(values)) for values in self.options.values())))

    # -- computing: all at once, or one setting live ---------------------------------------
    def show(self, precompute: bool = True) -> None:
        """Display the explorer (in Jupyter), then compute every setting that has no result yet."""
        if in_jupyter():
            from IPython.display import display

            display(self)
        if precompute:
            self.precompute()

    def precompute(self) -> None:
        """Compute, in this thread, every target without a result: what the website shows."""
        todo = [index for index in self.targets() if index not in self.computed]
        start = time.perf_counter()
        for n, index in enumerate(todo):

            def progress(fraction, text="", n=n, index=index):  # overall progress over all targets
                self._report(
                    (n + fraction) / len(todo), f"{n + 1}/{len(todo)} {self.describe(index)}: {text}"
                )

            self.compute(index, progress)
        self.progress.value = 1.0
        self.status.value = (
            f"{len(self.computed)} results computed in {time.perf_counter() - start:.0f} s. "
            + (
                "Move the sliders to compare them; Run computes the chosen settings again "
                "(needs a running kernel)."
                if self.live
                else "Move the sliders to compare them."
            )
        )
        if not in_jupyter():
            print(self.status.value)

    def run(self, index: tuple[int, ...] | None = None) -> threading.Thread:
        """Compute the settings at ``index`` (default: the sliders') again, in a background thread."""
        self.cancel(wait=True)
        self._stop = stop = threading.Event()
        index = self.index() if index is None else index
        self._thread = threading.Thread(target=self._run_live, args=(index, stop), daemon=True)
        self._thread.start()
        return self._thread

    def cancel(self, wait: bool = False) -> None:
        """Stop a live run at its next progress report (and wait for it to stop, if ``wait``)."""
        if self._timer is not None:
            self._timer.cancel()
        self._stop.set()
        if wait and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _say_what_run_computes(self) -> None:
        """When the sliders rest on settings without a result, name them in the status line.

        The kernel learns a slider's position from a message that the browser may send *after*
        a quick click on Run (it holds back slider updates while the kernel is busy), and Run
        computes the position the kernel knows. This line shows that position.
        """
        running = self._thread is not None and self._thread.is_alive()
        index = self.index()
        if not running and index not in self.computed:
            self.status.value = f"{html.escape(self.describe(index))}: not computed yet; press Run."

    def _run_soon(self, delay: float) -> None:
        """Debounce: run once the sliders have rested for ``delay`` seconds, if nothing is shown."""
        if self._timer is not None:
            self._timer.cancel()
        if self.index() not in self.computed:
            self._timer = threading.Timer(delay, self.run)
            self._timer.daemon = True
            self._timer.start()

    def _run_live(self, index: tuple[int, ...], stop: threading.Event) -> None:
        name = self.describe(index)
        self.run_button.disabled, self.cancel_button.disabled = True, False
        self.progress.value = 0.0
        start = time.perf_counter()

        def progress(fraction, text=""):
            if stop.is_set():
                raise ExperimentCancelled(name)
            self._report(fraction, f"{name}: {text}")

        try:
            self.compute(index, progress)
        except ExperimentCancelled:
            self.status.value = f"Cancelled: {html.escape(name)}."
        except Exception as err:  # a thread's exception would vanish: show it and keep it
            self.last_error = err
            error = html.escape(f"{type(err).__name__}: {err}")
            self.status.value = f"<b>Failed</b> ({html.escape(name)}): {error}"
        else:
            self.progress.value = 1.0
            self.status.value = f"{html.escape(name)}: computed live in {time.perf_counter() - start:.1f} s."
        finally:
            self.run_button.disabled, self.cancel_button.disabled = False, True

    def _report(self, fraction: float, text: str) -> None:
        # Widget updates are messages to the browser: send at most ten a second.
        now = time.perf_counter()
        if fraction >= 1 or now - self._last_report >= 0.1:
            self._last_report = now
            self.progress.value = min(max(float(fraction), 0.0), 1.0)
            self.status.value = html.escape(text.strip())
