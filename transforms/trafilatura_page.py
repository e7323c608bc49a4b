"""trafilatura on one page: what extraction runs in its time-limited child process.

Kept apart from newsbeam.transforms/extract.py so that the child imports trafilatura (and its date
library) and nothing else (not Beam): it starts faster and holds less memory.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import logging

import htmldate
import trafilatura
from dateutil.parser import ParserError, parse
from trafilatura.settings import DEFAULT_CONFIG

from newsbeam.transforms.text import (FURNITURE_MAX_CHARS, Evidence, covered_share,
                                      fingerprint_text, is_furniture, normalize_text)

_PAGE_FIELDS = ("title", "author", "url", "hostname", "description", "sitename", "date",
                "categories", "tags", "text", "language")

# libxml2 stops parsing a document that goes past one of its resource limits (elements nested
# more than 256 deep, a text node over 10 MB) and reports it in the parser's error log; what
# follows the point where it stopped is not in the tree.
_RESOURCE_LIMIT = "ERR_RESOURCE_LIMIT"


def parser_limit_hit(tree) -> str | None:
    """lxml's message when parsing `tree` stopped at a libxml2 resource limit, else None. Read
    from the error log of the parser that built the tree, right after it did."""
    parser = tree.getroottree().parser
    if parser is None:
        return None
    for entry in parser.error_log:
        if entry.type_name == _RESOURCE_LIMIT:
            return entry.message.strip()
    return None


# htmldate's output with the time of day and the source's UTC offset ('+0100'; empty when the page
# gives none). A date without a time comes out at 00:00:00.
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"

# What htmldate says (at DEBUG level) when it falls back on less than a full date: these are the
# only routes by which it returns a month (the 1st) or a year (1 January) instead of a day.
_COPYRIGHT_FALLBACK = "using copyright year as default"
_TWO_COMPONENTS = "switching to two components"
_ONE_COMPONENT = "switching to one component"
_FULL_TEXT_DATE = "multilingual text found: "
_SEGMENT_PARSED = ("custom parse test: ", "send to external parser: ")
_RESERVE_DATE = "opting for reserve date"
_COPYRIGHT_META = "copyrightyear"
# The head metas that give a modification date; htmldate takes one of them ("reserve") when the
# head has no publication date, and then stops looking.
_MODIFIED_META = ('.//meta[contains(translate(@property|@name|@itemprop, "MODIFEDUPAT", '
                  '"modifedupat"), "modified") or contains(translate(@property|@name|@itemprop, '
                  '"MODIFEDUPAT", "modifedupat"), "updated")]')


class _Trace(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def htmldate_trace():
    """The messages htmldate logs while the block runs: its own account of which rule gave the
    date. Kept from the other loggers' handlers (the logger does not propagate meanwhile)."""
    logger, trace = logging.getLogger("htmldate"), _Trace()
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(trace)
    try:
        yield trace.messages
    finally:
        logger.removeHandler(trace)
        logger.setLevel(level)
        logger.propagate = propagate


def date_precision(value: str | None, trace: list[str]) -> str | None:
    """How much of `value` (htmldate's date in DATE_FORMAT) the page gave, from htmldate's
    trace: 'time', 'day', 'month' (a month and year: the 1st is htmldate's filler), 'year'
    (1 January is filler), or 'copyright' (the year of a copyright notice, htmldate's last resort:
    when the page was rendered, not published). None without a value."""
    if not value:
        return None
    if any(_COPYRIGHT_FALLBACK in m for m in trace) or (
            any(_RESERVE_DATE in m for m in trace) and value[5:10] == "01-01"
            and any(_COPYRIGHT_META in m.lower() for m in trace)):
        return "copyright"
    if any(_ONE_COMPONENT in m for m in trace):
        return "year"
    if any(_TWO_COMPONENTS in m for m in trace) and not any(
            m.startswith(_FULL_TEXT_DATE + value[:10]) for m in trace):
        return "month"
    filled = segment_precision(parsed_segment(value, trace) or "", value)
    if filled in ("month", "year"):
        return filled
    return "day" if value[11:19] in ("", "00:00:00") else "time"


def parsed_segment(value: str, trace: list[str]) -> str | None:
    """The text htmldate parsed `value` from: the last one it tried before validating the date."""
    validated = [i for i, m in enumerate(trace) if m.startswith(f"valid date: {value[:10]}")]
    if not validated:
        return None
    for message in reversed(trace[:validated[-1]]):
        if message.startswith(_SEGMENT_PARSED):
            return message.split(": ", 1)[1]
    return None


