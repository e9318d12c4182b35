"""The prose quotes only figures its page shows (see ``prose_figures.py`` for the rules).

The first tests run the check over every chapter, lab and book page and the README's results
table; the others plant mismatches to show that the check catches them.
"""

import json
from pathlib import Path

import pytest
from prose_figures import (
    CHAPTERS,
    ROOT,
    Figure,
    check,
    check_markdown,
    check_readme_results,
    figures_in,
    is_backed,
    numbers_in,
)

# book/api.md is generated from book/api.template.md (checked here) and the docstrings, whose
# numbers describe the code (32M pixel values, 10-minute timeouts), not a run's results.
PAGES = sorted(path for path in (ROOT / "book").glob("*.md") if path.name != "api.md")


@pytest.mark.parametrize("path", sorted(CHAPTERS.glob("*.ipynb")) + PAGES, ids=lambda p: p.name)
def test_every_figure_in_the_prose_is_shown_on_its_page(path):
    problems = check(path)
    assert not problems, "figures the page does not show:\n" + "\n".join(map(str, problems))


def test_the_readme_results_table_quotes_only_figures_the_chapters_show():
    problems = check_readme_results(ROOT / "README.md")
    assert not problems, "\n".join(map(str, problems))


def _shown(*printed: str):
    return numbers_in("\n".join(printed))


@pytest.mark.parametrize(
    ("printed", "quoted"),
    [
        ("test acc 0.8124", "it reached 0.812"),
        ("test acc 0.8124", "it reached 0.81"),
        ("test acc 0.8124", "it reached 81.2%"),
        ("test acc 0.8124", "it reached 81%"),
        ("test acc 0.8125", "it reached 0.812"),  # half to even, as Python's round()
        ("test acc 0.8125", "it reached 0.813"),  # half up, as most people round
        ("accuracy 81.24%", "it reached 0.812"),
        ("37752832 parameters", "it has 37,752,832 parameters"),
        ("37,752,832 parameters", "it has 37.8 million parameters"),
        ("wall time 125.3 s", "it took 2.1 min"),
        ("wall time 63.4 s", "it took 63.4 s"),
        ("step 0.024 s", "a step took 24 ms"),
    ],
)
def test_a_figure_rounded_from_a_printed_value_is_backed(printed, quoted):
    assert check_markdown(quoted, "page", _shown(printed), set()) == []


@pytest.mark.parametrize(
    ("printed", "quoted"),
    [
        ("test acc 0.8124", "it reached 0.815"),  # a planted mismatch
        ("test acc 0.81", "it reached 0.812"),  # more digits than the run printed
        ("test acc 0.8124", "it reached 82%"),
        ("37752832 parameters", "it has 37.7 million parameters"),
        ("wall time 63.4 s", "it took 8.8 s"),
        ("", "roughly 1,310 images per second"),
    ],
)
def test_a_figure_no_output_shows_is_reported_with_its_context(printed, quoted):
    (problem,) = check_markdown(quoted, "ch9 cell 4", _shown(printed), set())
    assert problem.where == "ch9 cell 4" and problem.figure in quoted
    assert "is shown in no output or code" in str(problem) and quoted[:8] in str(problem)


def test_settings_versions_sections_and_whole_numbers_are_not_figures():
    prose = (
        "Ten epochs at batch 256 on 224x224 images, with torch 2.14, as in Section 7.1 of d2l "
        "(arXiv:1404.5997), in the 1990s, where $p = 0.5$ and [a link](https://x.org/1.2.3)."
    )
    assert figures_in(prose) == []


def test_a_chapter_that_shows_a_figure_only_in_code_backs_it_as_a_setting(tmp_path):
    notebook = _notebook(tmp_path, "settings", ["We train with lr 0.9."], code="train(lr=0.9)")
    assert check(notebook) == []


def test_a_planted_mismatch_in_a_chapter_fails_the_check(tmp_path):
    good = _notebook(tmp_path, "good", ["It ends at 0.81 test accuracy."], output="test acc 0.8124\n")
    planted = _notebook(tmp_path, "planted", ["It ends at 0.83 test accuracy."], output="test acc 0.8124\n")
    assert check(good) == []
    (problem,) = check(planted)
    assert problem.figure == "0.83" and problem.where == "planted.ipynb cell 0"


def test_a_figure_marked_as_quoted_names_its_source():
    marked = "d2l reports 0.795.\n<!-- quoted: 0.795 from d2l, section 7.6 -->"
    assert check_markdown(marked, "page", set(), set()) == []
    unsourced = "d2l reports 0.795.\n<!-- quoted: 0.795 -->"
    assert "without a source" in str(check_markdown(unsourced, "page", set(), set())[0])


def test_a_mark_the_text_no_longer_needs_is_an_error():
    stale = "d2l reports a lower accuracy.\n<!-- quoted: 0.795 from d2l -->"
    (problem,) = check_markdown(stale, "page", set(), set())
    assert "no longer quotes it" in str(problem)


def test_a_figure_quoted_from_another_chapter_is_checked_against_that_chapter():
    lenet = json.loads((CHAPTERS / "01-lenet.ipynb").read_text())
    printed = "\n".join(
        "".join(o.get("text", "")) for c in lenet["cells"] if c["cell_type"] == "code" for o in c["outputs"]
    )
    accuracy = next(v for v in sorted(numbers_in(printed)) if 0.5 < v < 1 and len(str(v)) == 5)
    right = f"LeNet reached {accuracy}.\n<!-- quoted: {accuracy} from 01-lenet -->"
    assert check_markdown(right, "page", set(), set()) == []
    wrong = "LeNet reached 0.999.\n<!-- quoted: 0.999 from 01-lenet -->"
    assert "01-lenet, which shows no such figure" in str(check_markdown(wrong, "page", set(), set())[0])


def test_a_glued_value_must_come_from_an_output_of_the_page():
    text = "It ends at {glue:text}`final_acc:.3f` test accuracy."
    assert check_markdown(text, "page", set(), {"final_acc"}) == []
    assert "no output glues that name" in str(check_markdown(text, "page", set(), set())[0])


def test_backing_respects_the_unit_of_the_figure():
    assert is_backed(Figure.parse("81", "%"), {numbers_in("0.8124").pop()})
    assert not is_backed(Figure.parse("0.81"), numbers_in("81"))


def _notebook(folder: Path, name: str, markdown: list[str], code: str = "", output: str = "") -> Path:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": text} for text in markdown]
    outputs = [{"output_type": "stream", "name": "stdout", "text": output}] if output else []
    cells.append(
        {"cell_type": "code", "metadata": {}, "source": code, "outputs": outputs, "execution_count": 1}
    )
    path = folder / f"{name}.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path
