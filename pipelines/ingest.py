"""The batch graph: inputs -> documents -> articles -> Parquet datasets and a run manifest.

    files ─► read ─┐
    feeds, URLs ─► fetch ─┴► extract ─► already ingested? / exact copies ─► near copies
                      │         │                 └──────────────┴─► duplicates/
                      └─────────┴─► errors/       entities ─► topic ─► story ─► articles/, stories/
    index/ (after the data) and _runs/<run_id>.json over all of it.

Copies are dropped before any model runs (see DESIGN.md). What earlier runs stored (index/) is
read, and this run's files are committed, through transforms/dataset.py, under the writer lease
(transforms/lease.py) that `run_pipeline` holds for the whole run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import re
import sys
from importlib import metadata

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import StandardOptions

from newsbeam.pipelines.options import (DEFAULT_RUNNER, InvalidOptions, NewsOptions, all_options_parser,
                                        bundled_seeds, new_run_id, runner_problems, unknown_flag_problems)
from newsbeam.pipelines import graph
from newsbeam.pipelines.graph import fetch_policy, index_entry  # noqa: F401 - their old home
from newsbeam.schemas.records import SCHEMA_VERSION, FeedIndexEntry
from newsbeam.transforms import dataset, lease, sinks
from newsbeam.transforms.dataset import INDEX_ENTRIES, INDEX_FEEDS, INDEX_INPUTS, CommitRun, ReadIndex
from newsbeam.transforms.dedup import ALREADY_INGESTED, DUPLICATES
from newsbeam.transforms.errors import ERRORS
from newsbeam.transforms.feeds import ENTRIES_SEEN, FEED_STATES, NOT_MODIFIED, latest_state
from newsbeam.transforms.input_index import (INPUT_FACTS, REFRESHED, UNCHANGED, RecordInputs,
                                             input_outcomes)
from newsbeam.transforms.sources import ReadInputs, printable_path
from newsbeam.transforms.stories import STORIES
from newsbeam.transforms.urls import redact_url
from newsbeam.transforms.warc import SKIPPED
from newsbeam.transforms.web import ENTRY_INDEX, ReadWebSources, feed_specs

_LOG = logging.getLogger(__name__)

# Options whose values must not reach the manifest (cloud credentials).
_SECRET_OPTION = re.compile(
    r"secret|token|password|passwd|credential|connection_string|access_key|_key$", re.IGNORECASE)

# Every package whose version can change what a run writes.
_VERSIONED_PACKAGES = ("newsbeam", "apache-beam", "trafilatura", "pyarrow", "feedparser",
                       "spacy", "lxml", "numpy", "warcio", "PyYAML", "py3langid")


def package_versions(spacy_model: str | None = None) -> dict[str, str | None]:
    """Versions of the packages that shape the output, and of the spaCy pipelines (`spacy_model`,
    one name or several, comma separated) that are installed packages (a folder has none)."""
    versions = {"python": platform.python_version()}
    models = tuple(name.strip() for name in (spacy_model or "").split(",") if name.strip())
    for name in _VERSIONED_PACKAGES + models:
        try:
            versions[name] = metadata.version(name)
        except (metadata.PackageNotFoundError, ValueError):
            versions[name] = None
    return versions


def read_feed_states(pipeline, output_dir: str):
    """(feed URL, latest FeedIndexEntry) from OUTPUT/index/feeds/, read when the job runs."""
    return (
        pipeline
        | "FeedIndex" >> ReadIndex(output_dir, INDEX_FEEDS)
        | "FeedStates" >> beam.Map(lambda row: (row["feed_url"], FeedIndexEntry(**row)))
        # A GroupByKey, not CombinePerKey: BundleBasedDirectRunner --streaming (the stream's
        # tests) cannot run a CombinePerKey in the global window ("was not replaced as
        # expected"); one feed's states are few.
        | "ByFeed" >> beam.GroupByKey()
        | "LatestState" >> beam.MapTuple(lambda url, states: (url, latest_state(states))))


def build(pipeline, options: NewsOptions, run: dict) -> dict:
    """Adds the ingest graph to `pipeline`; returns its main PCollections by name. The graph
    reads index/ when it runs, and commits its files in one step at the end (CommitRun)."""
    output, run_id = options.output, run["run_id"]
    ingested_at = dt.datetime.fromisoformat(run["started_at"])
    index = graph.IndexReads(pipeline, output)

    read = pipeline | "ReadInputs" >> ReadInputs(
        options.input, run_id, options.max_document_bytes,
        index.rows(INDEX_INPUTS, "InputIndex"), ingested_at)
    web = pipeline | "ReadWebSources" >> ReadWebSources(
        feed_specs(options.feed or [], options.feeds or []), options.urls or [],
        graph.fetch_policy(options), run_id, ingested_at, read_feed_states(pipeline, output),
        index.ids(INDEX_ENTRIES, "entry_key", "EntryIndex"), min_words=options.min_words)
    documents = (read["documents"], web["documents"]) | "AllDocuments" >> beam.Flatten()
    extracted = graph.extract(documents, options, run_id, ingested_at)
    stages = graph.resolve_and_enrich(extracted.articles, options, run_id, ingested_at, index)
    errors = (read[ERRORS], web[ERRORS], extracted[ERRORS]) | "AllErrors" >> beam.Flatten()
    new_errors = graph.drop_recorded_errors(errors, index)
    temp_files = graph.write_all(pipeline, options, run_id, stages, new_errors, {
        INDEX_FEEDS: web[FEED_STATES],
        INDEX_ENTRIES: web[ENTRY_INDEX],
        # Files all of whose documents ended here: the next run does not read them again.
        INDEX_INPUTS: read[INPUT_FACTS] | "RecordInputs" >> RecordInputs(
            input_outcomes(extracted.articles, errors), read[REFRESHED], run_id, ingested_at),
    })
    counts = {
        "documents": documents,
        "read_errors": read[ERRORS],
        "fetch_errors": web[ERRORS],
        "feeds_not_modified": web[NOT_MODIFIED],
        "entries_seen_before": web[ENTRIES_SEEN],
        "warc_records_skipped": read[SKIPPED],
        "inputs_unchanged": read[UNCHANGED],
        "extracted": extracted.articles,
        "articles": stages["articles"],
        "duplicates": stages[DUPLICATES],
        "already_ingested": stages[ALREADY_INGESTED],
        "errors": errors,
        "errors_new": new_errors,
    }
    manifest = pipeline | "Commit" >> CommitRun(output, run, counts, errors, temp_files)
    return {"articles": stages["articles"], "duplicates": stages[DUPLICATES],
            "errors": new_errors, "stories": stages[STORIES], "manifest": manifest}


def prepare_options(argv: list[str] | None) -> NewsOptions:
    """Options from the command line, with newsbeam's defaults: the bundled seeds as input and a
    runner that needs no network."""
    options = NewsOptions(argv)
    if not options.input:
        web_sources = options.feed or options.feeds or options.urls
        options.input = [] if web_sources else [bundled_seeds()]
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = DEFAULT_RUNNER
    return options


def _as_recorded(value):
    """`value` (an option's) as the manifest and logs show it: user:password@ taken out of every
    URL in it, and bytes of a path that are not UTF-8 written as %XX (printable_path)."""
    if isinstance(value, str):
        return redact_url(printable_path(value))
    if isinstance(value, (list, tuple)):
        return [_as_recorded(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_recorded(item) for key, item in value.items()}
    return value


def new_run(options: NewsOptions, run_id: str | None = None) -> dict:
    started_at = dt.datetime.now(dt.timezone.utc)
    run_id = run_id or options.run_id or new_run_id(started_at)
    recorded = {name: "<redacted>" if _SECRET_OPTION.search(name) and value else value
                for name, value in options.get_all_options(drop_default=True).items()}
    recorded.update(options.news_values())
    # Inputs, feeds and output may be URLs that carry credentials, or names that are no UTF-8.
    recorded = _as_recorded(recorded)
    return {"run_id": run_id, "started_at": started_at.isoformat(), "schema_version":
            SCHEMA_VERSION, "options": json.loads(json.dumps(recorded, default=str)),
            "versions": package_versions(options.spacy_model)}


def check_options(options: NewsOptions) -> None:
    """Raises InvalidOptions when the options cannot make a run: newsbeam's flags, a runner Beam
    could not create, an output whose filesystem offers no writer lease."""
    problems = options.validate_news() + runner_problems(options.view_as(StandardOptions).runner)
    try:
        lease.check_supported(options.output)
    except lease.LeaseUnsupported as unsupported:
        problems.append(str(unsupported))
    if problems:
        raise InvalidOptions(problems)


def run_pipeline(options: NewsOptions) -> dict:
    """Runs the batch pipeline to completion under the output's writer lease; returns the run
    manifest. Raises InvalidOptions before anything runs, lease.LeaseHeld when another run is
    writing the output (and did not finish within --wait_for_lease_s)."""
    check_options(options)
    run_id = options.run_id or new_run_id(dt.datetime.now(dt.timezone.utc))
    # Beam starts local worker processes as `python -m ...`, which puts the working directory
    # first on their sys.path: a stray `concurrent.py` or `htmldate.py` where the user runs
    # newsbeam would be imported by every worker. PYTHONSAFEPATH (Python 3.11) keeps it off.
    os.environ["PYTHONSAFEPATH"] = "1"
    with dataset.writing(options.output, run_id, "ingest", options.wait_for_lease_s,
                         options.lease_expiry_s):
        # The run starts (its ingestion time, what the index holds) once it holds the lease.
        run_info = new_run(options, run_id)
        _LOG.info("run %s: %s -> %s", run_id, _as_recorded(options.input),
                  _as_recorded(options.output))
        with beam.Pipeline(options=options) as pipeline:
            build(pipeline, options, run_info)
    return read_manifest(options.output, run_id)


def run(argv: list[str] | None = None) -> dict:
    """`run_pipeline` with options from command-line words (sys.argv's by default). A word no
    options class knows raises InvalidOptions, as `newsbeam run` refuses it (Beam alone would
    drop it with a warning)."""
    argv = sys.argv[1:] if argv is None else argv
    problems = unknown_flag_problems(argv, all_options_parser("newsbeam"))
    if problems:
        raise InvalidOptions(problems)
    return run_pipeline(prepare_options(argv))


def read_manifest(output_dir: str, run_id: str) -> dict:
    with FileSystems.open(sinks.manifest_path(output_dir, run_id)) as stream:
        return json.loads(stream.read())
