# The book's commands. Each creates its virtual environment (and the site's JavaScript) if missing:
# .venv-book, Jupyter Book alone (requirements-book.txt), for building the site, which runs no
# code; .venv, everything (requirements.txt: PyTorch, JupyterLab, the tests) for the rest.
#   make book     build the site into _build/html and serve it on http://127.0.0.1:8000 (.venv-book)
#   make build    build the site only (.venv-book)  make serve     serve an already built site
#   make test     unit tests, every chapter under the quick profile, the book build, a browser
#   make lab      JupyterLab on the chapters        make outputs   re-run chapters (full profile)
#   make bench    the speed benchmark               make api-page  rewrite book/api.md (.venv)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BOOK_VENV := .venv-book
PORT   ?= 8000
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
VENDOR := book/_static/vendor

.PHONY: setup book-setup book build serve api-page lab test outputs bench clean

setup: $(VENV)/.installed $(VENDOR)/.installed
book-setup: $(BOOK_VENV)/.installed $(VENDOR)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# No PyTorch here: the site shows the chapters' stored outputs and a pre-rendered API page.
# About 270 MB against .venv's 6 GB (tests/test_book.py measures it on a fresh copy).
$(BOOK_VENV)/.installed: requirements-book.txt requirements.txt
	$(PYTHON) -m venv $(BOOK_VENV)
	$(BOOK_VENV)/bin/python -m pip install --quiet -r requirements-book.txt
	touch $@

# ipywidgets' HTML manager, require.js and MathJax, served by the site itself (no CDN).
$(VENDOR)/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	rm -rf $(VENDOR) && mkdir -p $(VENDOR)/html-manager
	cp node_modules/requirejs/require.js $(VENDOR)/require.js
	cp node_modules/@jupyter-widgets/html-manager/dist/embed-amd.js $(VENDOR)/html-manager/
	find node_modules/@jupyter-widgets/html-manager/dist -maxdepth 1 \
	    \( -name '*.woff*' -o -name '*.ttf' -o -name '*.eot' -o -name '*.svg' \) \
	    -exec cp {} $(VENDOR)/html-manager/ \;
	cp -r node_modules/mathjax/es5 $(VENDOR)/mathjax
	touch $@

build: book-setup
	$(BOOK_VENV)/bin/jupyter-book build . -W --keep-going

book: build serve

serve:
	@echo "Serving the book on http://127.0.0.1:$(PORT) (Ctrl-C to stop)"
	$(PYTHON) -m http.server $(PORT) --bind 127.0.0.1 --directory _build/html

# The API page is built from book/api.md, which this writes from book/api.template.md and the
# package's docstrings (it imports cnnbook, hence .venv); tests/test_api_page.py checks it is current.
api-page: setup
	$(PY) book/make_api_page.py

# The students' JupyterLab: lab-config/ switches off nbgrader's instructor interface (the
# Create Assignment toolbar, the Nbgrader menu, formgrader). nbgrader stays installed for
# instructors: `.venv/bin/jupyter lab` or `nbgrader formgrader` still show it.
# `exec`: JupyterLab replaces the shell, so stopping make (Ctrl-C or `kill`) stops JupyterLab
# and its kernels too. LAB_ARGS passes more options, e.g. make lab LAB_ARGS=--port=9999
lab: setup
	CNNBOOK_PROFILE=$${CNNBOOK_PROFILE:-quick} JUPYTER_CONFIG_PATH=$(CURDIR)/lab-config \
	    exec $(VENV)/bin/jupyter lab --ip 127.0.0.1 $(ROOT_FLAG) $(LAB_ARGS) chapters

# Two pytest workers on two cores: one math thread each, since two processes each spinning
# two OpenMP threads on two cores slow each other down many times over. Files go to the
# workers in collection order, slowest first (conftest.py), so both end together.
test: setup
	OMP_NUM_THREADS=1 CNNBOOK_PROFILE=quick $(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder --nbval-lax --durations=15 tests chapters

outputs: setup
	CNNBOOK_PROFILE=full $(PY) -m cnnbook execute chapters/*.ipynb

bench: setup
	$(PY) -m cnnbook bench

clean:
	rm -rf _build .pytest_cache $(VENDOR)
