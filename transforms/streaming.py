"""The stages only an unbounded graph needs (pipelines/stream.py); every other stage is the
batch graph's own composite.

    ticks ─► a keyed poll per feed (validators in state) ─► parse (feeds.py) ─► entries not
    seen before (state with a TTL, and index/entries) ─► pages fetched per host, spaced by
    state and timers ─► Documents ... extract ─► ids seen in an earlier window dropped (state)

Beam state lasts one job: across jobs the persisted index (read at the start, and per window
by the stages after these) stays the truth; the state covers what this stream saw since it
started, before its windows are committed to the index.

Everything here runs in the global window: state that must outlive a fixed window cannot be
kept in one. The graph windows the outputs afterwards, by their timestamps (when the feed
was polled).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from typing import Callable

import apache_beam as beam
from apache_beam.coders import BooleanCoder, FloatCoder, PickleCoder
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.transforms.periodicsequence import ImpulseSeqGenRestrictionProvider
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (BagStateSpec, ReadModifyWriteStateSpec, TimerSpec,
                                              on_timer)
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from newsbeam.schemas.records import Document, FeedIndexEntry
from newsbeam.transforms import metrics
from newsbeam.transforms.errors import ERRORS
from newsbeam.transforms.feeds import (CHILD_SITEMAPS, ENTRIES, ENTRIES_SEEN, ENTRY_DOCUMENTS,
                                       FEED_STATES, MAX_SITEMAPS, NOT_DUE, NOT_MODIFIED,
                                       RESPONSES, SITEMAP_DEPTH, FeedSpec, ParseFeedFn,
                                       entry_document, entry_key, fetch_levels, lists_sitemaps,
                                       page_request, parse_source)
from newsbeam.transforms.fetch import (ROBOTS, FetchPolicy, FetchRequest, HostRegistry,
                                       HostSessions, HttpClient, fetch_group, host_key)
from newsbeam.transforms.polling import (PollSchedule, is_due, new_entry_count, polled_state,
                                         validators_to_send)
from newsbeam.transforms.sinks import moment_of

_LOG = logging.getLogger(__name__)

SEEN_IN_STREAM = "seen_in_stream"   # articles whose id an earlier window of the stream had
NOT_MODIFIED_STATES = "not_modified_states"  # the FeedIndexEntry each 304 leaves
POLL_STATES = "poll_states"  # the FeedIndexEntry each 200 leaves, with its poll schedule

# Pub/Sub messages (Dataflow): a page URL, or an article as JSON (the fields of a JSONL input).
INVALID_MESSAGE = "invalid_message"


# --- Pure functions ------------------------------------------------------------------------------


def wait_for(seconds: float, stop_file: str | None, step_s: float = 0.5) -> bool:
    """Sleeps up to `seconds`, waking every `step_s` to look for the stop file; whether it
    appeared (the stream was asked to stop)."""
    deadline = time.time() + seconds
    while True:
        if stop_file and os.path.exists(stop_file):
            return True
        left = deadline - time.time()
        if left <= 0:
            return False
        time.sleep(min(step_s, left))


def feed_polls(_tick, specs: list[FeedSpec]):
    """One (feed URL, spec) per feed for each tick of the poll clock."""
    return [(spec.location, spec) for spec in specs]


def feed_request(spec: FeedSpec, state: FeedIndexEntry | None, now: dt.datetime,
                 schedule: PollSchedule) -> FetchRequest:
    """The conditional GET of a feed, with the validators of its last 200 OK; without them
    when a defensive full fetch is due (--full_fetch_every, --full_fetch_after_h)."""
    return FetchRequest(url=spec.location, source_uri=spec.location, accept_html_only=False,
                        headers=validators_to_send(state, now, schedule), payload=spec)



def listed_entry_keys(spec: FeedSpec, body: bytes, url: str | None) -> list[str]:
    """The entry keys a fetched feed or sitemap lists (feeds.py's parser; none when it does not
    parse), failed entries included: what the poll schedule counts."""
    try:
        parsed = parse_source(spec, body, url)
    except Exception:  # ParseFeedFn makes the error row; the schedule counts no entries
        return []
    ids = [entry.entry_id for entry in parsed.entries] + [i for i, _ in parsed.failed]
    return sorted({entry_key(spec.location, entry_id) for entry_id in ids})


def window_start(timestamp: float, window_s: float) -> float:
    """The start of the fixed window (of `window_s` seconds, from the epoch) holding a moment:
    what beam.window.FixedWindows assigns."""
    return timestamp - timestamp % window_s


def remembered(first_seen: float | None, moment: float, ttl_s: float) -> bool:
    """Whether state that first saw a key at `first_seen` still holds it at `moment`."""
    return first_seen is not None and moment - first_seen <= ttl_s


def next_turn(last_end: float | None, delay_s: float, now: float) -> float:
    """When a host may be asked next: `delay_s` after its last request, never in the past."""
    return now if last_end is None else max(now, last_end + delay_s)


def pubsub_item(data: bytes, message_id: str | None = None) -> FetchRequest | Document:
    """A Pub/Sub message: a page URL (the request to fetch it) or an article as a JSON object
    (`url`, `text` or `html`, and optionally title, published_at, ... as in a JSONL input).
    Raises ValueError for anything else."""
    text = data.decode("utf-8").strip()
    if text.lower().startswith(("http://", "https://")) and len(text.split()) == 1:
        return FetchRequest(url=text, source_uri=text, payload=Document(
            source_uri=text, kind="html", content=b"", url=text))
    record = json.loads(text)
    if not isinstance(record, dict):
        raise ValueError("neither a URL nor a JSON object")
    body = record.get("html") if record.get("html") is not None else record.get("text")
    if not isinstance(body, str) or not body.strip():
        raise ValueError("a JSON article needs a non-empty `text` or `html`")
    fields = {name: record[name] for name in ("title", "description", "publisher",
                                              "published_at", "language")
              if isinstance(record.get(name), str)}
    url = record.get("url") if isinstance(record.get("url"), str) else None
    return Document(source_uri=url or f"pubsub:{message_id or 'message'}",
                    kind="html" if record.get("html") is not None else "text", content=body,
                    url=url, authors=[a for a in record.get("authors") or []
                                      if isinstance(a, str)], **fields)


# --- One host registry per process ---------------------------------------------------------------

_REGISTRIES: dict[FetchPolicy, tuple[HttpClient, HostRegistry]] = {}
_REGISTRIES_LOCK = threading.Lock()


def process_registry(policy: FetchPolicy) -> tuple[HttpClient, HostRegistry]:
    """The client and host registry every streaming fetch of one process shares: the per-process
    limiter of fetch.py (robots.txt read once, one request at a time per host, the delay kept),
    which holds where a runner fires the timers below at once (FnApiRunner)."""
    with _REGISTRIES_LOCK:
        if policy not in _REGISTRIES:
            client = HttpClient(policy)
            _REGISTRIES[policy] = client, HostRegistry(client)
        return _REGISTRIES[policy]


def _fetch_one(policy: FetchPolicy, request: FetchRequest, run_id: str) -> list:
    client, registry = process_registry(policy)
    return fetch_group(HostSessions(client, {}, registry), [request], run_id)


# --- DoFns ---------------------------------------------------------------------------------------


class PollTicksFn(beam.DoFn):
    """PeriodicImpulse's tick sequence (same element, restriction and event times), with two
    differences for the local runners:
    - it waits for the next tick inside the call (up to `wait_s`) instead of only deferring
      the rest with a resume time. FnApiRunner ignores that resume time and runs the deferred
      rest again at once, in a busy loop of hundreds of bundles a second, and keeps every
      bundle's (empty) output buffers for the downstream stages until the stream ends: memory
      grew by about 15 MiB a second whatever came in. Waiting here makes it one bundle a tick.
    - it stops early when `stop_file` exists (Ctrl-C in the launcher creates it): it claims the
      rest of its range without emitting, so the watermark reaches the end and every window
      fires and is committed, as when --duration ends.
    On Dataflow `wait_s` is 0 and `stop_file` None: it behaves as PeriodicImpulse (a drain
    stops it; its restriction provider's truncate ends the sequence)."""

    def __init__(self, wait_s: float, stop_file: str | None):
        self._wait_s, self._stop_file = wait_s, stop_file
        self._calls = beam.metrics.Metrics.counter(metrics.NAMESPACE, "poll_clock_calls")

    @beam.DoFn.unbounded_per_element()
    def process(self, element,
                restriction_tracker=beam.DoFn.RestrictionParam(
                    ImpulseSeqGenRestrictionProvider()),
                watermark_estimator=beam.DoFn.WatermarkEstimatorParam(
                    ManualWatermarkEstimator.default_provider())):
        self._calls.inc()
        start, _, interval = element
        start = start.micros / 1e6 if isinstance(start, Timestamp) else start
        restriction = restriction_tracker.current_restriction()
        index = restriction.start
        due = start + interval * index
        if wait_for(min(self._wait_s, due - time.time()), self._stop_file):
            if index < restriction.stop:
                restriction_tracker.try_claim(restriction.stop - 1)  # the rest, not emitted
            return
        if due > time.time():  # not due yet (Dataflow, or a wait cut short): resume at `due`
            self._advance(watermark_estimator, Timestamp.of(due))
            restriction_tracker.defer_remainder(Timestamp.of(due))
            return
        if not restriction_tracker.try_claim(index):
            return
        self._advance(watermark_estimator, Timestamp.of(due))
        yield TimestampedValue(Timestamp.of(due), Timestamp.of(due))
        # One tick per bundle: the bundle ends now and the next call waits for the next tick.
        restriction_tracker.defer_remainder(Timestamp.of(start + interval * (index + 1)))

    @staticmethod
    def _advance(watermark_estimator, moment: Timestamp) -> None:
        current = watermark_estimator.current_watermark()
        if current is None or moment > current:
            watermark_estimator.set_watermark(moment)


class PollFeedFn(beam.DoFn):
    """(feed URL, FeedSpec) at each tick -> (spec, body, URL, validators) for ParseFeedFn, the
    feed URL on NOT_DUE when its schedule says not yet (nothing is requested), on NOT_MODIFIED
    (a 304) with the state it leaves on NOT_MODIFIED_STATES, the state a 200 leaves on
    POLL_STATES, ERRORS, and every (FetchRequest, Response) on RESPONSES (for --archive_warc).
    The feed's state (a FeedIndexEntry: the validators of its last 200 OK, the 304s since, and
    its poll schedule: interval and next poll, learnt from the entries each 200 lists and how
    many are new) lives in keyed state, first taken from index/feeds (`indexed_states`, a side
    input); so do the entry keys of its last 200, to count the new ones (new: neither listed
    then nor in index/entries, `indexed_keys`). A sitemap index's or robots.txt's state is not
    kept, so they are read in full at every tick (the sitemaps they list are scheduled each on
    its own). Times are the poll's own (the tick's)."""

    VALIDATORS = ReadModifyWriteStateSpec("validators", PickleCoder())
    ENTRY_KEYS = ReadModifyWriteStateSpec("entry_keys", PickleCoder())

    def __init__(self, policy: FetchPolicy, run_id: str, schedule: PollSchedule):
        self._policy, self._run_id, self._schedule = policy, run_id, schedule
        self._not_due = beam.metrics.Metrics.counter(metrics.NAMESPACE, "feeds_not_due")

    def process(self, keyed, indexed_states, indexed_keys, timestamp=beam.DoFn.TimestampParam,
                validators=beam.DoFn.StateParam(VALIDATORS),
                entry_keys=beam.DoFn.StateParam(ENTRY_KEYS)):
        url, spec = keyed
        polled_at = moment_of(timestamp)
        state = validators.read() or indexed_states.get(url)
        if not is_due(state.next_poll_at if state else None, polled_at, self._schedule):
            self._not_due.inc()
            yield beam.pvalue.TaggedOutput(NOT_DUE, url)
            return
        request = feed_request(spec, state, polled_at, self._schedule)
        for output in _fetch_one(self._policy, request, self._run_id):
            if isinstance(output, beam.pvalue.TaggedOutput):
                if output.tag == ERRORS:
                    yield beam.pvalue.TaggedOutput(ERRORS, output.value[1])
                continue  # ROBOTS: the process registry keeps them
            yield beam.pvalue.TaggedOutput(RESPONSES, output)  # for --archive_warc
            _, response = output
            if response.status == 304:
                yield beam.pvalue.TaggedOutput(NOT_MODIFIED, url)
                if state is not None:
                    unchanged = polled_state(url, self._run_id, polled_at, self._schedule,
                                             state, modified=False)
                    validators.write(unchanged)
                    yield beam.pvalue.TaggedOutput(NOT_MODIFIED_STATES, unchanged)
                continue
            etag, modified = response.headers.get("etag"), response.headers.get("last-modified")
            if not lists_sitemaps(spec, response.body):
                listed = listed_entry_keys(spec, response.body, response.url)
                polled = polled_state(
                    url, self._run_id, polled_at, self._schedule, state, modified=True,
                    etag=etag, last_modified=modified, entries=len(listed),
                    new_entries=new_entry_count(listed, set(entry_keys.read() or ()),
                                                indexed_keys))
                validators.write(polled)
                entry_keys.write(listed)
                yield beam.pvalue.TaggedOutput(POLL_STATES, polled)
            yield spec, response.body, response.url, (etag, modified)


class KeepNewEntriesFn(beam.DoFn):
    """(entry key, (spec, entry)) -> the entry's page request, its own Document
    (ENTRY_DOCUMENTS) when it has no link, or its key on ENTRIES_SEEN when an earlier poll of
    this stream (state, kept `ttl_s` seconds of event time) or an earlier run (index/entries:
    `indexed_keys`, the side input) had it."""

    FIRST_SEEN = ReadModifyWriteStateSpec("first_seen", FloatCoder())
    EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)

    def __init__(self, ttl_s: float):
        self._ttl_s = ttl_s

    def process(self, keyed, indexed_keys, timestamp=beam.DoFn.TimestampParam,
                first_seen=beam.DoFn.StateParam(FIRST_SEEN),
                expiry=beam.DoFn.TimerParam(EXPIRY)):
        key, (spec, entry) = keyed
        if remembered(first_seen.read(), float(timestamp), self._ttl_s) or key in indexed_keys:
            yield beam.pvalue.TaggedOutput(ENTRIES_SEEN, key)
            return
        first_seen.write(float(timestamp))
        expiry.set(timestamp + Duration.of(self._ttl_s))
        if entry.link is None:
            yield beam.pvalue.TaggedOutput(ENTRY_DOCUMENTS, entry_document(spec, entry))
        else:
            yield page_request(spec, entry)

    @on_timer(EXPIRY)
    def expire(self, first_seen=beam.DoFn.StateParam(FIRST_SEEN)):
        forget_when_due(first_seen, self._ttl_s)


