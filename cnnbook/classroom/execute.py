"""Run a chapter top to bottom in a fresh Jupyter kernel and store its outputs in place.

This is how the book's stored outputs are made (``make outputs``): the whole notebook in
one kernel, in order, with the widget state saved so sliders work on the static site. The
file is replaced atomically, only after every cell ran without an error.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from cnnbook.files import replaced_atomically


def execute_notebook(path: Path, timeout: int | None = None, kernel_name: str = "python3") -> None:
    """Execute the notebook at ``path`` in its own folder and overwrite it with the outputs.

    The profile comes from ``$CNNBOOK_PROFILE`` as usual (``make outputs`` sets ``full``).
    """
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=True,
    )
    client.execute()
    with replaced_atomically(path) as f:
        nbformat.write(notebook, f)
