# Two set-up commands on a fresh machine: `make demo` and `make test`; `make docs` builds the site.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.docs-installed
DOCS_BUILD := docs/_build

.PHONY: demo test lint typecheck bench docs docs-check clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e ".[dev,docs]"
	touch $(DOCS_STAMP)

demo: $(STAMP)
	$(VENV)/bin/hlm demo

test: $(STAMP)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadgroup

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/run.py

# Executed pages are cached by their text in $(DOCS_BUILD)/.jupyter_cache; a change to the code or
# the examples clears the cache so that every page runs again. The validation page runs every time.
docs: $(DOCS_STAMP)
	@if [ -d $(DOCS_BUILD)/.jupyter_cache ] && [ -n "$$(find src examples -newer $(DOCS_BUILD)/.code-stamp 2>/dev/null | head -1)$$(test -f $(DOCS_BUILD)/.code-stamp || echo new)" ]; then \
	  echo "code changed: re-executing every page"; rm -rf $(DOCS_BUILD)/.jupyter_cache $(DOCS_BUILD)/html/.doctrees; fi
	mkdir -p $(DOCS_BUILD) && touch $(DOCS_BUILD)/.code-stamp
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(PY) -m sphinx -W --keep-going -q -b html docs $(DOCS_BUILD)/html
	@echo "site: $(DOCS_BUILD)/html/index.html"

# Links of the built site, then every page in headless Chromium (skipped when there is none).
docs-check: $(DOCS_STAMP)
	$(PY) docs/check_site.py $(DOCS_BUILD)/html

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache $(DOCS_BUILD)
