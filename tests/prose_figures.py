"""Every figure the prose quotes comes from an output the page shows.

A *figure* is a number that reads as a result: a decimal (0.812), a percentage (81%), a count
with separators (37,752,832), an amount in millions, or a time (63.4 s, 4 min). Whole numbers
without a unit (10 epochs, batch 256) are settings and are not checked.

A figure in a chapter's markdown passes when the chapter shows it:

- in a stored output (printed text, a result, the saved state of a slider), or
- in a code cell, where it is a setting the reader can see (``lr=0.9``),

allowing rounding: 0.8124 may be quoted as 0.812, 0.81, 81.2% or 81%; 37752832 as
37,752,832 or 37.8 million; 125.3 s as 2.1 min; an accuracy gain of 0.0224 as 2.2 points.
A figure the run did not make is marked as quoted, in an HTML comment of the cell that
quotes it (invisible on the page and in JupyterLab)::

    <!-- quoted: 0.795 from d2l; 15.3% from Krizhevsky et al. 2012; 0.812 from 01-lenet -->

A source that names a chapter (``01-lenet``) is checked against that chapter's outputs; any
other source is taken as written, and must be named. A mark whose figure the cell no longer
quotes is an error too, so marks cannot go stale. Values glued by myst-nb
(``{glue:text}`key```) come from the run by construction; the key must exist.

Book pages show no outputs, so their figures are quoted, each from a chapter where it can.
So is the README's table of chapter results. Run ``python tests/prose_figures.py [FILE ...]``
to list the unbacked figures of chapters and pages.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"

NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d*\.\d+|\d+"
UNIT = r"ms|milliseconds?|µs|s|min|minutes?|seconds?|hours?|h|million|billion|thousand|points?"
# A percent sign follows its number directly, other units after a space ("63.4 s", not "1990s").
FIGURE = re.compile(rf"(?<![\w.,/^:])({NUMBER})(%|\s(?:{UNIT})(?!\w))?(?![\w%]|\.\d)")
# Numbers after these words name a version, a section or a hardware generation, not a result.
NOT_A_RESULT = re.compile(
    r"(?:torch|PyTorch|torchvision|Python|CUDA|cuDNN|version|v|Book|capability|sm_|Section|"
    r"Sections|section|§|Figure|Table|Eq\.|equation|chapter|Chapter|Lab|lab|exercise|Exercise|"
    r"AVX|Ubuntu|Debian|nbval|compute)\s?$"
)
QUOTED = re.compile(r"<!--\s*quoted:(.*?)-->", re.DOTALL)
# A reference list cites titles ("94% on CIFAR-10 in 3.29 seconds"), it quotes no result.
REFERENCES = re.compile(r"\s*#+ References\b")
GLUE = re.compile(r"\{glue(?::\w+)?\}`([^`]+)`")
OUTPUT_NUMBER = re.compile(rf"(?<![\w.])-?({NUMBER})(\s?%)?")


@dataclass(frozen=True)
class Figure:
    """One figure in the prose: its text, value, decimal places and unit."""

    text: str
    value: Decimal
    places: int
    unit: str

    @classmethod
    def parse(cls, number: str, unit: str = "") -> Figure:
        """``Figure.parse("37,752,832")``, ``Figure.parse("81.2", "%")``."""
        digits = number.replace(",", "")
        places = len(digits.split(".")[1]) if "." in digits else 0
        text = f"{number}{'%' if unit == '%' else (' ' + unit if unit else '')}"
        return cls(text, Decimal(digits), places, unit)


@dataclass(frozen=True)
class Problem:
    """A figure the page does not back, or a mark that is wrong."""

    where: str
    figure: str
    context: str
    why: str

    def __str__(self) -> str:
        return f"{self.where}: {self.figure!r} {self.why} ... {self.context} ..."


def _visible_prose(markdown: str) -> str:
    """The markdown a reader sees as text: no comments, math, link targets or glued values."""
    markdown = re.sub(r"<!--.*?-->", " ", markdown, flags=re.DOTALL)
    markdown = re.sub(r"\$\$.*?\$\$", " ", markdown, flags=re.DOTALL)
    markdown = re.sub(r"\$[^$\n]+\$", " ", markdown)
    markdown = re.sub(r"\]\([^)]*\)", "]", markdown)
    markdown = re.sub(r"<https?://[^>]*>|https?://\S+", " ", markdown)
    markdown = re.sub(r"\{(?:doc|ref|numref|cite|download)\}`[^`]*`", " ", markdown)
    markdown = re.sub(r"^\s*(?:```|:::).*$", " ", markdown, flags=re.MULTILINE)
    return GLUE.sub(" ", markdown)


def figures_in(markdown: str) -> list[tuple[Figure, str]]:
    """The figures of a piece of markdown, each with some text around it."""
    prose = _visible_prose(markdown)
    found = []
    for match in FIGURE.finditer(prose):
        number, unit = match.group(1), (match.group(2) or "").strip()
        if "," not in number and "." not in number and not unit:
            continue
        if NOT_A_RESULT.search(prose[max(0, match.start() - 14) : match.start()]):
            continue
        context = prose[max(0, match.start() - 50) : match.end() + 30].replace("\n", " ")
        found.append((Figure.parse(number, unit), context.strip()))
    return found


def numbers_in(text: str) -> set[Decimal]:
    """Every number printed in ``text``; a percentage also counts as its fraction (81% -> 0.81)."""
    values = set()
    for match in OUTPUT_NUMBER.finditer(text):
        try:
            value = Decimal(match.group(1).replace(",", ""))
        except InvalidOperation:
            continue
        values.add(value)
        if match.group(2):
            values.add(value / 100)
    return values


def _rounds_to(value: Decimal, figure: Figure) -> bool:
    quantum = Decimal(1).scaleb(-figure.places)
    modes = (ROUND_HALF_UP, ROUND_HALF_EVEN)
    return any(value.quantize(quantum, rounding=mode) == figure.value for mode in modes)


SCALES = {
    "%": (Decimal(100), Decimal(1)),
    "million": (Decimal("1e-6"),),
    "billion": (Decimal("1e-9"),),
    "thousand": (Decimal("1e-3"),),
    "min": (Decimal(1), Decimal(1) / 60),
    "minute": (Decimal(1), Decimal(1) / 60),
    "minutes": (Decimal(1), Decimal(1) / 60),
    "h": (Decimal(1), Decimal(1) / 3600, Decimal(1) / 60),
    "hour": (Decimal(1), Decimal(1) / 3600, Decimal(1) / 60),
    "hours": (Decimal(1), Decimal(1) / 3600, Decimal(1) / 60),
    "ms": (Decimal(1), Decimal(1000)),
    "millisecond": (Decimal(1), Decimal(1000)),
    "milliseconds": (Decimal(1), Decimal(1000)),
    "point": (Decimal(1), Decimal(100)),  # percentage points: 0.0224 is 2.2 points
    "points": (Decimal(1), Decimal(100)),
    "µs": (Decimal(1), Decimal(1e6)),
}


def is_backed(figure: Figure, shown: set[Decimal]) -> bool:
    """Whether a printed value rounds to ``figure`` (in its unit: 0.8124 backs 81%)."""
    scales = SCALES.get(figure.unit, (Decimal(1),))
    return any(_rounds_to(value * scale, figure) for value in shown for scale in scales)


def _text_of_outputs(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append("".join(output["text"]))
        for kind, data in output.get("data", {}).items():
            if kind.startswith("text/"):
                parts.append("".join(data))
    return "\n".join(parts)


def _glued_keys(cell: dict) -> set[str]:
    return {
        output.get("metadata", {}).get("scrapbook", {}).get("name")
        for output in cell.get("outputs", [])
        if output.get("metadata", {}).get("scrapbook")
    }


@dataclass
class Notebook:
    """A chapter's markdown cells and everything its page shows besides them."""

    name: str
    markdown: list[tuple[int, str]]
    shown: set[Decimal]
    glued: set[str]

    @classmethod
    def read(cls, path: Path) -> Notebook:
        """Read a notebook: its prose, and the numbers of its outputs, code and slider states."""
        notebook = json.loads(path.read_text())
        markdown, shown_text, glued = [], [], set()
        for index, cell in enumerate(notebook["cells"]):
            source = "".join(cell["source"])
            if cell["cell_type"] == "markdown":
                markdown.append((index, source))
            elif cell["cell_type"] == "code":
                shown_text += [source, _text_of_outputs(cell)]
                glued |= _glued_keys(cell)
        widgets = notebook.get("metadata", {}).get("widgets")
        if widgets:
            shown_text.append(json.dumps(widgets))
        return cls(path.stem, markdown, numbers_in("\n".join(shown_text)), glued)


