"""Grading submitted notebooks, each in its own working copy, kernel and time limit.

For every submission `grade` does what an instructor would do by hand, safely:

1. read it (a file that is not a notebook scores zero, with the reason);
2. put back the instructor's grade cells, hidden tests included (`restore_grade_cells`),
   so a student who edited or deleted a test changes nothing;
3. copy it into a fresh temporary folder and execute it there in a new kernel, started by
   a separate worker process, with ``HOME`` and ``TMPDIR`` pointing into that copy, the
   quick profile, a time limit per cell (a cell that runs over is interrupted and the next
   cell runs) and one for the whole notebook (past it, worker and kernel are killed);
4. score each grade cell: its points if it ran without an error, else zero and the error.

Writes outside the copy: when ``grade`` runs as root on Linux (a container, a CI machine),
each worker starts in its own mount namespace (``unshare --mount``) where every file system
is remounted read-only except the submission's temporary folder and a private ``/dev/shm``,
so a submission that deletes or overwrites files by absolute path gets "Read-only file
system" and scores zero for that cell. Elsewhere that confinement is not available; the
report says so, and ``grade`` should then run as a user (or in a container) that can only
write where it should. Network access is not blocked either way. See the book's page "For
instructors".
"""

from __future__ import annotations

import copy
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import nbformat

from cnnbook.assign import is_autograded, is_graded, nbgrader_metadata

RECORD = "CNNBOOK-GRADE "  # the worker's result lines start with this


@dataclass
class ExerciseResult:
    """One graded cell of one student's notebook. ``points`` is None for an answer graded by hand."""

    student: str
    notebook: str
    exercise: str
    points: float | None
    max_points: float
    status: str  # passed | failed | not run | manual
    reason: str = ""


def can_confine() -> bool:
    """True when workers can run with every file system read-only but their own folder (root, Linux)."""
    return (
        sys.platform == "linux"
        and os.geteuid() == 0
        and shutil.which("unshare") is not None
        and shutil.which("mount") is not None
    )


@dataclass(frozen=True)
class Limits:
    """How a submission runs: seconds per cell and per notebook, the profile, parallel notebooks."""

    cell_timeout: int = 300
    time_limit: int = 1800
    profile: str = "quick"
    jobs: int = 1
    confine: bool = field(default_factory=can_confine)  # read-only outside the copy (root on Linux)


def restore_grade_cells(submission, source):
    """The submission with the instructor's version of every grade cell of ``source``.

    A grade cell the student changed is replaced, one the student deleted is put back after
    the cell that precedes it in the source, and any other cell claiming to be a grade cell
    loses that claim. Outputs of restored cells are cleared.
    """
    nb = copy.deepcopy(submission)
    tests = [cell for cell in source.cells if is_autograded(cell)]
    wanted = {nbgrader_metadata(cell)["grade_id"] for cell in tests}
    kept = set()
    for cell in nb.cells:  # only the first cell with each wanted id stays a grade cell
        grade_id = nbgrader_metadata(cell).get("grade_id")
        if is_autograded(cell) and (grade_id not in wanted or grade_id in kept):
            cell.metadata.pop("nbgrader")
        elif is_autograded(cell):
            kept.add(grade_id)
    for test in tests:
        grade_id = nbgrader_metadata(test)["grade_id"]
        fresh = copy.deepcopy(test)
        fresh.outputs, fresh.execution_count = [], None
        ids = [nbgrader_metadata(cell).get("grade_id") for cell in nb.cells]
        if grade_id in ids:
            fresh["id"] = nb.cells[ids.index(grade_id)].get("id", fresh.get("id"))
            nb.cells[ids.index(grade_id)] = fresh
            continue
        before = [nbgrader_metadata(c).get("grade_id") for c in source.cells[: source.cells.index(test)]]
        anchors = [ids.index(g) for g in reversed(before) if g and g in ids]
        fresh["id"] = f"restored-{grade_id}"
        nb.cells.insert(anchors[0] + 1 if anchors else len(nb.cells), fresh)
    return nb


