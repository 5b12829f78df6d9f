# Two entry points for a fresh machine: `make run` and `make test` (see README).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INDEX ?= .rag-index
HOST ?= 127.0.0.1
PORT ?= 7860

.PHONY: setup run ingest serve test test-fast clean

$(BIN)/rag: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU build of torch from this machine's disk; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(BIN)/rag

setup: $(BIN)/rag

ingest: setup
	$(BIN)/rag ingest examples/posts --index $(INDEX)

run: ingest
	$(BIN)/rag serve --index $(INDEX) --host $(HOST) --port $(PORT)

test: setup
	bash scripts/install-browser.sh
	# llama.cpp's server for the one integration test against a real third-party endpoint
	# (compiled from source: ~10-15 min on 2 cores; the test skips, loudly, if this fails).
	bash scripts/install-llm-server.sh $(VENV) || echo "WARNING: llama-cpp-python could not be installed; tests/test_llm_integration.py will skip"
	$(BIN)/python -m pytest -q -rs

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) $(INDEX)