class FetchPolitelyFn(beam.DoFn):
    """(host, FetchRequest) -> (FetchRequest, Response) pairs, ERRORS (FetchRequest, ErrorRow).
    A host's requests wait in keyed state; a processing-time timer takes one at a time, in URL
    order, `policy.delay_s` after the last (robots.txt's Crawl-delay, when longer, is kept by
    the per-process limiter). Each output keeps its request's timestamp (the timer holds the
    watermark there). `clock`: seconds since the epoch, on the runner's processing-time scale
    (tests inject theirs)."""

    PENDING = BagStateSpec("pending", PickleCoder())
    LAST_TURN = ReadModifyWriteStateSpec("last_turn", FloatCoder())
    ARMED = ReadModifyWriteStateSpec("armed", BooleanCoder())
    TURN = TimerSpec("turn", TimeDomain.REAL_TIME)

    def __init__(self, policy: FetchPolicy, run_id: str, clock: Callable[[], float] = time.time):
        self._policy, self._run_id, self._clock = policy, run_id, clock

    def process(self, keyed, timestamp=beam.DoFn.TimestampParam,
                pending=beam.DoFn.StateParam(PENDING), last_turn=beam.DoFn.StateParam(LAST_TURN),
                armed=beam.DoFn.StateParam(ARMED), turn=beam.DoFn.TimerParam(TURN)):
        _, request = keyed
        pending.add((request, float(timestamp)))
        if not armed.read():
            turn.set(Timestamp.of(next_turn(last_turn.read(), self._policy.delay_s,
                                            self._clock())))
            armed.write(True)

    @on_timer(TURN)
    def take_turn(self, fired_at=beam.DoFn.TimestampParam,
                  pending=beam.DoFn.StateParam(PENDING), last_turn=beam.DoFn.StateParam(LAST_TURN),
                  armed=beam.DoFn.StateParam(ARMED), turn=beam.DoFn.TimerParam(TURN)):
        waiting = sorted(pending.read(), key=lambda item: (item[0].url, item[0].source_uri))
        if not waiting:
            armed.write(False)
            return
        (request, timestamp), rest = waiting[0], waiting[1:]
        pending.clear()
        for item in rest:
            pending.add(item)
        last_turn.write(float(fired_at))
        if rest:
            turn.set(Timestamp.of(float(fired_at) + self._policy.delay_s))
        else:
            armed.write(False)
        for output in _fetch_one(self._policy, request, self._run_id):
            if isinstance(output, beam.pvalue.TaggedOutput):
                if output.tag == ROBOTS:
                    continue
                yield beam.pvalue.TaggedOutput(
                    output.tag, beam.window.TimestampedValue(output.value, timestamp))
            else:
                yield beam.window.TimestampedValue(output, timestamp)


