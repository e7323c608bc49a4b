"""The streaming graph: feeds polled for as long as it runs, committed to the dataset per window.

    poll clock (PollClock) ─► a keyed poll per feed ─► parse ─► entries not seen before
      ─► pages, per host in turn ─► extract ─► ids an earlier window had? (state)    [global]
    ─► fixed windows of --window_s ─► the batch stages (pipelines/graph.py), each window
      meeting the index as it is when the window fires ─► one commit per window       [windowed]

The stages after the sources are the batch graph's composites, applied through the same
helpers as ingest.py; what differs is that the index is read per window and that each window
(pane) is committed on its own, through the commit protocol of transforms/dataset.py, as
_runs/<stream id>-w<window end>.json. The stream holds the writer lease (with its heartbeat)
for its whole duration, as a batch run does.

Event time is when the feed was polled (the tick's timestamp, carried through the fetch). The
late-data policy: a fixed window fires once, when the watermark passes its end (no allowed
lateness). An element that comes later is dropped by Beam (its droppedDueToLateness metric)
at the first GroupByKey it meets, with everything that came of it: nothing of it is committed,
its entry is not in index/entries and its feed's validators are not stored, so the next run or
stream fetches it again ("left for the next run"). Late panes are not committed: the stages
join across several GroupByKeys, and each would fire its late pane on its own, splitting an
article from its own verdicts. The stream's own sources make no late data where the runner
holds the watermark for a timer (Dataflow): event time is the poll, and a fetch waiting for its
turn holds the watermark there; BundleBasedDirectRunner does not, which the tests use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from typing import Callable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from newsbeam.pipelines import graph
from newsbeam.pipelines.ingest import check_options, new_run, read_feed_states
from newsbeam.pipelines.options import InvalidOptions, NewsOptions, new_run_id, runs_locally
from newsbeam.transforms import dataset
from newsbeam.transforms.dataset import INDEX_ENTRIES, INDEX_FEEDS, CommitWindows, ReadIndexIds
from newsbeam.transforms.dedup import ALREADY_INGESTED, DUPLICATES
from newsbeam.transforms.errors import ERRORS, STAGE_PUBSUB, error_output
from newsbeam.transforms.feeds import (ENTRIES, ENTRIES_SEEN, ENTRY_DOCUMENTS, FEED,
                                       FEED_STATES, NOT_MODIFIED, ParseFeedFn)
from newsbeam.transforms.fetch import FINISHED, FetchPages, FetchRequest
from newsbeam.transforms.sinks import RUNS_FOLDER, partition_value
from newsbeam.transforms.streaming import (INVALID_MESSAGE, SEEN_IN_STREAM,
                                           DropSeenInStream, FetchPolitely, KeepNewEntries,
                                           PollClock, PollFeeds, pubsub_item)
from newsbeam.transforms.web import feed_progress, feed_specs

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StreamSettings:
    """How the stream runs (the `newsbeam stream` command's own flags)."""
    duration_s: float | None = None      # None: until stopped (Ctrl-C, a Dataflow drain)
    poll_interval_s: float = 300.0
    window_s: float = 300.0
    state_ttl_s: float = 24 * 3600.0
    pubsub_subscription: str | None = None


def add_stream_flags(parser) -> None:
    """`newsbeam stream`'s own flags (not NewsOptions': `newsbeam run` has no use for them)."""
    group = parser.add_argument_group("the stream")
    group.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                       help="Stop polling after this many seconds, commit what is left, and "
                            "exit. Default: run until stopped (Ctrl-C).")
    group.add_argument("--poll_interval_s", type=float, default=300.0, metavar="SECONDS",
                       help="Poll every feed this often (a conditional GET). Default: 300.")
    group.add_argument("--window_s", type=float, default=300.0, metavar="SECONDS",
                       help="Commit what came in per fixed window of this length. "
                            "Default: 300.")
    group.add_argument("--state_ttl_s", type=float, default=24 * 3600.0, metavar="SECONDS",
                       help="How long the stream remembers an entry or article id in its own "
                            "state (the persisted index remembers for ever). Default: 86400.")
    group.add_argument("--pubsub_subscription", default=None, metavar="projects/P/"
                       "subscriptions/S",
                       help="Also read page URLs or article JSON from this Pub/Sub "
                            "subscription (DataflowRunner only).")
    group.add_argument("--quiet", action="store_true",
                       help="Print only the summary's last line.")


def settings_from(args) -> StreamSettings:
    return StreamSettings(
        duration_s=args.duration, poll_interval_s=args.poll_interval_s,
        window_s=args.window_s,
        state_ttl_s=args.state_ttl_s, pubsub_subscription=args.pubsub_subscription)


