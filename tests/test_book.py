"""The website: `make book`'s environment, made by its Makefile rule in a fresh copy of the
repository, holds no PyTorch; with it the site builds with warnings as errors, and a real
headless Chromium finds the LeNet chapter rendered (figures, math, launch buttons), search
working, and no console errors or requests that fail (everything is served locally, nothing
from a CDN). On every chapter each exercise has one *Solution* toggle, and no page shows the
grader's markup (solution markers, hidden tests, nbval comments)."""

import functools
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
from test_student_copies import region_lines

from cnnbook.classroom.assign import HIDDEN_TESTS_REGION, SOLUTION_REGION

REPO = Path(__file__).parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]  # fmt: skip

pytestmark = pytest.mark.book


@pytest.fixture(scope="module")
def book_venv(tmp_path_factory) -> Path:
    """`make book`'s virtual environment, made as on a fresh clone; returns its folder.

    The copy holds what a clone of the working tree would (tracked files, and new ones git
    does not ignore), so no .venv or .venv-book; pip may take the packages from its cache.
    Prints the environment's size and how long the rule took (`pytest -s` shows them).
    """
    clone = tmp_path_factory.mktemp("clone")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (REPO / name).is_file():  # not a file deleted from the working tree
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    start = time.monotonic()
    result = subprocess.run(
        ["make", ".venv-book/.installed", f"PYTHON={sys._base_executable}"],
        cwd=clone, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    seconds = time.monotonic() - start
    log = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"`make .venv-book/.installed` failed on a fresh copy:\n{log}"
    venv = clone / ".venv-book"
    size = sum(f.lstat().st_blocks * 512 for f in venv.rglob("*"))  # the disk space, as `du` counts it
    print(f"\n.venv-book on a fresh copy: {size / 2**20:.0f} MB, made in {seconds:.0f} s")
    return venv


def test_the_book_environment_holds_no_pytorch(book_venv):
    python = book_venv / "bin" / "python"
    result = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True)
    assert result.returncode != 0 and "No module named 'torch'" in result.stderr, result.stderr[-2000:]
    listing = "import importlib.metadata as m, json; print(json.dumps([d.name for d in m.distributions()]))"
    names = json.loads(subprocess.run([python, "-c", listing], capture_output=True, check=True).stdout)
    heavy = [n for n in names if re.match(r"(torch|torchvision|triton|nvidia[-_])", n, flags=re.IGNORECASE)]
    assert not heavy, f"`make book`'s environment holds {heavy}: requirements-book.txt must not bring them"
    assert "jupyter-book" in {n.lower() for n in names}, names


