# One command per task; CI runs `make test`, as the README says.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint format typecheck bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the CPU build; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/contextd serve --host 127.0.0.1 --port 8000 --data-dir indexes --sample

test: $(STAMP)
	$(BIN)/ruff check contextd tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check contextd tests benchmarks
	$(BIN)/ruff format --check contextd tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format contextd tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy contextd

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