def stream_problems(options: NewsOptions, settings: StreamSettings) -> list[str]:
    """What a stream cannot honour, as sentences (checked with check_options' before it runs)."""
    problems = []
    for flag, value in (("--duration", settings.duration_s),
                        ("--poll_interval_s", settings.poll_interval_s),
                        ("--window_s", settings.window_s),
                        ("--state_ttl_s", settings.state_ttl_s)):
        if value is not None and value <= 0:
            problems.append(f"{flag} {value:g}: give a positive number of seconds")
    runner = options.view_as(StandardOptions).runner
    if not runs_locally(runner):
        # The stream's writer lease is held by this process around the job (run_stream): a job
        # elsewhere would outlive it and write without the lease. Batch jobs take their own
        # (StartRun); a stream's windowed commits do not yet.
        problems.append(f"--runner {runner}: `newsbeam stream` runs on a local runner only for "
                        "now (on a runner elsewhere its writer lease would be held by this "
                        "launcher, not the job); schedule `newsbeam run` there instead (see "
                        "Scheduled runs on Dataflow)")
    elif settings.pubsub_subscription:
        problems.append(f"--pubsub_subscription: only DataflowRunner reads Pub/Sub in Python; "
                        f"--runner is {runner}")
    if options.run_id and window_manifests(options.output, options.run_id):
        problems.append(f"--run_id {options.run_id}: a stream of that id already committed "
                        f"windows to {options.output}; give a new id (or none)")
    if options.input:
        problems.append("--input: a stream polls feeds; files are ingested by `newsbeam run`")
    if options.urls:
        problems.append("--urls: a stream polls feeds; URL lists are read by `newsbeam run` "
                        "(or send the URLs on --pubsub_subscription)")
    # Sitemaps, poll schedules and captures are `newsbeam run`'s (and `run --every`'s) for now.
    for flag, value in (("--sitemap", options.sitemap),
                        ("--sitemaps_from_robots", options.sitemaps_from_robots),
                        ("--archive_warc", options.archive_warc)):
        if value:
            problems.append(f"{flag}: not read by a stream yet; use `newsbeam run --every`")
    if options.poll_schedule == "adaptive":
        problems.append("--poll_schedule adaptive: a stream polls every --poll_interval_s; "
                        "adaptive schedules are `newsbeam run --every`'s")
    if options.batch_records != "auto":
        problems.append(f"--batch_records {options.batch_records}: a stream commits each "
                        "window (--window_s); batches are `newsbeam run`'s")
    try:
        specs = feed_specs(options.feed or [], options.feeds or [])
    except (OSError, ValueError) as error:
        return problems + [str(error)]
    problems += [f"--feeds: {spec.location} is a {spec.kind}: not read by a stream yet; use "
                 "`newsbeam run --every`" for spec in specs if spec.kind != FEED]
    local = [spec.location for spec in specs if not spec.is_url]
    if local:
        problems.append(f"--feed {local[0]}: a stream polls feed URLs; a feed file is read by "
                        "`newsbeam run`")
    if not specs and not settings.pubsub_subscription:
        problems.append("nothing to stream: give --feed URL or --feeds FILE (or, on Dataflow, "
                        "--pubsub_subscription)")
    return problems


# --- The graph -----------------------------------------------------------------------------------


def poll_clock(pipeline, settings: StreamSettings, local: bool = True,
               stop_file: str | None = None):
    """Ticks every --poll_interval_s from when the job starts until --duration has passed, or
    until `stop_file` exists (Ctrl-C). On a local runner the clock waits for each tick in its
    call (FnApiRunner would otherwise run it again in a busy loop; see PollTicksFn)."""
    stop = MAX_TIMESTAMP if settings.duration_s is None else Timestamp.of(
        time.time() + settings.duration_s)
    return pipeline | "PollClock" >> PollClock(
        stop, settings.poll_interval_s, wait_s=settings.poll_interval_s if local else 0.0,
        stop_file=stop_file if local else None)


def _message_outcome(message, run_id: str):
    try:
        item = pubsub_item(message.data, message.message_id)
    except (ValueError, UnicodeDecodeError) as error:
        yield error_output(STAGE_PUBSUB, INVALID_MESSAGE, str(error),
                           f"pubsub:{message.message_id}", run_id)
        return
    if isinstance(item, FetchRequest):
        yield item
    else:
        yield beam.pvalue.TaggedOutput(ENTRY_DOCUMENTS, item)


def read_pubsub(pipeline, subscription: str, run_id: str):
    """Pub/Sub messages -> {"requests", ENTRY_DOCUMENTS: articles sent whole, ERRORS}."""
    return (
        pipeline
        | "ReadPubSub" >> beam.io.ReadFromPubSub(subscription=subscription,
                                                 with_attributes=True)
        | "Messages" >> beam.FlatMap(_message_outcome, run_id).with_outputs(
            ERRORS, ENTRY_DOCUMENTS, main="requests"))


