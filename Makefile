# densenet-ray: `make demo` and `make test` are all a newcomer needs; both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test test-fast lint format bench-model bench-data clean

setup: $(STAMP)

# Reinstalls only when pyproject.toml changes; the editable install picks up source edits by itself.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(BIN)/densenet-ray models
	$(BIN)/densenet-ray models show densenet_bc100_k12

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not integration"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench-model: setup
	$(BIN)/python benchmarks/model.py --out benchmarks/results/model-cpu.json --markdown

bench-data: setup
	$(BIN)/python benchmarks/data.py --out benchmarks/results/data-cpu.json --markdown

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
