# The two set-up commands of the README: `make run` and `make test`. Both build .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: venv run test test-crash bench clean train-topics docs-report flex-metadata

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
BENCHES := bench-extract bench-fetch bench-fetch-concurrency bench-reprints bench-stories \
           bench-dedup-scale bench-story-component bench-entities bench-conll bench-topics \
           bench-rerun bench-dates-metadata bench-progress \
           bench-soak bench-e2e

.PHONY: $(BENCHES) bench-every bench-stream

bench: $(BENCHES)

bench-extract: venv
	nice -n 10 $(BIN)/python bench/bench_extract.py

bench-fetch: venv
	nice -n 10 $(BIN)/python bench/bench_fetch.py

bench-fetch-concurrency: venv
	nice -n 10 $(BIN)/python bench/bench_fetch_concurrency.py

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

bench-rerun: venv
	nice -n 10 $(BIN)/python bench/bench_rerun.py

# `run --every 60` against N local feeds publishing steadily: latency, throughput, memory.
# 3 minutes; BENCH_EVERY_MINUTES=10 for the issue's figure; BENCH_EVERY_FLAGS=--compare_cron
# measures a fresh process per run (cron) after it, side by side.
BENCH_EVERY_MINUTES ?= 3
BENCH_EVERY_FLAGS ?=
bench-every: venv
	nice -n 10 $(BIN)/python bench/bench_every.py --minutes $(BENCH_EVERY_MINUTES) \
	    $(BENCH_EVERY_FLAGS)

# Continuous ingestion side by side: `run --every 60` (bench-every), then `newsbeam stream`
# (bench/bench_stream.py) on the same local site: latency, throughput, memory over time.
bench-stream: bench-every
	nice -n 10 $(BIN)/python bench/bench_stream.py --minutes $(BENCH_EVERY_MINUTES)

# Dates and page metadata scored against html-dev's gold; BEFORE=path/to/another/checkout's
# .venv/bin/newsbeam runs that one too, side by side.
bench-dates-metadata: venv
	nice -n 10 $(BIN)/python bench/bench_dates_metadata.py $(if $(BEFORE),--before $(BEFORE))

# The price of a counter and a stage clock per element; a watched html-dev run: its longest
# silence and seconds per stage (BASELINE=path/to/newsbeam runs another install first).
bench-progress: venv
	nice -n 10 $(BIN)/python bench/bench_progress.py $(if $(BASELINE),--baseline $(BASELINE))

# 200 tiny runs into one dataset, then compaction; html-dev in 10 runs, then compaction.
bench-soak: venv
	nice -n 10 $(BIN)/python bench/bench_soak.py

# The Flex Template's parameters, from newsbeam run's options (tests/test_cloud.py checks that
# deploy/flex-template/metadata.json is up to date): run it after adding or changing an option.
flex-metadata: venv
	$(BIN)/python -m newsbeam.pipelines.flex_template --metadata deploy/flex-template/metadata.json

# Bare libraries vs newsbeam on 1 process and on every core (html-dev, the 1,726 topic
# articles), then time per article and peak memory by input size. The 100k memory run:
# `.venv/bin/python bench/bench_e2e.py --skip_table --sizes 100000`.
bench-e2e: venv
	nice -n 10 $(BIN)/python bench/bench_e2e.py

# Rewrites transforms/models/topics.npz (deterministic: the same data gives the same model).
train-topics: venv
	nice -n 10 $(BIN)/python -m newsbeam.pipelines.train_topics --output transforms/models/topics.npz

# The README's screenshot of the report (docs/report.png): the html-dev pages and the seeds, one
# run, the report, a screenshot in headless Chromium, and pngquant (Debian's) to keep it small.
SHARED_DATA ?= $(or $(NEWSBEAM_SHARED_DATA),../shared/data)
DOCS_DATASET := /tmp/newsbeam-docs-report

docs-report: venv
	rm -rf $(DOCS_DATASET)
	nice -n 10 $(BIN)/newsbeam run --input $(SHARED_DATA)/html-dev/html --input seeds \
	    --output $(DOCS_DATASET) --quiet
	$(BIN)/newsbeam report --output $(DOCS_DATASET) --file $(DOCS_DATASET)/report.html
	$(BIN)/python docs/screenshot.py $(DOCS_DATASET)/report.html docs/report.png
	pngquant --force --skip-if-larger --output docs/report.png docs/report.png

clean:
	rm -rf output .pytest_cache build *.egg-info