def fixed_windows(settings: StreamSettings) -> beam.WindowInto:
    """Fixed windows that fire once, at the watermark; late data is dropped (see above)."""
    return beam.WindowInto(
        window.FixedWindows(settings.window_s), trigger=trigger.AfterWatermark(),
        allowed_lateness=0, accumulation_mode=trigger.AccumulationMode.DISCARDING)


def build(pipeline, options: NewsOptions, stream: dict, settings: StreamSettings, ticks=None,
          clock: Callable[[], float] = time.time, stop_file: str | None = None) -> dict:
    """Adds the streaming graph to `pipeline`; returns its main PCollections by name (windowed).
    `ticks`: the poll clock (poll_clock's unless given: tests give a TestStream's), `clock`:
    the processing-time clock of the per-host turns, `stop_file`: the poll clock stops when it
    exists."""
    output, run_id = options.output, stream["run_id"]
    started_at = dt.datetime.fromisoformat(stream["started_at"])
    policy = graph.fetch_policy(options)
    if ticks is None:
        ticks = poll_clock(pipeline, settings,
                           runs_locally(options.view_as(StandardOptions).runner), stop_file)

    # Sources, in the global window: their state outlives any one window.
    polled = ticks | "PollFeeds" >> PollFeeds(
        feed_specs(options.feed or [], options.feeds or []), policy, run_id, started_at,
        read_feed_states(pipeline, output))
    parsed = polled.bodies | "ParseFeeds" >> beam.ParDo(ParseFeedFn(
        run_id, started_at, options.min_words)).with_outputs(ERRORS, FEED_STATES, main=ENTRIES)
    entries = parsed[ENTRIES] | "KeepNewEntries" >> KeepNewEntries(
        pipeline | "EntryKeyIndex" >> ReadIndexIds(output, INDEX_ENTRIES, "entry_key"),
        settings.state_ttl_s)
    requests, sent_whole, source_errors = [entries.requests], [entries[ENTRY_DOCUMENTS]], []
    if settings.pubsub_subscription:
        messages = read_pubsub(pipeline, settings.pubsub_subscription, run_id)
        requests.append(messages.requests)
        sent_whole.append(messages[ENTRY_DOCUMENTS])
        source_errors.append(messages[ERRORS])
    page_requests = requests | "AllPageRequests" >> beam.Flatten()
    pages = page_requests | "FetchPages" >> FetchPages(
        policy, run_id, fetch=FetchPolitely(policy, run_id, clock))
    whole = sent_whole | "AllSentWhole" >> beam.Flatten()
    documents = (pages["documents"], whole) | "WebDocuments" >> beam.Flatten()
    extracted = graph.extract(documents, options, run_id, started_at)
    fresh = extracted.articles | "DropSeenInStream" >> DropSeenInStream(
        settings.window_s, settings.state_ttl_s)

    # Windowed from here on: every stream of outcomes by the same fixed windows.
    windowed = lambda pcoll, label: pcoll | f"Window{label}" >> fixed_windows(settings)
    web_errors = windowed((polled[ERRORS], parsed[ERRORS], pages[ERRORS], *source_errors)
                          | "WebErrors" >> beam.Flatten(), "WebErrors")
    documents_w = windowed(documents, "Documents")
    extract_errors = windowed(extracted[ERRORS], "ExtractErrors")
    articles = windowed(fresh.articles, "Articles")
    seen_in_stream = windowed(fresh[SEEN_IN_STREAM], "SeenInStream")
    entry_index, feed_states = feed_progress(
        windowed(page_requests, "PageRequests"), windowed(parsed[FEED_STATES], "FeedStates"),
        # Feed entries taken whole are done entries; Pub/Sub's articles belong to no feed.
        windowed(entries[ENTRY_DOCUMENTS], "EntriesWhole"), windowed(pages[FINISHED], "Finished"),
        run_id, started_at, options.poll_schedule_of())
    not_modified = windowed(polled[NOT_MODIFIED], "NotModified")
    entries_seen = windowed(entries[ENTRIES_SEEN], "EntriesSeen")

    # One tick per window pane that has anything: the index is read again for each.
    ticks_w = (
        (documents_w, web_errors, not_modified, entries_seen)
        | "AnythingInWindow" >> beam.Flatten()
        | "Nothing" >> beam.Map(lambda _: None)
        | "OnePerPane" >> beam.combiners.Count.Globally().without_defaults())
    index = graph.IndexReads(ticks_w, output)
    stages = graph.resolve_and_enrich(articles, options, run_id, started_at, index)
    errors = (web_errors, extract_errors) | "AllErrors" >> beam.Flatten()
    new_errors = graph.drop_recorded_errors(errors, index)
    temp_files = graph.write_all(pipeline, options, run_id, stages, new_errors, {
        INDEX_FEEDS: feed_states, INDEX_ENTRIES: entry_index})
    counts = {
        "documents": documents_w,
        "fetch_errors": web_errors,
        "feeds_not_modified": not_modified,
        "entries_seen_before": entries_seen,
        "extracted": windowed(extracted.articles, "Extracted"),
        "articles": stages["articles"],
        "duplicates": stages[DUPLICATES],
        "already_ingested": (stages[ALREADY_INGESTED], seen_in_stream)
        | "AlreadyIngested" >> beam.Flatten(),
        "errors": errors,
        "errors_new": new_errors,
    }
    manifests = pipeline | "CommitWindows" >> CommitWindows(output, stream, counts, errors,
                                                            temp_files)
    return {"articles": stages["articles"], "duplicates": stages[DUPLICATES],
            "errors": new_errors, "manifests": manifests}


