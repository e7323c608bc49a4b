"""Feeds: RSS 0.9x/1.0/2.0, Atom and RDF (feedparser) and JSON Feed become page requests that
carry each entry's metadata.

A feed is a URL (fetched with a conditional GET: the ETag / Last-Modified an earlier run stored
in OUTPUT/index/feeds/) or a local file. Its entries are keyed by feed and entry id (the guid,
else the link); entries whose key is in OUTPUT/index/entries/ were fetched by an earlier run and
are skipped (counted as `entries_seen_before`). The others become FetchRequests for their page,
with a Document template holding the entry's title, summary, authors, date (kind "feed": the
page's own date beats it), categories and guid.

An entry with no link (RSS 0.92 items, feeds that carry whole posts) is an article of its own
text, its content (content:encoded, Atom content, JSON Feed content_html/content_text) or else
its summary, when that text has at least --min_words words; otherwise it is an
`entry_without_link` row. Its source_uri is `<feed>#entry=<guid, else a hash of its text>`.
Entry HTML becomes text through lxml (trafilatura wants a whole page and rejects fragments).

Every feed ends as its entries, an errors/ row (unreachable, unparseable, no entries) or "not
modified"; every entry as a page request, a document, an error row or "seen before". An
exception while parsing a feed or an entry is that input's `internal_error` row.

Sitemaps (--sitemap, `kind: sitemap` in a feeds file) are feeds too: a urlset (XML, plain text,
gzipped or not) lists pages, whose Google News tags (news:title, news:publication_date,
news:publication/news:name, news:keywords) are carried like a feed entry's metadata; a sitemap
index lists more sitemaps, and a robots.txt (--sitemaps_from_robots, `kind: robots`) lists them
on its `Sitemap:` lines. Those are followed level by level, at most `sitemap_depth` levels below
what was given and `max_sitemaps` per document; the rest become error rows
(sitemap_too_deep, too_many_sitemaps). Parsed by ultimate-sitemap-parser (Media Cloud's) from
the bytes newsbeam's own fetcher read (its fetcher is never used: no politeness, no address
checks); robots.txt by protego. An index or a robots.txt is read in full every time (it stores
no validators): the sitemaps it lists are what is asked "modified since?".

Which feeds are polled at all is transforms/polling.py's: with --poll_schedule adaptive, a feed
whose next poll is not due is `not_due` (counted, skipped unchanged).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import logging
import re
import urllib.parse
import zlib

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from newsbeam.schemas.records import Document, EntryIndexEntry, FeedIndexEntry
from newsbeam.transforms import errors, metrics
from newsbeam.transforms.errors import ERRORS, exception_summary
from newsbeam.transforms.fetch import ROBOTS, FetchByHost, FetchPolicy, FetchRequest
from newsbeam.transforms.polling import PollSchedule, is_due, validators_to_send
from newsbeam.transforms.sinks import moment_of
from newsbeam.transforms.text import word_count

_LOG = logging.getLogger(__name__)

# Reason codes (stage "feed": errors.STAGE_FEED).
UNPARSEABLE_FEED = "unparseable_feed"
EMPTY_FEED = "empty_feed"
ENTRY_WITHOUT_LINK = "entry_without_link"
SITEMAP_TOO_DEEP = "sitemap_too_deep"
TOO_MANY_SITEMAPS = "too_many_sitemaps"

ENTRIES = "entries"
ENTRY_DOCUMENTS = "entry_documents"   # entries without a link, as Documents of their own text
NOT_MODIFIED = "not_modified"
ENTRIES_SEEN = "entries_seen_before"
FEED_STATES = "feed_states"
NOT_DUE = "not_due"                   # feeds whose next poll is not due (--poll_schedule)
CHILD_SITEMAPS = "child_sitemaps"     # sitemaps an index or a robots.txt lists
RESPONSES = "responses"               # (FetchRequest, Response) pairs, for --archive_warc

# What a FeedSpec names: a feed, a sitemap (or sitemap index), a robots.txt whose Sitemap:
# lines are sitemaps.
FEED, SITEMAP, ROBOTS_TXT = "feed", "sitemap", "robots"
KINDS = (FEED, SITEMAP, ROBOTS_TXT)
SITEMAP_DEPTH = 2          # --sitemap_depth: index levels followed below a given sitemap
MAX_SITEMAPS = 50          # --max_sitemaps: sitemaps followed per index or robots.txt
# sitemaps.org: at most 50 MB uncompressed; a gzipped sitemap is decompressed up to this.
MAX_SITEMAP_BYTES = 50 * 2**20
_GZIP_MAGIC = b"\x1f\x8b"
_SITEMAP_ROOTS = re.compile(rb"<(?:[\w-]+:)?(?:urlset|sitemapindex)[\s>]")
_SITEMAP_INDEX_ROOT = re.compile(rb"<(?:[\w-]+:)?sitemapindex[\s>]")


_MAX_FEED_LIST_BYTES = 10 * 2**20

# Elements whose start and end break a paragraph in entry HTML, and those whose text is no text.
_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "figcaption", "figure",
    "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "ol", "p", "pre",
    "section", "table", "td", "th", "tr", "ul"})
_NON_TEXT_TAGS = ("script", "style", "noscript", "template", "iframe", "object")
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")
_SPACES = re.compile(r"\s+")
# Safe in the entry part of a source_uri: what a guid usually holds stays readable.
_ENTRY_ID_SAFE = "/:@!$&'()*+,;=?~"


@dataclasses.dataclass(frozen=True)
class FeedSpec:
    """One feed to read: a URL or a file, optionally with the publisher's name and a default
    IPTC topic for its articles."""
    location: str
    publisher: str | None = None
    topic: str | None = None
    kind: str = FEED   # FEED, SITEMAP or ROBOTS_TXT

    @property
    def is_url(self) -> bool:
        return self.location.lower().startswith(("http://", "https://"))


@dataclasses.dataclass
class FeedEntry:
    entry_id: str
    link: str | None
    title: str | None = None
    summary: str | None = None       # plain text, one line
    authors: list[str] = dataclasses.field(default_factory=list)
    published: str | None = None     # ISO 8601, UTC
    categories: list[str] = dataclasses.field(default_factory=list)
    # The entry's own text (its content, else its summary) as plain paragraphs: the article of
    # an entry without a link.
    text: str | None = None
    feed_title: str | None = None
    publisher: str | None = None     # a Google News sitemap's news:publication/news:name


@dataclasses.dataclass
class ParsedFeed:
    entries: list[FeedEntry]
    ill_formed: bool          # feedparser's "bozo": the XML is not well-formed (it still tries)
    problem: str | None = None
    title: str | None = None
    # Entries that raised while being read: (the entry's id, link or position; the exception's
    # summary). Each becomes an internal_error row; the feed's other entries are read.
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    # The sitemaps a sitemap index or a robots.txt lists (URLs, in document order).
    children: list[str] = dataclasses.field(default_factory=list)


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
        unknown = set(item) - {"url", "publisher", "topic", "kind"}
        if unknown:
            raise InvalidFeedList(f"feed {number}: unknown keys {sorted(unknown)} "
                                  "(url, publisher, topic, kind)")
        kind = item.get("kind", FEED)
        if kind not in KINDS:
            raise InvalidFeedList(f"feed {number}: kind {kind!r} is not one of "
                                  f"{', '.join(KINDS)}")
        topic = item.get("topic")
        if topic is not None and topic not in topics:
            raise InvalidFeedList(f"feed {number}: topic {topic!r} is not an IPTC slug "
                                  f"({', '.join(sorted(topics))})")
        specs.append(FeedSpec(item["url"].strip(), item.get("publisher"), topic, kind))
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


def html_text(fragment: str) -> str:
    """The text of an HTML fragment (a feed entry's content or summary): paragraphs at block
    elements, separated by blank lines; a <br> a line break; scripts and styles dropped.
    Parsed by lxml (its HTML parser copes with tag soup); the walk over blocks is newsbeam's."""
    import lxml.etree
    import lxml.html
    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except (lxml.etree.ParserError, ValueError):  # nothing to parse: empty or only white space
        return ""
    for element in list(root.iter(*_NON_TEXT_TAGS)):
        element.drop_tree()
    for node in root.iter():
        # Line breaks in the source are spaces in HTML; only elements break lines.
        if isinstance(node.tag, str) and node.text:
            node.text = _SPACES.sub(" ", node.text)
        if node.tail:
            node.tail = _SPACES.sub(" ", node.tail)
        if node.tag in _BLOCK_TAGS:
            node.text = "\n\n" + (node.text or "")
            node.tail = "\n\n" + (node.tail or "")
        elif node.tag == "br":
            node.tail = "\n" + (node.tail or "")
    return _plain_paragraphs(root.text_content())


def _plain_paragraphs(text: str) -> str:
    """Text with its white space tidied: each line's runs of spaces one space, paragraphs (blank
    line apart) kept, empty ones dropped."""
    paragraphs = []
    for block in _PARAGRAPH_BREAK.split(text):
        lines = [" ".join(line.split()) for line in block.split("\n")]
        paragraph = "\n".join(line for line in lines if line)
        if paragraph:
            paragraphs.append(paragraph)
    return "\n\n".join(paragraphs)


def _detail_text(value, content_type: str | None) -> str | None:
    """Plain text of a feed text construct: HTML (and XHTML) read as HTML, the rest as text."""
    if value is None:
        return None
    value = str(value)
    text = html_text(value) if "html" in (content_type or "html") else _plain_paragraphs(value)
    return text or None


def _one_line(text: str | None) -> str | None:
    joined = " ".join((text or "").split())
    return joined or None


def text_id(title: str | None, text: str | None) -> str:
    """The id of an entry that has neither guid nor link: a hash of what it says."""
    return hashlib.sha256(f"{title or ''}\n{text or ''}".encode()).hexdigest()[:16]


def entry_source_uri(feed_location: str, entry_id: str) -> str:
    """Where an entry without a page comes from: `<feed>#entry=<id>`."""
    return f"{feed_location}#entry={urllib.parse.quote(entry_id, safe=_ENTRY_ID_SAFE)}"


def _failed_item(item: dict, number: int, error: Exception) -> tuple[str, str]:
    """(what names an entry that raised: its id, link or position; the exception's summary)."""
    label = _text(item.get("id")) or _text(item.get("link")) or _text(item.get("url"))
    return label or f"item-{number}", exception_summary(error)


def json_feed_entry(item: dict, feed_title: str | None) -> FeedEntry:
    """One JSON Feed item (its summary is plain text; content_html is HTML)."""
    link = _text(item.get("url")) or _text(item.get("external_url"))
    title = _text(item.get("title"))
    summary = _detail_text(_text(item.get("summary")), "text/plain")
    text = (_detail_text(_text(item.get("content_html")), "text/html")
            or _detail_text(_text(item.get("content_text")), "text/plain") or summary)
    authors = item.get("authors") or ([item["author"]] if item.get("author") else [])
    return FeedEntry(
        entry_id=_text(item.get("id")) or link or text_id(title, text), link=link, title=title,
        summary=_one_line(summary),
        authors=[a["name"] for a in authors if isinstance(a, dict) and _text(a.get("name"))],
        published=_text(item.get("date_published")) or _text(item.get("date_modified")),
        categories=[t for t in map(_text, item.get("tags") or []) if t], text=text,
        feed_title=feed_title)


def parse_json_feed(data: dict) -> ParsedFeed:
    """A JSON Feed (https://jsonfeed.org, versions 1 and 1.1)."""
    title = _text(data.get("title"))
    entries, failed = [], []
    for number, item in enumerate(data.get("items") or [], 1):
        if not isinstance(item, dict):
            continue
        try:
            entries.append(json_feed_entry(item, title))
        except Exception as error:  # this item's error row; the others are read
            failed.append(_failed_item(item, number, error))
    return ParsedFeed(_unique_by_id(entries), False, title=title, failed=failed)


def feedparser_entry(item, feed_title: str | None) -> FeedEntry:
    """One entry as feedparser read it. Its link is the page to fetch; an id that feedparser
    took for the link (an Atom id or RSS guid such as 'urn:uuid:...' or 'tag:...', when the
    entry has no link of its own) counts only when it is an http(s) URL."""
    link = _text(item.get("link"))
    if link and link == _text(item.get("id")) \
            and not link.lower().startswith(("http://", "https://")):
        link = None
    title = _text(item.get("title"))
    summary_detail = item.get("summary_detail") or {}
    summary = _detail_text(_text(item.get("summary")), summary_detail.get("type"))
    contents = (_detail_text(_text(c.get("value")), c.get("type"))
                for c in item.get("content") or [])
    text = next((c for c in contents if c), None) or summary
    authors = [a.get("name") for a in item.get("authors") or [] if _text(a.get("name"))]
    if not authors and _text(item.get("author")):
        authors = [item["author"].strip()]
    published = (_struct_time_iso(item.get("published_parsed"))
                 or _struct_time_iso(item.get("updated_parsed")))
    return FeedEntry(
        entry_id=_text(item.get("id")) or link or text_id(title, text), link=link, title=title,
        summary=_one_line(summary), authors=authors, published=published,
        categories=[t for t in (_text(tag.get("term")) for tag in item.get("tags") or []) if t],
        text=text, feed_title=feed_title)


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
    title = _text(parsed.feed.get("title"))
    entries, failed = [], []
    for number, item in enumerate(parsed.entries, 1):
        try:
            entries.append(feedparser_entry(item, title))
        except Exception as error:  # this entry's error row; the others are read
            failed.append(_failed_item(item, number, error))
    problem = None
    if parsed.get("bozo"):
        problem = f"{type(parsed.bozo_exception).__name__}: {parsed.bozo_exception}"
    return ParsedFeed(_unique_by_id(entries), bool(parsed.get("bozo")), problem, title, failed)


def gunzipped(body: bytes, max_bytes: int = MAX_SITEMAP_BYTES) -> bytes:
    """A gzipped document (sitemap.xml.gz served as application/gzip: no Content-Encoding, so
    the fetcher left it as it came) decompressed up to `max_bytes`; other bytes as they are.
    Raises ValueError past the cap or for a broken stream."""
    if not body.startswith(_GZIP_MAGIC):
        return body
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = decoder.decompress(body, max_bytes + 1)
    except zlib.error as error:
        raise ValueError(f"not valid gzip: {error}") from None
    if len(data) > max_bytes:
        raise ValueError(f"more than {max_bytes} bytes once decompressed")
    if not decoder.eof:
        raise ValueError("not valid gzip: the stream is cut short")
    return data


def looks_like_sitemap(body: bytes) -> bool:
    """An XML sitemap or sitemap index (its root element within the first 4 KiB)."""
    return bool(_SITEMAP_ROOTS.search(body[:4096]))


def lists_sitemaps(spec: FeedSpec, body: bytes) -> bool:
    """Whether a fetched document is a robots.txt or a sitemap index: what it lists is what is
    asked "modified since?", so it is read in full every time (it stores no validators)."""
    if spec.kind == ROBOTS_TXT:
        return True
    try:
        head = gunzipped(body)[:4096]
    except ValueError:
        return False
    return bool(_SITEMAP_INDEX_ROOT.search(head))


def fetch_levels(kinds: set, sitemap_depth: int) -> int:
    """Levels of fetching for specs of these kinds: the given documents, then the sitemaps they
    list, and so on (`sitemap_depth` levels below a sitemap, one more below a robots.txt)."""
    return 1 + (sitemap_depth if kinds & {SITEMAP, ROBOTS_TXT} else 0) + \
        (1 if ROBOTS_TXT in kinds else 0)


def _iso_utc(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).isoformat()


def sitemap_entry(page) -> FeedEntry:
    """One page of a sitemap (a usp SitemapPage): its URL, and what its Google News tags say."""
    news = page.news_story
    if news is None:
        return FeedEntry(entry_id=page.url, link=page.url)
    return FeedEntry(
        entry_id=page.url, link=page.url, title=_text(news.title),
        published=_iso_utc(news.publish_date),
        categories=[k for k in map(_text, news.keywords or []) if k],
        publisher=_text(news.publication_name))


def parse_sitemap(body: bytes) -> ParsedFeed:
    """A sitemap (XML urlset, or plain text: a URL a line) -> its pages as entries; a sitemap
    index -> the sitemaps it lists (`children`). Parsed by ultimate-sitemap-parser, which is
    given the text only (it fetches nothing: sub-sitemaps come back unread)."""
    from usp.objects.sitemap import AbstractIndexSitemap, InvalidSitemap
    from usp.tree import sitemap_from_str
    try:
        text = gunzipped(body).decode("utf-8-sig", "replace")
    except ValueError as error:
        return ParsedFeed([], True, f"sitemap: {error}")
    parsed = sitemap_from_str(text)
    if isinstance(parsed, InvalidSitemap):
        return ParsedFeed([], True, "not a sitemap usp can read")
    if isinstance(parsed, AbstractIndexSitemap):
        children = list(dict.fromkeys(child.url for child in parsed.sub_sitemaps))
        return ParsedFeed([], False, children=children)
    entries, failed = [], []
    for number, page in enumerate(parsed.all_pages(), 1):
        try:
            entries.append(sitemap_entry(page))
        except Exception as error:  # this page's error row; the others are read
            failed.append((getattr(page, "url", None) or f"url-{number}",
                           exception_summary(error)))
    problem = None if entries or failed else "the sitemap lists no page"
    ill_formed = not entries and not failed and not looks_like_sitemap(text.encode())
    return ParsedFeed(_unique_by_id(entries), ill_formed, problem, failed=failed)


def parse_robots_sitemaps(body: bytes) -> ParsedFeed:
    """The sitemaps a robots.txt lists on its `Sitemap:` lines (protego)."""
    from protego import Protego
    robots = Protego.parse(body.decode("utf-8", "replace"))
    children = list(dict.fromkeys(robots.sitemaps))
    return ParsedFeed([], False, None if children else "robots.txt lists no Sitemap:",
                      children=children)


def parse_source(spec: FeedSpec, body: bytes, base_url: str | None = None) -> ParsedFeed:
    """A fetched feed, sitemap or robots.txt, by what the spec says it is and what it holds: a
    sitemap given as a feed is still read as a sitemap, a gzipped feed is decompressed."""
    if spec.kind == ROBOTS_TXT:
        return parse_robots_sitemaps(body)
    try:
        body = gunzipped(body)
    except ValueError as error:
        return ParsedFeed([], True, str(error))
    if spec.kind == SITEMAP or looks_like_sitemap(body):
        return parse_sitemap(body)
    return parse_feed(body, base_url)


def entry_key(feed_location: str, entry_id: str) -> str:
    return hashlib.sha256(f"{feed_location}\n{entry_id}".encode()).hexdigest()[:24]


def page_request(spec: FeedSpec, entry: FeedEntry) -> FetchRequest:
    """The request for an entry's page, carrying what the feed says about it."""
    template = Document(
        source_uri=entry.link, kind="html", content=b"", url=entry.link, title=entry.title,
        description=entry.summary, authors=entry.authors,
        publisher=spec.publisher or entry.publisher, published_at=entry.published,
        published_at_kind="feed", categories=entry.categories,
        feed_url=spec.location, feed_entry_id=entry.entry_id, feed_topic=spec.topic)
    return FetchRequest(url=entry.link, source_uri=entry.link, payload=template)


def entry_document(spec: FeedSpec, entry: FeedEntry) -> Document:
    """The Document of an entry without a link: its own text, with what the feed says about it
    (the publisher, when the feeds file names none, is the feed's title)."""
    summary_is_text = entry.summary == _one_line(entry.text)
    return Document(
        source_uri=entry_source_uri(spec.location, entry.entry_id), kind="text",
        content=entry.text or "", title=entry.title,
        description=None if summary_is_text else entry.summary, authors=entry.authors,
        publisher=spec.publisher or entry.feed_title, published_at=entry.published,
        published_at_kind="feed", categories=entry.categories, feed_url=spec.location,
        feed_entry_id=entry.entry_id, feed_topic=spec.topic)


def latest_state(states) -> FeedIndexEntry:
    return max(states, key=lambda s: (s.fetched_at, s.run_id))


# --- DoFns ---------------------------------------------------------------------------------------


class ParseFeedFn(beam.DoFn):
    """(FeedSpec, body bytes, final URL, validators) -> (FeedSpec, FeedEntry) for each entry
    with a link or with enough text of its own; FEED_STATES for fetched feeds; ERRORS for feeds
    without entries, entries with neither, and feeds or entries that raised."""

    def __init__(self, run_id: str, fetched_at: dt.datetime | None, min_words: int,
                 child_levels_left: int = 0, max_sitemaps: int = MAX_SITEMAPS):
        # fetched_at None (the stream): each feed's own poll time, its element's timestamp.
        self._run_id = run_id
        self._fetched_at = fetched_at
        self._min_words = min_words
        self._child_levels_left = child_levels_left
        self._max_sitemaps = max_sitemaps

    def _error(self, reason: str, message: str, source_uri: str, url: str | None = None):
        return errors.error_output(errors.STAGE_FEED, reason, message, source_uri, self._run_id,
                                   url=url)

    def _internal_error(self, error: Exception, source_uri: str, url: str | None = None):
        _LOG.error("feed: internal error on %s", source_uri, exc_info=error)
        return self._error(errors.INTERNAL_ERROR, exception_summary(error), source_uri, url)

    @metrics.timed(metrics.STAGE_FETCH)
    def process(self, fetched, timestamp=beam.DoFn.TimestampParam):
        spec, body, url, validators = fetched
        try:
            parsed = parse_source(spec, body, url)
        except Exception as error:  # the feed's error row, not the end of the run
            yield self._internal_error(error, spec.location, url)
            return
        if parsed.children:
            yield from self._child_sitemaps(spec, parsed.children)
            if not parsed.entries and not parsed.failed:
                return
        if not parsed.entries and not parsed.failed:
            reason = UNPARSEABLE_FEED if parsed.ill_formed else EMPTY_FEED
            yield self._error(reason, parsed.problem or "the feed has no entries",
                              spec.location, url)
            return
        outcomes = [self._error(errors.INTERNAL_ERROR, message,
                                entry_source_uri(spec.location, entry_id))
                    for entry_id, message in parsed.failed]
        raised = bool(parsed.failed)
        for entry in parsed.entries:
            try:
                outcomes.append(self._entry_outcome(spec, entry))
            except Exception as error:
                raised = True
                outcomes.append(self._internal_error(
                    error, entry_source_uri(spec.location, entry.entry_id)))
        # A feed with entries that raised is not marked as read: the next run asks for it in
        # full again (not "modified since?"), so that those entries are read again.
        if validators is not None and not raised:
            yield beam.pvalue.TaggedOutput(FEED_STATES, FeedIndexEntry(
                feed_url=spec.location, run_id=self._run_id,
                fetched_at=self._fetched_at or moment_of(timestamp),
                etag=validators[0], last_modified=validators[1],
                entries=len(parsed.entries) + len(parsed.failed)))
        yield from outcomes

    def _child_sitemaps(self, spec: FeedSpec, children: list[str]):
        """The sitemaps an index or robots.txt lists, as specs for the next level (publisher
        and topic inherited); those past the depth or the count are error rows."""
        for number, child in enumerate(children):
            if not FeedSpec(child).is_url:
                yield self._error(UNPARSEABLE_FEED, f"a listed sitemap is no http(s) URL: "
                                  f"{child}", child)
            elif not self._child_levels_left:
                yield self._error(SITEMAP_TOO_DEEP, f"listed by {spec.location}, more than "
                                  "--sitemap_depth levels below what was given", child)
            elif number >= self._max_sitemaps:
                yield self._error(TOO_MANY_SITEMAPS, f"listed by {spec.location} after "
                                  f"{self._max_sitemaps} others (--max_sitemaps)", child)
            else:
                yield beam.pvalue.TaggedOutput(CHILD_SITEMAPS, FeedSpec(
                    child, spec.publisher, spec.topic, SITEMAP))

    def _entry_outcome(self, spec: FeedSpec, entry: FeedEntry):
        """(spec, entry) for an entry to fetch or to take as it is, else its error row."""
        if entry.link is not None:
            return spec, entry
        words = word_count(entry.text or "")
        if words and words >= self._min_words:
            return spec, entry
        return self._error(
            ENTRY_WITHOUT_LINK, f"the entry has no link to fetch, and {words} words of text of "
            f"its own; at least {self._min_words} are needed (--min_words)",
            entry_source_uri(spec.location, entry.entry_id))


class ReadFeedFileFn(beam.DoFn):
    """A FeedSpec naming a file -> (spec, bytes, no URL, no validators); unreadable -> ERRORS."""

    def __init__(self, run_id: str, max_bytes: int):
        self._run_id = run_id
        self._max_bytes = max_bytes

    @metrics.timed(metrics.STAGE_FETCH)
    def process(self, spec: FeedSpec):
        try:
            with FileSystems.open(spec.location) as stream:
                body = stream.read(self._max_bytes + 1)
        except (OSError, EOFError) as error:
            yield errors.error_output(
                errors.STAGE_READ, errors.READ_FAILED, f"{type(error).__name__}: {error}",
                spec.location, self._run_id)
            return
        except Exception as error:  # the file's error row, not the end of the run
            _LOG.error("feed: internal error reading %s", spec.location, exc_info=error)
            yield errors.error_output(
                errors.STAGE_READ, errors.INTERNAL_ERROR, exception_summary(error),
                spec.location, self._run_id)
            return
        if len(body) > self._max_bytes:
            yield errors.error_output(
                errors.STAGE_READ, errors.TOO_LARGE, f"more than {self._max_bytes} bytes",
                spec.location, self._run_id)
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


def _feed_request(spec: FeedSpec, states: dict, now: dt.datetime,
                  schedule: PollSchedule) -> FetchRequest:
    headers = validators_to_send(states.get(spec.location), now, schedule)
    return FetchRequest(url=spec.location, source_uri=spec.location, accept_html_only=False,
                        headers=headers, payload=spec)


def _due_or_not(spec: FeedSpec, states: dict, now: dt.datetime, schedule: PollSchedule):
    """The spec when its feed is due for a poll, else its location as NOT_DUE."""
    state = states.get(spec.location)
    if is_due(state.next_poll_at if state else None, now, schedule):
        yield spec
    else:
        yield beam.pvalue.TaggedOutput(NOT_DUE, spec.location)


def _split_new_entries(keyed):
    """(key, {"new": [(spec, entry)], "index": [...]}) -> the page request, the entry's own
    Document (ENTRY_DOCUMENTS) when it has no link, or ENTRIES_SEEN."""
    key, grouped = keyed
    new, indexed = list(grouped["new"]), any(True for _ in grouped["index"])
    if not new:
        return
    if indexed:
        yield beam.pvalue.TaggedOutput(ENTRIES_SEEN, key)
        return
    spec, entry = min(new, key=lambda pair: pair[0].location)
    if entry.link is None:
        yield beam.pvalue.TaggedOutput(ENTRY_DOCUMENTS, entry_document(spec, entry))
    else:
        yield page_request(spec, entry)


def entry_index_entry(document: Document, run_id: str) -> EntryIndexEntry:
    return EntryIndexEntry(entry_key=entry_key(document.feed_url, document.feed_entry_id),
                           feed_url=document.feed_url, run_id=run_id)


# --- Composite -----------------------------------------------------------------------------------


class ReadFeeds(beam.PTransform):
    """FeedSpecs -> {"requests": page FetchRequests of new entries, ENTRY_DOCUMENTS: Documents of
    new entries without a link, ERRORS: ErrorRows, NOT_MODIFIED: feed URLs that answered 304,
    NOT_DUE: feeds skipped as not due (`schedule`), ENTRIES_SEEN: keys of entries an earlier
    run fetched, FEED_STATES: FeedIndexEntries of the feeds read (validators and entry count;
    the poll schedule is added once their pages are fetched), ROBOTS: the robots.txt outcomes
    read}. `min_words`: the least an entry without a link must say to be an article
    (--min_words). Sitemaps listed by an index or a robots.txt are read level by level, each
    level a fetch step of its own (`sitemap_depth` levels at most below a given sitemap, one
    more below a robots.txt)."""

    def __init__(self, specs: list[FeedSpec], policy: FetchPolicy, run_id: str,
                 fetched_at: dt.datetime, feed_states, indexed_entry_keys, *, min_words: int,
                 schedule: PollSchedule = PollSchedule(), sitemap_depth: int = SITEMAP_DEPTH,
                 max_sitemaps: int = MAX_SITEMAPS):
        super().__init__()
        # One spec per feed: the first given wins (a feed listed twice is read once).
        firsts = {spec.location: spec for spec in reversed(specs)}
        self._specs = sorted(firsts.values(), key=lambda s: s.location)
        self._policy = policy
        self._run_id = run_id
        self._fetched_at = fetched_at
        self._feed_states = feed_states
        self._indexed_entry_keys = indexed_entry_keys
        self._min_words = min_words
        self._schedule = schedule
        self._max_sitemaps = max_sitemaps
        self._levels = fetch_levels({spec.kind for spec in self._specs}, sitemap_depth)

    def _due(self, specs, label: str):
        return specs | label >> beam.FlatMap(
            _due_or_not, states=beam.pvalue.AsDict(self._feed_states), now=self._fetched_at,
            schedule=self._schedule).with_outputs(NOT_DUE, main="due")

    def _fetch_level(self, specs, level: int, known_robots):
        """One level: its remote documents fetched (conditional GET), and parsed."""
        name = lambda step: step if level == 0 else f"{step}{level}"
        fetched = (
            specs
            | name("Remote") >> beam.Filter(lambda s: s.is_url)
            | name("Conditional") >> beam.Map(
                _feed_request, states=beam.pvalue.AsDict(self._feed_states),
                now=self._fetched_at, schedule=self._schedule)
            | name("FetchFeeds") >> FetchByHost(self._policy, self._run_id, known_robots))
        remote = fetched.responses | name("NotModified?") >> beam.FlatMap(
            _fetched_feed).with_outputs(NOT_MODIFIED, main="bodies")
        bodies = [remote.bodies]
        local_errors = []
        if level == 0:
            local = (
                specs
                | "Local" >> beam.Filter(lambda s: not s.is_url)
                | "ReadFeedFiles" >> beam.ParDo(ReadFeedFileFn(
                    self._run_id, self._policy.max_bytes)).with_outputs(ERRORS, main="bodies"))
            bodies.append(local.bodies)
            local_errors.append(local[ERRORS])
        parsed = (
            bodies
            | name("AllBodies") >> beam.Flatten()
            | name("Parse") >> beam.ParDo(ParseFeedFn(
                self._run_id, self._fetched_at, self._min_words,
                child_levels_left=self._levels - 1 - level,
                max_sitemaps=self._max_sitemaps)).with_outputs(
                ERRORS, FEED_STATES, CHILD_SITEMAPS, main=ENTRIES))
        errors_ = [fetched[ERRORS] | name("ErrorRows") >> beam.Values(), *local_errors,
                   parsed[ERRORS]]
        return parsed, remote[NOT_MODIFIED], errors_, fetched[ROBOTS], fetched.responses

    def expand(self, pipeline):
        specs = pipeline | "Specs" >> beam.Create(self._specs)
        due = self._due(specs, "Due?")
        entries, not_modified, not_due, states, errors_, robots, responses = \
            [], [], [due[NOT_DUE]], [], [], [], []
        level_specs = due.due
        for level in range(self._levels):
            known = None if not robots else (
                robots | f"KnownRobots{level}" >> beam.Flatten())
            parsed, unmodified, level_errors, level_robots, level_responses = \
                self._fetch_level(level_specs, level, known)
            responses.append(level_responses)
            entries.append(parsed[ENTRIES])
            not_modified.append(unmodified)
            states.append(parsed[FEED_STATES])
            errors_ += level_errors
            robots.append(level_robots)
            if level + 1 < self._levels:
                children = self._due(
                    parsed[CHILD_SITEMAPS]
                    | f"OneSpecEach{level + 1}" >> beam.Map(lambda s: (s.location, s))
                    | f"GroupSpecs{level + 1}" >> beam.GroupByKey()
                    | f"FirstSpec{level + 1}" >> beam.Map(lambda kv: min(
                        kv[1], key=lambda s: (s.publisher or "", s.topic or ""))),
                    f"Due{level + 1}?")
                not_due.append(children[NOT_DUE])
                level_specs = children.due
        flat = lambda pcolls, label: pcolls[0] if len(pcolls) == 1 else (
            pcolls | label >> beam.Flatten())
        split = (
            {"new": flat(entries, "AllEntries") | "KeyEntries" >> beam.Map(
                lambda pair: (entry_key(pair[0].location, pair[1].entry_id), pair)),
             "index": self._indexed_entry_keys | "KeyIndex" >> beam.Map(lambda k: (k, None))}
            | "JoinIndex" >> beam.CoGroupByKey()
            | "NewEntries" >> beam.FlatMap(_split_new_entries).with_outputs(
                ENTRIES_SEEN, ENTRY_DOCUMENTS, main="requests"))
        return {"requests": split.requests, ENTRY_DOCUMENTS: split[ENTRY_DOCUMENTS],
                ERRORS: errors_ | "FeedErrors" >> beam.Flatten(),
                NOT_MODIFIED: flat(not_modified, "AllNotModified"),
                NOT_DUE: flat(not_due, "AllNotDue"),
                ENTRIES_SEEN: split[ENTRIES_SEEN],
                FEED_STATES: flat(states, "AllFeedStates"),
                ROBOTS: flat(robots, "AllRobots"),
                RESPONSES: flat(responses, "AllResponses")}