def chapter_numbers(name: str) -> set[Decimal] | None:
    """The numbers chapter ``name`` shows, or None when there is no such chapter."""
    path = CHAPTERS / f"{name}.ipynb"
    return Notebook.read(path).shown if path.exists() else None


def _quoted_marks(markdown: str, where: str) -> tuple[dict[str, list[str]], list[Problem]]:
    """The cell's ``<!-- quoted: FIGURE from SOURCE; ... -->`` marks, by figure text."""
    marks: dict[str, list[str]] = {}
    problems = []
    for comment in QUOTED.findall(markdown):
        for entry in filter(None, (e.strip() for e in comment.split(";"))):
            figure, _, source = entry.partition(" from ")
            if not source.strip():
                problems.append(Problem(where, figure, entry, "is marked as quoted without a source"))
                continue
            marks.setdefault(figure.strip(), []).append(source.strip())
    return marks, problems


def check_markdown(markdown: str, where: str, shown: set[Decimal], glued: set[str]) -> list[Problem]:
    """The problems of one markdown cell (or page) whose page shows ``shown``."""
    marks, problems = _quoted_marks(markdown, where)
    for key in GLUE.findall(markdown):
        if key.split(":")[0] not in glued:
            problems.append(Problem(where, key, markdown[:60], "is glued, but no output glues that name"))
    found = figures_in(markdown)
    for figure, context in found:
        sources = marks.get(figure.text)
        if sources is None:
            if not is_backed(figure, shown):
                why = "is shown in no output or code of this page"
                problems.append(Problem(where, figure.text, context, why))
            continue
        for source in sources:
            numbers = chapter_numbers(source)
            if numbers is not None and not is_backed(figure, numbers):
                why = f"is quoted from {source}, which shows no such figure"
                problems.append(Problem(where, figure.text, context, why))
    quoted_texts = {figure.text for figure, _ in found}
    problems += [
        Problem(where, text, "<!-- quoted: ... -->", "is marked as quoted, but the text no longer quotes it")
        for text in marks
        if text not in quoted_texts
    ]
    return problems