_DEFAULTS = (dt.datetime(2000, 1, 1), dt.datetime(2004, 2, 2))


def segment_precision(segment: str, value: str | None = None,
                      today: dt.date | None = None) -> str | None:
    """'month' or 'year' when the text htmldate last parsed a date from ('2021/03') lacks the
    day (or the month): parsed with two different default dates, the day (or month) follows the
    default, so the parser supplied it. 'day' when both readings agree, None when the text does
    not parse. With htmldate's `value`, a verdict stands only where `value` shows the filler
    (the 1st, or today's day and month, which its parser fills in) and agrees with what the
    text does give: a text the parser half understands ('27. Januar 2020') is no evidence."""
    if not segment:
        return None
    try:
        first, second = (parse(segment, default=d, fuzzy=True) for d in _DEFAULTS)
    except (ParserError, ValueError, OverflowError, TypeError):
        return None
    if first.year != second.year:
        return None
    verdict = "year" if first.month != second.month else \
        "month" if first.day != second.day else "day"
    if value is None or verdict == "day":
        return verdict
    today = today or dt.date.today()
    year, month, day = int(value[:4]), int(value[5:7]), int(value[8:10])
    if year != first.year:
        return None
    if verdict == "month":
        return verdict if month == first.month and day in (1, today.day) else None
    return verdict if (month, day) in ((1, 1), (today.month, today.day)) else None


def date_params(url: str | None) -> dict:
    return {"extensive_search": True, "original_date": True, "outputformat": DATE_FORMAT,
            "max_date": (dt.date.today() + dt.timedelta(days=1)).isoformat(), "url": url}


def publication_date(tree, url: str | None, found: str | None, trace: list[str]):
    """(date, precision) of the page, from what htmldate found during extraction (`found`, with
    its `trace`). When htmldate settled for a modification date because the page's head has no
    publication date (its "reserve"), it is asked again without the modification metas: a
    publication date elsewhere in the page beats it."""
    if found and any(_RESERVE_DATE in m for m in trace):
        pruned = copy.deepcopy(tree)
        for meta in pruned.xpath(_MODIFIED_META):
            meta.getparent().remove(meta)
        with htmldate_trace() as second_trace:
            second = htmldate.find_date(pruned, **date_params(url))
        if second and second[:10] <= found[:10]:
            found, trace = second, second_trace
    return found, date_precision(found, trace)


_URL_XPATHS = ('.//link[@rel="canonical"]/@href',
               './/meta[@property="og:url"]/@content',
               './/meta[@name="twitter:url"]/@content',
               './/link[@rel="alternate"][@hreflang="x-default"]/@href')


def page_urls(tree) -> list[str]:
    """The absolute URLs the page gives for itself in its head (canonical link, og:url,
    twitter:url), in that order: when trafilatura's pick is the site's home page, a deeper one
    may be the page's."""
    urls = []
    heads = tree.xpath(".//head")  # found once: each search below stays inside the head
    for xpath in _URL_XPATHS:
        for head in heads:
            for value in head.xpath(xpath):
                value = str(value).strip()
                if value.startswith(("http://", "https://")) and value not in urls:
                    urls.append(value)
    return urls


# Figure captions and credit lines: the image's text, not the article's. Found by tag or by a
# class naming them (ASCII letters only folded, as XPath's translate() would).
_CAPTION_CLASS_WORDS = ("caption", "credit", "copyright")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_MAX_ELEMENT_CHARS = 2000
# Elements that start a paragraph of their own, as a browser lays them out (and trafilatura cuts).
_BLOCKS = frozenset("p div li ul ol h1 h2 h3 h4 h5 h6 td th tr table dd dt dl blockquote "
                    "figcaption figure section article header footer nav aside form pre "
                    "address main br".split())
_NO_TEXT = frozenset("script style noscript template svg".split())


def is_caption(element) -> bool:
    """A figure caption or credit line: a <figcaption>, or an element whose class names one."""
    if element.tag == "figcaption":
        return True
    classes = element.get("class")
    return bool(classes) and any(word in classes.translate(_ASCII_LOWER)
                                 for word in _CAPTION_CLASS_WORDS)