class DropSeenInStreamFn(beam.DoFn):
    """(article id, Article) -> the Article, unless an earlier window of this stream had its id
    (then SEEN_IN_STREAM: counted as already ingested). Copies within one window pass on, for
    the batch stage (DropKnownAndExactCopies) to keep one and record the others. The state is
    kept `ttl_s` seconds of event time; after that, index/articles (read per window) has it."""

    FIRST_SEEN = ReadModifyWriteStateSpec("first_seen", FloatCoder())
    EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)

    def __init__(self, window_s: float, ttl_s: float):
        self._window_s, self._ttl_s = window_s, ttl_s

    def process(self, keyed, timestamp=beam.DoFn.TimestampParam,
                first_seen=beam.DoFn.StateParam(FIRST_SEEN),
                expiry=beam.DoFn.TimerParam(EXPIRY)):
        _, article = keyed
        moment, first = float(timestamp), first_seen.read()
        if not remembered(first, moment, self._ttl_s):
            first_seen.write(moment)
            expiry.set(timestamp + Duration.of(self._ttl_s))
            yield article
        elif window_start(first, self._window_s) == window_start(moment, self._window_s):
            yield article
        else:
            yield beam.pvalue.TaggedOutput(SEEN_IN_STREAM, article)

    @on_timer(EXPIRY)
    def expire(self, first_seen=beam.DoFn.StateParam(FIRST_SEEN)):
        forget_when_due(first_seen, self._ttl_s)


