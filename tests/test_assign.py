"""Classroom tools: student copies (`cnnbook.classroom.assign`). nbgrader reading the chapters unchanged,
and both tools' copies of every chapter, are tested in test_student_copies.py; grading in
test_grade.py and test_grade_hostile.py."""

from pathlib import Path

import nbformat
import pytest

from cnnbook.classroom.assign import (
    CODE_STUB,
    TEXT_STUB,
    AssignmentError,
    assign,
    replace_regions,
    student_notebook,
)

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO / "chapters").glob("*.ipynb"))


def nbgrader_cell(cell, grade_id, solution=False, grade=False, points=None):
    cell.metadata["nbgrader"] = {"grade_id": grade_id, "solution": solution, "grade": grade,
                                 "locked": grade and not solution, "schema_version": 3}  # fmt: skip
    if points is not None:
        cell.metadata["nbgrader"]["points"] = points
    return cell


def exercise_notebook():
    """A small assignment in the chapters' markup: two autograded exercises and a written one."""
    v4 = nbformat.v4
    cells = [
        v4.new_markdown_cell("# Exercises\n**1.** Write `square`."),
        nbgrader_cell(v4.new_code_cell(
            'def square(x):\n    """x squared."""\n'
            "    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION"
        ), "square", solution=True),
        nbgrader_cell(v4.new_code_cell(
            "assert square(3) == 9\n### BEGIN HIDDEN TESTS\nassert square(-4) == 16\n### END HIDDEN TESTS"
        ), "square-check", grade=True, points=2),
        v4.new_markdown_cell("**2.** Set `answer` to the output size of a 5x5 kernel on 28x28."),
        nbgrader_cell(v4.new_code_cell("### BEGIN SOLUTION\nanswer = 24\n### END SOLUTION"), "size",
                      solution=True),
        nbgrader_cell(v4.new_code_cell("### BEGIN HIDDEN TESTS\nassert answer == 24\n### END HIDDEN TESTS"),
                      "size-check", grade=True, points=1),
        nbgrader_cell(v4.new_markdown_cell(":::{dropdown} Solution\nBecause.\n:::"), "why", solution=True,
                      grade=True, points=1),
    ]  # fmt: skip
    cells[1].outputs = [v4.new_output("stream", text="solution output")]
    nb = v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_student_copy_removes_solutions_and_hidden_tests_and_keeps_the_rest():
    source = exercise_notebook()
    student = student_notebook(source)
    sources = [c.source for c in student.cells]
    assert (
        sources[1]
        == 'def square(x):\n    """x squared."""\n    # YOUR CODE HERE\n    raise NotImplementedError()'
    )
    assert sources[2] == "assert square(3) == 9"
    assert sources[4] == CODE_STUB
    assert sources[5] == ""
    assert sources[6] == TEXT_STUB
    assert student.cells[1].outputs == [], "a solution cell's outputs must be cleared"
    assert sources[0] == source.cells[0].source and student.cells[0] == source.cells[0]
    assert "return x * x" in source.cells[1].source, "the source notebook must not change"
    assert not any("BEGIN" in s for s in sources)


def test_assign_writes_student_copies_and_refuses_to_overwrite_the_source(tmp_path):
    source = tmp_path / "ex.ipynb"
    nbformat.write(exercise_notebook(), source)
    (written,) = assign([source], tmp_path / "release")
    assert "YOUR CODE HERE" in written.read_text() and "x * x" not in written.read_text()
    with pytest.raises(AssignmentError, match="choose another --out folder"):
        assign([source], tmp_path)


def test_the_command_line_makes_student_copies(tmp_path, capsys):
    from cnnbook.__main__ import main

    source = tmp_path / "ex.ipynb"
    nbformat.write(exercise_notebook(), source)
    assert main(["assign", str(source), "--out", str(tmp_path / "release")]) == 0
    assert "3 solutions removed, 2 grade cells (2 with hidden tests)" in capsys.readouterr().out
    assert (tmp_path / "release" / "ex.ipynb").is_file()


@pytest.mark.parametrize(
    "source, message",
    [
        ("### BEGIN SOLUTION\nx = 1", "without a matching"),
        ("x = 1\n### END SOLUTION", "without a '### BEGIN SOLUTION' before it"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
    ],
)
def test_unbalanced_solution_regions_are_refused(source, message):
    with pytest.raises(AssignmentError, match=message):
        replace_regions(source, "### BEGIN SOLUTION", "### END SOLUTION", CODE_STUB)


def test_markup_errors_say_what_to_fix():
    nb = exercise_notebook()
    nb.cells[0] = nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")
    with pytest.raises(AssignmentError, match="not marked as a solution cell"):
        student_notebook(nb)
    nb = exercise_notebook()
    nb.cells[4].metadata.nbgrader.grade_id = "square"
    with pytest.raises(AssignmentError, match="'square' is used twice"):
        student_notebook(nb)
    nb = exercise_notebook()
    del nb.cells[2].metadata.nbgrader["points"]
    with pytest.raises(AssignmentError, match="has no points"):
        student_notebook(nb)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_chapter_has_exercises_with_solutions_and_checks(path):
    nb = nbformat.read(path, as_version=4)
    student = student_notebook(nb)  # raises on inconsistent markup
    meta = [c.metadata.get("nbgrader", {}) for c in nb.cells]
    assert any(m.get("solution") for m in meta), (
        f"{path.name} has no solution cells: mark them with nbgrader metadata (book/instructors.md)"
    )
    assert any(m.get("grade") and not m.get("solution") for m in meta), f"{path.name} has no grade cells"
    assert not any("### BEGIN" in c.source for c in student.cells)