def check_notebook(path: Path) -> list[Problem]:
    """Every unbacked figure of a chapter's markdown."""
    notebook = Notebook.read(path)
    problems = []
    for index, markdown in notebook.markdown:
        if not REFERENCES.match(markdown):
            problems += check_markdown(markdown, f"{path.name} cell {index}", notebook.shown, notebook.glued)
    return problems


def check_page(path: Path) -> list[Problem]:
    """Every unbacked figure of a markdown page, which shows no outputs of its own."""
    return check_markdown(path.read_text(), path.name, set(), set())


def check_readme_results(path: Path) -> list[Problem]:
    """The README's chapter results table: every figure quoted from the chapter that shows it."""
    text = path.read_text()
    start = text.index("Chapter results")
    end = text.find("\n#", start)
    return check_markdown(text[start : end if end > 0 else None], f"{path.name} results", set(), set())


def check(path: Path) -> list[Problem]:
    """The problems of a chapter (``.ipynb``) or a page (``.md``)."""
    return check_notebook(path) if path.suffix == ".ipynb" else check_page(path)


if __name__ == "__main__":
    paths = [Path(p) for p in sys.argv[1:]] or sorted(CHAPTERS.glob("*.ipynb"))
    problems = [problem for path in paths for problem in check(path)]
    print("\n".join(map(str, problems)) or "every figure is backed")
    sys.exit(1 if problems else 0)