def forget_when_due(first_seen, ttl_s: float) -> None:
    """Clears a first-seen state whose TTL has passed by the wall clock. A runner that fires
    event-time timers as soon as a bundle ends (FnApiRunner runs a stream as a batch) fires
    this one early: the state is then kept, and `remembered` ages it out instead."""
    moment = first_seen.read()
    if moment is not None and time.time() >= moment + ttl_s:
        first_seen.clear()


# --- Composites ----------------------------------------------------------------------------------


class PollClock(beam.PTransform):
    """Ticks every `interval_s` from when the job starts until `stop_at` (or until
    `stop_file` exists): PeriodicImpulse with rebase=REBASE_START, made of PollTicksFn."""

    def __init__(self, stop_at: Timestamp, interval_s: float, wait_s: float = 0.0,
                 stop_file: str | None = None):
        super().__init__()
        self._stop_at, self._interval_s = stop_at, interval_s
        self._wait_s, self._stop_file = wait_s, stop_file

    def expand(self, start):
        """`start`: the pipeline (the clock starts off an Impulse of its own) or a PCollection
        of one element (StartStream's: the clock starts once the job holds the lease)."""
        stop_at, interval_s = self._stop_at, self._interval_s
        if isinstance(start, beam.pvalue.PBegin):
            start = start | "Impulse" >> beam.Impulse()
        return (
            start
            | "FromNow" >> beam.Map(lambda _: [Timestamp.now(), stop_at, interval_s])
            | "Ticks" >> beam.ParDo(PollTicksFn(self._wait_s, self._stop_file)))


