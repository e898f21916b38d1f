# Bootstraps .venv from nothing (Python >= 3.11 and pip), then runs the project's jobs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: test lint typecheck demo bench test-repeat clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/python -m foundation.lint src tests

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q

# The suite REPEAT times in a row, each run in a fresh random order (pytest-randomly) with its
# seed printed, stopping at the first failure with the command that replays it. TESTS narrows it.
REPEAT ?= 20
TESTS  ?=
test-repeat: $(STAMP)
	@for i in $$(seq 1 $(REPEAT)); do \
	  seed=$$(od -An -N4 -tu4 /dev/urandom | tr -d ' '); \
	  echo "test-repeat: run $$i/$(REPEAT) --randomly-seed=$$seed"; \
	  $(BIN)/python -m pytest -q -x -p randomly --randomly-seed=$$seed $(TESTS) || { \
	    echo "test-repeat: run $$i failed; replay: $(BIN)/python -m pytest -p randomly --randomly-seed=$$seed $(TESTS)"; \
	    exit 1; }; \
	done

demo: $(STAMP)
	$(BIN)/foundation demo

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
