"""nbval runs the chapters: skip those that train on CIFAR-10 where their kernel cannot find it.

A chapter trains on CIFAR-10 if a code cell calls a CIFAR-10 loader. Its kernel finds the data
as a reader's does, offline in ``$CNNBOOK_DATA`` or the cnnbook cache; where it is found (CI
sets ``CNNBOOK_DATA=../shared/data``) nothing is skipped, so a skip never hides a failure.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from cnnbook.config import cache_dir
from cnnbook.datafiles import CIFAR10_BATCHES, CIFAR10_LAYOUTS, CIFAR10_TEST

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # CI's and developers' data
CIFAR10_CALLS = re.compile(r"\b(load_data_cifar10|load_data_cifar2|cifar10_class_subset|read_cifar10)\(")


def has_cifar10(root: Path) -> bool:
    """True if ``root`` holds CIFAR-10 in a layout cnnbook reads (``cifar10/*.npz`` or the original)."""
    names = (*CIFAR10_BATCHES, CIFAR10_TEST)
    return any(
        all((root / sub / f"{name}{suffix}").is_file() for name in names)
        for sub, (suffix, _reader) in CIFAR10_LAYOUTS.items()
    )


def trains_on_cifar10(notebook: Path) -> bool:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return any(CIFAR10_CALLS.search("".join(c["source"])) for c in cells if c["cell_type"] == "code")


def pytest_collection_modifyitems(config, items):
    roots = [Path(os.environ["CNNBOOK_DATA"])] if os.environ.get("CNNBOOK_DATA") else []
    if any(has_cifar10(root) for root in [*roots, cache_dir()]):
        return
    if has_cifar10(SHARED_DATA):
        hint = f"it is in {SHARED_DATA}: run with CNNBOOK_DATA={SHARED_DATA}"
    else:
        hint = "set CNNBOOK_DATA to a folder holding cifar10/*.npz (see ../shared/data/README.md)"
    skip_cifar10 = {}
    for item in items:
        path = Path(str(item.path))
        if path.suffix != ".ipynb":
            continue
        if path not in skip_cifar10:
            skip_cifar10[path] = trains_on_cifar10(path)
        if skip_cifar10[path]:
            item.add_marker(
                pytest.mark.skip(reason=f"{path.name} trains on CIFAR-10, not found offline: {hint}")
            )
