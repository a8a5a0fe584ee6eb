# gbhet: `make book` runs the whole study on the demo profile and renders the book; `make test` tests it.
# Both create .venv (Python 3.11) and install the pinned requirements and the package on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
RUN_DIR ?= runs/demo
SEED   ?= 0
STAMP  := $(VENV)/.installed

export HF_HUB_OFFLINE ?= 1

.PHONY: install test book study claims clean help

help:
	@echo "make book   - install, run every chapter on the demo profile (gbhet run), render _build/html"
	@echo "make test   - install, run unit tests and notebook smoke tests"
	@echo "make study  - only run the chapters (RUN_DIR=$(RUN_DIR), SEED=$(SEED))"
	@echo "make claims - check every planted-truth claim of a finished run (RUN_DIR=$(RUN_DIR)); fails on any that does not hold"
	@echo "make check-book - open every page of _build/html in headless Chromium; fails on broken images/links, local paths, overflow"
	@echo "make pdf    - render the same run as one PDF, _build/latex/gbhet.pdf (installs Debian's LaTeX when missing)"
	@echo "make clean  - remove _build, runs/ and caches (keeps .venv)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

install: $(STAMP)

test: install
	$(BIN)/python -m pytest -n 2 --durations=25

study: install
	$(BIN)/gbhet run --profile demo --run-dir $(RUN_DIR) --seed $(SEED)

book: study
	$(BIN)/gbhet book --run-dir $(RUN_DIR)

claims: install
	$(BIN)/python -m pytest claims --run-dir $(RUN_DIR) -p no:cacheprovider

.PHONY: chromium
# Debian's headless Chromium for the browser checks (tests/test_book_browser.py, check-book), via apt-get when missing
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  command -v apt-get >/dev/null || { echo "make chromium: no /usr/bin/chromium, no apt-get" >&2; exit 1; }; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

.PHONY: check-book
# every page of the rendered book (_build/html) in headless Chromium: broken images and links, empty pages, local
# paths, content wider than the column; screenshots to $(RUN_DIR)/book_screenshots. Debian's chromium, via apt-get.
check-book: install chromium
	$(BIN)/gbhet check-book --html _build/html --screenshots $(RUN_DIR)/book_screenshots

.PHONY: pdf
# the whole book as one PDF, _build/latex/gbhet.pdf, from the same run as the HTML (run `make book` first): Sphinx's
# LaTeX builder and xelatex (gbhet_lib.book_pdf). Installs Debian's LaTeX packages with apt-get when any is missing.
# BOOK_ROOT and PDF_OUT (build folder, default BOOK_ROOT/_build) let a build go elsewhere.
PDF_PACKAGES := texlive-xetex texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended latexmk \
                fonts-freefont-otf imagemagick librsvg2-bin poppler-utils
BOOK_ROOT ?= .
PDF_OUT ?= $(BOOK_ROOT)/_build
pdf: install
	@if command -v dpkg >/dev/null; then \
	  missing=$$(for p in $(PDF_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    echo "make pdf: installing" $$missing >&2; \
	    $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing; \
	  fi; \
	fi
	$(BIN)/gbhet pdf --run-dir $(RUN_DIR) --book-root $(BOOK_ROOT) --out $(PDF_OUT)

clean:
	rm -rf _build book/chapters runs .pytest_cache
