"""Grading submitted notebooks, treating every submission as hostile.

For every submission `grade` does what an instructor would do by hand, safely:

1. read it (a file that is not a notebook, or a symbolic link, scores zero, with the reason);
2. put back the instructor's grade cells, hidden tests included (`restore_grade_cells`),
   so a student who edited or deleted a test changes nothing;
3. copy it into a fresh working folder and hand that to a worker process
   (`cnnbook.classroom.grade_worker`), which executes the notebook in a new kernel inside a sandbox
   (`cnnbook.classroom.sandbox`: bubblewrap, no network, an unprivileged user, limits), with a time
   limit per cell (a cell that runs over is interrupted and the next cell runs) and one for
   the whole notebook;
4. score each grade cell from the kernel's replies: its points if it ran without an error,
   else zero and the error. A worker that dies leaves its submission "not graded", with why,
   and the others go on.

Each submission's result is written to ``OUT/results/`` as soon as it is known (atomically),
so ``grade(..., resume=True)`` finishes an interrupted class without grading anyone twice.
The hidden tests and solutions never exist on disk inside a sandbox: the kernel receives
each grade cell's source only when it runs it. See the book's page "For instructors" for
the threat model and what no sandbox can stop.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from cnnbook.classroom.assign import is_autograded, is_graded, nbgrader_metadata
from cnnbook.classroom.grade_report import (
    ExerciseResult,
    clean_reason,
    result_file,
    secret_lines,
    write_report,
)
from cnnbook.classroom.sandbox import SANDBOX_HOME, Sandbox, SandboxLimits, require_sandbox, sandbox_uid
from cnnbook.classroom.shards import shard_of, write_manifest
from cnnbook.files import write_text_atomically

WORKER_GRACE = 120  # seconds a worker may take beyond the notebook's time limit (kernel start, cleanup)
# libzmq can abort the worker (an assertion in its receive queue) when a kernel drops a
# connection in the middle of a message; such a worker is run once more before giving up.
WORKER_TRIES = 2
NOTEBOOK_LIMIT = 64 * 2**20  # bytes: a larger submission is not read at all


@dataclass(frozen=True)
class Limits:
    """How a submission runs: seconds per cell and per notebook, the profile, notebooks side by
    side, the sandbox (False only for trusted submissions) and its limits, bytes of output."""

    cell_timeout: int = 300
    time_limit: int = 1800
    profile: str = "quick"
    jobs: int = 1
    sandbox: bool = True
    resources: SandboxLimits = field(default_factory=SandboxLimits)
    output_limit: int = 64 * 2**20


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


def scored(source, student: str, notebook: str, outcome) -> list[ExerciseResult]:
    """One row per graded cell of ``source``; ``outcome(grade_id)`` gives an autograded cell's
    (passed: True, False or None for "never ran", reason)."""
    rows = []
    for cell in source.cells:
        if not is_graded(cell):
            continue
        meta = nbgrader_metadata(cell)
        maximum = float(meta.get("points", 0))
        row = ExerciseResult(student, notebook, meta["grade_id"], None, maximum, "manual")
        if not is_autograded(cell):
            row.reason = "a written answer: grade it by hand"
        else:
            passed, row.reason = outcome(meta["grade_id"])
            row.status = "passed" if passed else ("failed" if passed is False else "not run")
            row.points = maximum if passed else 0.0
        rows.append(row)
    return rows


def not_graded(source, student: str, notebook: str, why: str) -> list[ExerciseResult]:
    """Rows for a submission that could not be graded at all (no points given or taken)."""
    rows = scored(source, student, notebook, lambda _: (None, ""))
    for row in rows:
        if row.status != "manual":
            row.points, row.status, row.reason = None, "not graded", f"not graded: {why}"
    return rows


def kernel_env(limits: Limits, data: list[Path], sandboxed: bool, scratch: Path) -> dict[str, str]:
    """The kernel's environment, built from an allow-list (nothing of the grader's leaks in)."""
    from cnnbook.config import DATA_ENV, PROFILE_ENV, cache_dir

    home, tmp = (str(SANDBOX_HOME), "/tmp") if sandboxed else (str(scratch / "home"), str(scratch))
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": home, "TMPDIR": tmp,
        "LANG": "C.UTF-8", PROFILE_ENV: limits.profile, "PYTHONDONTWRITEBYTECODE": "1",
        "MPLCONFIGDIR": f"{tmp}/matplotlib", "IPYTHONDIR": f"{tmp}/ipython",
    }  # fmt: skip
    if os.environ.get(DATA_ENV) and Path(os.environ[DATA_ENV]) in data:
        env[DATA_ENV] = os.environ[DATA_ENV]
    if cache_dir() in data:  # the instructor's downloads, read-only
        env["XDG_CACHE_HOME"] = str(cache_dir().parent)
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // max(1, limits.jobs)))
    env["OMP_NUM_THREADS"] = threads  # notebooks side by side share the cores instead of fighting
    return env


def dataset_folders() -> list[Path]:
    """The instructor's dataset folders that exist ($CNNBOOK_DATA, the cache), for reading inside."""
    from cnnbook.config import DATA_ENV, cache_dir

    places = [Path(os.environ[DATA_ENV])] if os.environ.get(DATA_ENV) else []
    return [p for p in [*places, cache_dir()] if p.is_dir()]


