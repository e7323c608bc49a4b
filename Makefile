# The two set-up commands of the README: `make run` and `make test`. Both build .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: venv run test bench clean train-topics

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

# Every benchmark, one after the other (each prints its medians and ratios and writes
# bench/results/<name>.json). NEWSBEAM_SHARED_DATA overrides ../shared/data.
BENCHES := bench-extract bench-fetch bench-reprints bench-stories bench-dedup-scale \
           bench-story-component bench-entities bench-conll bench-topics

.PHONY: $(BENCHES)

bench: $(BENCHES)

bench-extract: venv
	nice -n 10 $(BIN)/python bench/bench_extract.py

bench-fetch: venv
	nice -n 10 $(BIN)/python bench/bench_fetch.py

bench-reprints: venv
	nice -n 10 $(BIN)/python bench/bench_reprints.py

bench-stories: venv
	nice -n 10 $(BIN)/python bench/bench_stories.py

bench-dedup-scale: venv
	nice -n 10 $(BIN)/python bench/bench_dedup_scale.py

bench-story-component: venv
	nice -n 10 $(BIN)/python bench/bench_story_component.py

bench-entities: venv
	nice -n 10 $(BIN)/python bench/bench_entities.py

# CoNLL-2003 dev through `newsbeam run` (each document a .txt file) beside the bare spaCy model.
bench-conll: venv
	nice -n 10 $(BIN)/python bench/bench_conll.py

bench-topics: venv
	nice -n 10 $(BIN)/python bench/bench_topics.py

# Rewrites transforms/models/topics.npz (deterministic: the same data gives the same model).
train-topics: venv
	nice -n 10 $(BIN)/python -m pipelines.train_topics --output transforms/models/topics.npz

clean:
	rm -rf output .pytest_cache build *.egg-info
