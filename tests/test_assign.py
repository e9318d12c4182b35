"""Classroom tools: student copies (`cnnbook.assign`), grading (`cnnbook.grade`), and nbgrader
reading the chapters unchanged.

The grading tests run real submissions, each in its own kernel: a correct one, a wrong one,
one that crashes its kernel, one that loops forever, one that deletes everything it can
reach through its working folder and HOME, a file that is not a notebook, and a student
who submitted nothing. One grading run (module fixture) serves every assertion.
"""

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from cnnbook.assign import (
    CODE_STUB,
    TEXT_STUB,
    AssignmentError,
    assign,
    replace_regions,
    student_notebook,
)
from cnnbook.grade import Limits, can_confine, grade, restore_grade_cells

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


def test_grading_restores_the_instructors_grade_cells():
    source = exercise_notebook()
    submission = student_notebook(source)
    submission.cells[2].source = "pass  # the student emptied the test"
    del submission.cells[5]  # and deleted another
    fake = nbformat.v4.new_code_cell("print('I pass')")
    submission.cells.append(nbgrader_cell(fake, "square-check", grade=True, points=100))
    restored = restore_grade_cells(submission, source)
    tests = [
        c.source
        for c in restored.cells
        if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"
    ]
    assert tests == [source.cells[2].source, source.cells[5].source], tests
    assert restored.cells[5].source == source.cells[5].source, "the deleted test goes back after its exercise"


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


# -- grading real submissions ---------------------------------------------------------------


