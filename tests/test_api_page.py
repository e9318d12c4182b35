"""The reference page (book/api.md): every name a chapter takes from ``cnnbook`` is exported
(in ``cnnbook.__all__``), the page lists exactly the exports, it is what book/make_api_page.py
writes from its template and the docstrings today, and it builds with warnings as errors into
a page where each export is a documented object."""

import ast
import inspect
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cnnbook

REPO = Path(__file__).parent.parent
API_PAGE = REPO / "book" / "api.md"
API_TEMPLATE = REPO / "book" / "api.template.md"  # the names to document; api.md is written from it
CHAPTERS = sorted((REPO / "chapters").glob("*.ipynb"))
DIRECTIVE = re.compile(
    r"^\.\. (?:auto(?:function|class|exception|data|module)|py:(?:function|class|exception|data)):: (\S+)",
    flags=re.MULTILINE,
)

sys.path.insert(0, str(REPO / "book"))
from make_api_page import COMMAND, argument_fields, render  # noqa: E402


def code_of(cell_source: str) -> str:
    """A code cell's Python: IPython magics and shell lines (``%...``, ``!...``) blanked."""
    if cell_source.lstrip().startswith("%%"):
        return ""  # a cell magic: the cell is not Python
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell_source.split("\n"))


def names_taken_from_cnnbook(source: str) -> set[str]:
    """``X`` of every ``cnnbook.X``, ``from cnnbook import X`` and ``from cnnbook.mod import X``."""
    tree = ast.parse(source)
    aliases = {"cnnbook"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names if a.name == "cnnbook"}
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            names.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cnnbook":
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            # ``import cnnbook.data`` reaches past the exports as much as ``cnnbook.data.X`` does
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("cnnbook.")}
    return names


def chapter_names() -> dict[str, set[str]]:
    """For each name the chapters take from ``cnnbook``, the chapters that take it."""
    used: dict[str, set[str]] = {}
    for chapter in CHAPTERS:
        cells = json.loads(chapter.read_text(encoding="utf-8"))["cells"]
        for cell in cells:
            if cell["cell_type"] == "code":
                for name in names_taken_from_cnnbook(code_of("".join(cell["source"]))):
                    used.setdefault(name, set()).add(chapter.stem)
    return used


def page_names() -> list[str]:
    """The names the API page documents, in its order, without the ``cnnbook.`` prefix."""
    return [name.removeprefix("cnnbook.") for name in DIRECTIVE.findall(API_TEMPLATE.read_text())]


def test_the_scan_finds_every_way_a_chapter_takes_a_name():
    source = (
        "%matplotlib inline\n"
        "import cnnbook\n"
        "from cnnbook import History\n"
        "from cnnbook.data import ImageArrayDataset\n"
        "!ls\n"
        "net = cnnbook.models.lenet()\n"
        "cnnbook.train(net, cnnbook.load_data_fashion_mnist(256))\n"
    )
    assert names_taken_from_cnnbook(code_of(source)) == {
        "History",
        "ImageArrayDataset",
        "models",
        "train",
        "load_data_fashion_mnist",
    }


def test_every_name_a_chapter_uses_is_exported():
    used = chapter_names()
    assert {"train", "load_data_fashion_mnist", "ImageArrayDataset", "models"} <= used.keys()
    missing = {name: sorted(chapters) for name, chapters in used.items() if name not in cnnbook.__all__}
    assert not missing, f"chapters use names that cnnbook does not export (add them to __all__): {missing}"


def test_every_export_exists():
    assert len(set(cnnbook.__all__)) == len(cnnbook.__all__), "a name is twice in __all__"
    absent = [name for name in cnnbook.__all__ if not hasattr(cnnbook, name)]
    assert not absent, f"__all__ names what cnnbook lacks: {absent}"


