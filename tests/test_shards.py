"""A class graded in shards (`grade --shard K/N`) and merged (`grade merge`) gets the report a
single grading run gives; shards that do not belong together are refused, and missing ones
are named."""

import json
import re
import shutil

import nbformat
import pytest
from test_assign import exercise_notebook
from test_grade import sandboxes_here, square_is, submission

from cnnbook.__main__ import main
from cnnbook.classroom.shards import ShardError, merge, parse_shard, shard_of

# Five students: two right, one wrong, one crashing, one who handed in nothing.
CLASS = {
    "ada": {1: square_is("return x * x"), 4: "answer = 24"},
    "bob": {1: square_is("return x + x"), 4: "answer = 24"},
    "cy": {1: square_is("return x ** 2"), 4: "answer = 26"},
    "dee": {1: square_is("raise RuntimeError('no idea')"), 4: "answer = 24"},
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The class graded once whole and once in two shards (each in its sandbox), merged."""
    sandboxes_here()
    root = tmp_path_factory.mktemp("shards")
    source = root / "ex.ipynb"
    nbformat.write(exercise_notebook(), source)
    for student, cells in CLASS.items():
        (root / "class" / student).mkdir(parents=True)
        nbformat.write(submission(cells), root / "class" / student / "ex.ipynb")
    (root / "class" / "eve").mkdir()  # handed in nothing
    common = ["--source", str(source), "--cell-timeout", "20", "--time-limit", "90", "--jobs", "2"]
    assert main(["grade", str(root / "class"), "--out", str(root / "whole"), *common]) == 0
    for k in (1, 2):
        assert (
            main(
                ["grade", str(root / "class"), "--out", str(root / f"shard{k}"), "--shard", f"{k}/2", *common]
            )
            == 0
        )
    assert (
        main(["grade", "merge", str(root / "shard1"), str(root / "shard2"), "--out", str(root / "merged")])
        == 0
    )
    return root


def _table(summary: str) -> str:
    """summary.md without its last line (how long grading took differs between runs)."""
    return "\n".join(summary.rstrip("\n").splitlines()[:-1])


def test_the_merged_report_equals_the_single_runs(graded):
    whole, merged = graded / "whole", graded / "merged"
    assert (merged / "grades.csv").read_text() == (whole / "grades.csv").read_text()
    assert _table((merged / "summary.md").read_text()) == _table((whole / "summary.md").read_text())
    assert "5 notebooks graded in 2 of 2 shards (1/2, 2/2), merged." in (merged / "summary.md").read_text()


def test_the_shards_are_disjoint_and_cover_the_class(graded):
    listed = [
        {student for _, student, _ in json.loads((graded / f"shard{k}" / "shard.json").read_text())["graded"]}
        for k in (1, 2)
    ]
    assert not listed[0] & listed[1] and listed[0] | listed[1] == set(CLASS) | {"eve"}
    assert all(listed), "with five students both shards should have some (the hash splits them)"


def test_a_shard_given_twice_or_from_another_split_is_refused(graded, tmp_path):
    with pytest.raises(ShardError, match=r"shard 1/2 is given twice"):
        merge([graded / "shard1", graded / "shard1"], tmp_path / "out")
    other = tmp_path / "other"
    shutil.copytree(graded / "shard2", other)
    manifest = json.loads((other / "shard.json").read_text())
    manifest["shard"] = [2, 3]
    (other / "shard.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=r"different splits of the class \(N = \[2, 3\]\)"):
        merge([graded / "shard1", other], tmp_path / "out")


def test_a_submission_in_two_shards_is_refused(graded, tmp_path):
    overlapping = tmp_path / "overlap"
    shutil.copytree(graded / "shard2", overlapping)
    manifest = json.loads((overlapping / "shard.json").read_text())
    first = json.loads((graded / "shard1" / "shard.json").read_text())["graded"][0]
    manifest["graded"].append(first)
    (overlapping / "shard.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=rf"{first[1]}/ex.ipynb was graded in two shards"):
        merge([graded / "shard1", overlapping], tmp_path / "out")


def test_a_missing_shard_is_named_in_the_report(graded, tmp_path, capsys):
    assert main(["grade", "merge", str(graded / "shard1"), "--out", str(tmp_path / "half")]) == 0
    summary = (tmp_path / "half" / "summary.md").read_text()
    assert "shards 2/2 are missing: their students are not in this report" in summary
    assert "in 1 of 2 shards (1/2), merged" in summary


def test_a_folder_that_is_no_shard_says_so(tmp_path, capsys):
    assert main(["grade", "merge", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "holds no shard.json: it is not the output of `grade --shard K/N`" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["2", "0/2", "3/2", "a/b", "1/2/3"])
def test_a_bad_shard_says_how_to_write_one(text):
    with pytest.raises(ShardError, match=re.escape("K/N") + "|between 1 and N"):
        parse_shard(text)


def test_a_students_shard_is_stable_and_spreads_a_class():
    assert parse_shard("2/4") == (2, 4)
    assert [shard_of("ada", 4) for _ in range(3)] == [shard_of("ada", 4)] * 3
    counts = [sum(shard_of(f"student{i}", 4) == k for i in range(400)) for k in (1, 2, 3, 4)]
    assert all(70 < c < 130 for c in counts), counts
