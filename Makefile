# Two commands for a newcomer: `make serve` (or `make demo`) and `make test`.
# Every target bootstraps .venv from pyproject.toml first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= ./data

.PHONY: serve demo test lint bench bench-full clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/hashfed serve --data $(DATA)

demo: $(STAMP)
	$(BIN)/hashfed demo

# The suite runs on $(TEST_WORKERS) pytest-xdist workers, one test module per worker
# at a time (module fixtures start their servers once), in collection order:
# the integration modules, the long ones, first, not last (xdist would start
# with the modules of most tests); then the tests marked `serial`, which
# measure time, run alone. Exit status 5 (nothing selected, when PYTEST_ARGS
# picks tests of one kind only) is not a failure.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25 \
	    --serial=skip $(PYTEST_ARGS); \
	parallel=$$?; \
	$(BIN)/python -m pytest -p no:xdist --serial=only $(PYTEST_ARGS); \
	serial=$$?; \
	for s in $$parallel $$serial; do [ $$s -eq 0 ] || [ $$s -eq 5 ] || exit $$s; done

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy config crypto node federation api

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench --scale 1000000

bench-full: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench --scale 10000000

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
