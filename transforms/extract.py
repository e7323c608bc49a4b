"""Extraction and cleaning: a Document becomes an Article with clean text and metadata.

HTML goes through trafilatura (main text, title, authors, date, site name, description,
categories) in a child process with a time limit per document; plain text and Markdown go
through newsbeam's own cleaner (transforms/text.py). Either way, the credits to news agencies are
read before boilerplate is dropped, and the text is Unicode- and white-space-normalised.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import hashlib
import logging
import re

import apache_beam as beam

from newsbeam.schemas.records import Article, Document
from newsbeam.transforms import errors, metrics
from newsbeam.transforms.bundles import in_window
from newsbeam.transforms.errors import ERRORS, exception_summary
from newsbeam.transforms.metadata import (person_authors, site_names, split_categories,
                                          strip_site_name)
from newsbeam.transforms.text import (clean_plain_text, content_hash, drop_boilerplate,
                                      english_word_share, markdown_title, normalize_text, prose_sample,
                                      without_furniture, wire_sources, word_count)
from newsbeam.transforms.timelimit import ChildFailed, TimeLimitedWorker, TimeLimitExceeded
from newsbeam.transforms.trafilatura_page import extract_page
from newsbeam.transforms.urls import canonicalize_url, date_from_url, domain_of, is_site_root

_LOG = logging.getLogger(__name__)

# A published date outside these bounds is a parsing accident, not a date: no web page is older
# than 1990, and no calendar is more than a day ahead of UTC.
_EARLIEST_DATE = dt.datetime(1990, 1, 1, tzinfo=dt.timezone.utc)
_FUTURE_SLACK = dt.timedelta(days=1)

_LANGUAGE_SAMPLE_CHARS = 3000
# English function words as a share of the prose's words from which a text is English whatever
# the detector says (transforms/text.py's ENGLISH_FUNCTION_WORDS: ~0.3 in English news, < 0.11
# in the German, French, Spanish, Polish and Turkish development texts), over enough words.
_ENGLISH_WORD_SHARE = 0.15
_ENGLISH_MIN_WORDS = 8
_PREFERRED_CHARSETS = ("cp1252", "latin_1", "iso8859_15")


FURNITURE_DROPPED = f"{metrics.STAGE_EXTRACT}_furniture_paragraphs_dropped"


class DecodeError(ValueError):
    pass


class NoMainText(ValueError):
    pass


class UnparseableHtml(ValueError):
    """The HTML parser stopped at one of its limits, before the page's text."""


# --- Pure functions ------------------------------------------------------------------------------


def decode_text(data: bytes) -> str:
    """Bytes of a text file as str: a BOM decides, then strict UTF-8, then the charset that
    charset_normalizer finds most likely. Raises DecodeError when nothing fits."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as error:
            raise DecodeError(f"invalid UTF-16: {error}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as utf8_error:
        import charset_normalizer
        matches = list(charset_normalizer.from_bytes(data))
        least_chaos = min((m.chaos for m in matches), default=None)
        # A guess that needed many substitutions is noise, not a charset.
        if least_chaos is None or least_chaos > 0.2:
            raise DecodeError(f"not UTF-8 ({utf8_error.reason} at byte {utf8_error.start}) and "
                              "no other charset fits") from None
        # Short texts fit several code pages equally well: prefer the most used one.
        tied = {m.encoding: m for m in matches if m.chaos == least_chaos}
        best = next((tied[e] for e in _PREFERRED_CHARSETS if e in tied), None) or \
            next(m for m in matches if m.chaos == least_chaos)
        return str(best)


@dataclasses.dataclass(frozen=True)
class PublishedDate:
    """A publication date as stored: `at` in UTC; `offset_min`, the source's UTC offset in
    minutes when it gave a time with one; `precision`, how much of `at` the source gave:
    'time', 'day', 'month' or 'year'. A date without a time is 00:00 UTC of the day it names
    (of the first day of the month or year), whatever the source's offset."""
    at: dt.datetime
    offset_min: int | None
    precision: str


DAY_OR_FINER = ("time", "day")


