PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench lint install docs clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e ".[test,ml,plot,docs,engines]"

demo: install
	$(BIN)/python examples/demo.py

test: install
	$(BIN)/ruff check src tests bench examples docs
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# the documentation site in docs/_build/html; any Sphinx warning fails the build
docs: install
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

lint: install
	$(BIN)/ruff check src tests bench examples docs

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache docs/_build docs/reference
