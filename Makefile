# densenet-ray: `make demo` and `make test` are all a newcomer needs; both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# Python writes a module's bytecode the first time a process imports it and every later process reads it; where the
# environment sets PYTHONDONTWRITEBYTECODE (some machines do), each of the hundreds of processes a run or the tests
# start (Ray workers, CLI runs) would compile what it imports again.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup demo test test-fast lint format docs docs-build bench-model bench-speed bench-data bench-train clean

setup: $(STAMP)

# Reinstalls only when pyproject.toml changes; the editable install picks up source edits by itself. uv installs
# what pip would, from the same package index, in seconds instead of minutes (parallel downloads and unpacking, one
# cache shared by every checkout). Bytecode is written as modules are first imported (below), not for the whole
# environment at install time: `--compile-bytecode` compiles all of its ~24,000 modules (31 s on 2 cores, 65
# CPU-seconds) where the demo and the tests import about a third of them.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip install --quiet --native-tls --python $(BIN)/python -e '.[dev]'
	@touch $(STAMP)

# The main job: DenseNet-BC (L=40, k=12) on CIFAR-10 for one epoch on 2 local Ray workers, cosine schedule (the
# default step schedule, in a 1-epoch run, divides at 50 % and 75 % of its steps). The data is built into
# ~/.cache/densenet-ray/cifar10 on first use: downloaded, or from SOURCE (the official tarball or a class-folder
# tar such as ../shared/data/cifar10-jpeg/train.tar, whose last 500 images per class become the test split).
SOURCE ?=
demo: setup
	$(BIN)/densenet-ray train cifar --model densenet_bc100_k12 --depth 40 --epochs 1 --lr-schedule cosine --workers 2 \
		--name demo-$$(date +%Y%m%d-%H%M%S) $(if $(SOURCE),--source $(SOURCE),)

# Two pytest processes (pytest-xdist): the suite mostly waits on Ray and subprocesses, so two share 2 cores well. A
# module's tests stay in one process (its Ray head starts once); tests/conftest.py groups them.
TEST_PROCESSES ?= 2
test: setup
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadgroup --no-loadscope-reorder

test-fast: setup
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadgroup --no-loadscope-reorder -m "not slow and not integration"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The documentation site (docs/mkdocs.yml, pages in docs/content): the generated references (commands, options,
# models, files, API), the pictures from small real runs on the committed CIFAR-10 slice (about 3 minutes on 2
# cores), then `mkdocs build --strict` into docs/site (open docs/site/index.html).
DOCS_ENV := COLUMNS=120 NO_MKDOCS_2_WARNING=1
docs: setup
	$(DOCS_ENV) $(BIN)/python docs/generate.py
	$(BIN)/python docs/pictures.py
	cd docs && $(DOCS_ENV) ../$(BIN)/mkdocs build --strict

# What CI runs: the generated pages must be current (a flag or option changed without `make docs` fails), then the
# strict build with the committed pictures (a broken link, a missing page or an unknown API name fails).
docs-build: setup
	$(DOCS_ENV) $(BIN)/python docs/generate.py --check
	cd docs && $(DOCS_ENV) ../$(BIN)/mkdocs build --strict

bench-model: setup
	$(BIN)/python benchmarks/model.py --out benchmarks/results/model-cpu.json --markdown

bench-speed: setup
	$(BIN)/python benchmarks/model.py --part speed --out benchmarks/results/speed-cpu.json --markdown
	$(BIN)/python benchmarks/train.py --part speed --source $(CIFAR_JPEG) --out benchmarks/results/demo-speed-cpu.json \
		--markdown

bench-data: setup
	$(BIN)/python benchmarks/data.py --out benchmarks/results/data-cpu.json --markdown
	$(BIN)/python benchmarks/epochs.py --out benchmarks/results/epochs-cpu.json --markdown
	$(BIN)/python benchmarks/own_data.py --out benchmarks/results/own-data-cpu.json --markdown

# The Ray job against a plain PyTorch loop, then a 4-epoch learning check (45,000/5,000 split of the shared set).
CIFAR_JPEG ?= ../shared/data/cifar10-jpeg/train.tar
bench-train: setup
	$(BIN)/python benchmarks/train.py --source $(CIFAR_JPEG) --out benchmarks/results/train-cpu.json --markdown
	$(BIN)/python benchmarks/train.py --part learning --epochs 4 --precision auto fp32 --source $(CIFAR_JPEG) \
		--out benchmarks/results/learning-cpu.json --markdown

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