def caption_text(element) -> str | None:
    text = " ".join(element.text_content().split())
    return text if 0 < len(text) <= _MAX_ELEMENT_CHARS else None


def page_evidence(tree, max_chars: int = FURNITURE_MAX_CHARS) -> tuple[dict[str, float], set[str]]:
    """The page's furniture evidence, from one walk of its tree:
    - {fingerprint of a paragraph of the page: the share of its characters inside links}, a
      paragraph being the text of a block element outside the blocks nested in it (as justext
      cuts them), for paragraphs of at most `max_chars`. A text found in several blocks gets
      the lowest share (a headline linked in a teaser elsewhere is still the headline here);
    - the distinct texts (spaces folded) of its figure captions and credit lines (below the
      root), of at most _MAX_ELEMENT_CHARS."""
    densities: dict[str, float] = {}
    captions: set[str] = set()

    def close(parts: list[str], linked: int):
        text = " ".join(parts)
        if text and len(text) <= max_chars:
            key = fingerprint_text(text)
            densities[key] = min(densities.get(key, 1.0), min(1.0, linked / len(text)))

    def add_captions_below(element):
        # Inside script, style, svg...: no paragraph text, but a caption is still a caption.
        for inner in element.iterdescendants():
            if isinstance(inner.tag, str) and is_caption(inner):
                text = caption_text(inner)
                if text:
                    captions.add(text)

    def add_text(block: list, text: str | None, linked: bool) -> None:
        if text and not text.isspace():
            text = " ".join(text.split())
            block[0].append(text)
            if linked:
                block[1] += len(text)

    # A block is [its texts, the characters of them inside links]; the walk passes the one
    # an element's text belongs to.
    def walk(element, block: list, in_link: bool, is_root: bool = False) -> None:
        tag = element.tag
        if not is_root and is_caption(element):
            text = caption_text(element)
            if text:
                captions.add(text)
        if tag in _NO_TEXT:
            add_captions_below(element)
            return
        own = [[], 0] if tag in _BLOCKS else block
        linked = in_link or tag == "a"
        add_text(own, element.text, linked)
        for child in element:
            if isinstance(child.tag, str):
                walk(child, own, linked)
            add_text(own, child.tail, linked)
        if own is not block:
            close(*own)

    root = [[], 0]
    if isinstance(tree.tag, str):
        walk(tree, root, False, is_root=True)
    close(*root)
    return densities, captions


def furniture(tree, text: str) -> list[str]:
    """The paragraphs (lines of `text`, as normalize_text gives them) that are the site's
    furniture by the page's own evidence (text.is_furniture)."""
    lines = {line for line in normalize_text(text).split("\n")
             if line and len(line) <= FURNITURE_MAX_CHARS}
    if not lines:
        return []
    densities, captions = page_evidence(tree)
    return sorted(line for line in lines if is_furniture(line, Evidence(
        link_density=densities.get(fingerprint_text(line), 0.0),
        caption_share=covered_share(line, captions))))


def extract_page(html: bytes | str, url: str | None) -> dict | None:
    """The main text and metadata of a page as plain values (they cross a process boundary),
    with `parser_limit` set when the HTML parser stopped early; None when the page parses to
    nothing or trafilatura finds no main text in a page that parsed whole."""
    # trafilatura's own loader (charset, repairs), so that the tree is the one it would build;
    # loading it here gives the parser's error log while it is still this page's.
    tree = trafilatura.load_html(html, DEFAULT_CONFIG.getint("DEFAULT", "MAX_FILE_SIZE"))
    if tree is None:
        return None
    parser_limit = parser_limit_hit(tree)
    with htmldate_trace() as trace:
        document = trafilatura.bare_extraction(
            tree, url=url, with_metadata=True, include_comments=False, include_tables=False,
            deduplicate=False, date_extraction_params=date_params(url))
    if document is None:
        return {"parser_limit": parser_limit} if parser_limit else None
    fields = document.as_dict() if hasattr(document, "as_dict") else dict(document)
    page = {**{key: fields.get(key) for key in _PAGE_FIELDS}, "parser_limit": parser_limit}
    page["date"], page["date_precision"] = publication_date(
        tree, fields.get("url") or url, fields.get("date"), trace)
    page["url_candidates"] = page_urls(tree)
    page["furniture"] = furniture(tree, page["text"] or "")
    return page
