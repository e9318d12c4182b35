"""A Sphinx extension: the website shows the chapters' code without the grader's markup.

The chapters are nbgrader source notebooks, tested by nbval, so their code cells carry lines
meant for those tools, not for readers: ``### BEGIN SOLUTION`` / ``### END SOLUTION``
around each solution, hidden tests between ``### BEGIN HIDDEN TESTS`` and
``### END HIDDEN TESTS`` (the asserts that would give an answer away, kept for grading),
and ``# NBVAL_CHECK_OUTPUT`` comments. The notebooks keep every line; this transform drops
them from the code the site renders, hidden tests included, so the public page neither
shows the markup nor gives the hidden tests away.
"""

from docutils import nodes
from sphinx.transforms import SphinxTransform

MARKER_LINES = {"### BEGIN SOLUTION", "### END SOLUTION"}
HIDDEN_TESTS = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
NBVAL_PREFIX = "# NBVAL_"  # nbval's cell markers: NBVAL_CHECK_OUTPUT, NBVAL_IGNORE_OUTPUT, ...


def without_grader_markup(source: str) -> str:
    """``source`` without marker lines and without hidden-test regions, markers included."""
    kept, hidden = [], False
    for line in source.split("\n"):
        text = line.strip()
        if text == HIDDEN_TESTS[0]:
            hidden = True
        elif text == HIDDEN_TESTS[1]:
            hidden = False
        elif not hidden and text not in MARKER_LINES and not text.startswith(NBVAL_PREFIX):
            kept.append(line)
    return "\n".join(kept).strip("\n")


def _is_cell_source(node) -> bool:
    return isinstance(node, nodes.container) and node.get("nb_element") == "cell_code_source"


class RemoveGraderMarkup(SphinxTransform):
    """Rewrite the code of every notebook cell without the grader's markup."""

    default_priority = 500

    def apply(self, **kwargs):
        for source in list(self.document.findall(_is_cell_source)):
            for block in list(source.findall(nodes.literal_block)):
                code = without_grader_markup(block.astext())
                if code == block.astext():
                    continue
                if not code:  # a cell of hidden tests only: show no empty code box
                    block.parent.remove(block)
                    continue
                # Sphinx highlights a literal block only while its rawsource equals its text.
                block.rawsource = code
                block[:] = [nodes.Text(code)]
            if not source.children:
                source.parent.remove(source)


def setup(app):
    app.add_transform(RemoveGraderMarkup)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
