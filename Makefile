PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench lint install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e ".[test,ml,plot,engines]"

demo: install
	$(BIN)/python examples/demo.py

test: install
	$(BIN)/ruff check src tests bench examples
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/run.py

lint: install
	$(BIN)/ruff check src tests bench examples

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
