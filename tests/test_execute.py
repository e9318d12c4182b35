"""`python -m cnnbook execute` stores a chapter's outputs; `--addendum` runs the cells tagged
``addendum`` alone, in a kernel of their own, and leaves the main run's outputs as they were."""

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from cnnbook.__main__ import main
from cnnbook.classroom.execute import is_addendum


def _chapter(path):
    addendum = {"tags": ["addendum"]}
    cells = [
        new_markdown_cell("A chapter stored on one machine, with a later measurement."),
        new_code_cell("import os\nrun = 'main'\nprint('main', os.getpid())"),
        new_code_cell("print('addendum sees run =', globals().get('run'))", metadata=addendum),
        new_code_cell("print('main again')"),
        new_code_cell("print('addendum', 2)", metadata=addendum),
    ]
    nbformat.write(new_notebook(cells=cells), path)


def _printed(cell):
    return "".join(o.get("text", "") for o in cell.outputs)


def test_the_main_run_skips_the_addendum_and_the_addendum_run_keeps_the_main_outputs(tmp_path):
    path = tmp_path / "chapter.ipynb"
    _chapter(path)
    assert main(["execute", str(path)]) == 0
    cells = nbformat.read(path, as_version=4).cells
    main_output = _printed(cells[1])
    assert main_output.startswith("main ") and _printed(cells[3]) == "main again\n"
    assert [cells[i].execution_count for i in (1, 3)] == [1, 2]
    assert not cells[2].outputs and not cells[4].outputs, "the main run ran the addendum"

    assert main(["execute", "--addendum", str(path)]) == 0
    cells = nbformat.read(path, as_version=4).cells
    assert _printed(cells[2]) == "addendum sees run = None\n", "the addendum shared the main run's kernel"
    assert _printed(cells[4]) == "addendum 2\n"
    assert [cells[i].execution_count for i in (2, 4)] == [1, 2]
    assert _printed(cells[1]) == main_output and cells[1].execution_count == 1, "the main outputs changed"
    assert [is_addendum(c) for c in cells] == [False, False, True, False, True]


def test_an_addendum_run_of_a_chapter_without_one_says_so_and_changes_nothing(tmp_path, capsys):
    path = tmp_path / "plain.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("print(1)")]), path)
    before = path.read_bytes()
    assert main(["execute", "--addendum", str(path)]) == 1
    assert "has no cells tagged 'addendum' to run" in capsys.readouterr().err
    assert path.read_bytes() == before


@pytest.mark.parametrize("failing", ["main", "addendum"])
def test_a_failing_cell_leaves_the_stored_notebook_as_it_was(tmp_path, failing):
    path = tmp_path / "chapter.ipynb"
    _chapter(path)
    notebook = nbformat.read(path, as_version=4)
    notebook.cells[4 if failing == "addendum" else 3].source = "raise RuntimeError('boom')"
    nbformat.write(notebook, path)
    before = path.read_bytes()
    args = ["execute", "--addendum", str(path)] if failing == "addendum" else ["execute", str(path)]
    assert main(args) == 1
    assert path.read_bytes() == before