def grade_notebook(
    path: Path | None,
    source,
    student: str,
    notebook: str,
    limits: Limits,
    uid: int,
    secrets: frozenset[str] = frozenset(),
    executed: Path | None = None,
) -> list[ExerciseResult]:
    """Grade one submission (``path`` None: not submitted) against the instructor's ``source``,
    its kernel sandboxed as ``uid``; reasons are cleaned of the ``secrets`` lines."""
    if path is None:
        return scored(source, student, notebook, lambda _: (None, "not submitted"))
    try:
        if path.is_symlink() or not path.is_file():
            raise ValueError("a symbolic link or a special file, not a plain file")
        if path.stat().st_size > NOTEBOOK_LIMIT:
            raise ValueError(f"larger than {NOTEBOOK_LIMIT // 2**20} MB")
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # anything unreadable scores zero, with the reason
        reason = clean_reason(f"not a notebook: {type(err).__name__}: {err}")
        return scored(source, student, notebook, lambda _: (None, reason))
    nb = restore_grade_cells(nb, source)
    index_of = {nbgrader_metadata(c)["grade_id"]: i for i, c in enumerate(nb.cells) if is_autograded(c)}
    with tempfile.TemporaryDirectory(prefix="cnnbook-grade-", ignore_cleanup_errors=True) as tmp:
        run = Path(tmp)  # holds the job and result files, which the sandbox never sees
        work, runtime = run / "work", run / "runtime"
        work.mkdir()
        runtime.mkdir()
        for sibling in path.parent.iterdir() if path.parent.name == student else []:
            if sibling.is_file() and not sibling.is_symlink() and sibling.suffix != ".ipynb":
                shutil.copy2(sibling, work / sibling.name)  # data files that came with the notebook
        shutil.copyfile(path, work / notebook)  # as submitted: the graded version stays outside
        nbformat.write(nb, run / notebook)
        result, why = _run_worker(run, run / notebook, work, runtime, limits, uid, executed)
    if result is None:
        return not_graded(source, student, notebook, clean_reason(why, secrets))
    cells = {int(index): cell for index, cell in result["cells"].items()}

    def outcome(grade_id):
        cell = cells.get(index_of[grade_id])
        if cell is None:
            why = result["stopped"] or "the notebook stopped before this cell"
            return None, clean_reason(f"not run: {why}", secrets)
        if cell["ok"]:
            return True, ""
        return False, clean_reason(f"{cell['ename']}: {cell['evalue']}", secrets)

    return scored(source, student, notebook, outcome)


def _run_worker(
    run: Path, notebook: Path, work: Path, runtime: Path, limits: Limits, uid: int, executed: Path | None
):
    """Run `grade_worker` on ``notebook`` in ``work``; returns (its result or None, why not)."""
    data = dataset_folders()
    job = {
        "notebook": str(notebook), "workdir": str(work), "runtime": str(runtime),
        "result": str(run / "result.json"),
        "executed": str(run / "executed.ipynb") if executed else None,
        "cell_timeout": limits.cell_timeout, "time_limit": limits.time_limit,
        "output_limit": limits.output_limit,
        "env": kernel_env(limits, data, limits.sandbox, run),
        "sandbox": {"uid": uid, "limits": asdict(limits.resources), "readable": [str(p) for p in data]}
        if limits.sandbox else None,
    }  # fmt: skip
    command = [sys.executable, "-m", "cnnbook.classroom.grade_worker", str(run / "job.json")]
    if limits.sandbox:  # a mount namespace of its own, for the kernel's private socket folder
        command = ["unshare", "--mount", "--propagation", "private", *command]
    else:
        (run / "home").mkdir()
    (run / "job.json").write_text(json.dumps(job))
    for _ in range(WORKER_TRIES):
        code = _worker_exit_code(command, run, limits.time_limit + WORKER_GRACE)
        if limits.sandbox:
            Sandbox(work, runtime, uid).kill_leftovers()
        if (run / "result.json").is_file() or code != -signal.SIGABRT:
            break
    if executed is not None and (run / "executed.ipynb").is_file():
        shutil.copyfile(run / "executed.ipynb", executed)
    if (run / "result.json").is_file():
        return json.loads((run / "result.json").read_text()), ""
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
    last = (run / "worker.log").read_text(errors="replace").strip().splitlines()[-1:]  # its own words
    return None, f"the grading worker ended without a result ({how}){': ' + last[0] if last else ''}"