def submission(student_source: dict[int, str]):
    """The student copy of the exercise notebook with some cells' sources replaced."""
    nb = student_notebook(exercise_notebook())
    for index, source in student_source.items():
        nb.cells[index].source = source
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    source = root / "ex.ipynb"
    nbformat.write(exercise_notebook(), source)
    home = root / "instructor-home"  # stands in for the grader's HOME
    (home / "precious").mkdir(parents=True)
    (home / "precious" / "notes.txt").write_text("keep me")
    submissions = root / "submitted"
    students = {
        "ada": {1: "def square(x):\n    return x * x", 4: "answer = 24"},
        "bob": {1: "def square(x):\n    return x + x", 4: "answer = 28"},  # wrong: 3+3 != 16, 28
        "cy": {1: "import os\nos._exit(1)"},  # kills its kernel
        "dee": {1: "def square(x):\n    return x ** 2", 4: "while True:\n    pass"},  # endless
        "eve": {1: "import os, shutil\nshutil.rmtree(os.getcwd())\nshutil.rmtree(os.path.expanduser('~'), "
                   "ignore_errors=True)\ndef square(x):\n    return x * x", 4: "answer = 24"},
        # by absolute path, outside its copy: deletes the instructor's file, overwrites the source
        "hal": {1: f"import os\nos.remove({str(home / 'precious' / 'notes.txt')!r})\ndef square(x):\n"
                   "    return x * x", 4: f"open({str(source)!r}, 'w').write('hal was here')\nanswer = 24"},
    }  # fmt: skip
    for student, cells in students.items():
        (submissions / student).mkdir(parents=True)
        nbformat.write(submission(cells), submissions / student / "ex.ipynb")
    (submissions / "fay").mkdir()
    (submissions / "fay" / "ex.ipynb").write_text("this is not JSON")
    (submissions / "gus").mkdir()  # submitted nothing
    before = {p: p.read_bytes() for p in submissions.rglob("*") if p.is_file()}
    env = {"HOME": str(home)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        results = grade(
            submissions, [source], root / "report", Limits(cell_timeout=5, time_limit=60), keep_executed=True
        )
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return {"results": results, "root": root, "home": home, "submissions": submissions, "before": before,
            "source": source}  # fmt: skip


def points(graded, student):
    return {r.exercise: (r.points, r.status, r.reason) for r in graded["results"] if r.student == student}


def test_a_correct_submission_gets_every_automatic_point(graded):
    ada = points(graded, "ada")
    assert ada["square-check"][:2] == (2.0, "passed") and ada["size-check"][:2] == (1.0, "passed")
    assert ada["why"][:2] == (None, "manual"), "written answers are left for the instructor"


def test_a_wrong_submission_fails_the_hidden_tests_with_the_reason(graded):
    bob = points(graded, "bob")
    assert bob["square-check"][:2] == (0.0, "failed") and "AssertionError" in bob["square-check"][2]
    assert bob["size-check"][:2] == (0.0, "failed")


def test_a_crashing_submission_scores_zero_and_says_why(graded):
    cy = points(graded, "cy")
    assert all(p == 0 for p, status, _ in cy.values() if status != "manual")
    assert "kernel died" in cy["square-check"][2], cy


def test_an_endless_cell_is_interrupted_and_the_rest_still_graded(graded):
    dee = points(graded, "dee")
    assert dee["square-check"][:2] == (2.0, "passed")
    assert dee["size-check"][:2] == (0.0, "failed")


def test_a_destructive_submission_only_destroys_its_own_copy(graded):
    eve = points(graded, "eve")
    assert eve["square-check"][:2] == (2.0, "passed"), eve
    assert (graded["home"] / "precious" / "notes.txt").read_text() == "keep me", "HOME was not redirected"
    after = {p: p.read_bytes() for p in graded["submissions"].rglob("*") if p.is_file()}
    assert after == graded["before"], "the submissions folder changed"
    assert graded["source"].is_file()


def test_writes_by_absolute_path_outside_the_copy_are_refused(graded):
    """As root on Linux (CI, a container) every file system but the copy is read-only."""
    if not can_confine():
        pytest.skip("confining writes needs root on Linux (unshare and mount); the report says so")
    hal = points(graded, "hal")
    assert hal["square-check"][:2] == (0.0, "failed") and hal["size-check"][:2] == (0.0, "failed"), hal
    executed = nbformat.read(graded["root"] / "report" / "executed" / "hal-ex.ipynb", as_version=4)
    errors = [o.get("evalue", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert sum("Read-only file system" in e for e in errors) == 2, errors
    assert (graded["home"] / "precious" / "notes.txt").read_text() == "keep me"
    assert "hal was here" not in graded["source"].read_text()
    assert "were blocked (read-only mounts)" in (graded["root"] / "report" / "summary.md").read_text()


def test_not_a_notebook_and_missing_submissions_score_zero(graded):
    fay, gus = points(graded, "fay"), points(graded, "gus")
    assert fay["square-check"][0] == 0 and "not a notebook" in fay["square-check"][2]
    assert gus["square-check"][0] == 0 and gus["square-check"][2] == "not submitted"


def test_the_report_has_a_csv_row_per_student_and_exercise_and_a_summary(graded):
    report = graded["root"] / "report"
    rows = list(csv.DictReader(open(report / "grades.csv")))
    assert len(rows) == 8 * 3
    assert {"student", "notebook", "exercise", "points", "max_points", "status", "reason"} <= set(rows[0])
    summary = (report / "summary.md").read_text()
    assert "| ada | 2 | 1 | by hand | 3 |" in summary, summary
    assert "| bob | 0 | 0 | by hand | 0 |" in summary
    assert "notebooks graded in" in summary
    executed = nbformat.read(report / "executed" / "ada-ex.ipynb", as_version=4)
    assert "### BEGIN HIDDEN TESTS" in executed.cells[2].source, "graded with the hidden tests restored"


# -- nbgrader itself ------------------------------------------------------------------------


def test_nbgrader_generate_assignment_accepts_the_chapters_unchanged(tmp_path):
    nbgrader = Path(sys.executable).parent / "nbgrader"
    assert nbgrader.exists(), "nbgrader is not installed: pip install -r requirements.txt"
    course = tmp_path / "course"
    shutil.copytree(REPO / "chapters", course / "source" / "book", ignore=shutil.ignore_patterns(".*"))
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\n"
    )
    result = subprocess.run(
        [str(nbgrader), "generate_assignment", "book", "--force", "--create"],
        cwd=course, capture_output=True, text=True, timeout=300,
        # nbgrader runs `alembic` by name: the venv's bin must be on PATH even when it is not activated
        env={**os.environ, "HOME": str(tmp_path),
             "PATH": f"{nbgrader.parent}{os.pathsep}{os.environ['PATH']}"},
    )  # fmt: skip
    assert result.returncode == 0, (
        "nbgrader refused a chapter; every solution region must sit in a cell with nbgrader metadata "
        "(book/instructors.md, 'Writing your own exercises'):\n" + (result.stdout + result.stderr)[-3000:]
    )
    for chapter in CHAPTERS:
        released = (course / "release" / "book" / chapter.name).read_text()
        assert "### BEGIN SOLUTION" not in released and "### BEGIN HIDDEN TESTS" not in released
        assert "YOUR CODE HERE" in released
