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
import time

import apache_beam as beam

from newsbeam.schemas.records import Article, Document
from newsbeam.transforms import errors
from newsbeam.transforms.bundles import in_window
from newsbeam.transforms.errors import ERRORS, error_row, exception_summary
from newsbeam.transforms.text import (clean_plain_text, content_hash, drop_boilerplate,
                                      english_word_share, markdown_title, normalize_text, prose_sample,
                                      wire_sources, word_count)
from newsbeam.transforms.timelimit import ChildFailed, TimeLimitedWorker, TimeLimitExceeded
from newsbeam.transforms.trafilatura_page import extract_page
from newsbeam.transforms.urls import canonicalize_url, date_from_url, domain_of

_LOG = logging.getLogger(__name__)

# A published date outside these bounds is a parsing accident, not a date.
_EARLIEST_DATE = dt.datetime(1990, 1, 1, tzinfo=dt.timezone.utc)
_FUTURE_SLACK = dt.timedelta(days=2)

_LANGUAGE_SAMPLE_CHARS = 3000
# English function words as a share of the prose's words from which a text is English whatever
# the detector says (transforms/text.py's ENGLISH_FUNCTION_WORDS: ~0.3 in English news, < 0.11
# in the German, French, Spanish, Polish and Turkish development texts), over enough words.
_ENGLISH_WORD_SHARE = 0.15
_ENGLISH_MIN_WORDS = 8
_PREFERRED_CHARSETS = ("cp1252", "latin_1", "iso8859_15")


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


def parse_datetime(value) -> dt.datetime | None:
    """An aware UTC datetime from ISO 8601 ('2022-02-16', '2022-02-16T10:00:00Z'), RFC 2822
    ('Wed, 16 Feb 2022 10:00:00 GMT') or a datetime; naive times are taken as UTC. None when the
    value is missing, unparseable, before 1990 or more than two days in the future."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        text = str(value).strip()
        if not text:
            return None
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            try:
                parsed = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                return None
            if parsed is None:
                return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    try:
        parsed = parsed.astimezone(dt.timezone.utc)
    except OverflowError:  # e.g. year 1 with a positive offset
        return None
    if not _EARLIEST_DATE <= parsed <= dt.datetime.now(dt.timezone.utc) + _FUTURE_SLACK:
        return None
    return parsed


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


def build_article(document: Document, text_paragraphs: list[str], raw_text: str, page: dict,
                  run_id: str, ingested_at: dt.datetime) -> Article:
    """The Article of a Document, given its cleaned paragraphs, the raw text they came from (read
    for agency credits), and what the page itself says (`page`, empty for plain text).
    What the record says (JSONL fields) wins over what the page says. Dates: a record's own
    date beats the page's, the page's beats a feed entry's, any of them beats a date in the
    URL, which beats the ingestion time."""
    text = "\n\n".join(text_paragraphs)
    text_hash = content_hash(text)
    url = document.url or page.get("url")
    canonical_url = canonicalize_url(page.get("url") or document.url)
    authors = document.authors or split_authors(page.get("author"))
    credits_text = "\n".join([raw_text, *authors])

    record_date = (document.published_at, document.published_at_kind)
    page_date = (page.get("date"), "published")
    trusted_first = (record_date, page_date) if document.published_at_kind == "published" \
        else (page_date, record_date)
    published_at, date_source = None, "ingested"
    for candidate, source in (*trusted_first, (date_from_url(url), "url")):
        published_at = parse_datetime(candidate)
        if published_at is not None:
            date_source = source
            break

    categories = document.categories or [
        c for c in (page.get("categories") or []) + (page.get("tags") or []) if c]
    return Article(
        article_id=make_article_id(canonical_url, text_hash),
        source_uri=document.source_uri,
        source_id=document.source_id,
        text=text,
        word_count=word_count(text),
        content_hash=text_hash,
        ingested_at=ingested_at,
        date_source=date_source,
        published_at=published_at,
        run_id=run_id,
        url=url,
        canonical_url=canonical_url,
        publisher=document.publisher or page.get("sitename") or domain_of(url),
        domain=domain_of(canonical_url or url),
        title=document.title or page.get("title"),
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


class _Progress:
    """Logs how many documents a worker has done, at most every `interval_s` seconds."""

    def __init__(self, interval_s: float):
        self._interval_s = interval_s
        self._start = self._last = time.monotonic()
        self._count = 0

    def tick(self):
        self._count += 1
        now = time.monotonic()
        if self._interval_s > 0 and now - self._last >= self._interval_s:
            self._last = now
            _LOG.info("extract: %d documents (%.1f/s)", self._count,
                      self._count / (now - self._start))


class ExtractArticlesFn(beam.DoFn):
    """Document -> Article; documents with nothing to keep -> ERRORS.

    Pages are extracted by trafilatura in a time-limited child process, overlapped with the
    rest: while the child works on one page, this process finishes the page before it (and
    reads, cleans and writes). So a page's outcome is emitted with the next page's, the last
    one at the end of the bundle."""

    def __init__(self, run_id: str, ingested_at: dt.datetime, timeout_s: float, min_words: int,
                 progress_interval_s: float = 15.0):
        self._run_id = run_id
        self._ingested_at = ingested_at
        self._timeout_s = timeout_s
        self._min_words = min_words
        self._progress_interval_s = progress_interval_s

    def setup(self):
        self._html_worker = TimeLimitedWorker(extract_page, self._timeout_s)
        self._progress = _Progress(self._progress_interval_s)

    def teardown(self):
        self._html_worker.close()

    def start_bundle(self):
        self._page_in_child: Document | None = None
        self._page_place = None  # the page's (timestamp, window): its outcome goes there

    def process(self, document: Document, timestamp=beam.DoFn.TimestampParam,
                window=beam.DoFn.WindowParam):
        self._progress.tick()
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
            page = self._html_worker.collect()
        except TimeLimitExceeded as error:
            return self._error(document, errors.EXTRACTION_TIMEOUT,
                               f"{error} (--extraction_timeout_s)")
        except ChildFailed as error:
            return self._error(document, errors.EXTRACTION_FAILED, str(error))
        except Exception as error:  # trafilatura raised on this page (re-raised from the child)
            return self._error(document, errors.EXTRACTION_FAILED, exception_summary(error))
        return self._outcome(document, lambda: self._page_article(document, page))

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
        return beam.pvalue.TaggedOutput(ERRORS, error_row(
            errors.STAGE_EXTRACT, reason, message, document.source_uri, self._run_id,
            source_id=document.source_id, url=document.url))

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
        paragraphs = drop_boilerplate(_html_paragraphs(page["text"]))
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

    def __init__(self, run_id: str, ingested_at: dt.datetime, timeout_s: float, min_words: int,
                 progress_interval_s: float = 15.0):
        super().__init__()
        self._fn = ExtractArticlesFn(run_id, ingested_at, timeout_s, min_words,
                                     progress_interval_s)

    def expand(self, documents):
        return documents | "Extract" >> beam.ParDo(self._fn).with_outputs(
            ERRORS, main="articles")
