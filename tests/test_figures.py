"""The chapters' stored figures are drawn by `cnnbook.plot.figure_png`: twice the pixels they
are shown at, with a record of their size on the page and of their smallest text, which the
browser test (tests/test_book.py) turns into the text size a reader sees.

Figures stored before that record existed stay until their run is made again; a GPU run is
re-made only on a GPU. They are listed below with the run that replaces them, and the list
is checked both ways: a run not listed has no unrecorded figure, and a listed run still has
one (so an entry cannot outlive the debt it records).
"""

import base64
import re
import urllib.request
from pathlib import Path

import nbformat
import pytest

from cnnbook.classroom.execute import is_addendum
from cnnbook.plot import figure_metadata

CHAPTERS = sorted((Path(__file__).parent.parent / "chapters").glob("*.ipynb"))

FIGURES_AWAITING_A_RERUN = {
    ("01-lenet", "main run"): "a GPU run (`make outputs` on a GPU)",
    ("02-alexnet", "main run"): "a GPU run",
    ("02-alexnet", "addendum"): "`python -m cnnbook execute --addendum` (about 30 minutes on a 2-core CPU)",
    ("03-training-loop", "main run"): "a GPU run",
    ("04-regularization", "main run"): "`python -m cnnbook execute` (about 30 minutes on a 2-core CPU)",
    ("05-residual", "main run"): "a GPU run",
    ("05-residual-lab", "main run"): "`python -m cnnbook execute` (about 20 minutes on a 2-core CPU)",
}

# An <img> in a widget's saved HTML, and whether it is a pixel image (a feature map enlarged
# pixel by pixel: an image of data, with no text to read).
WIDGET_IMAGE = re.compile(r'<img src=\\?"data:image/png;base64,([A-Za-z0-9+/=]+)\\?"([^>]*)>')


def stored_figures(notebook) -> dict[str, list[bytes]]:
    """The PNG figures a notebook stores, by run ("main run", "addendum"): cell outputs, and the
    figures inside its widgets' saved state (the sliders' frames, made by the main run)."""
    runs = {"main run": [], "addendum": []}
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if "image/png" in output.get("data", {}):
                run = "addendum" if is_addendum(cell) else "main run"
                runs[run].append(base64.b64decode(output["data"]["image/png"]))
    state = str(notebook.metadata.get("widgets", {}))
    for encoded, attributes in WIDGET_IMAGE.findall(state):
        if "pixelated" not in attributes:
            runs["main run"].append(base64.b64decode(encoded))
    return runs


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_stored_figures_record_their_size_unless_listed_for_a_rerun(path):
    notebook = nbformat.read(path, as_version=4)
    for run, pngs in stored_figures(notebook).items():
        unrecorded = [png for png in pngs if not figure_metadata(png)]
        listed = FIGURES_AWAITING_A_RERUN.get((path.stem, run))
        if listed:
            assert unrecorded, (
                f"{path.name}, {run}: every figure records its size now; remove the run from "
                "FIGURES_AWAITING_A_RERUN"
            )
        else:
            assert len(unrecorded) == 0, (
                f"{path.name}, {run}: {len(unrecorded)} of {len(pngs)} figures were not drawn by "
                "cnnbook.plot.figure_png (no size record): draw them with cnnbook's figures and "
                "store the run again"
            )


def test_the_size_record_is_what_the_browser_test_reads():
    from matplotlib.figure import Figure

    from cnnbook.plot import figure_png

    fig = Figure(figsize=(4, 2))
    fig.add_subplot().set_title("a title", fontsize=12)
    record = figure_metadata(figure_png(fig))
    assert record == {"cnnbook:css-width": "400", "cnnbook:smallest-text": f"{10 * 200 / 72:.1f}"}


# -- what a reader sees: used by the browser tests (test_widgets_browser.py, test_book.py) ----

MIN_TEXT_PX = 9  # the smallest text a figure may show, in CSS pixels (the page's text is 16)
MIN_DENSITY = 1.95  # image pixels per CSS pixel: 2 is sharp on a HiDPI screen

FIGURES_ON_THE_PAGE = """() => [...document.querySelectorAll('article img')]
  .filter((img) => img.getBoundingClientRect().width > 0)
  .map((img) => ({
    src: img.currentSrc,
    natural: img.naturalWidth,
    shown: img.getBoundingClientRect().width,
    pixelated: getComputedStyle(img).imageRendering === 'pixelated',
  }))"""


def shown_figures(page) -> list[dict]:
    """The figures a browser page shows (pixel images of data left out), each with its PNG's
    size record, the text size a reader sees (``text_px``) and its pixel density."""
    figures = []
    for figure in page.evaluate(FIGURES_ON_THE_PAGE):
        if figure["pixelated"]:
            continue  # a feature map enlarged pixel by pixel: an image of data, with no text
        src = figure["src"]
        if src.startswith("data:"):
            png = base64.b64decode(src.split(",", 1)[1])
        else:
            with urllib.request.urlopen(src) as response:
                png = response.read()
        record = figure_metadata(png)
        scale = figure["shown"] / figure["natural"]
        text = float(record["cnnbook:smallest-text"]) * scale if "cnnbook:smallest-text" in record else None
        figures.append({**figure, "png": png, "record": record, "text_px": text, "density": 1 / scale})
    return figures


def check_readable(figures, where: str) -> None:
    """Every figure with a size record is sharp and shows its smallest text at MIN_TEXT_PX or more."""
    for figure in figures:
        if not figure["record"]:
            continue
        name = f"{where}: the figure {figure['src'][-40:]!r}"
        assert figure["text_px"] is None or figure["text_px"] >= MIN_TEXT_PX, (
            f"{name} shows its smallest text at {figure['text_px']:.1f} CSS pixels (at least "
            f"{MIN_TEXT_PX} wanted): make the figure narrower or its text larger"
        )
        assert figure["density"] >= MIN_DENSITY, (
            f"{name} has {figure['density']:.2f} image pixels per CSS pixel: blurred on a HiDPI screen"
        )
