"""A Sphinx extension: one *Solution* toggle per exercise on the website.

An exercise's solution lives in up to two cells, because nbgrader grades them apart: a code
cell (the `hide-cell` tag folds it behind MyST-NB's *Show solution*) and, after the check
cell, a written answer (a markdown cell whose ``{dropdown}`` folds it behind *Solution*).
A reader would meet two toggles, of two looks, for one exercise. This transform moves each
solution code cell, with its output, into the written answer's *Solution* dropdown that
follows it (only code cells, such as the check, may stand between them), and unfolds it
there; a solution code cell without a written answer gets a *Solution* dropdown of its own.
The check cell stays in sight, where students find it in their copies.
"""

from docutils import nodes
from sphinx.transforms import SphinxTransform
from sphinx_design.shared import create_component, is_component

TITLE = "Solution"


def _is_code_cell(node) -> bool:
    return isinstance(node, nodes.container) and node.get("nb_element") == "cell_code"


def _is_solution_code(node) -> bool:
    return _is_code_cell(node) and bool(node.get("cell_metadata", {}).get("nbgrader", {}).get("solution"))


def _is_solution_dropdown(node) -> bool:
    return (
        is_component(node, "dropdown")
        and node.get("has_title")
        and isinstance(node[0], nodes.rubric)
        and node[0].astext().strip() == TITLE
    )


def _new_dropdown() -> nodes.container:
    """What ``:::{dropdown} Solution`` makes, for a solution without a written answer."""
    dropdown = create_component(
        "dropdown", opened=False, type="dropdown", has_title=True, icon=None, chevron=None,
        container_classes=["sd-mb-3"], title_classes=[], body_classes=[],
    )  # fmt: skip
    dropdown += nodes.rubric(TITLE, TITLE)
    return dropdown


def _written_answer_after(cell):
    """The *Solution* dropdown after ``cell`` with only code cells in between, else None."""
    parent = cell.parent
    for sibling in parent[parent.index(cell) + 1 :]:
        if _is_solution_dropdown(sibling):
            return sibling
        if not _is_code_cell(sibling):
            return None
    return None


class OneSolutionToggle(SphinxTransform):
    """Fold each exercise's solution code and written answer behind one *Solution* toggle."""

    default_priority = 500

    def apply(self, **kwargs):
        moved = {}  # id(dropdown) -> how many code cells were put into it so far
        for cell in list(self.document.findall(_is_solution_code)):
            dropdown = _written_answer_after(cell)
            if dropdown is None:
                dropdown = _new_dropdown()
                cell.parent.replace(cell, dropdown)
            else:
                cell.parent.remove(cell)
            position = 1 + moved.get(id(dropdown), 0)  # after the title, in the cells' order
            dropdown.insert(position, cell)
            moved[id(dropdown)] = position
            cell.attributes.pop("hide_mode", None)  # folded once, by the dropdown


def setup(app):
    app.setup_extension("sphinx_design")
    app.add_transform(OneSolutionToggle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
