# One entry point for people and CI. Every target sets up .venv itself when it is missing.
#   make demo   main job: runs every package's demo into outputs/
#   make test   ruff + the fast pytest suite (what CI runs)
# Choose another torch build with e.g.
#   make setup TORCH="torch==2.13.0" TORCH_INDEX=https://download.pytorch.org/whl/cu128

PYTHON      ?= python3
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
VENV        := .venv
PY          := $(VENV)/bin/python
PACKAGES    := $(wildcard packages/*)
STAMP       := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup test test-slow lint format ext bench demo clean

setup: $(STAMP)

$(STAMP): shared/pyproject.toml $(wildcard packages/*/pyproject.toml) requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(PY) -m pip install -q -r requirements-dev.txt -e ./shared $(foreach p,$(PACKAGES),-e ./$(p))
	touch $@

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test: lint
	$(PY) -m geomkit.ext --build
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

ext: $(STAMP)
	$(PY) -m geomkit.ext --build

bench: $(STAMP)
	$(PY) -m tools.bench.run_all

BUNNY := $(wildcard ../shared/data/meshes/bunny.obj)

demo: $(STAMP)
	$(PY) -m geomkit.demo --out outputs/demo --overwrite $(if $(BUNNY),--mesh $(BUNNY))

clean:
	rm -rf outputs .pytest_cache .ruff_cache
