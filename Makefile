# The two set-up commands of the README: `make run` and `make test`. Both build .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: venv run test bench clean

venv: $(INSTALLED)

$(INSTALLED): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)

run: venv
	$(BIN)/newsbeam run --input seeds --output output

test: venv
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python bench/bench_extract.py

.PHONY: bench-reprints bench-stories bench-dedup-scale

bench-reprints: venv
	nice -n 10 $(BIN)/python bench/bench_reprints.py

bench-stories: venv
	nice -n 10 $(BIN)/python bench/bench_stories.py

bench-dedup-scale: venv
	nice -n 10 $(BIN)/python bench/bench_dedup_scale.py

clean:
	rm -rf output .pytest_cache build *.egg-info
