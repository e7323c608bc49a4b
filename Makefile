# The two set-up commands of the README: `make run` and `make test`. Both build .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: venv run test bench bench-fetch clean

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

clean:
	rm -rf output .pytest_cache build *.egg-info

bench-fetch: venv
	nice -n 10 $(BIN)/python bench/bench_fetch.py
# Issue 5: entities and topics. NEWSBEAM_SHARED_DATA overrides ../shared/data.
.PHONY: bench-entities bench-topics train-topics

bench-entities: venv
	nice -n 10 $(BIN)/python bench/bench_entities.py

bench-topics: venv
	nice -n 10 $(BIN)/python bench/bench_topics.py

# Rewrites transforms/models/topics.npz (deterministic: the same data gives the same model).
train-topics: venv
	nice -n 10 $(BIN)/python -m pipelines.train_topics
