"""The outputs stored in the chapters (what the website shows) come from complete, clean,
full-profile runs that meet each chapter's stated expectations.

Cells tagged ``addendum`` are a second run, made later or elsewhere (a CPU's measurements
beside a chapter stored on a GPU): they are checked as a run of their own, with their own
setup line and execution counts.

A chapter states its expectations in its metadata, e.g.
``{"cnnbook": {"expect": {"train-lenet": {"test acc": 0.75}}}}``: the code cell tagged
``train-lenet`` must have printed ``test acc X`` with X >= 0.75 under the full profile.

A chapter whose full run needs a GPU that was not at hand stores a complete run under the
``reduced`` profile instead (the same code and epochs, big images cut to a subset). It says
so in its metadata, with what that run must reach,
``"reduced_run": {"why": "...", "expect": {"train-alexnet": {"test acc": 0.6}}}``, and tells
its readers in a note at the top; the page must not pass the run off as a full run.
"""

import re
from pathlib import Path

import nbformat
import pytest

from cnnbook.classroom.execute import is_addendum

CHAPTERS = sorted((Path(__file__).parent.parent / "chapters").glob("*.ipynb"))


def _read(path):
    return nbformat.read(path, as_version=4)


def _text_of(cell) -> str:
    """Everything a code cell printed (streams and plain-text results)."""
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            parts.append(output["text"])
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
    return "\n".join(parts)


# The setup cell prints "profile: full" and "device: cuda:0 - NVIDIA H100 80GB HBM3"; every
# `History.summary()` ends "... examples/sec on cuda:0" + "profile full · 10 epochs · NVIDIA H100 ...".
SETUP = re.compile(r"^profile: (\w+)\ndevice: (\S+) - (.+)$", re.MULTILINE)
SUMMARY = re.compile(r"examples/sec on (\S+)\nprofile (\w+) · \d+ epochs · (.+?) · wall time [0-9.]+ s")


def _runs(notebook):
    """The notebook's code cells by run: the main run, and the addendum run when it has one."""
    code = [c for c in notebook.cells if c.cell_type == "code"]
    runs = {"main run": [c for c in code if not is_addendum(c)]}
    runs["addendum"] = [c for c in code if is_addendum(c)]
    return {name: cells for name, cells in runs.items() if cells}


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_stored_outputs_name_the_profile_and_device_that_made_them(path):
    """Each run's first cell printed its profile and device, and every training summary agrees."""
    notebook = _read(path)
    expected_profile = "reduced" if notebook.metadata.get("cnnbook", {}).get("reduced_run") else "full"
    for run, cells in _runs(notebook).items():
        printed = [_text_of(c) for c in cells]
        setups = [m.groups() for text in printed for m in SETUP.finditer(text)]
        assert len(setups) == 1, (
            f"{path.name} ({run}): expected one setup cell printing its profile and device, found {setups}"
        )
        profile, device, device_name = setups[0]
        if run == "main run":
            assert profile == expected_profile, f"{path.name}: stored outputs from a {profile}-profile run"
        else:
            assert profile == "full", f"{path.name}: the addendum was stored from a {profile}-profile run"
        for summary_device, summary_profile, summary_device_name in (
            m.groups() for text in printed for m in SUMMARY.finditer(text)
        ):
            assert (summary_device, summary_profile, summary_device_name) == (device, profile, device_name), (
                f"{path.name} ({run}): a training output ran on {summary_device} ({summary_device_name}) "
                f"under the {summary_profile} profile; its setup cell says {device} ({device_name}), "
                f"{profile}"
            )


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_executed_top_to_bottom_without_errors(path):
    """The main run and the addendum (cells tagged ``addendum``) each ran in order in one kernel."""
    for run, cells in _runs(_read(path)).items():
        counts = [c.execution_count for c in cells]
        assert counts == list(range(1, len(cells) + 1)), (
            f"{path.name} ({run}) was not executed top to bottom in one kernel (execution counts "
            f"{counts}); re-run it with `python -m cnnbook execute` (add --addendum for the addendum)"
        )
        errors = [
            f"cell {c.get('id')}: {o.get('ename')}: {o.get('evalue')}"
            for c in cells
            for o in c.outputs
            if o["output_type"] == "error"
        ]
        assert not errors, f"{path.name} stores error outputs: {errors}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_stored_run_meets_the_chapters_expectations(path):
    notebook = _read(path)
    expectations = notebook.metadata.get("cnnbook", {}).get("expect")
    assert expectations, f"{path.name} states no expectations in its metadata (cnnbook.expect)"
    reduced = notebook.metadata["cnnbook"].get("reduced_run")
    if reduced:
        first_markdown = next(c.source for c in notebook.cells if c.cell_type == "markdown")
        assert "reduced profile" in first_markdown, f"{path.name}: the note to readers is missing at the top"
        assert reduced.get("why"), f"{path.name}: reduced_run must say why the full run is missing"
        assert set(reduced.get("expect", {})) == set(expectations), (
            f"{path.name}: reduced_run.expect must state a minimum for every tagged run in expect"
        )
        _check_tagged_runs(path, notebook, reduced["expect"], profile="reduced")
    else:
        _check_tagged_runs(path, notebook, expectations, profile="full")


def _check_tagged_runs(path, notebook, expectations, profile):
    """Each tagged cell printed a summary made under ``profile``, on a named device, meeting its minimums."""
    for tag, minimums in expectations.items():
        cells = [c for c in notebook.cells if tag in c.get("metadata", {}).get("tags", [])]
        assert len(cells) == 1, f"{path.name}: expected one cell tagged {tag!r}, found {len(cells)}"
        text = _text_of(cells[0])
        profiles = set(re.findall(r"profile (full|quick|reduced)\b", text))
        assert profiles == {profile}, f"{path.name} [{tag}]: the stored run is not a {profile}-profile run"
        assert re.search(r"examples/sec on (cpu|cuda|mps)", text), f"{path.name} [{tag}]: no device named"
        for metric, minimum in minimums.items():
            values = re.findall(rf"{re.escape(metric)} ([0-9.]+)", text)
            assert values, f"{path.name} [{tag}]: the output reports no {metric!r}"
            assert float(values[-1]) >= minimum, (
                f"{path.name} [{tag}]: {metric} {values[-1]} is below the chapter's expectation {minimum}"
            )
