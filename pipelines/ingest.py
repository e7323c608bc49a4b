"""The batch graph: inputs -> documents -> articles -> Parquet datasets and a run manifest.

    files ─► read ─┐
    feeds, URLs ─► fetch ─┴► extract ─► already ingested? / exact copies ─► near copies
                      │         │                 └──────────────┴─► duplicates/
                      └─────────┴─► errors/       entities ─► topic ─► story ─► articles/, stories/
    index/ (after the data) and _runs/<run_id>.json over all of it.

Copies are dropped before any model runs (see DESIGN.md). What earlier runs stored (index/) is
read, and this run's files are committed, through transforms/dataset.py, under the writer lease
(transforms/lease.py): on a local runner `run_pipeline` holds it for the whole run; on a runner
elsewhere the job takes it in its first step and its commit releases it (`lease_in_job`), since
a launcher (a Flex Template's, a scheduler's) may be gone before the job ends. The run id and
ingestion time are decided when the graph is built, which is at each launch (`newsbeam run`, the
Flex Template's launcher); a graph built once and run again is stopped at its first step.
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

from newsbeam.pipelines import graph, progress
from newsbeam.pipelines.graph import fetch_policy
from newsbeam.pipelines.options import (DEFAULT_RUNNER, InvalidOptions, NewsOptions,
                                        all_options_parser, bundled_seeds, dry_run_requested,
                                        launch_problems, new_run_id, runner_problems,
                                        runs_locally, unknown_flag_problems)
from newsbeam.schemas.records import SCHEMA_VERSION, FeedIndexEntry
from newsbeam.transforms import batches, dataset, lease, metrics, sinks
from newsbeam.transforms.dataset import (INDEX_ENTRIES, INDEX_FEEDS, INDEX_INPUTS, CommitRun,
                                         ReadIndex, StartRun)
from newsbeam.transforms.dedup import ALREADY_INGESTED, DUPLICATES
from newsbeam.transforms.errors import ERRORS
from newsbeam.transforms.feeds import (ENTRIES_SEEN, FEED_STATES, NOT_DUE, NOT_MODIFIED,
                                       latest_state)
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


def archive_target(options: NewsOptions, run: dict):
    """Where --archive_warc puts this run's captures, and their warcinfo; None without it."""
    if not options.archive_warc:
        return None
    from newsbeam.transforms.archive import WarcArchive
    return WarcArchive(options.archive_warc, run["run_id"], {
        "software": f"newsbeam {run['versions'].get('newsbeam')}",
        "format": "WARC File Format 1.1", "isPartOf": _as_recorded(options.output),
        "description": f"raw captures of newsbeam run {run['run_id']} "
                       f"(started {run['started_at']})",
        "robots": "obey"})


def read_feed_states(start, output_dir: str):
    """(feed URL, latest FeedIndexEntry) from OUTPUT/index/feeds/, read when the job runs."""
    return (
        start
        | "FeedIndex" >> ReadIndex(output_dir, INDEX_FEEDS)
        | "FeedStates" >> beam.Map(lambda row: (row["feed_url"], FeedIndexEntry(**row)))
        # A GroupByKey, not CombinePerKey: BundleBasedDirectRunner --streaming (the stream's
        # tests) cannot run a CombinePerKey in the global window ("was not replaced as
        # expected"); one feed's states are few.
        | "ByFeed" >> beam.GroupByKey()
        | "LatestState" >> beam.MapTuple(lambda url, states: (url, latest_state(states))))


def count_stage_outputs(outputs: dict, by_reason: dict) -> None:
    """Live counters (transforms/metrics.py) of what each stage emits: `outputs` {counter name:
    PCollection}, one count per element; `by_reason` {label: (PCollection, element -> counter
    name)}. Errors are counted where they are emitted (errors.error_output)."""
    for name, pcoll in outputs.items():
        _ = pcoll | f"Count_{name}" >> metrics.CountElements(name)
    for label, (pcoll, name_of) in by_reason.items():
        _ = pcoll | f"Count_{label}" >> metrics.CountBy(name_of)


