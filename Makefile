# Set-up is one virtual environment with every extra, installed exactly as requirements.lock pins it (the versions
# the suite passed with). `make lock` writes the lock anew from pyproject.toml's ranges and constraints.txt (CPU torch).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# A portable llama.cpp build (AVX2, no -march=native), so a cached wheel runs on any x86-64 machine of ours.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: setup demo test test-fast lint bench clean browser lock test-compat

$(STAMP): pyproject.toml requirements.lock
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps -r requirements.lock 2>&1 | grep -v "^WARNING: Location"; test $${PIPESTATUS[0]} -eq 0
	$(BIN)/pip install --quiet --no-deps -e . 2>&1 | grep -v "^WARNING: Location"; test $${PIPESTATUS[0]} -eq 0
	$(BIN)/pip check >/dev/null || { $(BIN)/pip check; exit 1; }
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

# Two test processes (pytest-xdist): on two cores the suite's waits (processes starting, servers, imports) overlap
# another test's work. Each keeps torch's own thread count, so a test computes what it computes alone.
TEST_WORKERS ?= 2
test: $(STAMP) browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal --durations=15

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

# The lock: every package of the environment, transitive ones too. Commit a new lock on its own, with the suite green.
lock: $(STAMP)
	$(BIN)/pip-compile --quiet --all-extras --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
	  --no-emit-trusted-host -c constraints.txt -o requirements.lock pyproject.toml 2>&1 | grep -v "^WARNING: Location"; \
	  test $${PIPESTATUS[0]} -eq 0
	sed -i '/^gemfuse @ /,+1d' requirements.lock  # the extras' references to gemfuse itself: setup installs it editable

# The model-touching tests at the declared floors and at the newest releases (two fresh environments; not CI's).
test-compat: $(STAMP)
	$(BIN)/python tools/compat.py floors newest

bench: $(STAMP)
	$(BIN)/python benchmarks/backend_overhead.py
	$(BIN)/python benchmarks/fusion_overhead.py
	$(BIN)/python benchmarks/serve_overhead.py
	$(BIN)/python benchmarks/serve_concurrency.py
	$(BIN)/python benchmarks/constrained_decoding.py
	$(BIN)/python benchmarks/tool_rows.py
	$(BIN)/python benchmarks/engine_agreement.py
	$(BIN)/python benchmarks/data_throughput.py
	$(BIN)/python benchmarks/eval_throughput.py
	$(BIN)/python benchmarks/judge_verdicts.py
	$(BIN)/python benchmarks/tune_throughput.py
	$(BIN)/python benchmarks/quantize.py
	$(BIN)/python benchmarks/finetune_eval.py

clean:
	rm -rf $(VENV) .venv-compat
