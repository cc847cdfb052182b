# Developer entry points. `make setup` creates .venv; every other target uses it.
VENV ?= .venv
EXTRAS ?= dev,dlib,ui
BIN := $(VENV)/bin
export OMP_NUM_THREADS ?= 1

.PHONY: setup demo ui test test-fast test-slow bench lint format clean

setup:
	VENV=$(VENV) bash scripts/setup.sh $(EXTRAS)

demo:
	$(BIN)/sameface demo --out out/demo

ui:
	$(BIN)/sameface ui $(if $(wildcard out),--reports out)

test:
	$(BIN)/python -m pytest -q

test-fast:  # without the browser tests
	$(BIN)/python -m pytest -q -m "not slow and not browser"

test-slow:
	$(BIN)/python -m pytest -q -m slow

bench:
	$(BIN)/python benchmarks/faces.py
	$(BIN)/python benchmarks/textual_inversion.py
	$(BIN)/python benchmarks/pulid.py
	$(BIN)/python benchmarks/pulid_train.py
	$(BIN)/python benchmarks/feedface.py
	$(BIN)/python benchmarks/feedface_train.py
	$(BIN)/python benchmarks/dreamidentity.py
	$(BIN)/python benchmarks/dreamidentity_augment.py
	$(BIN)/python benchmarks/magicapture_train.py
	$(BIN)/python benchmarks/ip_adapter_faceid.py
	$(BIN)/python benchmarks/ui_load.py

lint:
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format:
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf out build dist .pytest_cache .ruff_cache
