"""The streaming graph: feeds polled and folders watched for as long as it runs, committed to the
dataset per window.

    poll clock (PollClock) ─► a keyed poll per feed ─► parse ─► entries not seen before
      ─► pages, per host in turn ─┐
    poll clock ─► list the watched --input ─► settled files not read before ─► read ─┤
      ─► extract ─► ids an earlier window had? (state)                              [global]
    ─► fixed windows of --window_s ─► the batch stages (pipelines/graph.py), each window
      meeting the index as it is when the window fires ─► one commit per window       [windowed]

The stages after the sources are the batch graph's composites, applied through the same
helpers as ingest.py; what differs is that the index is read per window and that each window
(pane) is committed on its own, through the commit protocol of transforms/dataset.py, as
_runs/<stream id>-w<window end>.json. Who holds the writer lease: on a local runner the
launcher, around the whole job (with its heartbeat thread), as for a batch run; on a runner
elsewhere (Dataflow), whose job outlives its launcher, the job itself: StartStream takes it
before anything polls or reads index/, HoldStreamLease renews it from a timer and releases it
once the last window is committed (the watermark at the end of time: --duration passed, or a
drain). Ingestion and poll times are each element's event time, decided as the job runs.

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
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from typing import Callable

import apache_beam as beam
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from newsbeam.pipelines import graph
from newsbeam.pipelines.ingest import (archive_target, check_options, new_run,
                                       read_feed_states, submit_elsewhere)
from newsbeam.pipelines.options import (InvalidOptions, NewsOptions, is_dataflow, new_run_id,
                                        runs_locally)
from newsbeam.transforms import dataset
from newsbeam.transforms.dataset import (INDEX_ENTRIES, INDEX_FEEDS, INDEX_INPUTS, CommitWindows,
                                         HoldStreamLease, ReadIndex, ReadIndexIds, StartStream)
from newsbeam.transforms.dedup import ALREADY_INGESTED, DUPLICATES
from newsbeam.transforms.errors import ERRORS, STAGE_PUBSUB, error_output
from newsbeam.transforms.archive import ArchiveResponses
from newsbeam.transforms.feeds import (ENTRIES, ENTRIES_SEEN, ENTRY_DOCUMENTS, FEED_STATES,
                                       NOT_DUE, NOT_MODIFIED, RESPONSES)
from newsbeam.transforms.fetch import FINISHED, FetchPages, FetchRequest
from newsbeam.transforms.input_index import (INPUT_FACTS, REFRESHED, UNCHANGED, RecordInputs,
                                             input_outcomes)
from newsbeam.transforms.sinks import RUNS_FOLDER, partition_value
from newsbeam.transforms.polling import ADAPTIVE, PollSchedule
from newsbeam.transforms.streaming import (INVALID_MESSAGE, NOT_MODIFIED_STATES, POLL_STATES,
                                           SEEN_IN_STREAM, DropSeenInStream, FetchPolitely,
                                           KeepNewEntries, PollAndParseFeeds, PollClock,
                                           pubsub_item)
from newsbeam.transforms.warc import SKIPPED
from newsbeam.transforms.watch import WatchFiles, watch_problems
from newsbeam.transforms.web import feed_progress, feed_specs

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StreamSettings:
    """How the stream runs (the `newsbeam stream` command's own flags)."""
    duration_s: float | None = None      # None: until stopped (Ctrl-C, a Dataflow drain)
    poll_interval_s: float | None = None  # the poll clock's tick (None: poll_tick_s decides)
    window_s: float = 300.0
    state_ttl_s: float = 24 * 3600.0
    pubsub_subscription: str | None = None


def add_stream_flags(parser) -> None:
    """`newsbeam stream`'s own flags (not NewsOptions': `newsbeam run` has no use for them)."""
    group = parser.add_argument_group("the stream")
    group.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                       help="Stop polling after this many seconds, commit what is left, and "
                            "exit. Default: run until stopped (Ctrl-C).")
    group.add_argument("--poll_interval_s", type=float, default=None, metavar="SECONDS",
                       help="The poll clock's tick: at each, every feed and sitemap that is due "
                            "is polled (a conditional GET) and the watched --input listed. With "
                            "--poll_schedule adaptive (the stream's default) a feed is due "
                            "when its own interval has passed: learnt from how many of its "
                            "entries are new, between --min_poll_s and --max_poll_s, and kept "
                            "in index/feeds as `run --every` does; the tick may not exceed "
                            "--min_poll_s. With --poll_schedule always every feed is polled at "
                            "every tick. Default: --min_poll_s (adaptive), 300 (always).")
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