POLL_OUTPUTS = (ERRORS, NOT_DUE, NOT_MODIFIED, NOT_MODIFIED_STATES, POLL_STATES, RESPONSES)


def _as_key_dict(indexed_keys, label: str):
    """index/entries' keys as a dict side input (none given: an empty dict)."""
    if indexed_keys is None:
        return {}
    return beam.pvalue.AsDict(indexed_keys | label >> beam.Map(lambda key: (key, None)))


class PollFeeds(beam.PTransform):
    """Ticks (PollClock, or a TestStream's) -> {"bodies": (spec, body, URL, validators),
    NOT_DUE: feed URLs not polled (not due), NOT_MODIFIED: feed URLs, NOT_MODIFIED_STATES and
    POLL_STATES: the FeedIndexEntries a 304 and a 200 leave, ERRORS: ErrorRows, RESPONSES: every
    (FetchRequest, Response)}: at each tick every feed due polled (`schedule`: ALWAYS, each
    one), with a conditional GET (or in full, when a full fetch is due). `indexed_states`:
    (feed URL, FeedIndexEntry) of index/feeds; `indexed_keys`: entry keys of index/entries."""

    def __init__(self, specs: list[FeedSpec], policy: FetchPolicy, run_id: str,
                 indexed_states, schedule: PollSchedule = PollSchedule(), indexed_keys=None):
        super().__init__()
        firsts = {spec.location: spec for spec in reversed(specs) if spec.is_url}
        self._specs = sorted(firsts.values(), key=lambda s: s.location)
        self._policy, self._run_id, self._schedule = policy, run_id, schedule
        self._indexed_states, self._indexed_keys = indexed_states, indexed_keys

    def expand(self, ticks):
        return (
            ticks
            | "EveryFeed" >> beam.FlatMap(feed_polls, self._specs)
            | "Poll" >> beam.ParDo(
                PollFeedFn(self._policy, self._run_id, self._schedule),
                beam.pvalue.AsDict(self._indexed_states),
                _as_key_dict(self._indexed_keys, "IndexedKeys")).with_outputs(
                *POLL_OUTPUTS, main="bodies"))


