# The two set-up commands of the README: `make run` and `make test`. Both build .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: venv run test test-crash bench clean train-topics

venv: $(INSTALLED)

$(INSTALLED): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)

run: venv
	$(BIN)/newsbeam run --input seeds --output output

# The suite, then the crash scenarios (real SIGKILLs, overlapping runs, a 20-run soak).
test: venv
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest -m crash

test-crash: venv
	$(BIN)/python -m pytest -m crash

# Every benchmark, one after the other (each prints its medians and ratios and writes
# bench/results/<name>.json). NEWSBEAM_SHARED_DATA overrides ../shared/data.
BENCHES := bench-extract bench-fetch bench-reprints bench-stories bench-dedup-scale \
           bench-story-component bench-entities bench-topics bench-soak

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

bench-topics: venv
	nice -n 10 $(BIN)/python bench/bench_topics.py

# 200 tiny runs into one dataset, then compaction; html-dev in 10 runs, then compaction.
bench-soak: venv
	nice -n 10 $(BIN)/python bench/bench_soak.py

# Rewrites transforms/models/topics.npz (deterministic: the same data gives the same model).
train-topics: venv
	nice -n 10 $(BIN)/python -m pipelines.train_topics --output transforms/models/topics.npz

clean:
	rm -rf output .pytest_cache build *.egg-info