def test_api_page_lists_exactly_the_exports():
    listed = page_names()
    twice = sorted({name for name in listed if listed.count(name) > 1})
    assert not twice, f"book/api.md documents these twice: {twice}"
    missing = sorted(set(cnnbook.__all__) - set(listed))
    extra = sorted(set(listed) - set(cnnbook.__all__))
    assert not missing, f"book/api.md lacks exports: {missing}"
    assert not extra, f"book/api.md documents names cnnbook does not export: {extra}"


def test_api_page_is_what_the_docstrings_make_today():
    """book/api.md is generated (the site's build imports no cnnbook): a docstring or signature
    changed without regenerating it would leave the site describing the old one."""
    written = API_PAGE.read_text()
    assert written == render(API_TEMPLATE.read_text()), (
        f"book/api.md is out of date with book/api.template.md or cnnbook's docstrings: run `{COMMAND}`"
    )


def documented_objects():
    """Every export, and the public members of the exported classes and of ``cnnbook.models``."""
    for name in cnnbook.__all__:
        obj = getattr(cnnbook, name)
        yield f"cnnbook.{name}", obj
        if isinstance(obj, type) or inspect.ismodule(obj):
            for member, value in vars(obj).items():
                if not member.startswith("_") and (inspect.isroutine(value) or isinstance(value, type)):
                    yield f"cnnbook.{name}.{member}", value


def test_docstrings_end_every_reference():
    """``The `History`s`` is no reference in reST: a closing backtick must not touch a letter."""
    glued = re.compile(r"(?<!`)`[^`\s]+`(?=[A-Za-z0-9])")
    wrong = {
        name: glued.findall(inspect.getdoc(obj) or "")
        for name, obj in documented_objects()
        if glued.search(inspect.getdoc(obj) or "")
    }
    assert not wrong, f"write e.g. `Split` objects, not `Split`s: {wrong}"


def test_api_page_is_in_the_toc():
    assert re.search(r"^\s*- file: book/api\s*$", (REPO / "_toc.yml").read_text(), flags=re.MULTILINE)


def test_argument_lines_become_parameter_fields_in_the_signatures_order():
    lines = [
        "Train ``net``.",
        "",
        "scheduler: stepped once per batch,",
        "    after the optimizer.",
        "optimizer: defaults to SGD.",
        "train_examples, test_examples: subset sizes.",
        "**sliders: further settings.",
        "Example: not an argument.",
    ]
    parameters = ["net", "optimizer", "scheduler", "train_examples", "test_examples", "**sliders"]
    assert argument_fields(lines, parameters) == [
        "Train ``net``.",
        "",
        ":param net:",
        ":param optimizer: defaults to SGD.",
        ":param scheduler: stepped once per batch,",
        "    after the optimizer.",
        ":param train_examples: subset sizes.",
        ":param test_examples: as ``train_examples``.",
        r":param \*\*sliders: further settings.",
        "",
        "Example: not an argument.",
    ]
    assert argument_fields(["device: a name"], ["net"]) == ["device: a name"]  # not a parameter


@pytest.mark.book
def test_api_page_builds_and_documents_every_export(tmp_path):
    """Build the API page alone, with the book's configuration, and find each export's anchor."""
    (tmp_path / "book").mkdir()
    shutil.copy(REPO / "_config.yml", tmp_path)
    shutil.copy(API_PAGE, tmp_path / "book")
    for folder in ["_ext", "_static"]:
        (tmp_path / "book" / folder).symlink_to(REPO / "book" / folder)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/api\n")
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [str(jupyter_book), "build", str(tmp_path), "-W", "--keep-going"], capture_output=True, text=True
    )
    log = f"{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    assert result.returncode == 0, f"the API page does not build with -W:\n{log}"
    page = (tmp_path / "_build" / "html" / "book" / "api.html").read_text()
    anchors = set(re.findall(r'id="((?:module-)?cnnbook\.[\w.]+)"', page))
    undocumented = [
        name
        for name in cnnbook.__all__
        if f"cnnbook.{name}" not in anchors and f"module-cnnbook.{name}" not in anchors
    ]
    assert not undocumented, f"the built API page documents no object for: {undocumented}"
    assert "cnnbook.models.lenet" in anchors, "the models' functions are missing"
