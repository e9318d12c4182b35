"""Suite-wide order: the slowest files first, so that `make test`'s two workers end together.

`make test` hands whole files to two pytest-xdist workers (``--dist loadfile``), in the order
collected (``--no-loadscope-reorder``); a worker takes the next file when it is nearly done.
A ten-minute chapter collected last would run alone at the end, so the files known to be
slow come first, slowest first (longest-first scheduling), and everything else follows in
its usual order. The seconds are a guide: the sums of ``--durations=0`` for each file under
the quick profile on a 2-core CPU without bfloat16 instructions (2,406 s for the whole
suite); a wrong figure costs time, never a result.
"""

SECONDS_UNDER_QUICK = {
    "chapters/06-speed-lab.ipynb": 666,
    "chapters/06-speed.ipynb": 395,
    "chapters/02-alexnet.ipynb": 371,
    "chapters/06-data-parallel-lab.ipynb": 330,  # torchrun jobs; measured on a loaded machine
    "chapters/05-residual.ipynb": 265,
    "chapters/04-regularization.ipynb": 162,
    "tests/test_grade.py": 160,
    "chapters/01-lenet.ipynb": 110,
    "chapters/03-training-loop.ipynb": 76,
    "tests/test_book.py": 90,  # with the light environment it builds the site in
    "tests/test_widgets_browser.py": 45,
}


def pytest_collection_modifyitems(items):
    """Put the items of the slow files first, slowest file first; keep the order within a file."""
    items.sort(key=lambda item: -SECONDS_UNDER_QUICK.get(item.nodeid.split("::")[0], 0))
