"""Student copies of the chapters: solutions out, hidden tests out, everything else kept.

The chapters mark their exercises in nbgrader's markup, so an instructor can also use
nbgrader itself (``nbgrader generate_assignment`` reads them unchanged):

* a *solution cell* (cell metadata ``nbgrader.solution``) holds its solution between
  ``### BEGIN SOLUTION`` and ``### END SOLUTION``; a student copy gets
  ``# YOUR CODE HERE`` / ``raise NotImplementedError()`` there (a markdown answer becomes
  ``YOUR ANSWER HERE``) and the cell's outputs are cleared;
* a *grade cell* (``nbgrader.grade``, with ``points``) holds asserts; those between
  ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` are removed from student copies
  and put back by `cnnbook.classroom.grade`, which always grades with the instructor's grade cells.
  Its stored outputs are cleared too: they come from running the solutions.

Unlike ``nbgrader generate_assignment``, which clears every output, a student copy keeps
the chapter's other outputs (figures, tables, training runs, the sliders' stored results).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

SOLUTION_REGION = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN_TESTS_REGION = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"


class AssignmentError(ValueError):
    """A notebook's nbgrader markup is inconsistent (unbalanced regions, unmarked cells, ids)."""


def nbgrader_metadata(cell) -> dict:
    """The cell's ``nbgrader`` metadata (empty for an ordinary cell)."""
    return cell.get("metadata", {}).get("nbgrader", {})


def is_solution(cell) -> bool:
    """True for a cell whose content students write (nbgrader's "solution" cells)."""
    return bool(nbgrader_metadata(cell).get("solution"))


def is_autograded(cell) -> bool:
    """True for a grade cell of tests (nbgrader: grade but not solution), graded by running it."""
    meta = nbgrader_metadata(cell)
    return bool(meta.get("grade")) and not meta.get("solution") and cell.get("cell_type") == "code"


def is_graded(cell) -> bool:
    """True for every cell worth points: tests, and written answers graded by hand."""
    return bool(nbgrader_metadata(cell).get("grade"))


def replace_regions(source: str, begin: str, end: str, stub: str | None) -> tuple[str, bool]:
    """``source`` with each region from a ``begin`` line to an ``end`` line replaced by ``stub``
    (indented like the ``begin`` line), or removed if ``stub`` is None; and whether one was found."""
    lines, inside, found = [], False, False
    for line in source.split("\n"):
        if begin in line:
            if inside:
                raise AssignmentError(f"{begin!r} inside another {begin!r} region:\n{source}")
            inside = found = True
            if stub is not None:
                indent = re.match(r"\s*", line).group(0)
                lines += [indent + stub_line for stub_line in stub.split("\n")]
        elif end in line:
            if not inside:
                raise AssignmentError(f"{end!r} without a {begin!r} before it:\n{source}")
            inside = False
        elif not inside:
            lines.append(line)
    if inside:
        raise AssignmentError(f"{begin!r} without a matching {end!r}:\n{source}")
    return "\n".join(lines), found


def check_markup(nb) -> None:
    """Raise `AssignmentError` unless every grade id is unique and every graded cell has points."""
    seen = set()
    for i, cell in enumerate(nb.cells):
        meta = nbgrader_metadata(cell)
        if not (meta.get("solution") or meta.get("grade")):
            continue
        grade_id = meta.get("grade_id")
        if not grade_id:
            raise AssignmentError(f"cell {i} is an nbgrader cell without a grade_id")
        if grade_id in seen:
            raise AssignmentError(f"grade_id {grade_id!r} is used twice; ids must be unique")
        seen.add(grade_id)
        if meta.get("grade") and "points" not in meta:
            raise AssignmentError(f"grade cell {grade_id!r} has no points")


def student_notebook(nb):
    """A copy of ``nb`` for students: solutions replaced by stubs, hidden tests removed, and
    the outputs of solution and grade cells cleared. ``nb`` itself is not changed."""
    check_markup(nb)
    nb = copy.deepcopy(nb)
    for i, cell in enumerate(nb.cells):
        stub = CODE_STUB if cell.cell_type == "code" else TEXT_STUB
        source, had_solution = replace_regions(cell.source, *SOLUTION_REGION, stub)
        if had_solution and not is_solution(cell):
            raise AssignmentError(
                f"cell {i} has a solution region but is not marked as a solution cell "
                f"(cell metadata nbgrader.solution); students would lose its other lines:\n{cell.source}"
            )
        if is_solution(cell):
            cell.source = source if had_solution else stub
        source, had_hidden = replace_regions(cell.source, *HIDDEN_TESTS_REGION, None)
        if had_hidden and not is_graded(cell):
            raise AssignmentError(f"cell {i} has hidden tests but is not a grade cell:\n{cell.source}")
        cell.source = source
        if cell.cell_type == "code" and (is_solution(cell) or is_graded(cell)):
            cell.outputs, cell.execution_count = [], None
    return nb


def assign(sources: list[Path], out: Path) -> list[Path]:
    """Write a student copy of each source notebook into the folder ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sources:
        target = out / source.name
        if target.resolve() == source.resolve():
            raise AssignmentError(f"{target} is the source itself; choose another --out folder")
        nb = nbformat.read(source, as_version=4)
        student = student_notebook(nb)
        nbformat.validate(student)
        nbformat.write(student, target)
        written.append(target)
        solutions = sum(is_solution(c) for c in nb.cells)
        tests = sum(is_autograded(c) for c in nb.cells)
        print(
            f"{target}: {solutions} solutions removed, {tests} grade cells "
            f"({sum(HIDDEN_TESTS_REGION[0] in c.source for c in nb.cells)} with hidden tests)"
        )
    return written
