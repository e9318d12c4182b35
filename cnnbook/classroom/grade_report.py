"""The grade report: ``grades.csv`` and ``summary.md``, safe to hand to students.

Every reason in it may carry text a submission chose (an exception's message is whatever
the student's code raised), so each one is made harmless before it is written: one line,
no control characters, at most `REASON_LIMIT` characters, every line of the instructor's
hidden tests and solutions replaced by ``[hidden]``, and, in the Markdown, every character
that Markdown or a table would read escaped. Both files are replaced atomically.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from cnnbook.classroom.assign import is_graded, is_solution, student_notebook
from cnnbook.files import write_text_atomically

REASON_LIMIT = 200
SECRET_MIN_LENGTH = 8  # shorter lines ("pass", "x = 1") are too common to be worth hiding
QUOTE_WINDOW = 8  # a reason that shares this many characters (spaces aside) with a secret line is withheld
SPREADSHEET_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would run as a formula
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")  # what Markdown or a table row reads


@dataclass
class ExerciseResult:
    """One graded cell of one student's notebook. ``points`` is None for an answer graded by hand
    or a submission that could not be graded."""

    student: str
    notebook: str
    exercise: str
    points: float | None
    max_points: float
    status: str  # passed | failed | not run | manual | not graded
    reason: str = ""


def one_line(text: str) -> str:
    """``text`` with control and invisible characters removed and all whitespace runs made one space."""
    kept = (ch for ch in text if ch.isspace() or not unicodedata.category(ch).startswith("C"))
    return " ".join("".join(kept).split())


def secret_lines(source) -> set[str]:
    """The lines of the instructor's notebook ``source`` that students must not see: its hidden
    tests and solutions (each as `one_line` makes it), less any line the student copy shows."""
    shown = {one_line(line) for cell in student_notebook(source).cells for line in cell.source.split("\n")}
    secret = set()
    for cell in source.cells:
        if is_solution(cell) or is_graded(cell):
            secret |= {one_line(line) for line in cell.source.split("\n")}
    markup = ("###", ":::", "```")  # nbgrader's region markers and MyST's fences give nothing away
    return {line for line in secret - shown if len(line) >= SECRET_MIN_LENGTH and not line.startswith(markup)}


def quotes_a_secret(text: str, secrets: set[str]) -> bool:
    """True if ``text`` holds any `QUOTE_WINDOW` consecutive characters of a secret line, spaces
    ignored in both (so a line cut short or spelled out letter by letter is still caught)."""
    squeezed = "".join(text.split())
    for secret in secrets:
        bare = "".join(secret.split())
        if any(bare[i : i + QUOTE_WINDOW] in squeezed for i in range(max(1, len(bare) - QUOTE_WINDOW + 1))):
            return True
    return False


def clean_reason(text: str, secrets: set[str] = frozenset()) -> str:
    """A reason fit for the report: one line, `REASON_LIMIT` characters at most, and, if it quotes
    any part of a secret line, only the exception's name (if a plain one) and ``[hidden: ...]``."""
    text = one_line(text)
    if quotes_a_secret(text, secrets):
        name = text.split(":")[0]
        plain = name.isidentifier() and len(name) <= 40 and not quotes_a_secret(name, secrets)
        shown = name if plain else "Error"
        text = f"{shown}: [hidden: the message quoted a hidden test or solution]"
    return text if len(text) <= REASON_LIMIT else text[: REASON_LIMIT - 3] + "..."


def markdown_text(text: str) -> str:
    """``text`` (one line) with Markdown's and tables' special characters escaped."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", one_line(text))


def spreadsheet_safe(value):
    """``value``, with a ``'`` before a text a spreadsheet would run as a formula (``=HYPERLINK(...)``)."""
    return "'" + value if isinstance(value, str) and value.startswith(SPREADSHEET_FORMULA) else value


def csv_text(results: list[ExerciseResult]) -> str:
    """The rows of ``grades.csv``: one per student, notebook and exercise."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[field.name for field in fields(ExerciseResult)])
    writer.writeheader()
    writer.writerows({key: spreadsheet_safe(value) for key, value in asdict(r).items()} for r in results)
    return buffer.getvalue()


def summary_text(results: list[ExerciseResult], notes: list[str], footer: str) -> str:
    """``summary.md``: per notebook, a table of points per exercise and student, then the reasons."""
    lines = []
    for notebook in dict.fromkeys(r.notebook for r in results):
        rows = [r for r in results if r.notebook == notebook]
        exercises = list(dict.fromkeys(r.exercise for r in rows))
        maxima = {r.exercise: r.max_points for r in rows}
        auto = [e for e in exercises if any(r.exercise == e and r.status != "manual" for r in rows)]
        lines += [
            f"## {markdown_text(notebook)}",
            "",
            "| student | "
            + " | ".join(f"{markdown_text(e)} ({maxima[e]:g})" for e in exercises)
            + f" | total ({sum(maxima[e] for e in auto):g}) |",
            "|---" * (len(exercises) + 2) + "|",
        ]
        for student in dict.fromkeys(r.student for r in rows):
            mine = {r.exercise: r for r in rows if r.student == student}
            cells = [_cell_text(mine[e]) for e in exercises]
            total = sum(r.points or 0 for r in mine.values())
            lines.append(f"| {markdown_text(student)} | " + " | ".join(cells) + f" | {total:g} |")
        problems = [r for r in rows if r.status in ("failed", "not run", "not graded")]
        if problems:
            lines += ["", "Why points were lost:", ""]
            lines += [f"- {markdown_text(r.student)}, {markdown_text(r.exercise)}: {markdown_text(r.reason)}"
                      for r in problems]  # fmt: skip
        lines.append("")
    lines += [f"- {markdown_text(note)}" for note in notes] + ([""] if notes else []) + [footer, ""]
    return "\n".join(lines)


def _cell_text(result: ExerciseResult) -> str:
    if result.status == "manual":
        return "by hand"
    return "not graded" if result.status == "not graded" else f"{result.points:g}"


def result_file(out: Path, student: str, notebook: str) -> Path:
    """Where one submission's result is kept (a name no student can choose to collide with)."""
    key = hashlib.sha256(f"{student}\0{notebook}".encode()).hexdigest()[:24]
    return out / "results" / f"{key}.json"


def write_report(results: list[ExerciseResult], out: Path, notes: list[str], footer: str) -> None:
    """Write ``out/grades.csv`` and ``out/summary.md``, each atomically."""
    write_text_atomically(out / "grades.csv", csv_text(results))
    write_text_atomically(out / "summary.md", summary_text(results, notes, footer))
