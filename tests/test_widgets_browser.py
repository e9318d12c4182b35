"""Exercise sliders in a real browser (headless Chromium).

* On the static site: a page built by Jupyter Book with the book's own configuration, from a
  notebook executed the way `python -m cnnbook execute` stores chapters (widget state saved).
  No kernel runs there, yet moving a slider changes the shown result.
* In JupyterLab, started on 127.0.0.1 with a token under the quick profile, on cells copied
  from chapter 1: the slider cells run, a slider moves and the output changes, and Run trains
  LeNet live with a progress bar while Cancel stops a run.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from lab_server import jupyterlab
from test_book import REPO, browser, open_page, server  # noqa: F401 (the book tests' fixtures)
from test_figures import check_readable, shown_figures

from cnnbook.classroom.execute import execute_notebook

pytestmark = [pytest.mark.book, pytest.mark.browser]
CHAPTER = REPO / "chapters" / "01-lenet.ipynb"

PAGE_CELLS = [
    "import torch\nfrom torch import nn\n\nimport cnnbook\n\n"
    "X, y = next(iter(cnnbook.load_data_fashion_mnist(batch_size=8)[1]))",
    "cnnbook.ConvExplorer(X[0]).show()",
    "labels = torch.arange(200) % 2\n"
    "images = (labels.view(-1, 1, 1, 1) * 200 + torch.randint(0, 50, (200, 1, 8, 8))).byte()\n"
    "loader = cnnbook.DeviceLoader(images, labels, 20, shuffle=True)\n"
    "net = lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 2))\n"
    'explorer = cnnbook.TrainingExplorer(net, loader, loader, lr=[0.01, 0.5], epochs=3, device="cpu")\n'
    "explorer.show()",
    "cnnbook.show_images(images[:16], titles=['pullover (true: shirt)'] * 16, num_cols=8)",
    "fig, (left, right) = cnnbook.new_figure(ncols=2)\n"
    "left.plot([1, 2, 3], [0.9, 0.4, 0.3], label='train loss')\nleft.legend()\n"
    "right.plot([1, 2, 3], [0.6, 0.7, 0.8])\nfig",
]  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory, data_folder):
    """A one-page book with the repository's configuration, its page executed with widget state."""
    assert (REPO / "book/_static/vendor/require.js").exists(), "run `make setup` to fetch the site's JS"
    root = tmp_path_factory.mktemp("widget-site")
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    (root / "book").mkdir()
    for folder in ("_static", "_ext"):
        if (REPO / "book" / folder).exists():
            (root / "book" / folder).symlink_to(REPO / "book" / folder)
    (root / "_toc.yml").write_text("format: jb-book\nroot: sliders\n")
    math = nbformat.v4.new_markdown_cell(
        "# Sliders\n\nMath on the page loads MathJax: $n_{out} = n - k + 1$."
    )
    nb = nbformat.v4.new_notebook(cells=[math] + [nbformat.v4.new_code_cell(source) for source in PAGE_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "sliders.ipynb")
    saved = {name: os.environ.pop(name, None) for name in ("CNNBOOK_PROFILE", "CNNBOOK_DATA")}
    os.environ["CNNBOOK_DATA"] = str(data_folder)  # the kernel finds the test data there
    try:  # the full profile, as `make outputs` runs chapters: every setting precomputed
        execute_notebook(root / "sliders.ipynb", timeout=300)
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    build = [str(jupyter_book), "build", str(root), "-W", "--keep-going"]
    result = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"the book build failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    return root / "_build" / "html"


def visible_text(page, selector: str) -> str:
    return "\n".join(page.locator(f"{selector} >> visible=true").all_inner_texts())


def wait_for_text(page, text: str, timeout_ms: int) -> None:
    """Wait until the page shows ``text``; on a timeout, say what the explorers' status lines showed."""
    try:
        page.wait_for_function(f"document.body.innerText.includes({json.dumps(text)})", timeout=timeout_ms)
    except Exception as err:
        shown = visible_text(page, ".widget-html-content")[-1500:]
        raise AssertionError(
            f"{text!r} did not appear in {timeout_ms / 1000:.0f} s; the outputs show:\n{shown}"
        ) from err


def readout(page, slider_index: int):
    """The element showing the n-th slider's value next to it."""
    return page.locator(".widget-slider .widget-readout").nth(slider_index)


def step_to(page, slider_index: int, value: str) -> None:
    """Press ArrowLeft on a slider until it reads ``value``, waiting for each press to show."""
    node = readout(page, slider_index)
    for _ in range(50):
        shown = node.inner_text().strip()
        if shown == value:
            return
        move(page, slider_index, "ArrowLeft")
        page.wait_for_function(
            "([node, old]) => node.innerText.trim() !== old",
            arg=[node.element_handle(), shown],
            timeout=10_000,
        )
    raise AssertionError(f"slider {slider_index} never reached {value!r}")


def move(page, slider_index: int, key: str = "ArrowRight") -> None:
    """Move the n-th slider on the page one step with the keyboard, as a reader would."""
    handle = page.locator(".widget-slider .noUi-handle").nth(slider_index)
    handle.focus()
    page.keyboard.press(key)


def test_sliders_switch_stored_results_on_the_static_site(browser, server):  # noqa: F811
    page, errors, failed = open_page(browser, f"{server}/sliders.html")
    page.wait_for_selector(".widget-slider", timeout=30_000)
    assert page.locator(".widget-slider").count() == 3 + 1  # kernel, stride, padding; epochs
    assert page.locator(".widget-toggle-buttons").count() == 1, "two learning rates are a toggle"
    outputs = ".widget-html-content"
    assert "= 28;" in visible_text(page, outputs), "the start position (3x3, padding 1) gives 28"
    move(page, 0)  # kernel 3 -> 5 with padding 1: (28 + 2 - 5) / 1 + 1 = 26
    page.wait_for_function("document.body.innerText.includes('+ 1 = 26')", timeout=10_000)
    move(page, 1)  # stride 1 -> 2: floor(25 / 2) + 1 = 13
    page.wait_for_function("document.body.innerText.includes('+ 1 = 13')", timeout=10_000)
    assert "(3, 13, 13)" in visible_text(page, outputs)
    before = visible_text(page, outputs)
    assert "after 3 epochs:" in before, "the training explorer opens on the whole run"
    move(page, 3, "ArrowLeft")  # epochs 3 -> 2
    page.wait_for_function("document.body.innerText.includes('after 2 epochs:')", timeout=10_000)
    assert visible_text(page, outputs) != before
    assert not errors, f"console errors: {errors}"
    assert not failed, f"failed requests: {failed}"


def test_on_the_static_site_run_and_cancel_are_disabled_and_say_why(browser, server):  # noqa: F811
    page, errors, _ = open_page(browser, f"{server}/sliders.html")
    page.wait_for_selector(".cnnbook-static-note", timeout=30_000)
    buttons = page.eval_on_selector_all(
        "button.widget-button", "bs => bs.map(b => [b.textContent.trim(), b.disabled])"
    )
    assert ("Run", True) in [tuple(b) for b in buttons] and ("Cancel", True) in [tuple(b) for b in buttons]
    assert all(disabled for name, disabled in buttons if name in ("Run", "Cancel")), buttons
    assert "open this page in JupyterLab, Colab or Binder" in visible_text(page, ".cnnbook-static-note")
    assert page.locator(".widget-progress >> visible=true").count() == 0, "a full progress bar of no run"
    assert not errors, errors


def _contrast(page, selector: str) -> float:
    """WCAG contrast ratio between the text colour of ``selector`` and the page's background."""
    return page.evaluate(
        """(selector) => {
        const rgb = (c) => c.match(/[0-9.]+/g).slice(0, 3).map(Number);
        const lum = (c) => {
          const linear = (v) => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
          const [r, g, b] = rgb(c).map(linear);
          return 0.2126 * r + 0.7152 * g + 0.0722 * b;
        };
        const text = getComputedStyle(document.querySelector(selector)).color;
        const background = getComputedStyle(document.body).backgroundColor;
        const [a, b] = [lum(text), lum(background)].sort((x, y) => y - x);
        return (a + 0.05) / (b + 0.05);
      }""",
        selector,
    )


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_widget_text_is_readable_in_light_and_dark_mode(browser, server, theme):  # noqa: F811
    page = browser.new_page()
    page.add_init_script(
        f"localStorage.setItem('theme', '{theme}'); localStorage.setItem('mode', '{theme}');"
    )
    page.goto(f"{server}/sliders.html", wait_until="networkidle")
    page.wait_for_selector(".widget-html-content", timeout=30_000)
    assert page.evaluate("document.documentElement.dataset.theme") == theme
    for selector in (".widget-html-content", ".widget-readout", ".widget-label"):
        assert _contrast(page, selector) >= 4.5, f"{selector} is hard to read in {theme} mode"
    page.close()


@pytest.mark.parametrize(("theme", "width"), [("light", 1280), ("dark", 390)])
def test_figures_are_sharp_and_their_text_readable(browser, server, theme, width):  # noqa: F811
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.add_init_script(
        f"localStorage.setItem('theme', '{theme}'); localStorage.setItem('mode', '{theme}');"
    )
    page.goto(f"{server}/sliders.html", wait_until="networkidle")
    page.wait_for_selector(".widget-html-content img", timeout=30_000)
    figures = shown_figures(page)
    page.close()
    # the image grid, the two plots and the training explorer's shown frame
    assert len(figures) == 3, [f["src"][-40:] for f in figures]
    assert all(f["record"] for f in figures), "every figure is cnnbook's, with its size record"
    check_readable(figures, f"the sliders page at {width} px ({theme})")
    smallest = min(f["text_px"] for f in figures)
    print(f"at {width} px ({theme}): the smallest figure text shows {smallest:.1f} px")


# -- JupyterLab ------------------------------------------------------------------------------


def chapter_cells() -> list[str]:
    """The chapter's setup, data and slider cells, and the LeNet they train, in chapter order."""
    cells = [c for c in nbformat.read(CHAPTER, as_version=4).cells if c.cell_type == "code"]
    tags = [c.metadata.get("tags", []) for c in cells]
    wanted = [0]  # the setup cell
    wanted += [i for i, c in enumerate(cells) if "load_data_fashion_mnist(" in c.source][:1]
    wanted += [i for i, c in enumerate(cells) if c.source.startswith("# NBVAL_CHECK_OUTPUT\nX, y = ")][:1]
    wanted += [i for i, c in enumerate(cells) if c.source.startswith("def lenet():")][:1]
    wanted += [i for i, t in enumerate(tags) if "slider-conv" in t or "slider-lr" in t]
    assert len(wanted) == 6, (
        f"chapter 1 changed: expected setup, data, X, lenet and two slider cells {wanted}"
    )
    sources = [cells[i].source for i in sorted(wanted)]
    return [s.replace("epochs=num_epochs", "epochs=10") for s in sources]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, data_folder):
    """JupyterLab on a copy of the chapter's slider cells; yields (url of the notebook, token)."""
    root = tmp_path_factory.mktemp("lab")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in chapter_cells()])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "sliders.ipynb")
    env = {**os.environ, "CNNBOOK_PROFILE": "quick", "CNNBOOK_DATA": str(data_folder), "HOME": str(root),
           "JUPYTER_CONFIG_DIR": str(root / "cfg"), "JUPYTER_RUNTIME_DIR": str(root / "run")}  # fmt: skip

    def command(port, token):
        return [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1",
                f"--port={port}", f"--IdentityProvider.token={token}", "--expose-app-in-browser",
                f"--ServerApp.root_dir={root}", "--LabApp.news_url=", "--allow-root"]  # fmt: skip

    with jupyterlab(command, root, env, root / "lab.log") as (base, token):
        yield f"{base}/lab/tree/sliders.ipynb?token={token}", token


