# Two entry points for a newcomer: `make demo` and `make test`. Both create .venv and install into it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
CONSTRAINTS := constraints.txt

.PHONY: install install-dev demo test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

install: $(BIN)/python
	$(PIP) install -q -c $(CONSTRAINTS) -e .

install-dev: $(BIN)/python
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[dev]"

demo: install
	$(BIN)/jamspotter demo --out demo_out --overwrite

test: install-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

lint: install-dev
	$(BIN)/ruff check src tests benchmarks

# The CPU benchmarks, one after another (a few minutes): each prints ratios against a reference measured in
# the same run and writes benchmarks/results/<name>.json. Qwen's real tokenizer where ../shared/data has it.
BENCH := JAMSPOTTER_REFERENCE_DATA=$(or $(JAMSPOTTER_REFERENCE_DATA),$(abspath ../shared/data)) $(BIN)/python
bench: install-dev
	$(BENCH) benchmarks/bench_collate.py
	$(BENCH) benchmarks/bench_detect.py
	$(BENCH) benchmarks/bench_synth.py
	$(BENCH) benchmarks/bench_eval.py
	$(BENCH) benchmarks/bench_edge_latency.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