def _parse_timestamp(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        try:
            return email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None


def parse_published(value, precision: str | None = None,
                    latest: dt.datetime | None = None) -> PublishedDate | None:
    """A PublishedDate from ISO 8601 ('2022-02-16', '2022-02-16T10:00:00+01:00', htmldate's
    '2022-02-16T10:00:00+0100'), RFC 2822 ('Wed, 16 Feb 2022 10:00:00 GMT') or a datetime.
    `precision` is what the source says it gave; without it, a value with a time of day other
    than midnight is 'time', else 'day'. Naive times are taken as UTC (offset unknown). None when
    the value is missing or unparseable, before 1990 (no web page is older), or later than
    `latest` (default: now) plus a day, the widest gap between two time zones' calendars."""
    if value is None or precision not in (None, "time", "day", "month", "year"):
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        text = str(value).strip()
        parsed = _parse_timestamp(text) if text else None
        if parsed is None:
            return None
    if precision is None:
        precision = "day" if (parsed.hour, parsed.minute, parsed.second, parsed.microsecond) \
            == (0, 0, 0, 0) else "time"
    if precision == "time":
        offset = parsed.utcoffset()
        offset_min = None if offset is None else int(offset.total_seconds() // 60)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.timezone.utc)
        try:
            at = parsed.astimezone(dt.timezone.utc)
        except OverflowError:  # e.g. year 1 with a positive offset
            return None
    else:
        # The calendar day as the source wrote it, not shifted by its offset.
        at = dt.datetime(parsed.year, 1 if precision == "year" else parsed.month,
                         parsed.day if precision == "day" else 1, tzinfo=dt.timezone.utc)
        offset_min = None
    latest = (latest or dt.datetime.now(dt.timezone.utc)) + _FUTURE_SLACK
    if not _EARLIEST_DATE <= at <= latest:
        return None
    return PublishedDate(at, offset_min, precision)


def parse_datetime(value, latest: dt.datetime | None = None) -> dt.datetime | None:
    """The UTC datetime of `parse_published(value)`, or None."""
    published = parse_published(value, latest=latest)
    return published.at if published else None


def choose_published(candidates, latest: dt.datetime) -> tuple[PublishedDate | None, str]:
    """(date, source) of the first of `candidates` ((value, precision, source), most trusted
    first) that parses; a month or a year yields to a later candidate that gives a day within
    it (the URL's '/2021/03/08/' beats the page's 'March 2021'). (None, 'ingested') when none
    parses."""
    parsed = [(parse_published(value, precision, latest), source)
              for value, precision, source in candidates]
    parsed = [(date, source) for date, source in parsed if date is not None]
    if not parsed:
        return None, "ingested"
    first, source = parsed[0]
    if first.precision not in DAY_OR_FINER:
        span = 4 if first.precision == "year" else 7   # 'YYYY' or 'YYYY-MM'
        for date, other in parsed[1:]:
            if date.precision in DAY_OR_FINER and \
                    date.at.isoformat()[:span] == first.at.isoformat()[:span]:
                return date, other
    return first, source


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of the text's language, None for text too short to tell.

    py3langid reads the text's prose (`prose_sample`: results tables, lists and short lines,
    mostly names and numbers, mislead it into Nigerian Pidgin or Dutch). Its verdict is
    overruled for English when a fair share of the prose's words are English function words,
    which no text in another language shows (see ENGLISH_FUNCTION_WORDS): the detector must not
    keep a plainly English text from the English NER model."""
    if word_count(text) < 5:
        return None
    import py3langid
    sample = prose_sample(text)[:_LANGUAGE_SAMPLE_CHARS]
    language = py3langid.classify(sample)[0]
    if language != "en":
        share, words = english_word_share(sample)
        if share >= _ENGLISH_WORD_SHARE and words >= _ENGLISH_MIN_WORDS:
            return "en"
    return language


def make_article_id(canonical_url: str | None, text_hash: str) -> str:
    """Stable id: the same text under the same canonical URL (or with no URL) is the same
    article, run after run."""
    return hashlib.sha256(f"{canonical_url or ''}\n{text_hash}".encode()).hexdigest()[:24]


def split_authors(value: str | None) -> list[str]:
    """trafilatura's 'A; B' author string as a list."""
    if not value:
        return []
    return [name.strip() for name in re.split(r";|\band\b", value) if name.strip()]


def _html_paragraphs(text: str) -> list[str]:
    return [line for line in normalize_text(text).split("\n") if line]


def page_address(document_url: str | None, page: dict) -> str | None:
    """The URL the page gives for itself, unless that is its site's home page while the page is
    not one (a site-wide canonical link): then a deeper URL the page gives, else the document's
    own, else None."""
    page_url = page.get("url")
    if not is_site_root(page_url) or (document_url and is_site_root(document_url)):
        return page_url
    deeper = [u for u in page.get("url_candidates") or [] if not is_site_root(u)]
    return deeper[0] if deeper else None


def build_article(document: Document, text_paragraphs: list[str], raw_text: str, page: dict,
                  run_id: str, ingested_at: dt.datetime) -> Article:
    """The Article of a Document, given its cleaned paragraphs, the raw text they came from (read
    for agency credits), and what the page itself says (`page`, empty for plain text).
    What the record says (JSONL fields) wins over what the page says. Dates: a record's own
    date beats the page's, the page's beats a feed entry's, any of them beats a date in the
    URL, which beats the ingestion time; a page's month or year yields to a day in the URL.
    The title loses the site's name, the authors what is not a person's name."""
    text = "\n\n".join(text_paragraphs)
    text_hash = content_hash(text)
    page_url = page_address(document.url, page)
    url = document.url or page_url
    canonical_url = canonicalize_url(page_url or document.url)
    publisher = document.publisher or page.get("sitename") or domain_of(url or page.get("url"))
    names = site_names(page.get("sitename") or publisher, url or page.get("url"))
    authors = document.authors or person_authors(split_authors(page.get("author")), names)
    credits_text = "\n".join([raw_text, *authors])

    record_date = (document.published_at, None, document.published_at_kind)
    # htmldate's last resort, the year of a copyright notice, says when the page was rendered.
    page_precision = page.get("date_precision")
    page_date = (page.get("date") if page_precision != "copyright" else None,
                 page_precision, "published")
    trusted_first = (record_date, page_date) if document.published_at_kind == "published" \
        else (page_date, record_date)
    published, date_source = choose_published(
        (*trusted_first, (date_from_url(url), "day", "url")), ingested_at)

    categories = document.categories or split_categories(
        (page.get("categories") or []) + (page.get("tags") or []))
    return Article(
        article_id=make_article_id(canonical_url, text_hash),
        source_uri=document.source_uri,
        source_id=document.source_id,
        text=text,
        word_count=word_count(text),
        content_hash=text_hash,
        ingested_at=ingested_at,
        date_source=date_source,
        published_at=published.at if published else None,
        published_offset_min=published.offset_min if published else None,
        date_precision=published.precision if published else None,
        run_id=run_id,
        url=url,
        canonical_url=canonical_url,
        publisher=publisher,
        domain=domain_of(canonical_url or url or page.get("url")),
        title=document.title or strip_site_name(page.get("title"), names),
        description=document.description or page.get("description"),
        authors=authors,
        language=document.language or page.get("language") or detect_language(text),
        categories=list(dict.fromkeys(categories)),
        wire_sources=wire_sources(credits_text),
        feed_url=document.feed_url,
        feed_entry_id=document.feed_entry_id,
        feed_topic=document.feed_topic,
    )


def plain_text_parts(document: Document, raw: str) -> tuple[Document, list[str], str]:
    """(document with its Markdown title, clean paragraphs, raw text) of a text document."""
    if document.kind == "markdown":
        title, raw = markdown_title(raw)
        if title and not document.title:
            document = dataclasses.replace(document, title=title)
    return document, clean_plain_text(raw).split("\n\n"), raw


# --- DoFn and composite --------------------------------------------------------------------------


class ExtractArticlesFn(beam.DoFn):
    """Document -> Article; documents with nothing to keep -> ERRORS.

    Pages are extracted by trafilatura in a time-limited child process, overlapped with the
    rest: while the child works on one page, this process finishes the page before it (and
    reads, cleans and writes). So a page's outcome is emitted with the next page's, the last
    one at the end of the bundle."""

    def __init__(self, run_id: str, ingested_at: dt.datetime, timeout_s: float, min_words: int):
        self._run_id = run_id
        self._ingested_at = ingested_at
        self._timeout_s = timeout_s
        self._min_words = min_words

    def setup(self):
        self._html_worker = TimeLimitedWorker(extract_page, self._timeout_s)

    def teardown(self):
        self._html_worker.close()

    def start_bundle(self):
        self._page_in_child: Document | None = None
        self._page_place = None  # the page's (timestamp, window): its outcome goes there

    @metrics.timed(metrics.STAGE_EXTRACT)
    def process(self, document: Document, timestamp=beam.DoFn.TimestampParam,
                window=beam.DoFn.WindowParam):
        if document.kind != "html":
            yield self._outcome(document, lambda: self._text_article(document))
            return
        previous = self._collect_page()
        failed = None
        try:
            self._html_worker.submit(document.content, document.url)
            self._page_in_child, self._page_place = document, (timestamp, window)
        except ChildFailed as error:  # no child could be started for this page
            failed = self._error(document, errors.EXTRACTION_FAILED, str(error))
        except Exception as error:
            failed = self._internal_error(document, error)
        # Yielded after the submit, so that what follows downstream overlaps the child's work.
        if previous is not None:
            yield previous
        if failed is not None:
            yield failed

    @metrics.timed(metrics.STAGE_EXTRACT)
    def finish_bundle(self):
        last = self._collect_page()
        if last is not None:
            yield last

    def _collect_page(self):
        """The outcome of the page the child is working on, if any (waiting for it), in that
        page's own timestamp and window."""
        document, self._page_in_child = self._page_in_child, None
        if document is None:
            return None
        return in_window(self._page_outcome(document), *self._page_place)

    def _page_outcome(self, document: Document):
        try:
            page = self._collect_from_child()
        except TimeLimitExceeded as error:
            return self._error(document, errors.EXTRACTION_TIMEOUT,
                               f"{error} (--extraction_timeout_s)")
        except ChildFailed as error:
            return self._error(document, errors.EXTRACTION_FAILED, str(error))
        except Exception as error:  # trafilatura raised on this page (re-raised from the child)
            return self._error(document, errors.EXTRACTION_FAILED, exception_summary(error))
        return self._outcome(document, lambda: self._page_article(document, page))

    def _collect_from_child(self):
        """The child's result; the CPU time it spent counts to the stage (the wait for it is in
        the stage's wall time already)."""
        try:
            return self._html_worker.collect()
        finally:
            metrics.add_time(metrics.STAGE_EXTRACT, 0.0, self._html_worker.last_cpu_s)

    def _outcome(self, document: Document, make_article):
        """make_article()'s Article, or the error row of why there is none."""
        try:
            article = make_article()
        except DecodeError as error:
            return self._error(document, errors.UNDECODABLE, str(error))
        except NoMainText as error:
            return self._error(document, errors.EMPTY_EXTRACTION, str(error))
        except UnparseableHtml as error:
            return self._error(document, errors.UNPARSEABLE_HTML, str(error))
        except Exception as error:  # a fault of newsbeam's own on this input: its row, not the end
            return self._internal_error(document, error)
        if article.word_count < self._min_words:
            return self._error(document, errors.EMPTY_EXTRACTION,
                               f"{article.word_count} words of text; at least "
                               f"{self._min_words} are needed (--min_words)")
        return article

    def _error(self, document: Document, reason: str, message: str):
        return errors.error_output(errors.STAGE_EXTRACT, reason, message, document.source_uri,
                                   self._run_id, source_id=document.source_id, url=document.url)

    def _internal_error(self, document: Document, error: Exception):
        _LOG.error("extract: internal error on %s", document.source_uri, exc_info=error)
        return self._error(document, errors.INTERNAL_ERROR, exception_summary(error))

    def _page_article(self, document: Document, page: dict | None) -> Article:
        parser_limit = (page or {}).get("parser_limit")
        if page is None or not (page.get("text") or "").strip():
            if parser_limit:
                raise UnparseableHtml(f"the HTML parser stopped at its limit ({parser_limit}); "
                                      "no main text before that point")
            raise NoMainText("trafilatura found no main text in the page")
        paragraphs = _html_paragraphs(page["text"])
        without = without_furniture(paragraphs, set(page.get("furniture") or ()))
        metrics.count(FURNITURE_DROPPED, len(paragraphs) - len(without))
        paragraphs = drop_boilerplate(without)
        article = build_article(document, paragraphs, page["text"], page, self._run_id,
                                self._ingested_at)
        if parser_limit:
            if article.word_count < self._min_words:
                raise UnparseableHtml(
                    f"the HTML parser stopped at its limit ({parser_limit}); "
                    f"{article.word_count} words of text before that point, at least "
                    f"{self._min_words} are needed (--min_words)")
            _LOG.warning("extract: %s: the HTML parser stopped at its limit (%s); the text is "
                         "what came before that point", document.source_uri, parser_limit)
        return article

    def _text_article(self, document: Document) -> Article:
        raw = document.content if isinstance(document.content, str) \
            else decode_text(document.content)
        document, paragraphs, raw = plain_text_parts(document, raw)
        return build_article(document, [p for p in paragraphs if p], raw, {}, self._run_id,
                             self._ingested_at)


class ExtractArticles(beam.PTransform):
    """Documents -> Articles (main output) and ErrorRows (ERRORS)."""

    def __init__(self, run_id: str, ingested_at: dt.datetime, timeout_s: float, min_words: int):
        super().__init__()
        self._fn = ExtractArticlesFn(run_id, ingested_at, timeout_s, min_words)

    def expand(self, documents):
        return documents | "Extract" >> beam.ParDo(self._fn).with_outputs(
            ERRORS, main="articles")
