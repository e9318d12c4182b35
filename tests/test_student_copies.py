"""Student copies leak nothing and lose nothing.

For every chapter, the copy `cnnbook.classroom.assign` makes and the one nbgrader's
``generate_assignment`` makes keep every statement exactly (every cell that is neither a
solution nor a check) and hold no line of a solution, no written answer and no hidden test.
The chapters themselves keep every written solution in a solution cell of its own, never
beside a statement or the references. And the JupyterLab that ``make lab`` starts for
students shows none of nbgrader's instructor interface.
"""

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from lab_server import free_port, jupyterlab

from cnnbook.classroom.assign import HIDDEN_TESTS_REGION, SOLUTION_REGION, TEXT_STUB, student_notebook

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO / "chapters").glob("*.ipynb"))
DROPDOWN = (":::{dropdown} Solution", ":::")  # how a written answer folds on the website
WRITTEN_SOLUTION = re.compile(r"^\s*(\*Solution\.\*|:::\{dropdown\}|:::\{toggle\}|```\{dropdown\})", re.M)


def nbgrader_meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def is_solution(cell) -> bool:
    return bool(nbgrader_meta(cell).get("solution"))


def is_check(cell) -> bool:
    return bool(nbgrader_meta(cell).get("grade")) and not is_solution(cell)


def region_lines(source: str, begin: str, end: str) -> list[str]:
    """The non-blank lines between each ``begin`` line and its ``end`` line, stripped."""
    lines, inside = [], False
    for line in source.split("\n"):
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


def model_answer(cell) -> list[str]:
    """The lines a solution cell gives away: its solution region, or the whole written answer."""
    if SOLUTION_REGION[0] in cell.source:
        return region_lines(cell.source, *SOLUTION_REGION)
    return [line.strip() for line in cell.source.split("\n") if line.strip() and line.strip() not in DROPDOWN]


def secret_lines(nb) -> set[str]:
    """Lines of solutions and hidden tests that appear nowhere else in the chapter."""
    secret, public = set(), set()
    for cell in nb.cells:
        hidden = region_lines(cell.source, *HIDDEN_TESTS_REGION)
        given = model_answer(cell) if is_solution(cell) else []
        secret.update(hidden + given)
        public.update(
            line.strip() for line in cell.source.split("\n") if line.strip() not in set(hidden + given)
        )
    return secret - public


def outline(nb) -> list[str]:
    """The headings and the first lines of the exercise statements, in the notebook's order."""
    return [
        line
        for cell in nb.cells
        if cell.cell_type == "markdown"
        for line in cell.source.split("\n")
        if line.startswith("#") or re.match(r"\*\*Exercise \d+\.", line)
    ]


def check_copy(source, copy, name: str) -> None:
    """Assert that ``copy`` keeps every statement of ``source`` and gives no answer away."""
    assert len(copy.cells) == len(source.cells), f"{name}: the copy has other cells than the chapter"
    lost = [line for line in outline(source) if line not in outline(copy)]
    assert not lost, f"{name}: headings or exercise statements lost in the student copy: {lost}"
    secret = secret_lines(source)
    assert secret, f"{name}: no solution lines found; is the markup still nbgrader's?"
    for i, (original, copied) in enumerate(zip(source.cells, copy.cells)):
        where = f"{name}, cell {i} ({original.cell_type})"
        if not (is_solution(original) or is_check(original)):
            assert (copied.cell_type, copied.source) == (original.cell_type, original.source), (
                f"{where}: a statement changed in the student copy:\n{original.source[:800]}"
            )
        if is_check(original):
            visible = original.source.split(HIDDEN_TESTS_REGION[0])[0].strip()
            assert visible in copied.source, f"{where}: the check's visible asserts are gone"
        leaked = [line for line in copied.source.split("\n") if line.strip() in secret]
        assert not leaked, f"{where}: the student copy gives the answer away: {leaked}"
        for marker in (*SOLUTION_REGION, *HIDDEN_TESTS_REGION):
            assert marker not in copied.source, f"{where}: {marker!r} left in the student copy"
        assert not WRITTEN_SOLUTION.search(copied.source), f"{where}: a written solution in the copy"
        if is_solution(original) and original.cell_type == "markdown":
            assert copied.source == TEXT_STUB, f"{where}: a written answer is left to write"
        if copied.cell_type == "code" and (is_solution(original) or is_check(original)):
            assert copied.outputs == [], f"{where}: outputs made by the solution are left in the copy"


# -- the chapters ----------------------------------------------------------------------------