def build(pipeline, options: NewsOptions, run: dict, lease_in_job: bool = False,
          batch=None) -> dict:
    """Adds the ingest graph to `pipeline`; returns its main PCollections by name. The graph
    reads index/ when it runs, and commits its files in one step at the end (CommitRun).
    lease_in_job: the job takes the writer lease and recovers the dataset itself when it
    starts (StartRun), before it reads index/, and its commit releases the lease; else the
    launcher holds it around the whole job (run_pipeline). batch: one InputBatch of a batched
    run (transforms/batches.py): only its files or slices are read, the web sources only by
    the first, and only the index rows this batch can meet are taken into the graph."""
    output, run_id = options.output, run["run_id"]
    # What reads index/ starts from: the pipeline (an Impulse each), or the job's start step.
    start = pipeline | "StartRun" >> StartRun(output, run, options.wait_for_lease_s,
                                              options.lease_expiry_s) \
        if lease_in_job else pipeline
    ingested_at = dt.datetime.fromisoformat(run["started_at"])
    index = graph.IndexReads(start, output)

    read = pipeline | "ReadInputs" >> ReadInputs(
        options.input, run_id, options.max_document_bytes,
        index.rows(INDEX_INPUTS, "InputIndex"), ingested_at, batch)
    fetches = batch is None or batch.web_sources
    web = pipeline | "ReadWebSources" >> ReadWebSources(
        feed_specs(options.feed or [], options.feeds or [], options.sitemap or [],
                   options.sitemaps_from_robots or []) if fetches else [],
        options.urls or [] if fetches else [],
        fetch_policy(options), run_id, ingested_at, read_feed_states(start, output),
        index.ids(INDEX_ENTRIES, "entry_key", "EntryIndex"), min_words=options.min_words,
        schedule=options.poll_schedule_of(),
        sitemap_depth=options.sitemap_depth, max_sitemaps=options.max_sitemaps,
        archive=archive_target(options, run))
    documents = (read["documents"], web["documents"]) | "AllDocuments" >> beam.Flatten()
    extracted = graph.extract(documents, options, run_id, ingested_at)
    stages = graph.resolve_and_enrich(extracted.articles, options, run_id, ingested_at, index,
                                      batch_of=run["batch"]["run_id"] if batch else None)
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
        "feeds_not_due": web[NOT_DUE],
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
    count_stage_outputs({
        "read_documents": read["documents"],
        "read_skipped_unchanged": read[UNCHANGED],
        "fetch_documents": web["documents"],
        "fetch_dropped_not_modified": web[NOT_MODIFIED],
        "fetch_dropped_seen_before": web[ENTRIES_SEEN],
        "extract_articles": extracted.articles,
        "dedup_dropped_already_ingested": stages[ALREADY_INGESTED],
        "dedup_articles": stages["distinct"],
        "entities_articles": stages["tagged"],
        "topics_articles": stages["classified"],
        "stories_articles": stages["articles"],
        "stories_stories": stages[STORIES],
    }, {
        "read_skipped": (read[SKIPPED], lambda kind: "read_skipped_" + kind.replace(":", "_")),
        "dedup_dropped": (stages[DUPLICATES], lambda d: f"dedup_dropped_{d.method}"),
    })
    manifest = pipeline | "Commit" >> CommitRun(output, run, counts, errors, temp_files,
                                                lease_in_job)
    return {"articles": stages["articles"], "duplicates": stages[DUPLICATES],
            "errors": new_errors, "stories": stages[STORIES], "manifest": manifest}


def prepare_options(argv: list[str] | None) -> NewsOptions:
    """Options from the command line, with newsbeam's defaults: the bundled seeds as input and a
    runner that needs no network."""
    options = NewsOptions(argv)
    if not options.input:
        web_sources = options.feed or options.feeds or options.urls or options.sitemap or \
            options.sitemaps_from_robots
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
    problems = options.validate_news() + runner_problems(options.view_as(StandardOptions).runner) \
        + launch_problems(options)
    try:
        lease.check_supported(options.output)
    except lease.LeaseUnsupported as unsupported:
        problems.append(str(unsupported))
    if problems:
        raise InvalidOptions(problems)


def lease_in_job(options: NewsOptions) -> bool:
    """Whether the job takes the writer lease itself: on a runner elsewhere, the launcher may be
    gone long before the job ends (a Flex Template's launcher, a scheduler's one-shot submit),
    so it cannot be the one that holds the lease."""
    return not runs_locally(options.view_as(StandardOptions).runner)


def run_pipeline(options: NewsOptions, wait: bool = True) -> dict:
    """Runs the batch pipeline to completion under the output's writer lease; returns the run
    manifest (for a --dry_run, a record of the translated job: nothing ran). Raises
    InvalidOptions before anything runs, lease.LeaseHeld when another run is writing the output
    (and did not finish within --wait_for_lease_s). wait=False, for a runner elsewhere: return
    once the job is submitted (a record of it), as a Flex Template's launcher must."""
    check_options(options)
    run_id = options.run_id or new_run_id(dt.datetime.now(dt.timezone.utc))
    # Beam starts local worker processes as `python -m ...`, which puts the working directory
    # first on their sys.path: a stray `concurrent.py` or `htmldate.py` where the user runs
    # newsbeam would be imported by every worker. PYTHONSAFEPATH (Python 3.11) keeps it off.
    os.environ["PYTHONSAFEPATH"] = "1"
    if lease_in_job(options):
        return _run_elsewhere(options, run_id, wait)
    batch_records = batches.AUTO_BATCH_RECORDS if options.batch_records == "auto" \
        else options.batch_records
    planned, records = batches.plan_run(options.input, run_id, batch_records,
                                        options.max_document_bytes)
    if not planned:
        return _run_local(options, run_id)
    _LOG.info("run %s: %d input records in %d batches of at most %d (--batch_records)",
              run_id, records, len(planned), batch_records)
    manifests = []
    # One lease over every batch: no other run writes between two of them.
    with dataset.writing(options.output, run_id, "ingest", options.wait_for_lease_s,
                         options.lease_expiry_s, {"batches": len(planned)}):
        for batch in planned:
            manifests.append(_run_local(
                options, batches.batch_run_id(run_id, batch.number), batch,
                {"run_id": run_id, "number": batch.number, "of": batch.of, "records": records}))
    return batches.combined_manifest(run_id, manifests)


