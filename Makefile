# Every target makes its own virtualenv in $(VENV) the first time.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FL := $(BIN)/fl
DEMO := results/demo
SWEEP ?= experiments/noniid.toml
FACET ?= partition
JOBS ?= 2
# the tests' PyTorch, pinned: pip on the CI machines takes its CPU build from local disk, where
# another version would download a CUDA build of several GB (TORCH= takes what the range gives)
TORCH ?= torch==2.13.0
# the sweep's name if fl sweep would take it (letters, digits, . _ = , + -), else empty
SWEEP_NAME = $(shell $(BIN)/python -c 'import sys, tomllib; from flcli.names import is_safe_name; n = tomllib.load(open(sys.argv[1], "rb")).get("name"); print(n if is_safe_name(n) else "")' '$(SWEEP)' 2>/dev/null)
SWEEP_DIR = results/$(SWEEP_NAME)

.PHONY: venv install demo sweep figures test lint bench scale clean

venv: $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "installing flcli and its dependencies into $(VENV) (about a minute the first time)..."
	$(BIN)/python -m pip install --progress-bar on --disable-pip-version-check -e '.[dev]'
	touch $@

# the tests also cover the optional parts: the Ray backend, Parquet files, Hugging Face datasets,
# fl tune (Optuna) and tracking to MLflow and TensorBoard
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,ray,parquet,hf,tune,mlflow,tensorboard,torch]' $(TORCH)
	touch $@

demo: install
	$(FL) partition digits --clients 10 --scheme iid --seed 0 --out $(DEMO)/iid
	$(FL) partition digits --clients 10 --scheme dirichlet --alpha 0.1 --seed 0 --out $(DEMO)/dirichlet-0.1
	$(FL) train $(DEMO)/iid --algo fedavg --rounds 20 --seed 0 --out $(DEMO)/runs/fedavg-iid
	$(FL) train $(DEMO)/dirichlet-0.1 --algo fedavg --rounds 20 --seed 0 --out $(DEMO)/runs/fedavg-dirichlet-0.1
	$(FL) plot $(DEMO)/runs --out $(DEMO)/accuracy.png
	$(FL) report $(DEMO)/runs --target-accuracy 0.9

sweep: install
	$(FL) sweep '$(SWEEP)' --jobs '$(JOBS)'

figures: install
	@test -n '$(SWEEP_NAME)' || { echo "error: $(SWEEP) has no valid name = \"...\"; fix it" >&2; exit 2; }
	$(FL) plot '$(SWEEP_DIR)' --facet '$(FACET)' --out '$(SWEEP_DIR)/accuracy.png'
	$(FL) report '$(SWEEP_DIR)' --out '$(SWEEP_DIR)/report.md'

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check flcli tests benchmarks examples
	$(BIN)/ruff format --check flcli tests benchmarks examples

# BENCH_QUICK=1: a smoke run into a temporary dir; FLOWER_PYTHON=PY: W1 against Flower too
bench: install
	$(BIN)/python benchmarks/run_all.py

scale: install
	$(BIN)/python benchmarks/scale.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info
	find results -mindepth 1 ! -name .gitkeep -delete