def _worker_exit_code(command: list[str], run: Path, seconds: float) -> int:
    """Run the worker, for at most ``seconds``; returns its exit code (minus the signal that killed it)."""
    with open(run / "worker.log", "w") as log:
        worker = subprocess.Popen(
            command, cwd=run, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
        try:
            worker.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            pass
        finally:
            _kill_group(worker.pid)
            worker.wait()
    return worker.returncode


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def find_submissions(folder: Path, sources: dict) -> tuple[list[tuple[str, str, Path | None]], list[str]]:
    """(student, notebook name, path or None if missing) for each expected notebook, and notes.

    Layouts: ``folder/STUDENT/NOTEBOOK.ipynb`` (as nbgrader collects them), or, when there is
    one source notebook, ``folder/STUDENT.ipynb``. Symbolic links are not followed.
    """
    found, notes = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and not entry.is_symlink():
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
    resume: bool = False,
    shard: tuple[int, int] | None = None,
) -> list[ExerciseResult]:
    """Grade every submission in ``submissions``; write ``out/grades.csv`` and ``out/summary.md``.

    With ``resume``, submissions whose result is already in ``out/results/`` are not run again,
    except those that could not be graded. With ``shard=(k, n)`` only the students of the
    k-th of n shards are graded, and ``out/shard.json`` says which (`cnnbook.classroom.shards`).
    """
    if limits.sandbox:
        require_sandbox()
    sources = {p.name: nbformat.read(p, as_version=4) for p in source_paths}
    secrets = {name: frozenset(secret_lines(nb)) for name, nb in sources.items()}
    todo, notes = find_submissions(submissions, sources)
    (out / "results").mkdir(parents=True, exist_ok=True)
    if shard:
        mine = [(i, item) for i, item in enumerate(todo) if shard_of(item[0], shard[1]) == shard[0]]
        graded = [[i, student, name] for i, (student, name, _) in mine]
        write_manifest(out, shard, list(sources), graded, notes)
        todo = [item for _, item in mine]
    executed_dir = out / "executed" if keep_executed else None
    if executed_dir:
        executed_dir.mkdir(exist_ok=True)
    start = time.perf_counter()

    def one(item) -> list[ExerciseResult]:
        student, name, path = item
        done = result_file(out, student, name)
        if resume and done.is_file():  # kept, unless it could not be graded last time
            rows = [ExerciseResult(**row) for row in json.loads(done.read_text())]
            if not any(r.status == "not graded" for r in rows):
                return rows
        began = time.perf_counter()
        executed = executed_dir / f"{student}-{name}" if executed_dir else None
        try:
            with sandbox_uid() if limits.sandbox else nullcontext(os.getuid()) as uid:
                source = sources[name]
                rows = grade_notebook(path, source, student, name, limits, uid, secrets[name], executed)
        except Exception as err:  # one broken submission never stops the others
            rows = not_graded(sources[name], student, name, clean_reason(f"{type(err).__name__}: {err}"))
        write_text_atomically(done, json.dumps([asdict(r) for r in rows]))
        total = sum(r.points or 0 for r in rows)
        possible = sum(r.max_points for r in rows if r.status != "manual")
        seconds = time.perf_counter() - began
        print(f"graded {student}/{name} in {seconds:.0f} s: {total:g}/{possible:g}", flush=True)
        return rows

    with ThreadPoolExecutor(max_workers=max(1, limits.jobs)) as pool:
        results = [row for rows in pool.map(one, todo) for row in rows]
    seconds = time.perf_counter() - start
    confinement = (
        "Each kernel ran in a bubblewrap sandbox (no network, an unprivileged user, a read-only "
        "system, limits)."
        if limits.sandbox
        else "Kernels ran WITHOUT a sandbox (--unsafe-no-sandbox): only for submissions you trust."
    )
    part = f"shard {shard[0]}/{shard[1]}: " if shard else ""
    footer = (
        f"{part}{len(todo)} notebooks graded in {seconds:.0f} s ({limits.profile} profile, "
        f"{limits.jobs} at a time, {os.cpu_count()} CPU cores). {confinement}"
    )
    write_report(results, out, notes, footer)
    return results
