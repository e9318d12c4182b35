"""The site's own Sphinx extensions (book/_ext) on small doctrees, without building the book:
code cells lose the grader's markup, and an exercise's solution folds behind one toggle."""

import sys
from pathlib import Path

from docutils import nodes
from docutils.frontend import get_default_settings
from docutils.parsers.rst import Parser
from docutils.utils import new_document

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))
from grader_markup import RemoveGraderMarkup, without_grader_markup  # noqa: E402
from solution_toggles import TITLE, OneSolutionToggle  # noqa: E402


def test_grader_markup_is_dropped_and_the_code_kept():
    source = (
        "# NBVAL_CHECK_OUTPUT\n"
        "def square(x):\n"
        "    ### BEGIN SOLUTION\n"
        "    return x * x\n"
        "    ### END SOLUTION\n"
        "assert square(3) == 9\n"
        "### BEGIN HIDDEN TESTS\n"
        "assert square(-4) == 16\n"
        "### END HIDDEN TESTS\n"
        "print('checked')"
    )
    assert without_grader_markup(source) == (
        "def square(x):\n    return x * x\nassert square(3) == 9\nprint('checked')"
    )
    assert without_grader_markup("### BEGIN HIDDEN TESTS\nassert ok\n### END HIDDEN TESTS") == ""


def document():
    return new_document("test", get_default_settings(Parser))


def code_cell(source, solution=False):
    """A code cell as MyST-NB puts it in the doctree (a solution with the `hide-cell` tag)."""
    meta = {"nbgrader": {"solution": True}, "tags": ["hide-cell"]} if solution else {}
    cell = nodes.container(nb_element="cell_code", cell_metadata=meta, classes=["cell"])
    if solution:
        cell["hide_mode"] = "all"
    code = nodes.container(nb_element="cell_code_source", classes=["cell_input"])
    code += nodes.literal_block(source, source, language="ipython3")
    cell += code
    return cell


def dropdown(title, text):
    """What `:::{dropdown} <title>` makes in the doctree (sphinx-design)."""
    node = nodes.container(is_div=True, design_component="dropdown", opened=False, type="dropdown",
                           has_title=True, icon=None, chevron=None, container_classes=["sd-mb-3"],
                           title_classes=[], body_classes=[])  # fmt: skip
    node += nodes.rubric(title, title)
    node += nodes.paragraph(text, text)
    return node


def test_code_cells_are_rendered_without_grader_markup():
    doc = document()
    doc += code_cell("# NBVAL_CHECK_OUTPUT\nprint(1)")
    doc += code_cell("### BEGIN HIDDEN TESTS\nassert secret\n### END HIDDEN TESTS")
    RemoveGraderMarkup(doc).apply()
    blocks = list(doc.findall(nodes.literal_block))
    assert [(b.astext(), b.rawsource) for b in blocks] == [("print(1)", "print(1)")]
    sources = [n for n in doc.findall(nodes.container) if n.get("nb_element") == "cell_code_source"]
    assert len(sources) == 1, "a cell of hidden tests only shows no empty code box"


def test_a_solution_cell_joins_the_written_answer_after_its_check():
    doc = document()
    doc += nodes.paragraph("", "Exercise 1. Square it.")
    doc += code_cell("### BEGIN SOLUTION\nx = 2 * 2\n### END SOLUTION", solution=True)
    doc += code_cell("assert x == 4")  # the check, and other code, may stand between them
    doc += dropdown(TITLE, "Because 2 times 2 is 4.")
    doc += nodes.paragraph("", "Exercise 2. Cube it.")
    doc += code_cell("### BEGIN SOLUTION\ny = 2 ** 3\n### END SOLUTION", solution=True)
    doc += code_cell("assert y == 8")
    doc += nodes.paragraph("", "Exercise 3. Say why.")
    doc += dropdown(TITLE, "Because.")
    OneSolutionToggle(doc).apply()

    kinds = [type(n).__name__ if not n.get("design_component") else "dropdown" for n in doc.children]
    assert kinds == ["paragraph", "container", "dropdown", "paragraph", "dropdown", "container",
                     "paragraph", "dropdown"]  # fmt: skip
    first, second, third = (n for n in doc.children if n.get("design_component") == "dropdown")
    # exercise 1: one toggle holding the solution code, then the written answer
    assert first[1].get("nb_element") == "cell_code" and "x = 2 * 2" in first[1].astext()
    assert first[2].astext() == "Because 2 times 2 is 4."
    # exercise 2 has no written answer: its solution gets a Solution toggle of its own, in place
    assert second[0].astext() == TITLE and "y = 2 ** 3" in second[1].astext()
    assert third[1].astext() == "Because.", "exercise 3's answer must not take exercise 2's code"
    # folded once: MyST-NB no longer folds the moved cells behind "Show solution"
    assert not any(n.get("hide_mode") for n in doc.findall(nodes.container))
