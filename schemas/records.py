"""The records that flow through newsbeam, and the Arrow schemas derived from them.

Each record is a dataclass; its Arrow schema is computed from the type hints by `arrow_schema`, so
a field is declared once. Optional[...] fields are nullable, everything else is required.
Timestamps are UTC, microsecond precision. Nested dataclasses become structs, lists become
`list<...>` columns (written in Parquet's compliant nested layout by the sink).

Bump SCHEMA_VERSION whenever a field is added, removed or changes meaning, and say what changed
in SCHEMA_CHANGES. Add fields rather than rename or retype them: files of every version then read
together under their unified schema (DuckDB union_by_name, pyarrow unify_schemas, Spark
mergeSchema), a field a file lacks reading as null; `newsbeam compact` merges versions that way.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing
from typing import Optional

import pyarrow as pa

SCHEMA_VERSION = 5
# Every version that was ever written, and what it changed.
SCHEMA_CHANGES = {
    1: "the first layout",
    2: "articles: feed_url, feed_entry_id, feed_topic added (feeds)",
    3: "articles: entities[].variants added (the other forms an entity was written in)",
    4: "articles: published_offset_min added (the source's UTC offset in minutes when it gave a "
       "time of day with one; published_at stays UTC) and date_precision added ('time', 'day', "
       "'month' or 'year': how much of published_at the source gave; null when date_source is "
       "'ingested'); published_at now carries the time of day when the page gives one; a "
       "copyright year is no longer a publication date; titles lose the site's name, authors "
       "what is not a person's name, comma-joined categories are split, a site-wide home-page "
       "canonical URL is not taken as the page's; index/feeds: the poll schedule (entries, "
       "new_entries, poll_interval_s, next_poll_at, polls_since_full, full_fetched_at)",
    5: "index/paragraphs added (domain, paragraph_key, pages, run_id, seen_at): the paragraphs "
       "seen on each publisher's pages, so that one repeated across runs is dropped as "
       "boilerplate; articles: text without short link-dense paragraphs and figure captions or "
       "credit lines (transforms/text.py is_furniture)",
}


@dataclasses.dataclass
class Document:
    """One input document before extraction: a file's bytes, or one JSONL record's fields.
    Internal to the pipeline; never written."""
    source_uri: str
    kind: str                      # "text", "markdown" or "html"
    content: bytes | str           # bytes from a file, str from a JSONL record
    source_id: Optional[str] = None
    url: Optional[str] = None
    title: Optional[str] = None
    description: Optional[str] = None
    authors: list[str] = dataclasses.field(default_factory=list)
    publisher: Optional[str] = None
    published_at: Optional[str] = None   # as the input wrote it; parsed by extraction
    # How far the input's date is trusted: "published" (the record says so; it beats the
    # date found in the page) or "feed" (a feed entry's date; the page's own date beats it).
    published_at_kind: str = "published"
    categories: list[str] = dataclasses.field(default_factory=list)
    language: Optional[str] = None
    # From a feed: the feed's URL (or file), the entry's id (guid, else its link), and the topic
    # the feeds list gives that feed (an IPTC slug), used when the article names no section.
    feed_url: Optional[str] = None
    feed_entry_id: Optional[str] = None
    feed_topic: Optional[str] = None


@dataclasses.dataclass
class Entity:
    """One distinct named entity of an article: its canonical (fullest) name, and the other
    forms the article wrote it in."""
    text: str
    label: str
    count: int
    start: int
    variants: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class TopicScore:
    topic: str
    score: float


@dataclasses.dataclass
class Article:
    """One article, from extraction to the sink. Later stages fill the fields they own."""
    article_id: str
    source_uri: str
    text: str
    word_count: int
    content_hash: str
    ingested_at: dt.datetime
    date_source: str
    run_id: str
    source_id: Optional[str] = None
    url: Optional[str] = None
    canonical_url: Optional[str] = None
    publisher: Optional[str] = None
    domain: Optional[str] = None
    title: Optional[str] = None
    description: Optional[str] = None
    authors: list[str] = dataclasses.field(default_factory=list)
    language: Optional[str] = None
    published_at: Optional[dt.datetime] = None
    # The source's UTC offset in minutes ('+01:00' -> 60) when it gave a time of day with one;
    # published_at + offset is the source's local time.
    published_offset_min: Optional[int] = None
    # How much of published_at the source gave: 'time', 'day', 'month' (the 1st is filler) or
    # 'year' (1 January is filler); None when there is no published_at.
    date_precision: Optional[str] = None
    categories: list[str] = dataclasses.field(default_factory=list)
    wire_sources: list[str] = dataclasses.field(default_factory=list)
    topic: str = "unclassified"
    topic_confidence: Optional[float] = None
    topic_source: Optional[str] = None
    topic_scores: list[TopicScore] = dataclasses.field(default_factory=list)
    entities: list[Entity] = dataclasses.field(default_factory=list)
    duplicate_count: int = 0
    story_id: Optional[str] = None
    is_story_lead: bool = False
    schema_version: int = SCHEMA_VERSION
    feed_url: Optional[str] = None
    feed_entry_id: Optional[str] = None
    feed_topic: Optional[str] = None


@dataclasses.dataclass
class Duplicate:
    """A copy that was not kept because another article carries the same text."""
    duplicate_of: str
    source_uri: str
    similarity: float
    method: str
    ingested_at: dt.datetime
    run_id: str
    source_id: Optional[str] = None
    url: Optional[str] = None
    publisher: Optional[str] = None
    title: Optional[str] = None
    published_at: Optional[dt.datetime] = None
    article_id: Optional[str] = None   # the copy's own id (a later run recognises it by this)
    schema_version: int = SCHEMA_VERSION


@dataclasses.dataclass
class ErrorRow:
    """An input, or part of one, that a stage could not turn into an article. `error_id` is the
    same whenever the same input fails the same way, so a re-run records it once."""
    error_id: str
    stage: str
    reason: str
    message: str
    source_uri: str
    occurred_at: dt.datetime
    run_id: str
    source_id: Optional[str] = None
    url: Optional[str] = None
    schema_version: int = SCHEMA_VERSION


@dataclasses.dataclass
class ErrorIndexEntry:
    """An error this dataset has recorded already."""
    error_id: str
    run_id: str


@dataclasses.dataclass
class IndexEntry:
    """What a later run needs to know about an article this run stored."""
    article_id: str
    content_hash: str
    run_id: str
    ingested_at: dt.datetime
    canonical_url: Optional[str] = None
    published_at: Optional[dt.datetime] = None


@dataclasses.dataclass
class FeedIndexEntry:
    """A feed fetched with 200 OK, and the validators to ask it "modified since?" next time."""
    feed_url: str
    run_id: str
    fetched_at: dt.datetime
    etag: Optional[str] = None
    last_modified: Optional[str] = None
    # Its poll schedule (transforms/polling.py), null in states written before it: the entries
    # the feed listed and how many were new (0 and 0 for "not modified"), the interval chosen
    # and when the feed is next due, "not modified" answers since the last 200, and that 200's
    # time (a full fetch is due after --full_fetch_every of them or --full_fetch_after_h).
    entries: Optional[int] = None
    new_entries: Optional[int] = None
    poll_interval_s: Optional[float] = None
    next_poll_at: Optional[dt.datetime] = None
    polls_since_full: Optional[int] = None
    full_fetched_at: Optional[dt.datetime] = None


@dataclasses.dataclass
class EntryIndexEntry:
    """A feed entry this dataset has fetched (or found permanently unfetchable): later runs
    skip it."""
    entry_key: str
    feed_url: str
    run_id: str



@dataclasses.dataclass
class InputIndexEntry:
    """An input file every document of which ended as an article, a duplicate or a permanent
    error (index/inputs): a later run skips the file while its size and modification time match,
    or, when they differ, its content hash."""
    source_uri: str
    size: int
    mtime: float                  # seconds since the epoch, as the file system reports it
    inputs: int                   # documents and errors it gave: what a skipping run counts
    outcome: str                  # what they became: 'extracted=3,empty_input=1'
    run_id: str
    recorded_at: dt.datetime
    content_hash: Optional[str] = None   # SHA-256 of its bytes; None when it was not read


@dataclasses.dataclass
class DuplicateIndexEntry:
    """A copy this dataset recorded as a duplicate: a later run skips it as already ingested."""
    article_id: str
    duplicate_of: str
    run_id: str


@dataclasses.dataclass
class TermWeight:
    term: str
    weight: float


@dataclasses.dataclass
class Story:
    """One story (event cluster). A later run that adds members to a story appends a new row
    with the same story_id: the row with the latest `updated_at` is the current one."""
    story_id: str
    lead_article_id: str
    lead_published_at: dt.datetime   # the story's date partition: fixed for its lifetime
    member_count: int
    first_published: dt.datetime
    last_published: dt.datetime
    updated_at: dt.datetime
    run_id: str
    title: Optional[str] = None
    publishers: list[str] = dataclasses.field(default_factory=list)
    top_terms: list[str] = dataclasses.field(default_factory=list)
    top_entities: list[str] = dataclasses.field(default_factory=list)
    schema_version: int = SCHEMA_VERSION


@dataclasses.dataclass
class SignatureIndexEntry:
    """The MinHash signature of a stored article: what a later run needs to find its copies."""
    article_id: str
    signature: list[int]
    shingle_count: int
    run_id: str
    ingested_at: dt.datetime
    published_at: Optional[dt.datetime] = None


@dataclasses.dataclass
class ParagraphIndexEntry:
    """A paragraph seen on a publisher's pages in one run (transforms/boilerplate.py): a later
    run drops it as the site's furniture once it has been seen on `--boilerplate_min_pages`
    pages of the domain, whatever runs they came in."""
    domain: str
    paragraph_key: str      # boilerplate.paragraph_key: 16 hex digits of the fingerprint's SHA-1
    pages: list[str]        # boilerplate.page_key of the pages it was newly seen on this run
    run_id: str
    seen_at: dt.datetime


@dataclasses.dataclass
class StoryIndexEntry:
    """A story's representative (its lead's terms) for linking later runs' articles to it. The
    entry with the latest `updated_at` per story_id is current."""
    story_id: str
    lead_article_id: str
    lead_published_at: dt.datetime   # the story's date partition: fixed for its lifetime
    member_count: int
    first_published: dt.datetime
    last_published: dt.datetime
    updated_at: dt.datetime
    run_id: str
    title: Optional[str] = None
    publishers: list[str] = dataclasses.field(default_factory=list)
    terms: list[TermWeight] = dataclasses.field(default_factory=list)


# --- Arrow schemas, derived from the dataclasses -------------------------------------------------

_SCALARS = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    dt.datetime: pa.timestamp("us", tz="UTC"),
}


def _arrow_type(hint) -> tuple[pa.DataType, bool]:
    """(Arrow type, nullable) for one resolved type hint."""
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(members) != 1:
            raise TypeError(f"only Optional[X] unions are supported, not {hint}")
        return _arrow_type(members[0])[0], True
    if origin is list:
        (item,) = typing.get_args(hint)
        item_type, _ = _arrow_type(item)
        return pa.list_(pa.field("element", item_type, nullable=False)), False
    if dataclasses.is_dataclass(hint):
        return pa.struct(_fields(hint)), False
    if hint in _SCALARS:
        return _SCALARS[hint], False
    raise TypeError(f"no Arrow type for {hint!r}")


def _fields(cls) -> list[pa.Field]:
    hints = typing.get_type_hints(cls)
    fields = []
    for field in dataclasses.fields(cls):
        arrow_type, nullable = _arrow_type(hints[field.name])
        fields.append(pa.field(field.name, arrow_type, nullable=nullable))
    return fields


def arrow_schema(cls, drop: tuple[str, ...] = ()) -> pa.Schema:
    """The Arrow schema of a record class, without the named columns (e.g. partition keys)."""
    return pa.schema([f for f in _fields(cls) if f.name not in drop])


def to_row(record) -> dict:
    """A record as a plain dict of Python values, nested records included."""
    return dataclasses.asdict(record)


def to_table(records, schema: pa.Schema) -> pa.Table:
    """Records as an Arrow table of `schema` (columns outside the schema are left out)."""
    names = schema.names
    rows = [{name: row[name] for name in names} for row in map(to_row, records)]
    return pa.Table.from_pylist(rows, schema=schema)
