"""Feeds: RSS 0.9x/1.0/2.0, Atom and RDF (feedparser) and JSON Feed become page requests that
carry each entry's metadata.

A feed is a URL (fetched with a conditional GET: the ETag / Last-Modified an earlier run stored
in OUTPUT/index/feeds/) or a local file. Its entries are keyed by feed and entry id (the guid,
else the link); entries whose key is in OUTPUT/index/entries/ were fetched by an earlier run and
are skipped (counted as `entries_seen_before`). The others become FetchRequests for their page,
with a Document template holding the entry's title, summary, authors, date (kind "feed": the
page's own date beats it), categories and guid.

Every feed ends as its entries, an errors/ row (unreachable, unparseable, no entries) or "not
modified".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import posixpath

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from schemas.records import Document, EntryIndexEntry, FeedIndexEntry
from transforms import errors
from transforms.errors import ERRORS, error_row
from transforms.fetch import ROBOTS, FetchByHost, FetchPolicy, FetchRequest

FEED_STAGE = "feed"
# Reason codes (stage "feed").
UNPARSEABLE_FEED = "unparseable_feed"
EMPTY_FEED = "empty_feed"
ENTRY_WITHOUT_LINK = "entry_without_link"

ENTRIES = "entries"
NOT_MODIFIED = "not_modified"
ENTRIES_SEEN = "entries_seen_before"
FEED_STATES = "feed_states"

FEED_INDEX_DATASET = "index/feeds"
ENTRY_INDEX_DATASET = "index/entries"

_MAX_FEED_LIST_BYTES = 10 * 2**20


@dataclasses.dataclass(frozen=True)
class FeedSpec:
    """One feed to read: a URL or a file, optionally with the publisher's name and a default
    IPTC topic for its articles."""
    location: str
    publisher: str | None = None
    topic: str | None = None

    @property
    def is_url(self) -> bool:
        return self.location.lower().startswith(("http://", "https://"))


@dataclasses.dataclass
class FeedEntry:
    entry_id: str
    link: str | None
    title: str | None = None
    summary: str | None = None
    authors: list[str] = dataclasses.field(default_factory=list)
    published: str | None = None     # ISO 8601, UTC
    categories: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ParsedFeed:
    entries: list[FeedEntry]
    ill_formed: bool          # feedparser's "bozo": the XML is not well-formed (it still tries)
    problem: str | None = None
    title: str | None = None


class InvalidFeedList(ValueError):
    pass


# --- Pure functions ------------------------------------------------------------------------------


def parse_feed_list(text: str, topics: frozenset) -> list[FeedSpec]:
    """Feeds from a feeds file: YAML (a list, or {feeds: [...]}, whose items are URLs/paths or
    {url, publisher, topic} maps) or plain text (one URL or path a line, '#' comments).
    Raises InvalidFeedList with the reason."""
    import yaml
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        loaded = None
    if isinstance(loaded, dict) and "feeds" in loaded:
        loaded = loaded["feeds"]
    if not isinstance(loaded, list):
        loaded = [line.strip() for line in text.splitlines()
                  if line.strip() and not line.strip().startswith("#")]
    specs = []
    for number, item in enumerate(loaded, 1):
        if isinstance(item, str):
            item = {"url": item}
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            raise InvalidFeedList(f"feed {number}: give a URL or path, or a map with 'url'")
        unknown = set(item) - {"url", "publisher", "topic"}
        if unknown:
            raise InvalidFeedList(f"feed {number}: unknown keys {sorted(unknown)} "
                                  "(url, publisher, topic)")
        topic = item.get("topic")
        if topic is not None and topic not in topics:
            raise InvalidFeedList(f"feed {number}: topic {topic!r} is not an IPTC slug "
                                  f"({', '.join(sorted(topics))})")
        specs.append(FeedSpec(item["url"].strip(), item.get("publisher"), topic))
    return specs


def _text(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _struct_time_iso(value) -> str | None:
    if not value:
        return None
    try:
        return dt.datetime(*value[:6], tzinfo=dt.timezone.utc).isoformat()
    except (TypeError, ValueError):
        return None


def _unique_by_id(entries: list[FeedEntry]) -> list[FeedEntry]:
    return list({entry.entry_id: entry for entry in reversed(entries)}.values())[::-1]


def parse_json_feed(data: dict) -> ParsedFeed:
    """A JSON Feed (https://jsonfeed.org, versions 1 and 1.1)."""
    entries = []
    for item in data.get("items") or []:
        if not isinstance(item, dict):
            continue
        link = _text(item.get("url")) or _text(item.get("external_url"))
        entry_id = _text(item.get("id")) or link
        if entry_id is None:
            continue
        authors = item.get("authors") or ([item["author"]] if item.get("author") else [])
        entries.append(FeedEntry(
            entry_id=entry_id, link=link, title=_text(item.get("title")),
            summary=_text(item.get("summary")),
            authors=[a["name"] for a in authors if isinstance(a, dict) and _text(a.get("name"))],
            published=_text(item.get("date_published")) or _text(item.get("date_modified")),
            categories=[t for t in map(_text, item.get("tags") or []) if t]))
    return ParsedFeed(_unique_by_id(entries), False, title=_text(data.get("title")))


def parse_feed(body: bytes, base_url: str | None = None) -> ParsedFeed:
    """The entries of a feed document. feedparser reads RSS, Atom and RDF even when they are
    not well-formed (then `ill_formed` is set); JSON Feed is read here. The body is passed as a
    stream, so feedparser never fetches anything itself; its XML parser loads no external
    entities."""
    if body.lstrip()[:1] == b"{":
        try:
            data = json.loads(body)
        except ValueError as error:
            return ParsedFeed([], True, f"not valid JSON: {error}")
        if isinstance(data, dict) and str(data.get("version", "")).startswith(
                "https://jsonfeed.org/version/"):
            return parse_json_feed(data)
        return ParsedFeed([], True, "JSON, but not a JSON Feed")
    import feedparser
    # A content type is given so that feedparser reads the charset from the XML declaration
    # instead of flagging every feed for lacking a header.
    headers = {"content-type": "application/xml"}
    if base_url:
        headers["content-location"] = base_url
    parsed = feedparser.parse(io.BytesIO(body), response_headers=headers)
    entries = []
    for item in parsed.entries:
        link = _text(item.get("link"))
        entry_id = _text(item.get("id")) or link or _text(item.get("title"))
        if entry_id is None:
            continue
        authors = [a.get("name") for a in item.get("authors") or [] if _text(a.get("name"))]
        if not authors and _text(item.get("author")):
            authors = [item["author"].strip()]
        published = (_struct_time_iso(item.get("published_parsed"))
                     or _struct_time_iso(item.get("updated_parsed")))
        entries.append(FeedEntry(
            entry_id=entry_id, link=link, title=_text(item.get("title")),
            summary=_text(item.get("summary")), authors=authors, published=published,
            categories=[t for t in (_text(tag.get("term")) for tag in item.get("tags") or [])
                        if t]))
    problem = None
    if parsed.get("bozo"):
        problem = f"{type(parsed.bozo_exception).__name__}: {parsed.bozo_exception}"
    return ParsedFeed(_unique_by_id(entries), bool(parsed.get("bozo")), problem,
                      _text(parsed.feed.get("title")))


def entry_key(feed_location: str, entry_id: str) -> str:
    return hashlib.sha256(f"{feed_location}\n{entry_id}".encode()).hexdigest()[:24]


def page_request(spec: FeedSpec, entry: FeedEntry) -> FetchRequest:
    """The request for an entry's page, carrying what the feed says about it."""
    template = Document(
        source_uri=entry.link, kind="html", content=b"", url=entry.link, title=entry.title,
        description=entry.summary, authors=entry.authors, publisher=spec.publisher,
        published_at=entry.published, published_at_kind="feed", categories=entry.categories,
        feed_url=spec.location, feed_entry_id=entry.entry_id, feed_topic=spec.topic)
    return FetchRequest(url=entry.link, source_uri=entry.link, payload=template)


def conditional_headers(state: FeedIndexEntry | None) -> dict:
    if state is None:
        return {}
    headers = {}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    return headers


def latest_state(states) -> FeedIndexEntry:
    return max(states, key=lambda s: (s.fetched_at, s.run_id))


# --- DoFns ---------------------------------------------------------------------------------------


class ParseFeedFn(beam.DoFn):
    """(FeedSpec, body bytes, final URL, validators) -> (FeedSpec, FeedEntry) for each entry
    with a link; FEED_STATES for fetched feeds; ERRORS for feeds without entries and entries
    without links."""

    def __init__(self, run_id: str, fetched_at: dt.datetime):
        self._run_id = run_id
        self._fetched_at = fetched_at

    def _error(self, reason: str, message: str, source_uri: str, url: str | None = None):
        return beam.pvalue.TaggedOutput(ERRORS, error_row(
            FEED_STAGE, reason, message, source_uri, self._run_id, url=url))

    def process(self, fetched):
        spec, body, url, validators = fetched
        parsed = parse_feed(body, url)
        if not parsed.entries:
            reason = UNPARSEABLE_FEED if parsed.ill_formed else EMPTY_FEED
            yield self._error(reason, parsed.problem or "the feed has no entries",
                              spec.location, url)
            return
        if validators is not None:
            yield beam.pvalue.TaggedOutput(FEED_STATES, FeedIndexEntry(
                feed_url=spec.location, run_id=self._run_id, fetched_at=self._fetched_at,
                etag=validators[0], last_modified=validators[1]))
        for entry in parsed.entries:
            if entry.link is None:
                yield self._error(ENTRY_WITHOUT_LINK, "the entry has no link to fetch",
                                  f"{spec.location}#{entry.entry_id}")
            else:
                yield spec, entry


class ReadFeedFileFn(beam.DoFn):
    """A FeedSpec naming a file -> (spec, bytes, no URL, no validators); unreadable -> ERRORS."""

    def __init__(self, run_id: str, max_bytes: int):
        self._run_id = run_id
        self._max_bytes = max_bytes

    def process(self, spec: FeedSpec):
        try:
            with FileSystems.open(spec.location) as stream:
                body = stream.read(self._max_bytes + 1)
        except (OSError, EOFError) as error:
            yield beam.pvalue.TaggedOutput(ERRORS, error_row(
                errors.STAGE_READ, errors.READ_FAILED, f"{type(error).__name__}: {error}",
                spec.location, self._run_id))
            return
        if len(body) > self._max_bytes:
            yield beam.pvalue.TaggedOutput(ERRORS, error_row(
                errors.STAGE_READ, errors.TOO_LARGE, f"more than {self._max_bytes} bytes",
                spec.location, self._run_id))
            return
        yield spec, body, None, None  # no base URL: a file's relative links stay as written


def _fetched_feed(pair):
    """(FetchRequest, Response) -> (spec, body, URL, validators) or NOT_MODIFIED."""
    request, response = pair
    if response.status == 304:
        yield beam.pvalue.TaggedOutput(NOT_MODIFIED, request.payload.location)
        return
    validators = (response.headers.get("etag"), response.headers.get("last-modified"))
    yield request.payload, response.body, response.url, validators


def _feed_request(spec: FeedSpec, states: dict) -> FetchRequest:
    return FetchRequest(url=spec.location, source_uri=spec.location, accept_html_only=False,
                        headers=conditional_headers(states.get(spec.location)), payload=spec)


def _split_new_entries(keyed):
    """(key, {"new": [(spec, entry)], "index": [...]}) -> the page request, or ENTRIES_SEEN."""
    key, grouped = keyed
    new, indexed = list(grouped["new"]), any(True for _ in grouped["index"])
    if not new:
        return
    if indexed:
        yield beam.pvalue.TaggedOutput(ENTRIES_SEEN, key)
        return
    spec, entry = min(new, key=lambda pair: pair[0].location)
    yield page_request(spec, entry)


def entry_index_entry(document: Document, run_id: str) -> EntryIndexEntry:
    return EntryIndexEntry(entry_key=entry_key(document.feed_url, document.feed_entry_id),
                           feed_url=document.feed_url, run_id=run_id)


# --- Reading the index at graph build ------------------------------------------------------------


def read_feed_states(pipeline, output_dir: str):
    """(feed URL, latest FeedIndexEntry) from OUTPUT/index/feeds/, listed at graph build."""
    pattern = posixpath.join(output_dir, FEED_INDEX_DATASET, "*.parquet")
    files = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    if not files:
        return pipeline | "NoFeedStates" >> beam.Create([])
    return (
        pipeline
        | "FeedStateFiles" >> beam.Create(sorted(files))
        | "ReadFeedStates" >> beam.io.ReadAllFromParquet()
        | "FeedStates" >> beam.Map(lambda row: (row["feed_url"], FeedIndexEntry(**row)))
        | "LatestState" >> beam.CombinePerKey(latest_state))


# --- Composite -----------------------------------------------------------------------------------


class ReadFeeds(beam.PTransform):
    """FeedSpecs -> {"requests": page FetchRequests of new entries, ERRORS: ErrorRows,
    NOT_MODIFIED: feed URLs that answered 304, ENTRIES_SEEN: keys of entries an earlier run
    fetched, FEED_STATES: FeedIndexEntries to store, ROBOTS: the robots.txt outcomes read}."""

    def __init__(self, specs: list[FeedSpec], policy: FetchPolicy, run_id: str,
                 fetched_at: dt.datetime, feed_states, indexed_entry_keys):
        super().__init__()
        # One spec per feed: the first given wins (a feed listed twice is read once).
        firsts = {spec.location: spec for spec in reversed(specs)}
        self._specs = sorted(firsts.values(), key=lambda s: s.location)
        self._policy = policy
        self._run_id = run_id
        self._fetched_at = fetched_at
        self._feed_states = feed_states
        self._indexed_entry_keys = indexed_entry_keys

    def expand(self, pipeline):
        specs = pipeline | "Specs" >> beam.Create(self._specs)
        fetched = (
            specs
            | "Remote" >> beam.Filter(lambda s: s.is_url)
            | "Conditional" >> beam.Map(_feed_request,
                                        states=beam.pvalue.AsDict(self._feed_states))
            | "FetchFeeds" >> FetchByHost(self._policy, self._run_id))
        remote = fetched.responses | "NotModified?" >> beam.FlatMap(
            _fetched_feed).with_outputs(NOT_MODIFIED, main="bodies")
        local = (
            specs
            | "Local" >> beam.Filter(lambda s: not s.is_url)
            | "ReadFeedFiles" >> beam.ParDo(ReadFeedFileFn(
                self._run_id, self._policy.max_bytes)).with_outputs(ERRORS, main="bodies"))
        parsed = (
            (remote.bodies, local.bodies)
            | "AllBodies" >> beam.Flatten()
            | "Parse" >> beam.ParDo(ParseFeedFn(self._run_id, self._fetched_at)).with_outputs(
                ERRORS, FEED_STATES, main=ENTRIES))
        split = (
            {"new": parsed[ENTRIES] | "KeyEntries" >> beam.Map(
                lambda pair: (entry_key(pair[0].location, pair[1].entry_id), pair)),
             "index": self._indexed_entry_keys | "KeyIndex" >> beam.Map(lambda k: (k, None))}
            | "JoinIndex" >> beam.CoGroupByKey()
            | "NewEntries" >> beam.FlatMap(_split_new_entries).with_outputs(
                ENTRIES_SEEN, main="requests"))
        feed_errors = (
            (fetched[ERRORS] | "ErrorRows" >> beam.Values(), local[ERRORS], parsed[ERRORS])
            | "FeedErrors" >> beam.Flatten())
        return {"requests": split.requests, ERRORS: feed_errors,
                NOT_MODIFIED: remote[NOT_MODIFIED], ENTRIES_SEEN: split[ENTRIES_SEEN],
                FEED_STATES: parsed[FEED_STATES], ROBOTS: fetched[ROBOTS]}