def stream_schedule(options: NewsOptions) -> PollSchedule:
    """The stream's poll schedule: --poll_schedule, adaptive unless told (as `run --every`)."""
    return options.poll_schedule_of(every=True)


def poll_tick_s(settings: StreamSettings, schedule: PollSchedule) -> float:
    """How often the poll clock ticks: --poll_interval_s, else often enough for the shortest
    interval of an adaptive schedule (--min_poll_s), else 300 s. A feed's interval is a whole
    number of ticks: it is polled at the first tick at or after its next poll is due."""
    if settings.poll_interval_s is not None:
        return settings.poll_interval_s
    return schedule.min_poll_s if schedule.mode == ADAPTIVE else 300.0


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
    if settings.pubsub_subscription and not is_dataflow(runner):
        problems.append(f"--pubsub_subscription: only DataflowRunner reads Pub/Sub in Python; "
                        f"--runner is {runner}")
    # On a runner elsewhere the job's first step refuses a used id (StartStream): the launcher
    # does not touch the dataset (a dry run makes no traffic at all).
    if runs_locally(runner) and options.run_id and window_manifests(options.output,
                                                                     options.run_id):
        problems.append(f"--run_id {options.run_id}: a stream of that id already committed "
                        f"windows to {options.output}; give a new id (or none)")
    problems += watch_problems(options.input or [])
    if options.urls:
        problems.append("--urls: a stream polls feeds; URL lists are read by `newsbeam run` "
                        "(or send the URLs on --pubsub_subscription)")
    schedule = stream_schedule(options)
    if (schedule.mode == ADAPTIVE and settings.poll_interval_s is not None
            and settings.poll_interval_s > schedule.min_poll_s):
        problems.append(f"--poll_interval_s {settings.poll_interval_s:g} is above --min_poll_s "
                        f"{schedule.min_poll_s:g}: with --poll_schedule adaptive the clock "
                        "must tick at least as often as the shortest interval (lower "
                        "--poll_interval_s, raise --min_poll_s, or give --poll_schedule "
                        "always)")
    if options.batch_records != "auto":
        problems.append(f"--batch_records {options.batch_records}: a stream commits each "
                        "window (--window_s); batches are `newsbeam run`'s")
    try:
        specs = stream_feed_specs(options)
    except (OSError, ValueError) as error:
        return problems + [str(error)]
    local = [spec.location for spec in specs if not spec.is_url]
    if local:
        problems.append(f"--feed {local[0]}: a stream polls feed URLs (and sitemap URLs); a "
                        "feed or sitemap file is read by `newsbeam run`")
    if not specs and not options.input and not settings.pubsub_subscription:
        problems.append("nothing to stream: give --feed URL, --feeds FILE or --input DIR|GLOB "
                        "to watch (or, on Dataflow, --pubsub_subscription)")
    return problems


def stream_feed_specs(options: NewsOptions) -> list:
    """What the stream polls: --feed, --sitemap, --sitemaps_from_robots and --feeds files."""
    return feed_specs(options.feed or [], options.feeds or [], options.sitemap or [],
                      options.sitemaps_from_robots or [])


# --- The graph -----------------------------------------------------------------------------------


