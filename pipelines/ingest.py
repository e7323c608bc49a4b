"""The batch graph: inputs -> documents -> articles -> Parquet datasets and a run manifest.

    files ─► read ─┐
    feeds, URLs ─► fetch ─┴► extract ─► already ingested? / exact copies ─► near copies
                      │         │                 └──────────────┴─► duplicates/
                      └─────────┴─► errors/       entities ─► topic ─► story ─► articles/, stories/
    index/ (after the data) and _runs/<run_id>.json over all of it.

Copies are dropped before any model runs (see DESIGN.md).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import posixpath
import re
import sys
from importlib import metadata

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import StandardOptions

from pipelines.options import (DEFAULT_RUNNER, InvalidOptions, NewsOptions, all_options_parser,
                               bundled_seeds, new_run_id, runner_problems, unknown_flag_problems)
from schemas.records import (SCHEMA_VERSION, Article, Duplicate, DuplicateIndexEntry,
                             EntryIndexEntry, ErrorIndexEntry, ErrorRow, FeedIndexEntry,
                             IndexEntry, InputIndexEntry, SignatureIndexEntry, Story,
                             StoryIndexEntry)
from transforms import sinks
from transforms.dedup import (ALREADY_INGESTED, DUPLICATES, SIGNATURES, DropKnownAndExactCopies,
                              DropNearCopies)
from transforms.entities import TagEntities
from transforms.errors import ERRORS, DropRecordedErrors
from transforms.extract import ExtractArticles
from transforms.feeds import (ENTRIES_SEEN, ENTRY_INDEX_DATASET, FEED_INDEX_DATASET, FEED_STATES,
                              NOT_MODIFIED, read_feed_states)
from transforms.fetch import FetchPolicy
from transforms.input_index import (INPUT_FACTS, INPUT_INDEX_DATASET, REFRESHED, UNCHANGED,
                                    RecordInputs, input_outcomes, read_input_index)
from transforms.sinks import WriteDataset, WriteManifest
from transforms.sources import ReadInputs, printable_path
from transforms.stories import STORIES, STORY_INDEX, LinkStories, StoryParams, story_partition
from transforms.topics import AssignTopics
from transforms.urls import redact_url
from transforms.warc import SKIPPED
from transforms.web import ENTRY_INDEX, ReadWebSources, feed_specs

_LOG = logging.getLogger(__name__)

# Options whose values must not reach the manifest (cloud credentials).
_SECRET_OPTION = re.compile(
    r"secret|token|password|passwd|credential|connection_string|access_key|_key$", re.IGNORECASE)

INDEX_DATASET = "index/articles"
ERROR_INDEX_DATASET = "index/errors"
SIGNATURE_INDEX_DATASET = "index/signatures"
DUPLICATE_INDEX_DATASET = "index/duplicates"
STORY_INDEX_DATASET = "index/stories"
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


def index_entry(article: Article) -> IndexEntry:
    return IndexEntry(article_id=article.article_id, content_hash=article.content_hash,
                      run_id=article.run_id, ingested_at=article.ingested_at,
                      canonical_url=article.canonical_url, published_at=article.published_at)


def read_indexed_ids(pipeline, output_dir: str, dataset: str, column: str, label: str):
    """The ids that earlier runs recorded in OUTPUT/<dataset>/. The files are listed when the
    graph is built: a run never sees its own index files."""
    pattern = posixpath.join(output_dir, dataset, "*.parquet")
    files = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    if not files:
        return pipeline | f"No{label}" >> beam.Create([]).with_output_types(str)
    return (
        pipeline
        | f"{label}Files" >> beam.Create(sorted(files))
        | f"Read{label}" >> beam.io.ReadAllFromParquet(columns=[column])
        | f"{label}Ids" >> beam.Map(lambda row: row[column]))


def fetch_policy(options: NewsOptions) -> FetchPolicy:
    return FetchPolicy(
        delay_s=options.fetch_delay_s, connect_timeout_s=options.connect_timeout_s,
        read_timeout_s=options.read_timeout_s, total_timeout_s=options.fetch_deadline_s,
        max_bytes=options.max_document_bytes, max_redirects=options.max_redirects,
        retries=options.fetch_retries, backoff_s=options.retry_backoff_s,
        max_retry_after_s=options.max_retry_after_s,
        max_crawl_delay_s=options.max_crawl_delay_s, allow_loopback=options.allow_loopback,
        concurrency=options.fetch_concurrency)


def read_index_rows(pipeline, output_dir: str, dataset: str, label: str, time_column: str,
                    not_before: dt.datetime):
    """The rows earlier runs wrote to OUTPUT/<dataset>/ whose `time_column` is not before
    `not_before` (older entries have aged out), as dicts. Listed when the graph is built."""
    pattern = posixpath.join(output_dir, dataset, "*.parquet")
    files = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    if not files:
        return pipeline | f"No{label}" >> beam.Create([])
    return (
        pipeline
        | f"{label}Files" >> beam.Create(sorted(files))
        | f"Read{label}" >> beam.io.ReadAllFromParquet()
        | f"Recent{label}" >> beam.Filter(lambda row: row[time_column] >= not_before))


def build(pipeline, options: NewsOptions, run: dict) -> dict:
    """Adds the ingest graph to `pipeline`; returns its main PCollections by name."""
    output, run_id = options.output, run["run_id"]
    ingested_at = dt.datetime.fromisoformat(run["started_at"])
    write = lambda dataset, record_type, partition_fn, columns=(), after=(): WriteDataset(
        output, dataset, record_type, run_id, partition_fn, columns,
        options.rows_per_file, options.row_group_rows, after)

    read = pipeline | "ReadInputs" >> ReadInputs(options.input, run_id,
                                                 options.max_document_bytes,
                                                 read_input_index(pipeline, output), ingested_at)
    web = pipeline | "ReadWebSources" >> ReadWebSources(
        feed_specs(options.feed or [], options.feeds or []), options.urls or [],
        fetch_policy(options), run_id, ingested_at, read_feed_states(pipeline, output),
        read_indexed_ids(pipeline, output, ENTRY_INDEX_DATASET, "entry_key", "EntryIndex"),
        min_words=options.min_words)
    documents = (read["documents"], web["documents"]) | "AllDocuments" >> beam.Flatten()
    extracted = documents | "ExtractArticles" >> ExtractArticles(
        run_id, ingested_at, options.extraction_timeout_s, options.min_words,
        options.progress_interval_s)
    # Copies recorded in duplicates/ by earlier runs count as ingested too.
    known_ids = (
        read_indexed_ids(pipeline, output, INDEX_DATASET, "article_id", "ArticleIndex"),
        read_indexed_ids(pipeline, output, DUPLICATE_INDEX_DATASET, "article_id",
                         "DuplicateIndex")) | "KnownIds" >> beam.Flatten()
    resolved = extracted.articles | "DropKnownAndExactCopies" >> DropKnownAndExactCopies(
        known_ids)
    index_not_before = ingested_at - dt.timedelta(days=options.index_max_age_days)
    distinct = resolved.articles | "DropNearCopies" >> DropNearCopies(
        resolved[DUPLICATES], read_index_rows(pipeline, output, SIGNATURE_INDEX_DATASET,
                                              "SignatureIndex", "ingested_at", index_not_before),
        run_id, ingested_at)
    tagged = distinct["articles"] | "TagEntities" >> TagEntities(
        options.spacy_model, options.ner_batch_size, options.ner_max_chars,
        options.numeric_entities, options.ner_recase == "on")
    topical = tagged | "AssignTopics" >> AssignTopics(options.topic_model,
                                                      options.topic_threshold)
    storied = topical | "LinkStories" >> LinkStories(
        read_index_rows(pipeline, output, STORY_INDEX_DATASET, "StoryIndex", "updated_at",
                        index_not_before),
        run_id, ingested_at, StoryParams(window_hours=options.story_window_hours,
                                         link_threshold=options.story_link_threshold))
    articles = storied["articles"]
    errors = (read[ERRORS], web[ERRORS], extracted[ERRORS]) | "AllErrors" >> beam.Flatten()
    new_errors = errors | "DropRecordedErrors" >> DropRecordedErrors(
        read_indexed_ids(pipeline, output, ERROR_INDEX_DATASET, "error_id", "ErrorIndex"))

    data = (
        articles | "WriteArticles" >> write("articles", Article, sinks.article_partition,
                                            ("topic",)),
        distinct[DUPLICATES] | "WriteDuplicates" >> write("duplicates", Duplicate,
                                                          sinks.duplicate_partition),
        new_errors | "WriteErrors" >> write("errors", ErrorRow, sinks.error_partition),
        storied[STORIES] | "WriteStories" >> write("stories", Story, story_partition),
    )
    # The index commits after the data: a run that fails in between leaves articles that the
    # next run stores again, never index entries for articles that were not stored.
    indexes = (
        articles | "IndexEntries" >> beam.Map(index_entry)
        | "WriteIndex" >> write(INDEX_DATASET, IndexEntry, sinks.no_partition, after=data),
        new_errors | "ErrorIndexEntries" >> beam.Map(
            lambda e: ErrorIndexEntry(error_id=e.error_id, run_id=e.run_id))
        | "WriteErrorIndex" >> write(ERROR_INDEX_DATASET, ErrorIndexEntry, sinks.no_partition,
                                     after=data),
        web[FEED_STATES] | "WriteFeedIndex" >> write(FEED_INDEX_DATASET, FeedIndexEntry,
                                                     sinks.no_partition, after=data),
        web[ENTRY_INDEX] | "WriteEntryIndex" >> write(ENTRY_INDEX_DATASET, EntryIndexEntry,
                                                      sinks.no_partition, after=data),
        distinct[DUPLICATES] | "DuplicateIndexEntries" >> beam.Map(
            lambda d: DuplicateIndexEntry(article_id=d.article_id, duplicate_of=d.duplicate_of,
                                          run_id=d.run_id))
        | "WriteDuplicateIndex" >> write(DUPLICATE_INDEX_DATASET, DuplicateIndexEntry,
                                         sinks.no_partition, after=data),
        distinct[SIGNATURES] | "WriteSignatureIndex" >> write(
            SIGNATURE_INDEX_DATASET, SignatureIndexEntry, sinks.no_partition, after=data),
        storied[STORY_INDEX] | "WriteStoryIndex" >> write(
            STORY_INDEX_DATASET, StoryIndexEntry, sinks.no_partition, after=data),
        # Files all of whose documents ended here: the next run does not read them again.
        read[INPUT_FACTS] | "RecordInputs" >> RecordInputs(
            input_outcomes(extracted.articles, errors), read[REFRESHED], run_id, ingested_at)
        | "WriteInputIndex" >> write(INPUT_INDEX_DATASET, InputIndexEntry, sinks.no_partition,
                                     after=data),
    )
    written = [*data, *indexes]
    counts = {
        "documents": documents,
        "read_errors": read[ERRORS],
        "fetch_errors": web[ERRORS],
        "feeds_not_modified": web[NOT_MODIFIED],
        "entries_seen_before": web[ENTRIES_SEEN],
        "warc_records_skipped": read[SKIPPED],
        "extracted": extracted.articles,
        "articles": articles,
        "duplicates": distinct[DUPLICATES],
        "already_ingested": resolved[ALREADY_INGESTED],
        "inputs_unchanged": read[UNCHANGED],
        "errors": errors,
        "errors_new": new_errors,
    }
    manifest = pipeline | "WriteManifest" >> WriteManifest(output, run, counts, errors, written)
    return {"articles": articles, "duplicates": distinct[DUPLICATES], "errors": new_errors,
            "stories": storied[STORIES], "manifest": manifest}


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


def new_run(options: NewsOptions) -> dict:
    started_at = dt.datetime.now(dt.timezone.utc)
    run_id = options.run_id or new_run_id(started_at)
    recorded = {name: "<redacted>" if _SECRET_OPTION.search(name) and value else value
                for name, value in options.get_all_options(drop_default=True).items()}
    recorded.update(options.news_values())
    # Inputs, feeds and output may be URLs that carry credentials, or names that are no UTF-8.
    recorded = _as_recorded(recorded)
    return {"run_id": run_id, "started_at": started_at.isoformat(), "schema_version":
            SCHEMA_VERSION, "options": json.loads(json.dumps(recorded, default=str)),
            "versions": package_versions(options.spacy_model)}


def check_options(options: NewsOptions) -> None:
    """Raises InvalidOptions when the options cannot make a run: newsbeam's flags, and a runner
    Beam could not create."""
    problems = options.validate_news() + runner_problems(options.view_as(StandardOptions).runner)
    if problems:
        raise InvalidOptions(problems)


def run_pipeline(options: NewsOptions) -> dict:
    """Runs the batch pipeline to completion; returns the run manifest. Raises InvalidOptions,
    before anything is written, when the options cannot make a run."""
    check_options(options)
    run_info = new_run(options)
    _LOG.info("run %s: %s -> %s", run_info["run_id"], _as_recorded(options.input),
              _as_recorded(options.output))
    # Beam starts local worker processes as `python -m ...`, which puts the working directory
    # first on their sys.path: a stray `concurrent.py` or `htmldate.py` where the user runs
    # newsbeam would be imported by every worker. PYTHONSAFEPATH (Python 3.11) keeps it off.
    os.environ["PYTHONSAFEPATH"] = "1"
    with beam.Pipeline(options=options) as pipeline:
        build(pipeline, options, run_info)
    return read_manifest(options.output, run_info["run_id"])


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