# --- Running it ----------------------------------------------------------------------------------


def window_manifests(output_dir: str, stream_id: str) -> list[dict]:
    """The manifests of the windows a stream committed, oldest first."""
    pattern = f"{output_dir.rstrip('/')}/{RUNS_FOLDER}/{partition_value(stream_id)}-w*.json"
    found = FileSystems.match([pattern])[0].metadata_list
    manifests = []
    for metadata in sorted(found, key=lambda m: m.path):
        with FileSystems.open(metadata.path) as stream:
            manifests.append(json.loads(stream.read()))
    return manifests


def stream_summary(stream_id: str, manifests: list[dict], stopped: bool) -> dict:
    """What the stream's windows add up to."""
    total = {"articles": 0, "duplicates": 0, "errors": 0, "already_ingested": 0,
             "skipped_unchanged": 0, "inputs": 0}
    for manifest in manifests:
        for name in total:
            total[name] += manifest["accounting"].get(name, 0)
    return {"stream_id": stream_id, "windows": len(manifests), "stopped_early": stopped,
            "balanced": all(m["accounting"]["balanced"] for m in manifests), **total}


@contextlib.contextmanager
def stop_on_ctrl_c(stream_id: str):
    """Yields the stop file the poll clock watches; a first Ctrl-C (SIGINT) creates it, so the
    stream stops polling, commits the windows it has and ends; a second one interrupts at once
    (KeyboardInterrupt). Off the main thread (Python takes signals there only) nothing is
    installed and Ctrl-C interrupts as before."""
    folder = tempfile.mkdtemp(prefix="newsbeam-stream-")
    stop_file = os.path.join(folder, "stop")
    previous = None

    def ask_to_stop(_signum, _frame):
        signal.signal(signal.SIGINT, previous)
        with open(stop_file, "w"):
            pass
        _LOG.warning("stream %s: Ctrl-C: stopping after the windows it has are committed "
                     "(Ctrl-C again to interrupt now)", stream_id)

    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, ask_to_stop)
    try:
        yield stop_file
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        shutil.rmtree(folder, ignore_errors=True)


def run_stream(options: NewsOptions, settings: StreamSettings) -> dict:
    """Runs the stream under the output's writer lease until --duration has passed (or Ctrl-C);
    returns stream_summary. Raises InvalidOptions before anything runs, lease.LeaseHeld when
    another run is writing the output. On Ctrl-C the stream stops polling and commits every
    window it has, then ends (stopped_early); a second Ctrl-C interrupts it, and then the
    windows committed stay and the others are left for the next run (nothing of them is
    visible: their entries are fetched again)."""
    check_options(options)
    problems = stream_problems(options, settings)
    if problems:
        raise InvalidOptions(problems)
    stream_id = options.run_id or new_run_id(dt.datetime.now(dt.timezone.utc))
    os.environ["PYTHONSAFEPATH"] = "1"  # as run_pipeline: keep the working folder off sys.path
    stopped = False
    with dataset.writing(options.output, stream_id, "stream", options.wait_for_lease_s,
                         options.lease_expiry_s), stop_on_ctrl_c(stream_id) as stop_file:
        stream = new_run(options, stream_id)
        stream["stream"] = dataclasses.asdict(settings)
        options.view_as(StandardOptions).streaming = True
        _LOG.info("stream %s: %d feeds -> %s", stream_id,
                  len(feed_specs(options.feed or [], options.feeds or [])), options.output)
        pipeline = beam.Pipeline(options=options)
        build(pipeline, options, stream, settings, stop_file=stop_file)
        try:
            pipeline.run().wait_until_finish()
        except KeyboardInterrupt:
            stopped = True
            _LOG.warning("stream %s interrupted: the windows committed stay; the others are "
                         "left for the next run", stream_id)
        stopped = stopped or os.path.exists(stop_file)
    return stream_summary(stream_id, window_manifests(options.output, stream_id), stopped)
