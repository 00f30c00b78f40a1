# One-command set-up on a fresh Debian/Ubuntu machine: `make demo`, then `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist
PYTEST_ARGS ?=

.PHONY: install data demo test test-fast bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3-venv is missing; installing it with apt-get"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[all]"
	@touch $(STAMP)

install: $(STAMP)

# Fashion-MNIST (full 60k/10k IDX files) comes from the Debian package dataset-fashion-mnist.
data:
	@if [ ! -d $(FASHION_MNIST) ]; then \
	  echo "Fashion-MNIST not found in $(FASHION_MNIST); installing dataset-fashion-mnist"; \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || \
	  echo "warning: could not install dataset-fashion-mnist (need root and apt); see README"; \
	fi

demo: install data
	$(PY) -m experiments.demo

test: install data
	$(PY) -m pytest -q --durations=25 $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_api.py

clean:
	rm -rf $(VENV) .pytest_cache results