class PollAndParseFeeds(beam.PTransform):
    """Ticks -> {ENTRIES: (spec, entry) pairs, FEED_STATES, NOT_MODIFIED, NOT_MODIFIED_STATES,
    ERRORS, RESPONSES: (FetchRequest, Response) pairs for --archive_warc}: the feeds, sitemaps
    and robots.txt of `specs` polled at each tick (PollFeeds) and parsed (feeds.py's
    ParseFeedFn), and the sitemaps an index or a robots.txt lists polled and parsed in turn,
    level by level as the batch graph's ReadFeeds does (each level a keyed poll of its own,
    `sitemap_depth` levels at most below a given sitemap, `max_sitemaps` per document). An
    index or a robots.txt is asked for in full at every tick: its sitemaps are what is asked
    "modified since?", and each follows its own schedule as a feed does (NOT_DUE, POLL_STATES
    of every level)."""

    def __init__(self, specs: list[FeedSpec], policy: FetchPolicy, run_id: str,
                 indexed_states, schedule: PollSchedule = PollSchedule(), *, min_words: int,
                 sitemap_depth: int = SITEMAP_DEPTH, max_sitemaps: int = MAX_SITEMAPS,
                 indexed_keys=None):
        super().__init__()
        self._specs = [spec for spec in specs if spec.is_url]
        self._policy, self._run_id, self._schedule = policy, run_id, schedule
        self._indexed_states, self._indexed_keys = indexed_states, indexed_keys
        self._min_words, self._max_sitemaps = min_words, max_sitemaps
        self._levels = fetch_levels({spec.kind for spec in self._specs}, sitemap_depth)

    def _parse(self, bodies, level: int, label: str):
        return bodies | label >> beam.ParDo(ParseFeedFn(
            self._run_id, None, self._min_words,
            child_levels_left=self._levels - 1 - level, max_sitemaps=self._max_sitemaps)) \
            .with_outputs(ERRORS, FEED_STATES, CHILD_SITEMAPS, main=ENTRIES)

    def expand(self, ticks):
        polled = ticks | "PollFeeds" >> PollFeeds(self._specs, self._policy, self._run_id,
                                                  self._indexed_states, self._schedule,
                                                  self._indexed_keys)
        parsed = self._parse(polled.bodies, 0, "ParseFeeds")
        outputs = {tag: [polled[tag]] for tag in POLL_OUTPUTS}
        outputs.update({ENTRIES: [parsed[ENTRIES]], FEED_STATES: [parsed[FEED_STATES]]})
        outputs[ERRORS].append(parsed[ERRORS])
        for level in range(1, self._levels):
            polled = (
                parsed[CHILD_SITEMAPS]
                | f"KeyChildren{level}" >> beam.Map(lambda spec: (spec.location, spec))
                | f"PollChildren{level}" >> beam.ParDo(
                    PollFeedFn(self._policy, self._run_id, self._schedule),
                    beam.pvalue.AsDict(self._indexed_states),
                    _as_key_dict(self._indexed_keys, f"IndexedKeys{level}")).with_outputs(
                    *POLL_OUTPUTS, main="bodies"))
            parsed = self._parse(polled.bodies, level, f"ParseChildren{level}")
            outputs[ENTRIES].append(parsed[ENTRIES])
            outputs[FEED_STATES].append(parsed[FEED_STATES])
            for tag in POLL_OUTPUTS:
                outputs[tag].append(polled[tag])
            outputs[ERRORS].append(parsed[ERRORS])
        return {tag: pcolls | f"All_{tag}" >> beam.Flatten() for tag, pcolls in outputs.items()}


