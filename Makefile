# tollguard: `make demo` and `make test` set up everything on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
DEMO_DIR ?= demo-out
NATIVE := src/tollguard/_native/manifest.json
# the compiled modules, as listed once in native.py's NATIVE_MODULES
NATIVE_SOURCES := src/tollguard/native.py \
	$(addprefix src/,$(shell sed -n 's/^    "\(tollguard\/[a-z_/]*\.py\)",$$/\1/p' src/tollguard/native.py))

.PHONY: install install-dev native demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[native]'
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,native]'
	touch $(STAMP) $@

# The compiled per-record path (mypyc), rebuilt when its sources change; without a C
# compiler tollguard runs the same code as pure Python, only slower.
$(NATIVE): $(NATIVE_SOURCES) | $(STAMP)
	$(BIN)/python -m tollguard.native build || echo "tollguard: not compiled; running as pure Python (slower)"

install: $(STAMP) $(NATIVE)

install-dev: $(DEV_STAMP) $(NATIVE)

native: $(NATIVE)

demo: install
	$(BIN)/tollguard demo --out $(DEMO_DIR)

test: install-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 -q

lint: install-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: install-dev
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache src/tollguard/_native
