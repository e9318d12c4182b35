"""Run a chapter top to bottom in a fresh Jupyter kernel and store its outputs in place.

This is how the book's stored outputs are made (``make outputs``): the whole notebook in
one kernel, in order, with the widget state saved so sliders work on the static site. The
file is replaced atomically, only after every cell ran without an error.

Cells tagged ``addendum`` are a second run beside the first: measurements made later or on
another machine, such as a CPU's speed beside a chapter stored on a GPU. The main run skips
them and keeps their outputs; ``addendum=True`` runs them alone, in order, in a kernel of
their own, and keeps everything else. Each run's first cell prints its profile and device.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat import NotebookNode

from cnnbook.files import replaced_atomically

ADDENDUM = "addendum"


def is_addendum(cell: NotebookNode) -> bool:
    """Whether a cell belongs to the notebook's addendum run (tagged ``addendum``)."""
    return ADDENDUM in cell.get("metadata", {}).get("tags", [])


def execute_notebook(
    path: Path, timeout: int | None = None, kernel_name: str = "python3", addendum: bool = False
) -> None:
    """Execute the notebook at ``path`` in its own folder and overwrite it with the outputs.

    The main run executes every cell but the addendum; ``addendum=True`` executes only the
    cells tagged ``addendum``. Either way the other cells keep their stored outputs, and the
    widgets of both runs are kept. The profile comes from ``$CNNBOOK_PROFILE`` as usual
    (``make outputs`` sets ``full``).
    """
    notebook = nbformat.read(path, as_version=4)
    cells = [cell for cell in notebook.cells if is_addendum(cell) == addendum]
    if not cells:
        what = f"cells tagged {ADDENDUM!r}" if addendum else "cells outside the addendum"
        raise ValueError(f"{path} has no {what} to run")
    metadata = {key: value for key, value in notebook.metadata.items() if key != "widgets"}
    run = nbformat.v4.new_notebook(cells=cells, metadata=metadata)
    client = NotebookClient(
        run,  # the same cell objects as in `notebook`: running them fills its outputs
        timeout=timeout,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=True,
    )
    client.execute()
    _keep_both_runs_widgets(notebook, run)
    with replaced_atomically(path) as f:
        nbformat.write(notebook, f)


WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _keep_both_runs_widgets(notebook: NotebookNode, run: NotebookNode) -> None:
    """Put the widgets of ``run`` into ``notebook`` beside those its other run's outputs use."""
    fresh = run.metadata.get("widgets", {}).get(WIDGET_STATE)
    if fresh is None:
        return
    old_state = notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    kept_cells = [cell for cell in notebook.cells if all(cell is not c for c in run.cells)]
    kept = {model: old_state[model] for model in _models_shown(kept_cells, old_state)}
    notebook.metadata["widgets"] = {WIDGET_STATE: {**fresh, "state": {**kept, **fresh["state"]}}}


def _models_shown(cells: list[NotebookNode], state: dict) -> set[str]:
    """The widget models the outputs of ``cells`` display, with the models those refer to."""
    outputs = json.dumps([cell.get("outputs", []) for cell in cells])
    wanted = [model for model in state if model in outputs]
    shown: set[str] = set()
    while wanted:
        model = wanted.pop()
        if model not in shown:
            shown.add(model)
            refers = json.dumps(state[model])
            wanted += [other for other in state if f"IPY_MODEL_{other}" in refers]
    return shown