@pytest.fixture(scope="module")
def site(tmp_path_factory, book_venv):
    """Build the book with `make book`'s environment into a temporary folder; returns the folder
    holding index.html."""
    assert (REPO / "book/_static/vendor/require.js").exists(), "run `make setup` to fetch the site's JS"
    out = tmp_path_factory.mktemp("site")
    jupyter_book = book_venv / "bin" / "jupyter-book"
    result = subprocess.run(
        [str(jupyter_book), "build", str(REPO), "-W", "--keep-going", "--path-output", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"the book build failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    return out / "_build" / "html"


def test_build_has_every_page_of_the_toc(site):
    toc = (REPO / "_toc.yml").read_text()
    pages = re.findall(r"^\s*(?:root|- file):\s*(\S+)", toc, flags=re.MULTILINE)
    assert "chapters/06-speed" in pages and len(pages) >= 9, pages
    for page in [f"{p}.html" for p in pages] + ["search.html"]:
        assert (site / page).is_file(), f"{page} missing from the built site"
    assert (site / "_sources/chapters/01-lenet.ipynb").is_file(), "the .ipynb download is missing"


@pytest.mark.parametrize(
    ("page", "previous", "following"),
    [
        ("05-residual-lab", "05-residual", "06-speed"),
        ("06-speed-lab", "06-speed", "06-data-parallel-lab"),
        ("06-data-parallel-lab", "06-speed-lab", "../book/api"),
    ],
)
def test_each_lab_comes_right_after_its_chapter(site, page, previous, following):
    html = (site / "chapters" / f"{page}.html").read_text()
    assert re.search(rf'<link rel="prev" [^>]*href="{previous}.html"', html), (
        f"{page}: previous is not {previous}"
    )
    assert re.search(rf'<link rel="next" [^>]*href="{following}.html"', html), (
        f"{page}: next is not {following}"
    )


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("Chromium is not installed: apt-get install chromium (see .ci/run)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def open_page(browser, url):
    """Open ``url``; returns the page and the lists of console errors and failed requests."""
    page = browser.new_page()
    errors, failed = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(url, wait_until="networkidle")
    return page, errors, failed


def test_lenet_page_renders_its_figures_and_math(browser, server):
    page, errors, failed = open_page(browser, f"{server}/chapters/01-lenet.html")
    figures = page.eval_on_selector_all(
        "div.cell_output img",  # figures, not the pixel-sized maps inside the sliders' widgets
        "imgs => imgs.filter(i => !i.closest('.widget-html')).map(i => [i.naturalWidth, i.naturalHeight])",
    )
    assert len(figures) >= 5, f"expected the chapter's figures, found {figures}"
    assert all(w > 100 and h > 100 for w, h in figures), f"a figure did not load: {figures}"
    page.wait_for_selector("mjx-container", timeout=10_000)  # MathJax, served locally, typeset
    outputs = "\n".join(page.eval_on_selector_all("div.cell_output", "els => els.map(e => e.innerText)"))
    assert "1x16x5x5" in outputs, "the layer table is not in the page"
    assert "profile full" in page.content(), "the stored training summary is missing"
    assert not errors, f"console errors: {errors}"
    assert not failed, f"failed requests: {failed}"


def test_launch_buttons_point_to_the_chapter(browser, server):
    page, _, _ = open_page(browser, f"{server}/chapters/01-lenet.html")
    links = page.eval_on_selector_all("a", "as => as.map(a => a.href)")
    assert any(
        "colab.research.google.com/github/" in h and h.endswith("chapters/01-lenet.ipynb") for h in links
    )
    assert any("mybinder.org/v2/gh/" in h and "chapters/01-lenet.ipynb" in h for h in links)
    assert any(h.endswith("_sources/chapters/01-lenet.ipynb") for h in links), "no .ipynb download link"


@pytest.mark.parametrize("width", [1280, 390])
def test_code_and_printed_output_wrap_instead_of_being_cut_off(browser, server, width):
    """At a desktop's and at a phone's width no code or output block scrolls sideways, and a
    loop that printed line by line shows one output box (myst-nb's nb_merge_streams)."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(f"{server}/chapters/03-training-loop.html", wait_until="networkidle")
    cut = page.eval_on_selector_all(
        "div.cell_input pre, div.cell_output pre",
        "blocks => blocks.filter(b => b.scrollWidth > b.clientWidth + 1).map(b => b.innerText.slice(0, 80))",
    )
    assert not cut, f"at {width} px these blocks are cut off: {cut}"
    split = page.eval_on_selector_all(
        "div.cell_output",
        "outputs => outputs.filter(o => o.querySelectorAll(':scope > div.output.stream').length > 1).length",
    )
    assert split == 0, f"{split} cells show their printed lines in more than one box"
    page.close()


def test_search_finds_the_lenet_chapter(browser, server):
    page, errors, failed = open_page(browser, f"{server}/search.html?q=pooling")
    page.wait_for_selector("#search-results li", timeout=10_000)
    results = page.inner_text("#search-results")
    assert "LeNet" in results, results
    assert not errors and not failed, (errors, failed)


# -- exercises on the site: one toggle each, no grader markup ---------------------------------

CHAPTERS = sorted((REPO / "chapters").glob("*.ipynb"))
GRADER_MARKUP = ["BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "BEGIN SOLUTION", "END SOLUTION"]
GRADER_MARKUP += ["NBVAL_CHECK_OUTPUT"]
EXERCISE_TOGGLES = """() => {
    // An "Exercise N." statement starts an exercise, a heading ends it; list each one's toggles.
    const exercises = [];
    let current = null;
    for (const el of document.querySelectorAll(
        "article p, article details, article .toggle, article h1, article h2, article h3")) {
        if (el.parentElement.closest("details, .toggle")) continue;  // inside a toggle
        if (/^H[1-3]$/.test(el.tagName)) {
            current = null;
        } else if (el.tagName === "P") {
            const statement = el.innerText.match(/^Exercise (\\d+)\\./);
            if (statement) exercises.push(current = {exercise: statement[1], toggles: []});
        } else if (current) {
            const summary = el.querySelector("summary");
            current.toggles.push(summary ? summary.innerText.trim() : el.className);
        }
    }
    const solutions = [...document.querySelectorAll("article details > summary")]
        .filter(s => /solution/i.test(s.innerText)).length;
    return {exercises, solutions};
}"""


def hidden_test_lines(nb) -> set[str]:
    """The lines of the hidden tests that appear nowhere else in the notebook."""
    hidden = {line for c in nb.cells for line in region_lines(c.source, *HIDDEN_TESTS_REGION)}
    elsewhere = {
        line.strip()
        for c in nb.cells
        for line in c.source.split(HIDDEN_TESTS_REGION[0])[0].split("\n")  # before any hidden tests
    }
    return hidden - elsewhere


@pytest.mark.browser
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_exercises_have_one_solution_toggle_and_no_grader_markup(browser, server, chapter):
    page, _, _ = open_page(browser, f"{server}/chapters/{chapter.stem}.html")
    found = page.evaluate(EXERCISE_TOGGLES)
    exercises = found["exercises"]
    assert exercises, f"no 'Exercise N.' statements found on {chapter.stem}.html"
    for exercise in exercises:
        assert exercise["toggles"] == ["Solution"], (
            f"{chapter.stem}, exercise {exercise['exercise']}: expected one 'Solution' toggle, "
            f"found {exercise['toggles']}"
        )
    assert found["solutions"] == len(exercises), "a solution toggle outside the exercises"
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    text = page.inner_text("article")
    for marker in GRADER_MARKUP:
        assert marker not in text, f"{chapter.stem}.html shows {marker!r}"
    nb = nbformat.read(chapter, as_version=4)
    shown = [line for line in hidden_test_lines(nb) if line in text]
    assert not shown, f"{chapter.stem}.html shows hidden tests: {shown}"
    solution = [line for c in nb.cells for line in region_lines(c.source, *SOLUTION_REGION)]
    missing = [line for line in solution if line not in text]
    assert solution and not missing, f"{chapter.stem}.html lost solution lines: {missing[:5]}"
    page.close()