def test_sliders_run_and_train_live_in_jupyterlab(browser, lab):  # noqa: F811
    url, _ = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url, wait_until="domcontentloaded", timeout=60_000)
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    ready = "window.jupyterapp && window.jupyterapp.commands.hasCommand('notebook:run-all-cells')"
    page.wait_for_function(ready, timeout=60_000)
    page.wait_for_timeout(1000)
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function("document.querySelectorAll('.jp-OutputArea .widget-slider').length >= 5",
                           timeout=180_000)  # fmt: skip
    outputs = ".jp-OutputArea .widget-html-content"

    # The convolution sliders: move one, the output changes (3x3, padding 1 -> 5x5: 28 -> 26).
    assert "+ 1 = 28;" in visible_text(page, outputs)
    move(page, 0)
    page.wait_for_function("document.body.innerText.includes('+ 1 = 26')", timeout=20_000)

    # The learning-rate sliders: quick profile, nothing trained in advance; Run trains live.
    wait_for_text(page, "press Run", 60_000)
    run = page.locator("button.widget-button", has_text="Run")
    cancel = page.locator("button.widget-button", has_text="Cancel")
    # 10 epochs take long enough to see the progress line and cancel before the run ends,
    # even on a loaded machine (a 2-epoch run could finish between two looks at the page).
    assert readout(page, 4).inner_text().strip() == "10"
    run.click()
    wait_for_text(page, "lr 0.1, epochs 10: epoch ", 120_000)  # a batch has trained
    cancel.click()
    wait_for_text(page, "Cancelled: lr 0.1, epochs 10", 60_000)
    step_to(page, 4, "1")  # 10 epochs -> 1
    # The browser holds back slider updates while the kernel is busy, and a click can
    # overtake them: press Run once the kernel's status line names the new position.
    wait_for_text(page, "lr 0.1, epochs 1: not computed yet", 60_000)
    run.click()
    wait_for_text(page, "after 1 epoch:", 180_000)
    shown = visible_text(page, outputs)
    assert "lr 0.1" not in shown or "after 1 epoch:" in shown
    # The status line changes just after the result is drawn: wait for it, do not race it.
    wait_for_text(page, "lr 0.1, epochs 1: computed live in", 60_000)
    page.close()


def test_the_chapter_stores_its_sliders_for_the_site():
    """Once chapter 1 was executed (`make outputs`), its page carries the sliders' state."""
    nb = nbformat.read(CHAPTER, as_version=4)
    if not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"):
        pytest.skip("chapter 1 has no stored outputs yet: run `make outputs`")
    state = (
        nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    )
    stacks = [m for m in state.values() if m.get("model_name") == "StackModel"]
    assert len(stacks) >= 1 + 4 + 12, "the convolution explorer's stacks are missing from the stored state"
    leaves = json.dumps(state)
    assert "after 10 epochs" in leaves, "the full run should store every learning rate's 10-epoch result"
