# Set-up is one virtual environment with every extra, pinned to CPU torch by constraints.txt.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# A portable llama.cpp build (AVX2, no -march=native), so a cached wheel runs on any x86-64 machine of ours.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: setup demo test test-fast lint bench clean browser

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[all,dev]' 2>&1 | grep -v "^WARNING: Location"; test $${PIPESTATUS[0]} -eq 0
	$(BIN)/python -m gemfuse.gguf_tools >/dev/null  # llama.cpp's GGUF converter, from llama-cpp-python's sources
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/gemfuse ask "What is the capital of France? Answer in one sentence." --preset default --show-candidates

# The web page test drives Debian's chromium; without root or apt it is skipped, with a reason.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 || \
	    echo "chromium could not be installed: the web page test will be skipped"; }

test-fast: $(STAMP)
	$(BIN)/python -m pytest --fast -q

test: $(STAMP) browser
	$(BIN)/python -m pytest --durations=15

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[bench]' 2>&1 | grep -v "^WARNING: Location"; test $${PIPESTATUS[0]} -eq 0
	$(BIN)/python benchmarks/backend_overhead.py
	$(BIN)/python benchmarks/fusion_overhead.py
	$(BIN)/python benchmarks/serve_overhead.py
	$(BIN)/python benchmarks/data_throughput.py
	$(BIN)/python benchmarks/eval_throughput.py
	$(BIN)/python benchmarks/judge_verdicts.py
	$(BIN)/python benchmarks/tune_throughput.py
	$(BIN)/python benchmarks/quantize.py
	$(BIN)/python benchmarks/finetune_eval.py

clean:
	rm -rf $(VENV)