def check_markup(nb, name: str) -> None:
    """Assert that every written solution sits alone in a solution cell, and that every exercise
    has a statement outside the solution cells, before its solution and checks."""
    seen = set()  # what the current exercise has had so far: "statement", "code", "check", "answer"
    for i, cell in enumerate(nb.cells):
        where = f"{name}, cell {i}"
        if cell.cell_type == "markdown" and not is_solution(cell):
            assert not WRITTEN_SOLUTION.search(cell.source), (
                f"{where}: a written solution in an ordinary markdown cell; students' copies would "
                f"keep it. Give it a cell of its own with nbgrader solution metadata "
                f"(book/instructors.md):\n{cell.source[:600]}"
            )
            if re.search(r"^\*\*Exercise \d+\.", cell.source, re.M):
                seen = {"statement"}
        elif cell.cell_type == "markdown":
            lines = cell.source.strip().split("\n")
            assert lines[0] == DROPDOWN[0] and lines[-1] == DROPDOWN[1], (
                f"{where}: a written answer is one ':::{{dropdown}} Solution' block and nothing "
                f"else (a statement or the references beside it would be lost to students):\n"
                f"{cell.source[:600]}"
            )
            assert not any(line.startswith(("#", "**Exercise", ":::{")) for line in lines[1:-1]), (
                f"{where}: a heading or a statement inside a written answer"
            )
            meta = nbgrader_meta(cell)
            assert meta.get("grade") and meta.get("points") and meta.get("locked") is False, (
                f"{where}: a written answer is graded by hand: grade true, points, locked false"
            )
            seen.add("answer")
        elif is_solution(cell) or is_check(cell):
            kind = "code" if is_solution(cell) else "check"
            # a solution after the last exercise's check or answer starts an exercise without a statement
            assert "statement" in seen and not (kind == "code" and seen & {"check", "answer"}), (
                f"{where}: a solution or check without an exercise statement before it:\n{cell.source[:300]}"
            )
            seen.add(kind)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_written_solution_is_a_solution_cell_of_its_own(path):
    check_markup(nbformat.read(path, as_version=4), path.name)


# -- the student copies ----------------------------------------------------------------------


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_the_cnnbook_copy_keeps_every_statement_and_no_solution(path):
    source = nbformat.read(path, as_version=4)
    check_copy(source, student_notebook(source), f"cnnbook assign {path.name}")


@pytest.fixture(scope="module")
def nbgrader_release(tmp_path_factory):
    """``nbgrader generate_assignment`` run on a course holding every chapter; returns release/."""
    nbgrader = Path(sys.executable).parent / "nbgrader"
    assert nbgrader.exists(), "nbgrader is not installed: pip install -r requirements.txt"
    home = tmp_path_factory.mktemp("nbgrader")
    course = home / "course"
    shutil.copytree(REPO / "chapters", course / "source" / "book", ignore=shutil.ignore_patterns(".*"))
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\n"
    )
    result = subprocess.run(
        [str(nbgrader), "generate_assignment", "book", "--force", "--create"],
        cwd=course, capture_output=True, text=True, timeout=300,
        # nbgrader runs `alembic` by name: the venv's bin must be on PATH even when it is not activated
        env={**os.environ, "HOME": str(home),
             "PATH": f"{nbgrader.parent}{os.pathsep}{os.environ['PATH']}"},
    )  # fmt: skip
    assert result.returncode == 0, (
        "nbgrader refused a chapter; every solution region must sit in a cell with nbgrader metadata "
        "(book/instructors.md, 'Writing your own exercises'):\n" + (result.stdout + result.stderr)[-3000:]
    )
    return course / "release" / "book"


def test_nbgrader_generate_assignment_accepts_the_chapters_unchanged(nbgrader_release):
    for chapter in CHAPTERS:
        released = (nbgrader_release / chapter.name).read_text()
        assert "### BEGIN SOLUTION" not in released and "### BEGIN HIDDEN TESTS" not in released
        assert "YOUR CODE HERE" in released


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_the_nbgrader_copy_keeps_every_statement_and_no_solution(path, nbgrader_release):
    source = nbformat.read(path, as_version=4)
    copy = nbformat.read(nbgrader_release / path.name, as_version=4)
    check_copy(source, copy, f"nbgrader generate_assignment {path.name}")


