"""Grading a class in shards, on a cluster, and merging the shards' reports into one.

``python -m cnnbook grade SUBMISSIONS --out OUT_K --shard K/N`` grades the K-th of N slices
of the class; N such jobs (a Slurm array, a Kubernetes indexed Job) grade all of it side by
side, each on its own machine. A student belongs to the shard a hash of their name picks
(`shard_of`): their notebooks stay together, and a slice does not change when another
student joins or leaves the class. Each shard's output holds its results and a manifest,
``shard.json``, naming what it graded and in which order the whole class would be listed.

``python -m cnnbook grade merge OUT_1 ... OUT_N --out OUT`` checks that the shards belong
together (the same N and source notebooks, each shard once, no submission graded twice),
names the shards that are missing, and writes one ``grades.csv`` and ``summary.md``: with
every shard given, the report a single grading run would have written.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cnnbook.classroom.grade_report import ExerciseResult, result_file, write_report
from cnnbook.files import write_text_atomically

MANIFEST = "shard.json"


class ShardError(ValueError):
    """Shard outputs that do not make one class: what is wrong, and how to fix it."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``: the second of four shards; refuses anything else, saying why."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ShardError(f"--shard takes K/N, such as 2/4 (the 2nd of 4 shards); got {text!r}") from None
    if not 1 <= k <= n:
        raise ShardError(f"--shard {text}: K must be between 1 and N (here 1 to {n})")
    return k, n


def shard_of(student: str, shards: int) -> int:
    """The shard, 1 to ``shards``, that grades ``student``: a hash of the name, stable across runs
    and machines (Python's own ``hash`` of a string changes from one process to the next)."""
    return int.from_bytes(hashlib.sha256(student.encode()).digest()[:8], "big") % shards + 1


def write_manifest(
    out: Path, shard: tuple[int, int], sources: list[str], graded: list, notes: list[str]
) -> None:
    """Record what a shard graded: ``graded`` is (position in the whole class, student, notebook)."""
    manifest = {"shard": list(shard), "sources": sources, "graded": graded, "notes": notes}
    write_text_atomically(out / MANIFEST, json.dumps(manifest, indent=1))


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise ShardError(f"{folder} holds no {MANIFEST}: it is not the output of `grade --shard K/N`")
    return json.loads(path.read_text())


def merge(shard_outputs: list[Path], out: Path) -> tuple[list[ExerciseResult], list[str]]:
    """Merge the outputs of ``grade --shard K/N`` into one report in ``out``.

    Returns the results and the notes (missing shards among them). Raises `ShardError` when
    the outputs do not belong together: different N or source notebooks, a shard given twice,
    or a submission graded in two shards.
    """
    manifests = [(folder, _read_manifest(folder)) for folder in shard_outputs]
    counts = {m["shard"][1] for _, m in manifests}
    if len(counts) > 1:
        raise ShardError(f"these outputs come from different splits of the class (N = {sorted(counts)})")
    (n,) = counts
    sources = {tuple(m["sources"]) for _, m in manifests}
    if len(sources) > 1:
        raise ShardError(f"these shards graded different source notebooks: {sorted(sources)}")
    owner: dict[int, Path] = {}
    graded: dict[tuple[str, str], tuple[int, Path]] = {}
    for folder, manifest in manifests:
        k = manifest["shard"][0]
        if k in owner:
            raise ShardError(f"shard {k}/{n} is given twice: {owner[k]} and {folder}")
        owner[k] = folder
        for position, student, notebook in manifest["graded"]:
            if (student, notebook) in graded:
                raise ShardError(
                    f"{student}/{notebook} was graded in two shards, {graded[student, notebook][1]} and "
                    f"{folder}: were they split with different N, or different class lists?"
                )
            graded[student, notebook] = (position, folder)
    notes = list(dict.fromkeys(note for _, m in manifests for note in m["notes"]))
    missing = sorted(set(range(1, n + 1)) - set(owner))
    if missing:
        absent = ", ".join(f"{k}/{n}" for k in missing)
        notes.append(f"shards {absent} are missing: their students are not in this report")
    results = []
    for (student, notebook), (_, folder) in sorted(graded.items(), key=lambda item: item[1][0]):
        path = result_file(folder, student, notebook)
        if not path.is_file():
            raise ShardError(
                f"{folder} lists {student}/{notebook} but holds no result for it (a crashed shard?)"
            )
        results += [ExerciseResult(**row) for row in json.loads(path.read_text())]
    shards = ", ".join(f"{k}/{n}" for k in sorted(owner))
    footer = f"{len(graded)} notebooks graded in {len(owner)} of {n} shards ({shards}), merged."
    out.mkdir(parents=True, exist_ok=True)
    write_report(results, out, notes, footer)
    return results, notes
