# One-command entry points. `make install` is idempotent: it re-runs pip only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-fast lint bench demo deploy-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch, torchvision and timm come in one pip call from the registry, at the versions pinned
# in pyproject.toml: a torch already on disk (a CPU wheel in pip's find-links) would pair with a
# torchvision that fails to import.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/pip install --disable-pip-version-check -q "torch==2.15.0" "torchvision==0.29.2" "timm==1.0.31"
	$(BIN)/pip install --disable-pip-version-check -q -e ".[dev]"
	$(BIN)/python -c "import torch, torchvision, timm, faiss; print('installed torch', torch.__version__, 'timm', timm.__version__, 'faiss', faiss.__version__)"
	touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# The inner loop: everything but the tests that start subprocesses or train for real.
test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python -m bench.losses
	$(BIN)/python -m bench.service

# The main job on an embedded default (scikit-learn's digits), or on DATA=path/to/folder.
demo: install
	$(BIN)/lookalike demo $(if $(DATA),--data $(DATA),)

deploy-check: install
	bash docker/check.sh

clean:
	rm -rf $(VENV) runs indexes demo .pytest_cache .ruff_cache
