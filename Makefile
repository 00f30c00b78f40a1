# One-command set-up on a fresh Debian/Ubuntu machine: `make demo`, then `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# One install stamp per extras set: `make demo` installs only what the demo imports
# (runtime + the demo extra, about half a minute); test, docs and bench install the rest.
STAMP_VENV := $(VENV)/.created
STAMP_DEMO := $(VENV)/.installed-demo
STAMP := $(VENV)/.installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist
PYTEST_ARGS ?=
# Test processes (pytest-xdist; whole files per process, so a file's tests share its
# compiled programs): 2 keeps both cores of a small machine busy.
TEST_WORKERS ?= 2

.PHONY: install install-demo data demo test test-fast bench docs docs-serve chromium clean

$(STAMP_VENV):
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3-venv is missing; installing it with apt-get"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	@touch $(STAMP_VENV)

$(STAMP_DEMO): pyproject.toml $(STAMP_VENV)
	$(PY) -m pip install -q -e ".[demo]"
	@touch $(STAMP_DEMO)

# Everything (the demo's set included, so its stamp is renewed too).
$(STAMP): pyproject.toml $(STAMP_VENV)
	$(PY) -m pip install -q -e ".[all]"
	@touch $(STAMP_DEMO) $(STAMP)

install-demo: $(STAMP_DEMO)

install: $(STAMP)

# Fashion-MNIST (full 60k/10k IDX files) comes from the Debian package dataset-fashion-mnist.
data:
	@if [ ! -d $(FASHION_MNIST) ]; then \
	  echo "Fashion-MNIST not found in $(FASHION_MNIST); installing dataset-fashion-mnist"; \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || \
	  echo "warning: could not install dataset-fashion-mnist (need root and apt); see README"; \
	fi

demo: install-demo data
	$(PY) -m experiments.demo

test: install data
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25 $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# The documentation site: build it (offline; warnings, broken references, undocumented
# public names and failing notebook cells are errors; the notebooks at full size, about three
# minutes on two cores; LETCC_NOTEBOOK_SMOKE=1 runs them small, as CI does), then check
# the rendered pages in headless Chromium. Output: docs/_build/html.
docs: install chromium
	LETCC_NOTEBOOK_SMOKE=$${LETCC_NOTEBOOK_SMOKE:-0} $(PY) -m sphinx -W --keep-going -n -q -b html docs docs/_build/html
	$(PY) -m pytest -q -p no:cacheprovider docs/test_site.py

docs-serve:
	$(PY) -m http.server --directory docs/_build/html --bind 127.0.0.1 8000

# Debian's Chromium for the rendered-page check (Playwright drives it; no browser download).
chromium:
	@command -v chromium >/dev/null 2>&1 || [ -n "$$LETCC_CHROMIUM" ] || { \
	  echo "chromium not found; installing Debian's chromium with apt-get"; \
	  apt-get update -qq && apt-get install -y -qq chromium; }

bench: install
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_api.py

clean:
	rm -rf $(VENV) .pytest_cache results docs/_build docs/generated docs/tutorials
