# Two entry points for a fresh machine: `make run` and `make test` (see README).
# Python: the first of python3.11, python3.12, python3.13 on PATH, or PY=/path/to/python3.X.
PY ?= $(firstword $(foreach v,3.11 3.12 3.13,$(shell command -v python$(v) 2>/dev/null)))
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Exact versions of everything installed, for setup and CI alike (`make lock` rewrites it).
CONSTRAINTS ?= constraints.txt
# The CPU build of torch (an unlabelled torch from PyPI is a multi-GB CUDA build): a wheel that pip
# finds without an index (its find-links, e.g. /opt/wheels) wins, else PyTorch's CPU index, with
# PYPI_INDEX for torch's own dependencies (scripts/install-torch.sh).
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PYPI_INDEX ?= https://pypi.org/simple
INDEX ?= .rag-index
HOST ?= 127.0.0.1
PORT ?= 7860

.PHONY: setup run ingest serve test test-fast torch-dry-run lock clean

$(BIN)/python:
	bash scripts/make-venv.sh "$(PY)" $(VENV)

# What running needs.
$(BIN)/rag: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP) install -q --upgrade pip
	bash scripts/install-torch.sh $(BIN)/python $(TORCH_VERSION) $(TORCH_INDEX) $(PYPI_INDEX) $(CONSTRAINTS)
	$(PIP) install -q -c $(CONSTRAINTS) -e .
	touch $@

# What the tests add.
$(VENV)/.test-deps: $(BIN)/rag
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[test]'
	touch $@

setup: $(BIN)/rag

# Which torch `make setup` would install, and from where, without installing it.
torch-dry-run: | $(BIN)/python
	TORCH_DRY_RUN=1 bash scripts/install-torch.sh $(BIN)/python $(TORCH_VERSION) $(TORCH_INDEX) $(PYPI_INDEX) $(CONSTRAINTS)

ingest: setup
	$(BIN)/rag ingest examples/posts --index $(INDEX)

run: ingest
	$(BIN)/rag serve --index $(INDEX) --host $(HOST) --port $(PORT)

test: $(VENV)/.test-deps
	bash scripts/install-browser.sh
	# llama.cpp's server for the one integration test against a real third-party endpoint
	# (compiled from source: ~10-15 min on 2 cores; the test skips, loudly, if this fails).
	bash scripts/install-llm-server.sh $(VENV) || echo "WARNING: llama-cpp-python could not be installed; tests/test_llm_integration.py will skip"
	$(BIN)/python -m pytest -q -rs

test-fast: $(VENV)/.test-deps
	$(BIN)/python -m pytest -q -m "not slow"

# Rewrite constraints.txt from this virtualenv (after upgrading something and `make test` passing).
lock: $(VENV)/.test-deps
	$(BIN)/python scripts/lock_constraints.py > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean:
	rm -rf $(VENV) $(INDEX)