def grade_notebook(
    path: Path | None, source, student: str, notebook: str, limits: Limits, executed_dir: Path | None = None
) -> list[ExerciseResult]:
    """Grade one submission (``path`` None: not submitted) against the instructor's ``source``."""
    graded = [cell for cell in source.cells if is_graded(cell)]

    def results(outcome) -> list[ExerciseResult]:
        out = []
        for cell in graded:
            meta = nbgrader_metadata(cell)
            maximum = float(meta.get("points", 0))
            row = ExerciseResult(student, notebook, meta["grade_id"], None, maximum, "manual")
            if not is_autograded(cell):
                row.reason = "a written answer: grade it by hand"
            else:  # passed: True, False (an error), or None (the cell never ran)
                passed, row.reason = outcome(meta["grade_id"])
                row.status = "passed" if passed else ("failed" if passed is False else "not run")
                row.points = maximum if passed else 0.0
            out.append(row)
        return out

    if path is None:
        return results(lambda _: (None, "not submitted"))
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # anything unreadable scores zero, with the reason
        reason = f"not a notebook: {type(err).__name__}: {str(err)[:200]}"
        return results(lambda _: (None, reason))
    nb = restore_grade_cells(nb, source)
    index_of = {nbgrader_metadata(c)["grade_id"]: i for i, c in enumerate(nb.cells) if is_autograded(c)}
    with tempfile.TemporaryDirectory(prefix="cnnbook-grade-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp) / "work"  # the working copy; its parent holds only the worker's log
        work.mkdir()
        for sibling in path.parent.iterdir() if path.parent.name == student else []:
            if sibling.is_file() and sibling.suffix != ".ipynb":
                shutil.copy2(sibling, work / sibling.name)  # data files that came with the notebook
        nbformat.write(nb, work / notebook)
        executed = executed_dir / f"{student}-{notebook}" if executed_dir else None
        records, stop_reason = _run_worker(work / notebook, Path(tmp), limits, executed)

    cells = {r["index"]: r for r in records if "index" in r}

    def outcome(grade_id):
        record = cells.get(index_of[grade_id])
        if record is None:
            return None, f"not run: {stop_reason}"
        return (True, "") if record["ok"] else (False, record["error"])

    return results(outcome)


def _worker_env(work: Path, tmp: Path, limits: Limits) -> dict:
    from cnnbook.config import DATA_ENV, PROFILE_ENV, cache_dir

    env = dict(os.environ)
    if DATA_ENV not in env and cache_dir().is_dir():
        env[DATA_ENV] = str(cache_dir())  # the instructor's datasets, found without their HOME
    env.update({
        "HOME": str(work), "TMPDIR": str(work), PROFILE_ENV: limits.profile,
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "IPYTHONDIR": str(tmp / "ipython"),
        "MPLCONFIGDIR": str(tmp / "matplotlib"), "PYTHONDONTWRITEBYTECODE": "1",
    })  # fmt: skip
    if limits.jobs > 1:  # notebooks side by side share the cores instead of fighting for them
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // limits.jobs))
    return env


def _confine_writes_to(writable: Path) -> None:
    """In a fresh mount namespace: make every mount read-only except ``writable`` and /dev/shm."""

    def mount(*args: str) -> None:
        subprocess.run(["mount", *args], check=True, capture_output=True)

    mount("--bind", str(writable), str(writable))  # its own mount, so it stays writable
    mount("-t", "tmpfs", "-o", "size=1g", "tmpfs", "/dev/shm")  # a private one, for shared tensors
    with open("/proc/self/mountinfo") as f:  # field 5 is the mount point, octal-escaped
        points = [line.split()[4].encode().decode("unicode_escape") for line in f]
    for point in dict.fromkeys(points):
        if point == str(writable) or point == "/dev/shm" or point.startswith(("/proc", "/sys", "/dev")):
            continue
        try:
            mount("-o", "remount,bind,ro", point)
        except subprocess.CalledProcessError as err:
            if point == "/":  # the one that matters most: refuse to run unconfined
                raise RuntimeError(f"cannot make / read-only: {err.stderr.strip()}") from None


def _run_worker(notebook: Path, tmp: Path, limits: Limits, executed: Path | None) -> tuple[list, str]:
    """Run the worker on ``notebook``; returns its records and why it stopped (if it did early)."""
    command = [sys.executable, "-m", "cnnbook.grade", "--worker", str(notebook), str(limits.cell_timeout)]
    if executed is not None:  # the worker saves the executed notebook in its folder; we copy it out
        command.append(str(tmp / "executed.ipynb"))
    if limits.confine:
        command = ["unshare", "--mount", "--propagation", "private", *command, "--confine", str(tmp)]
    with open(tmp / "worker.log", "w") as log:
        worker = subprocess.Popen(
            command,
            cwd=notebook.parent,
            env=_worker_env(notebook.parent, tmp, limits),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        records: list[dict] = []
        reader = threading.Thread(target=_read_records, args=(worker.stdout, records), daemon=True)
        reader.start()
        try:
            worker.wait(timeout=limits.time_limit)
            stop_reason = "the notebook stopped before this cell"
        except subprocess.TimeoutExpired:
            stop_reason = f"the notebook ran past its time limit of {limits.time_limit} s and was stopped"
        finally:
            for record in list(records):  # the kernel and whatever it started, then the worker
                if "kernel_pid" in record:
                    _kill_group(record["kernel_pid"])
            _kill_group(worker.pid)
            worker.wait()
            reader.join(timeout=5)
    for record in records:
        if "fatal" in record:
            stop_reason = record["fatal"]
    if executed is not None and (tmp / "executed.ipynb").is_file():
        shutil.copyfile(tmp / "executed.ipynb", executed)
    return records, stop_reason


def _read_records(stream, records: list) -> None:
    for line in stream:
        if line.startswith(RECORD):
            records.append(json.loads(line[len(RECORD) :]))


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _worker(notebook: str, cell_timeout: int, executed: str | None = None, confine: str | None = None):
    """Inside the worker process: execute the notebook, printing one record per code cell."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    def emit(**record):
        print(RECORD + json.dumps(record), flush=True)

    if confine is not None:  # before the kernel starts: it inherits the read-only mounts
        try:
            _confine_writes_to(Path(confine))
        except Exception as err:
            emit(fatal=f"could not confine the notebook's writes, so it did not run: {err}")
            return

    nb = nbformat.read(notebook, as_version=4)
    current = {"index": None}
    client = NotebookClient(
        nb, timeout=cell_timeout, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
        error_on_timeout={"ename": "Timeout", "evalue": f"the cell ran longer than {cell_timeout} s and was "
                          "interrupted", "traceback": []},
        resources={"metadata": {"path": str(Path(notebook).parent)}},
        on_notebook_start=lambda notebook: emit(kernel_pid=client.km.provisioner.pid),
        on_cell_start=lambda cell, cell_index: current.update(index=cell_index),
        on_cell_executed=lambda cell, cell_index, execute_reply: emit(
            index=cell_index, ok=execute_reply["content"]["status"] == "ok",
            error=f"{execute_reply['content'].get('ename')}: {execute_reply['content'].get('evalue')}"[:300],
        ),
    )  # fmt: skip
    try:  # the kernel's own output goes nowhere: only this process writes records
        client.execute(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except DeadKernelError:
        emit(fatal=f"the kernel died in cell {current['index']} (the notebook crashed it or exited)")
    except Exception as err:
        emit(fatal=f"execution failed in cell {current['index']}: {type(err).__name__}: {str(err)[:200]}")
    if executed:
        nbformat.write(nb, executed)


def find_submissions(folder: Path, sources: dict) -> tuple[list[tuple[str, str, Path | None]], list[str]]:
    """(student, notebook name, path or None if missing) for each expected notebook, and notes.

    Layouts: ``folder/STUDENT/NOTEBOOK.ipynb`` (as nbgrader collects them), or, when there is
    one source notebook, ``folder/STUDENT.ipynb``.
    """
    found, notes = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            submitted = {p.name: p for p in entry.glob("*.ipynb")}
            found += [(entry.name, name, submitted.get(name)) for name in sources]
            notes += [
                f"ignored {entry.name}/{name}: no source notebook of that name"
                for name in submitted
                if name not in sources
            ]
        elif entry.suffix == ".ipynb" and len(sources) == 1:
            found.append((entry.stem, next(iter(sources)), entry))
        else:
            notes.append(
                f"ignored {entry.name}: expected a folder per student"
                + (" or STUDENT.ipynb" if len(sources) == 1 else "")
            )
    return found, notes


def grade(
    submissions: Path,
    source_paths: list[Path],
    out: Path,
    limits: Limits = Limits(),
    keep_executed: bool = False,
) -> list[ExerciseResult]:
    """Grade every submission in ``submissions``; write ``out/grades.csv`` and ``out/summary.md``."""
    sources = {p.name: nbformat.read(p, as_version=4) for p in source_paths}
    todo, notes = find_submissions(submissions, sources)
    out.mkdir(parents=True, exist_ok=True)
    executed_dir = out / "executed" if keep_executed else None
    if executed_dir:
        executed_dir.mkdir(exist_ok=True)
    start = time.perf_counter()

    def one(item):
        student, name, path = item
        began = time.perf_counter()
        try:
            rows = grade_notebook(path, sources[name], student, name, limits, executed_dir)
        except Exception as err:  # one broken submission never stops the others
            rows = grade_notebook(None, sources[name], student, name, limits)
            rows = [
                ExerciseResult(**{**asdict(r), "reason": f"grading failed: {type(err).__name__}: {err}"})
                for r in rows
            ]
        scored, possible = (
            sum(r.points or 0 for r in rows),
            sum(r.max_points for r in rows if r.status != "manual"),
        )
        print(
            f"graded {student}/{name} in {time.perf_counter() - began:.0f} s: {scored:g}/{possible:g}",
            flush=True,
        )
        return rows

    with ThreadPoolExecutor(max_workers=max(1, limits.jobs)) as pool:
        results = [row for rows in pool.map(one, todo) for row in rows]
    seconds = time.perf_counter() - start
    write_report(
        results,
        out,
        notes,
        f"{len(todo)} notebooks graded in {seconds:.0f} s "
        f"({limits.profile} profile, {limits.jobs} at a time, {os.cpu_count()} CPU cores). "
        + (
            "Writes outside each submission's working copy were blocked (read-only mounts)."
            if limits.confine
            else "Writes outside the working copies were NOT blocked: that needs root on Linux "
            "(e.g. grading in a container); see the book's page 'For instructors'."
        ),
    )
    return results


def write_report(results: list[ExerciseResult], out: Path, notes: list[str], footer: str) -> None:
    """``grades.csv`` (one row per student, notebook and exercise) and ``summary.md`` (a table)."""
    with open(out / "grades.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[field.name for field in fields(ExerciseResult)])
        writer.writeheader()
        writer.writerows(asdict(r) for r in results)
    lines = []
    for notebook in dict.fromkeys(r.notebook for r in results):
        rows = [r for r in results if r.notebook == notebook]
        exercises = list(dict.fromkeys(r.exercise for r in rows))
        maxima = {r.exercise: r.max_points for r in rows}
        auto = [e for e in exercises if any(r.exercise == e and r.status != "manual" for r in rows)]
        lines += [
            f"## {notebook}",
            "",
            "| student | "
            + " | ".join(f"{e} ({maxima[e]:g})" for e in exercises)
            + f" | total ({sum(maxima[e] for e in auto):g}) |",
            "|---" * (len(exercises) + 2) + "|",
        ]
        for student in dict.fromkeys(r.student for r in rows):
            mine = {r.exercise: r for r in rows if r.student == student}
            cells = ["by hand" if mine[e].status == "manual" else f"{mine[e].points:g}" for e in exercises]
            total = sum(r.points or 0 for r in mine.values())
            lines.append(f"| {student} | " + " | ".join(cells) + f" | {total:g} |")
        problems = [r for r in rows if r.status in ("failed", "not run")]
        if problems:
            lines += ["", "Why points were lost:", ""]
            lines += [f"- {r.student}, {r.exercise}: {r.reason}" for r in problems]
        lines.append("")
    lines += [f"- {note}" for note in notes] + ([""] if notes else []) + [footer, ""]
    (out / "summary.md").write_text("\n".join(lines))


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    arguments = sys.argv[2:]
    confined_to = None
    if "--confine" in arguments:
        confined_to = arguments.pop(arguments.index("--confine") + 1)
        arguments.remove("--confine")
    _worker(arguments[0], int(arguments[1]), *arguments[2:3], confine=confined_to)
