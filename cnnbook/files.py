"""Writing a file so that nobody ever reads half of it: a temporary file, then a rename.

A program stopped mid-write (Ctrl-C, a full disk, a killed process) would leave a truncated
checkpoint, notebook or grade report. Writing everything to a temporary file beside the
target and renaming it into place avoids that: on the same file system a rename replaces
the old file in one step, so a reader sees the old file or the new one, never a mixture.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def replaced_atomically(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a new temporary file beside ``path`` for writing; rename it over ``path`` at the end.

    Only when the ``with`` block finishes without an error are the bytes flushed to disk and
    the file renamed into place. On any error, Ctrl-C included, the temporary file is
    removed and ``path`` keeps what it had. ``mode`` is ``"w"`` (text) or ``"wb"`` (bytes);
    the new file gets the usual permissions (those the umask allows).

    Example::

        with replaced_atomically("model.pt", "wb") as f:
            torch.save(net.state_dict(), f)
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}.")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, mode.replace("w", "x")) as f:  # "x": a new file, never one already there
            yield f
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through `replaced_atomically`: never half a file."""
    with replaced_atomically(path) as f:
        f.write(text)