def test_the_checks_catch_what_issue_16_found():
    """A solution paragraph beside a statement, a statement or the references swallowed by a
    solution cell, and an exercise without a statement all fail the checks above."""
    v4 = nbformat.v4

    def answer(text):
        cell = v4.new_markdown_cell(f"{DROPDOWN[0]}\n{text}\n{DROPDOWN[1]}")
        cell.metadata["nbgrader"] = {"grade_id": f"answer-{secrets.token_hex(4)}", "solution": True,
                                     "grade": True, "points": 1, "locked": False,
                                     "schema_version": 3}  # fmt: skip
        return cell

    def code_solution():
        cell = v4.new_code_cell(f"{SOLUTION_REGION[0]}\nx = 1\n{SOLUTION_REGION[1]}")
        cell.metadata["nbgrader"] = {"grade_id": f"code-{secrets.token_hex(4)}", "solution": True,
                                     "grade": False, "locked": False, "schema_version": 3}  # fmt: skip
        return cell

    statement = v4.new_markdown_cell("**Exercise 1.** Why?")
    beside = v4.new_markdown_cell("**Exercise 1.** Why?\n\n*Solution.* Because the counters are shared.")
    swallowed = answer("Because.\n:::\n\n**Exercise 2.** Count the birds.\n\n:::{note}\nHere.")
    references = answer("Because.\n:::\n\n## References\n\n- Someone (2020).\n\n:::{note}\nHere.")
    unstated = [statement, code_solution(), answer("Because."), code_solution(), answer("Again.")]
    for cells in ([beside], [statement, swallowed], [statement, references], unstated):
        with pytest.raises(AssertionError):
            check_markup(v4.new_notebook(cells=cells), "example")
    source = v4.new_notebook(cells=[beside, code_solution()])
    with pytest.raises(AssertionError, match="a written solution in the copy"):
        check_copy(source, student_notebook(source), "example")
    for swallower in (swallowed, references):
        source = v4.new_notebook(cells=[statement, code_solution(), swallower])
        with pytest.raises(AssertionError, match="lost in the student copy"):
            check_copy(source, student_notebook(source), "example")
    fine = v4.new_notebook(cells=[statement, code_solution(), answer("Because.")])
    check_markup(fine, "example")
    check_copy(fine, student_notebook(fine), "example")


# -- the students' JupyterLab ----------------------------------------------------------------


def make_lab_command() -> str:
    """The shell command ``make lab`` runs (``make -n`` prints it without running anything)."""
    printed = subprocess.run(
        ["make", "-n", "lab"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    (command,) = [line for line in printed.replace("\\\n", " ").splitlines() if "jupyter lab" in line]
    return command


def test_make_lab_hides_nbgraders_instructor_interface(tmp_path):
    """`make lab` starts JupyterLab without nbgrader's lab extension (Create Assignment toolbar,
    Nbgrader menu) and without its server extensions (formgrader), though nbgrader is installed."""
    lab = make_lab_command()
    env = {**os.environ, "HOME": str(tmp_path), "JUPYTER_RUNTIME_DIR": str(tmp_path / "run")}

    def command(port, token):
        return f"{lab} --no-browser --port={port} --IdentityProvider.token={token}"

    with jupyterlab(command, REPO, env, tmp_path / "lab.log") as (base, token):
        page = urllib.request.urlopen(f"{base}/lab?token={token}", timeout=30).read().decode()
        config = json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', page, re.S).group(1))
        installed = {e["name"] for e in config["federated_extensions"]}
        assert "@jupyter/nbgrader" in installed, "nbgrader's lab extension should still be installed"
        assert "@jupyter/nbgrader" in config["disabledExtensions"], (
            "students' JupyterLab shows nbgrader's Create Assignment toolbar and Nbgrader menu"
        )
        assert "@jupyter-widgets/jupyterlab-manager" not in config["disabledExtensions"]
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"{base}/formgrader?token={token}", timeout=5)
        assert answer.value.code == 404, "nbgrader's formgrader is served to students"


def test_stopping_make_lab_stops_jupyterlab_and_its_kernels(tmp_path):
    """`kill` on `make lab` (what an IDE's stop button or a process manager sends) leaves nothing
    running: make passes SIGTERM to JupyterLab, which shuts its kernels down."""
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "HOME": str(tmp_path), "JUPYTER_RUNTIME_DIR": str(tmp_path / "run")}
    args = f"LAB_ARGS=--no-browser --port={port} --IdentityProvider.token={token}"
    with open(tmp_path / "lab.log", "w") as log:
        make = subprocess.Popen(
            ["make", "lab", args],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(180):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                assert make.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
                time.sleep(0.5)
        start = urllib.request.Request(f"{base}/api/kernels?token={token}", data=b"{}", method="POST")
        kernel = json.loads(urllib.request.urlopen(start, timeout=60).read())
        assert kernel["id"]

        make.send_signal(signal.SIGTERM)  # to make alone, not to its process group
        make.wait(timeout=60)
        for _ in range(60):
            if not _processes_in_group(make.pid):
                break
            time.sleep(0.5)
        assert not _processes_in_group(make.pid), "JupyterLab or a kernel outlived `make lab`"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(make.pid, signal.SIGKILL)


def _processes_in_group(group: int) -> list[str]:
    """The command lines of the live processes in a process group (zombies left out)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group and fields[0] != "Z":
                found.append((stat.parent / "cmdline").read_text().replace("\0", " "))
    return found