class KeepNewEntries(beam.PTransform):
    """(spec, entry) pairs -> {"requests", ENTRY_DOCUMENTS, ENTRIES_SEEN} (KeepNewEntriesFn)."""

    def __init__(self, indexed_keys, ttl_s: float):
        super().__init__()
        self._indexed_keys, self._ttl_s = indexed_keys, ttl_s

    def expand(self, entries):
        return (
            entries
            | "KeyEntries" >> beam.Map(
                lambda pair: (entry_key(pair[0].location, pair[1].entry_id), pair))
            | "NewOnly" >> beam.ParDo(
                KeepNewEntriesFn(self._ttl_s),
                beam.pvalue.AsDict(self._indexed_keys | "AsKeys" >> beam.Map(
                    lambda key: (key, None)))).with_outputs(
                ENTRIES_SEEN, ENTRY_DOCUMENTS, main="requests"))


class FetchPolitely(beam.PTransform):
    """FetchRequests -> (FetchRequest, Response) pairs (main) and (FetchRequest, ErrorRow)
    pairs (ERRORS): the unbounded twin of fetch.FetchByHost, whose GroupByKey waits for the
    end of a window."""

    def __init__(self, policy: FetchPolicy, run_id: str, clock: Callable[[], float] = time.time):
        super().__init__()
        self._policy, self._run_id, self._clock = policy, run_id, clock

    def expand(self, requests):
        return (
            requests
            | "KeyByHost" >> beam.Map(lambda r: (host_key(r.url), r))
            | "OneHostAtATime" >> beam.ParDo(
                FetchPolitelyFn(self._policy, self._run_id, self._clock)).with_outputs(
                ERRORS, main="responses"))


class DropSeenInStream(beam.PTransform):
    """Articles (in the global window) -> {"articles", SEEN_IN_STREAM} (DropSeenInStreamFn)."""

    def __init__(self, window_s: float, ttl_s: float):
        super().__init__()
        self._window_s, self._ttl_s = window_s, ttl_s

    def expand(self, articles):
        return (
            articles
            | "KeyById" >> beam.Map(lambda a: (a.article_id, a))
            | "FirstWindowOnly" >> beam.ParDo(
                DropSeenInStreamFn(self._window_s, self._ttl_s)).with_outputs(
                SEEN_IN_STREAM, main="articles"))