def poll_clock(start, settings: StreamSettings, tick_s: float, local: bool = True,
               stop_file: str | None = None):
    """Ticks every `tick_s` (poll_tick_s) from when the job starts (`start`: the pipeline, or
    the job's StartStream step) until --duration has passed, or until `stop_file` exists
    (Ctrl-C). On a local runner the clock waits for each tick in its call (FnApiRunner would
    otherwise run it again in a busy loop; see PollTicksFn)."""
    stop = MAX_TIMESTAMP if settings.duration_s is None else Timestamp.of(
        time.time() + settings.duration_s)
    return start | "PollClock" >> PollClock(
        stop, tick_s, wait_s=tick_s if local else 0.0, stop_file=stop_file if local else None)


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


def read_pubsub(pipeline, subscription: str, run_id: str, leased=None):
    """Pub/Sub messages -> {"requests", ENTRY_DOCUMENTS: articles sent whole, ERRORS}.
    `leased`: StartStream's output; the messages wait for it (a side input), so that none is
    taken from the subscription into windows whose commits a lease held elsewhere would refuse
    (a feed's entries are fetched again by the next run; a message acknowledged is gone)."""
    messages = pipeline | "ReadPubSub" >> beam.io.ReadFromPubSub(subscription=subscription,
                                                                 with_attributes=True)
    if leased is not None:
        messages = messages | "OnceLeased" >> beam.Map(
            lambda message, _stream_id: message, beam.pvalue.AsSingleton(leased))
    return messages | "Messages" >> beam.FlatMap(_message_outcome, run_id).with_outputs(
        ERRORS, ENTRY_DOCUMENTS, main="requests")


def fixed_windows(settings: StreamSettings) -> beam.WindowInto:
    """Fixed windows that fire once, at the watermark; late data is dropped (see above)."""
    return beam.WindowInto(
        window.FixedWindows(settings.window_s), trigger=trigger.AfterWatermark(),
        allowed_lateness=0, accumulation_mode=trigger.AccumulationMode.DISCARDING)