def _run_local(options: NewsOptions, run_id: str, batch=None, batch_info=None) -> dict:
    """One run on a local runner, under the writer lease; or one batch of a batched run, under
    the lease its run holds."""
    marked = dataset.writing(options.output, run_id, "ingest", options.wait_for_lease_s,
                             options.lease_expiry_s) if batch is None else \
        dataset.working(options.output, run_id, "ingest", {"batch": batch_info})
    with marked:
        # The run starts (its ingestion time, what the index holds) once it holds the lease.
        run_info = new_run(options, run_id)
        if batch_info:
            run_info["batch"] = batch_info
        _LOG.info("run %s: %s -> %s", run_id, _as_recorded(options.input),
                  _as_recorded(options.output))
        standard = options.view_as(StandardOptions)
        with progress.watching(options.progress_interval_s, standard.runner) as watch:
            with beam.Pipeline(options=options) as pipeline:
                build(pipeline, options, run_info, batch=batch)
            counters = progress.counters_of(pipeline.result)
            if watch is not None:
                watch.finish(counters)
        # The job's counters exist once it is over, after its commit wrote the manifest: the
        # manifest gets the run's costs now, still under the lease.
        return record_costs(options.output, run_id, progress.stage_costs(counters))


def record_costs(output_dir: str, run_id: str, costs: dict) -> dict:
    """The run's manifest, with `costs` (seconds per stage, counters) added to it when there
    are any. The run is committed already: failing to add them only warns."""
    manifest = read_manifest(output_dir, run_id)
    if not costs.get("counters"):
        return manifest
    try:
        sinks.write_json_atomically(sinks.manifest_path(output_dir, run_id),
                                    {**manifest, **costs})
    except OSError as error:
        _LOG.warning("run %s: the manifest records no time per stage (%s)", run_id, error)
        return manifest
    return {**manifest, **costs}


def _run_elsewhere(options: NewsOptions, run_id: str, wait: bool = True) -> dict:
    """A job on a runner elsewhere: it takes the lease, recovers and commits on its workers
    (StartRun, CommitRun), so this launcher touches neither the dataset nor its lease, and a
    dry run (Dataflow's: build and translate, submit nothing) needs no access to either."""
    _LOG.info("run %s: %s -> %s on %s", run_id, _as_recorded(options.input),
              _as_recorded(options.output), options.view_as(StandardOptions).runner)
    record = submit_elsewhere(options, run_id, lambda pipeline: build(
        pipeline, options, new_run(options, run_id), lease_in_job=True), wait=wait)
    if record.get("dry_run") or record.get("submitted"):
        return record
    return read_manifest(options.output, run_id)


def submit_elsewhere(options: NewsOptions, run_id: str, add_graph, wait: bool = False) -> dict:
    """Builds a job whose graph holds its own lease (`add_graph(pipeline)`) and runs it on a
    runner elsewhere. Returns a record of it: for a --dry_run (Dataflow: build and translate,
    submit nothing) the number of transforms translated; else, unless `wait`, once it is
    submitted, its job id; with `wait`, {"run_id"} once the job is done."""
    from apache_beam.options.pipeline_options import TestOptions
    dry_run = dry_run_requested(options)
    options.view_as(TestOptions).dry_run = dry_run  # Beam takes any non-empty string for yes
    runner = options.view_as(StandardOptions).runner
    pipeline = beam.Pipeline(options=options)
    add_graph(pipeline)
    result = pipeline.run()
    if dry_run:
        proto = getattr(getattr(result, "job", None), "proto_pipeline", None)
        return {"run_id": run_id, "dry_run": True, "runner": runner,
                "transforms": len(proto.components.transforms) if proto is not None else None}
    if not wait:
        job_id = getattr(result, "job_id", None)
        return {"run_id": run_id, "submitted": True, "runner": runner,
                "job_id": job_id() if callable(job_id) else None}
    result.wait_until_finish()
    return {"run_id": run_id}


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