def build(pipeline, options: NewsOptions, stream: dict, settings: StreamSettings, ticks=None,
          clock: Callable[[], float] = time.time, stop_file: str | None = None,
          lease_in_job: bool = False) -> dict:
    """Adds the streaming graph to `pipeline`; returns its main PCollections by name (windowed).
    `ticks`: the poll clock (poll_clock's unless given: tests give a TestStream's), `clock`:
    the processing-time clock of the per-host turns and of the lease's renewals, `stop_file`:
    the poll clock stops when it exists. lease_in_job: the job takes, renews and releases the
    writer lease itself (StartStream, HoldStreamLease; "lease" in the result: its events);
    else the launcher holds it around the job (run_stream)."""
    output, run_id = options.output, stream["run_id"]
    started_at = dt.datetime.fromisoformat(stream["started_at"])
    policy = graph.fetch_policy(options)
    # What polls and reads index/ starts from: the pipeline, or the job's start step.
    start = pipeline | "StartStream" >> StartStream(
        output, stream, options.wait_for_lease_s, options.lease_expiry_s) \
        if lease_in_job else pipeline
    schedule = stream_schedule(options)
    if ticks is None:
        ticks = poll_clock(start, settings, poll_tick_s(settings, schedule),
                           runs_locally(options.view_as(StandardOptions).runner), stop_file)

    # Sources, in the global window: their state outlives any one window. Each poll, entry and
    # article carries its own time (the tick's), not the stream's start.
    files = ticks | "WatchFiles" >> WatchFiles(
        options.input or [], start | "InputIndex" >> ReadIndex(output, INDEX_INPUTS), run_id,
        options.max_document_bytes, started_at)
    indexed_keys = start | "EntryKeyIndex" >> ReadIndexIds(output, INDEX_ENTRIES, "entry_key")
    feeds = ticks | "PollFeeds" >> PollAndParseFeeds(
        stream_feed_specs(options), policy, run_id, read_feed_states(start, output),
        schedule, min_words=options.min_words, sitemap_depth=options.sitemap_depth,
        max_sitemaps=options.max_sitemaps, indexed_keys=indexed_keys)
    entries = feeds[ENTRIES] | "KeepNewEntries" >> KeepNewEntries(indexed_keys,
                                                                  settings.state_ttl_s)
    requests, sent_whole, source_errors = [entries.requests], [entries[ENTRY_DOCUMENTS]], []
    if settings.pubsub_subscription:
        messages = read_pubsub(pipeline, settings.pubsub_subscription, run_id,
                               start if lease_in_job else None)
        requests.append(messages.requests)
        sent_whole.append(messages[ENTRY_DOCUMENTS])
        source_errors.append(messages[ERRORS])
    page_requests = requests | "AllPageRequests" >> beam.Flatten()
    pages = page_requests | "FetchPages" >> FetchPages(
        policy, run_id, fetch=FetchPolitely(policy, run_id, clock))
    archive = archive_target(options, stream)
    if archive is not None:
        _ = ((feeds[RESPONSES], pages["responses"]) | "FetchedResponses" >> beam.Flatten()
             | "ArchiveWarc" >> ArchiveResponses(archive))
    whole = sent_whole | "AllSentWhole" >> beam.Flatten()
    documents = (pages["documents"], whole, files["documents"]) | "AllDocuments" >> beam.Flatten()
    extracted = graph.extract(documents, options, run_id, None)
    fresh = extracted.articles | "DropSeenInStream" >> DropSeenInStream(
        settings.window_s, settings.state_ttl_s)

    # Windowed from here on: every stream of outcomes by the same fixed windows.
    windowed = lambda pcoll, label: pcoll | f"Window{label}" >> fixed_windows(settings)
    web_errors = windowed((feeds[ERRORS], pages[ERRORS], *source_errors)
                          | "WebErrors" >> beam.Flatten(), "WebErrors")
    documents_w = windowed(documents, "Documents")
    extract_errors = windowed(extracted[ERRORS], "ExtractErrors")
    read_errors = windowed(files[ERRORS], "ReadErrors")
    unchanged_files = windowed(files[UNCHANGED], "UnchangedFiles")
    extracted_w = windowed(extracted.articles, "Extracted")
    articles = windowed(fresh.articles, "Articles")
    seen_in_stream = windowed(fresh[SEEN_IN_STREAM], "SeenInStream")
    entry_index, read_states = feed_progress(
        windowed(page_requests, "PageRequests"), windowed(feeds[FEED_STATES], "FeedStates"),
        # Feed entries taken whole are done entries; Pub/Sub's articles belong to no feed.
        windowed(entries[ENTRY_DOCUMENTS], "EntriesWhole"), windowed(pages[FINISHED], "Finished"),
        run_id, schedule, poll_states=windowed(feeds[POLL_STATES], "PollStates"))
    # A 304's state too: it counts towards the next defensive full fetch, in later runs too.
    feed_states = (read_states, windowed(feeds[NOT_MODIFIED_STATES], "NotModifiedStates")) \
        | "AllFeedStates" >> beam.Flatten()
    not_modified = windowed(feeds[NOT_MODIFIED], "NotModified")
    not_due = windowed(feeds[NOT_DUE], "NotDue")
    entries_seen = windowed(entries[ENTRIES_SEEN], "EntriesSeen")

    # One tick per window pane that has anything: the index is read again for each.
    ticks_w = (
        (documents_w, web_errors, read_errors, unchanged_files, not_modified, not_due,
         entries_seen)
        | "AnythingInWindow" >> beam.Flatten()
        | "Nothing" >> beam.Map(lambda _: None)
        | "OnePerPane" >> beam.combiners.Count.Globally().without_defaults())
    index = graph.IndexReads(ticks_w, output)
    stages = graph.resolve_and_enrich(articles, options, run_id, started_at, index)
    errors = (web_errors, read_errors, extract_errors) | "AllErrors" >> beam.Flatten()
    new_errors = graph.drop_recorded_errors(errors, index)
    # Watched files all of whose documents ended in this window: not read again.
    input_entries = windowed(files[INPUT_FACTS], "InputFacts") | "RecordInputs" >> RecordInputs(
        input_outcomes(extracted_w, errors), windowed(files[REFRESHED], "Refreshed"), run_id,
        started_at)
    temp_files = graph.write_all(pipeline, options, run_id, stages, new_errors, {
        INDEX_FEEDS: feed_states, INDEX_ENTRIES: entry_index, INDEX_INPUTS: input_entries})
    counts = {
        "documents": documents_w,
        "read_errors": read_errors,
        "inputs_unchanged": unchanged_files,
        "warc_records_skipped": windowed(files[SKIPPED], "WarcSkipped"),
        "fetch_errors": web_errors,
        "feeds_not_modified": not_modified,
        "feeds_not_due": not_due,
        "entries_seen_before": entries_seen,
        "extracted": extracted_w,
        "articles": stages["articles"],
        "duplicates": stages[DUPLICATES],
        "already_ingested": (stages[ALREADY_INGESTED], seen_in_stream)
        | "AlreadyIngested" >> beam.Flatten(),
        "errors": errors,
        "errors_new": new_errors,
    }
    manifests = pipeline | "CommitWindows" >> CommitWindows(output, stream, counts, errors,
                                                            temp_files)
    built = {"articles": stages["articles"], "duplicates": stages[DUPLICATES],
             "errors": new_errors, "manifests": manifests}
    if lease_in_job:
        built["lease"] = (start, manifests) | "HoldLease" >> HoldStreamLease(
            output, run_id, options.lease_expiry_s, clock)
    return built


# --- Running it ----------------------------------------------------------------------------------


def window_manifests(output_dir: str, stream_id: str) -> list[dict]:
    """The manifests of the windows a stream committed, oldest first."""
    return [dataset.read_json(path)
            for path in dataset.window_manifest_paths(output_dir, stream_id)]


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
    another run is writing the output. On a runner elsewhere: returns once the job is submitted
    (or, for a --dry_run, translated), with a record of it; the job holds its own lease. On Ctrl-C the stream stops polling and commits every
    window it has, then ends (stopped_early); a second Ctrl-C interrupts it, and then the
    windows committed stay and the others are left for the next run (nothing of them is
    visible: their entries are fetched again)."""
    check_options(options)
    problems = stream_problems(options, settings)
    if problems:
        raise InvalidOptions(problems)
    settings = dataclasses.replace(
        settings, poll_interval_s=poll_tick_s(settings, stream_schedule(options)))
    stream_id = options.run_id or new_run_id(dt.datetime.now(dt.timezone.utc))
    os.environ["PYTHONSAFEPATH"] = "1"  # as run_pipeline: keep the working folder off sys.path
    options.view_as(StandardOptions).streaming = True
    if not runs_locally(options.view_as(StandardOptions).runner):
        return _stream_elsewhere(options, settings, stream_id)
    stopped = False
    with dataset.writing(options.output, stream_id, "stream", options.wait_for_lease_s,
                         options.lease_expiry_s), stop_on_ctrl_c(stream_id) as stop_file:
        stream = _new_stream(options, settings, stream_id)
        _LOG.info("stream %s: %d feeds and sitemaps, %d watched inputs -> %s", stream_id,
                  len(stream_feed_specs(options)), len(options.input or []), options.output)
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


def _new_stream(options: NewsOptions, settings: StreamSettings, stream_id: str) -> dict:
    stream = new_run(options, stream_id)
    stream["stream"] = dataclasses.asdict(settings)
    return stream


def _stream_elsewhere(options: NewsOptions, settings: StreamSettings, stream_id: str) -> dict:
    """A stream on a runner elsewhere: the job takes, renews and releases the writer lease
    itself, so this launcher touches neither the dataset nor its lease; it returns once the
    job is submitted (it runs until drained, or until --duration has passed), or, for a
    --dry_run, once the job is built and translated."""
    _LOG.info("stream %s: %d feeds and sitemaps, %d watched inputs%s -> %s on %s", stream_id,
              len(stream_feed_specs(options)), len(options.input or []),
              f" and {settings.pubsub_subscription}" if settings.pubsub_subscription else "",
              options.output, options.view_as(StandardOptions).runner)
    return submit_elsewhere(
        options, stream_id,
        lambda pipeline: build(pipeline, options, _new_stream(options, settings, stream_id),
                               settings, lease_in_job=True))
