"""Pure text functions shared by the stages: normalising, unwrapping, boilerplate, wire credits.

Nothing here knows about Beam. The order matters when cleaning an article: credits to news agencies
are read from the raw text first (they often live in the very lines that are boilerplate, such as
copyright footers), then boilerplate lines go.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import unicodedata

# --- Unicode and whitespace ----------------------------------------------------------------------

# Characters that carry no text: zero-width spaces and joiners, soft hyphens, BOMs, bidi marks.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e\u200f"), None)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HSPACE = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def valid_unicode(text: str) -> str:
    """`text` with lone surrogates (legal in JSON, not in UTF-8 or Parquet) replaced by '?'."""
    return text.encode("utf-8", "replace").decode("utf-8")


def normalize_text(text: str) -> str:
    """NFC, invisible and control characters removed, every space kind folded to one space, lines
    trimmed, at most one blank line in a row. Quotes and dashes are kept as written."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text.translate(_INVISIBLE))
    lines = [_HSPACE.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


_FOLD = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-",
    "\u2212": "-", "\u2026": "...",
})


def fingerprint_text(text: str) -> str:
    """The form two copies of one text share when they differ only in typography: NFKC, case
    folded, curly quotes and dashes made plain, all white space one space."""
    text = unicodedata.normalize("NFKC", text).translate(_FOLD).casefold()
    return " ".join(text.split())


def content_hash(text: str) -> str:
    """Hex SHA-256 of the fingerprint of `text`."""
    return hashlib.sha256(fingerprint_text(text).encode("utf-8")).hexdigest()


def word_count(text: str) -> int:
    return len(re.findall(r"\w+(?:[-'’]\w+)*", text))


# --- Unwrapping hard-wrapped plain text ----------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?:;\"”’»)\]]$")
_OPENING_QUOTES = "\"'“‘«("
# A line that continues the sentence of the line before it when that one has no closing
# punctuation: it opens in lower case ("rose\nby 3%"), or the line before ends on a comma, a
# word broken at a hyphen or a dash ("Earlier this week,\nUS President ..."); not a rule of
# dashes ("-----").
_OPEN_ENDING = re.compile(r"(?:,|[^\W\d_]-|\s[–—])$")
# A list item: a bullet, a number followed by a dot or parenthesis, or a lower-case letter
# followed by one ("a)", "(b)", "c."; a capital and a dot is an initial: "J. Vaughan").
_LIST_ITEM = re.compile(r"^(?:[-*•·–—+]|\(?\d{1,3}[.)]|\(?[a-z][.)])\s")
_TABLE_LINE_MIN_TOKENS = 4
_TABLE_LINE_DIGIT_SHARE = 0.4


def is_table_line(line: str) -> bool:
    """A line that is mostly numbers: a sports table, results or figures row."""
    tokens = line.split()
    if len(tokens) < _TABLE_LINE_MIN_TOKENS:
        return False
    numeric = sum(1 for t in tokens if not t.isalpha() and any(map(str.isdigit, t)))
    return numeric >= _TABLE_LINE_DIGIT_SHARE * len(tokens)


def opens_in_lower_case(line: str) -> bool:
    first = line.lstrip(_OPENING_QUOTES)[:1]
    return first.isalpha() and first.islower()


def is_list_item(line: str) -> bool:
    return bool(_LIST_ITEM.match(line))


def _is_structure(line: str) -> bool:
    """A line that stands on its own whatever its length: a list item or a table row."""
    return is_list_item(line) or is_table_line(line)


def _looks_wrapped(lines: list[str]) -> bool:
    """A block is hard-wrapped prose when its inner lines fill a narrow band below a fixed
    width (the typical 72-80 column wrap), are not list items or table rows, and often open in
    lower case, as lines cut mid-sentence do (a column of capitalised rows, a list of names or
    headlines, does not). The first line (often indented or cut short) and the last are not
    looked at for the width."""
    inner = lines[1:-1] if len(lines) > 2 else lines[:-1]
    if not inner:
        return False
    width = max(len(line) for line in lines)
    if width > 160:
        return False
    if sum(_is_structure(line) for line in lines) > 0.25 * len(lines):
        return False
    # One finished sentence a line is a paragraph a line, however even the lengths.
    if sum(bool(_SENTENCE_END.search(line)) for line in inner) > 0.5 * len(inner):
        return False
    if len(lines) >= 3 and sum(map(opens_in_lower_case, lines[1:])) \
            < 0.2 * (len(lines) - 1):
        return False
    return sum(len(line) >= 0.6 * width for line in inner) >= 0.75 * len(inner)


def _continues(current: str, following: str) -> bool:
    """Whether `following` carries on the sentence `current` leaves open, in a block that is not
    hard-wrapped: never across a list item or table row, and only when `following` opens in
    lower case or `current` ends on a comma or hyphen. A short line without closing punctuation
    before a capitalised one is a line of its own: a headline, dateline, byline or name."""
    if _SENTENCE_END.search(current) or _is_structure(current) or _is_structure(following):
        return False
    return opens_in_lower_case(following) or bool(_OPEN_ENDING.search(current))


def unwrap_paragraphs(text: str) -> list[str]:
    """Paragraphs of plain text: blocks split at blank lines, the lines of a hard-wrapped block
    joined with spaces. In a block that is not wrapped, each line is a paragraph, except that a
    line is joined to the next when the sentence plainly goes on there (see `_continues`)."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        if _looks_wrapped(lines):
            paragraphs.append(" ".join(lines))
            continue
        current = lines[0]
        for line in lines[1:]:
            if _continues(current, line):
                current = f"{current} {line}"
            else:
                paragraphs.append(current)
                current = line
        paragraphs.append(current)
    return paragraphs


# --- Language evidence -------------------------------------------------------------------------

# Frequent English function words that other languages written in Latin script rarely use as
# words. Their share of a text's words is ~0.3 in English news prose (5th percentile 0.21 over
# the English texts of story-pairs-dev) and below 0.11 in every German, French, Spanish,
# Polish and Turkish text of story-pairs-multi-dev.
ENGLISH_FUNCTION_WORDS = frozenset("""
the of and to in is was for on that with by at from his her its their has have had were are
be been it he she they said after which an this who will would not
""".split())
_LETTER_WORD = re.compile(r"[^\W\d_]+")


def prose_sample(text: str) -> str:
    """The prose of a text, for telling its language: its lines without table rows and list
    items (names and numbers, which read as any language) and lines of fewer than four words,
    lines in capitals (headlines) in lower case, as the detector was trained on; the whole text
    when nothing is left."""
    lines = [line.lower() if _in_capitals(line) else line for line in text.split("\n")
             if len(line.split()) >= 4 and not _is_structure(line)]
    return "\n".join(lines) or text


def _in_capitals(line: str) -> bool:
    upper = sum(c.isupper() for c in line)
    return upper >= 0.8 * sum(c.isalpha() for c in line) > 0


def english_word_share(text: str) -> tuple[float, int]:
    """(share of the words of `text` that are English function words, number of words)."""
    words = _LETTER_WORD.findall(text.lower())
    if not words:
        return 0.0, 0
    return sum(word in ENGLISH_FUNCTION_WORDS for word in words) / len(words), len(words)


# --- Boilerplate ---------------------------------------------------------------------------------

# A paragraph is boilerplate when it is short and one of these matches it from its start.
_BOILERPLATE = re.compile(
    r"""^(?:
        (?:also\s+read|read\s+(?:also|more)|see\s+also|related(?:\s+(?:stories|articles|coverage))?
           |more\s+on\s+this|recommended|trending|must\s+read)\s*[:|\-–—]\s
      | (?:copyright\s*(?:©|\(c\))?\s*\d{4}|©|\(c\)).*?(?:all\s+rights\s+reserved
           |may\s+not\s+be\s+(?:published|reproduced))
      | all\s+rights\s+reserved\b
      | this\s+(?:material|article|story)\s+may\s+not\s+be\s+(?:published|reproduced|redistributed)
      | click\s+here\b
      | (?:please\s+)?(?:subscribe|sign\s+up)\s+(?:to|for|now|here)\b
      | (?:share|follow\s+us|follow)\s+(?:this|on|us)\b
      | share\s+(?:on\s+)?(?:facebook|twitter|x|whatsapp|linkedin|email)\b
      | (?:advertisement|advertising|sponsored(?:\s+content)?|scroll\s+to\s+continue)\s*$
      | (?:download\s+(?:our|the)\s+app|get\s+the\s+app)\b
      | we\s+use\s+cookies\b
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_BOILERPLATE_MAX_CHARS = 300
# The same in the other languages of the development pages: related-links headers, standing
# alone or before a headline ('À lire aussi » ...', 'Das könnte Sie auch interessieren:'), and
# skip links ('Hauptinhalt', 'Zum Inhalt springen').
_RELATED_OR_SKIP = re.compile(
    r"""^(?:
        (?:à|a)\s+lire\s+(?:aussi|également)|lire\s+aussi|voir\s+aussi|sur\s+le\s+même\s+sujet
      | pour\s+lire\s+la\s+suite
      | auch\s+interessant|das\s+(?:thema\s+)?könnte\s+(?:dich|sie)\s+auch\s+interessieren
      | mehr\s+zum\s+thema|lesen\s+sie\s+(?:auch|hier|mehr)|weitere\s+(?:artikel|beiträge)
      | (?:empfohlene|ähnliche|verwandte)\s+(?:beiträge|artikel)|teilen\s+mit|wird\s+geladen
      | lee\s+también|te\s+puede\s+interesar|noticias\s+relacionadas|leggi\s+anche
      | you\s+(?:may|might)\s+also\s+like|more\s+stories
      | hauptinhalt|zum\s+inhalt\s+springen|direkt\s+zum\s+inhalt|skip\s+to\s+(?:main\s+)?content
    )(?:\s*(?:[:»›|\-–—]|\.{3}|…)|\s*$)""",
    re.IGNORECASE | re.VERBOSE,
)
# A newsletter prompt: a short paragraph that names a newsletter and asks to sign up for it.
_NEWSLETTER = re.compile(r"newsletter", re.IGNORECASE)
_SIGN_UP = re.compile(r"abonn|subscri|sign\s+up|anmeld|inscri|registr|erhalten\s+sie|bestell",
                      re.IGNORECASE)
_NEWSLETTER_MAX_CHARS = 250


def is_boilerplate(paragraph: str) -> bool:
    if len(paragraph) > _BOILERPLATE_MAX_CHARS:
        return False
    if _BOILERPLATE.match(paragraph) or _RELATED_OR_SKIP.match(paragraph):
        return True
    return len(paragraph) <= _NEWSLETTER_MAX_CHARS and bool(
        _NEWSLETTER.search(paragraph) and _SIGN_UP.search(paragraph))


def drop_boilerplate(paragraphs: list[str]) -> list[str]:
    return [p for p in paragraphs if not is_boilerplate(p)]


# --- Site furniture: evidence from the page, paragraph by paragraph ------------------------------

# What the page's HTML says about a short paragraph of the extracted text (transforms/
# trafilatura_page.py reads it): a paragraph that is mostly link text within its own block is a
# teaser for another page ('Czytaj też: ...', 'Lea más: ...', a list of related headlines); one
# inside a figure caption or credit line is the image's, not the article's. A longer paragraph
# is prose whatever its links.
FURNITURE_MAX_CHARS = 300
_LINK_DENSITY = 0.7
_CAPTION_SHARE = 0.8
_ADDRESS = re.compile(r"^\S*(?:@|://|www\.)\S*$")


@dataclasses.dataclass(frozen=True)
class Evidence:
    """Shares of a paragraph's characters: `link_density` inside links within the paragraph's
    own block of the page (0 when no block has its text); `caption_share` inside the page's
    figure captions and credit lines."""
    link_density: float = 0.0
    caption_share: float = 0.0


def covered_share(paragraph: str, texts) -> float:
    """The share of the characters of `paragraph` (spaces folded) inside one of `texts`."""
    line = " ".join(paragraph.split())
    if not line:
        return 0.0
    covered = bytearray(len(line))
    for text in texts:
        if not 3 <= len(text) <= len(line):
            continue
        start = line.find(text)
        while start >= 0:
            covered[start:start + len(text)] = b"\x01" * len(text)
            start = line.find(text, start + len(text))
    return sum(covered) / len(line)


def is_furniture(paragraph: str, evidence: Evidence) -> bool:
    """A short paragraph that is mostly links (not a web or mail address given in the text), or a
    caption or credit line."""
    if len(paragraph) > FURNITURE_MAX_CHARS:
        return False
    return evidence.caption_share >= _CAPTION_SHARE or (
        evidence.link_density >= _LINK_DENSITY and not _ADDRESS.match(paragraph))


def without_furniture(paragraphs: list[str], furniture: set[str]) -> list[str]:
    """`paragraphs` without those in `furniture`; all of them when that would be most of the
    text (a page that is all captions or links is judged as it is, not emptied)."""
    kept = [p for p in paragraphs if p not in furniture]
    if sum(map(len, kept)) < 0.5 * sum(map(len, paragraphs)):
        return paragraphs
    return kept


# --- Wire-agency credits -------------------------------------------------------------------------

# Canonical agency name -> the names a text uses for it.
WIRE_AGENCIES: dict[str, tuple[str, ...]] = {
    "Reuters": ("Reuters", "Thomson Reuters"),
    "Associated Press": ("Associated Press", "AP"),
    "AFP": ("AFP", "Agence France-Presse", "Agence France Presse"),
    "Anadolu Agency": ("Anadolu Agency", "Anadolu Ajansı", "Anadolu", "AA"),
    "dpa": ("dpa", "Deutsche Presse-Agentur"),
    "EFE": ("EFE", "Agencia EFE"),
    "ANSA": ("ANSA",),
    "Kyodo": ("Kyodo", "Kyodo News"),
    "Yonhap": ("Yonhap",),
    "Xinhua": ("Xinhua",),
    "TASS": ("TASS",),
    "Interfax": ("Interfax",),
    "PTI": ("PTI", "Press Trust of India"),
    "IANS": ("IANS",),
    "ANI": ("ANI",),
    "UPI": ("UPI", "United Press International"),
    "Bloomberg": ("Bloomberg",),
}

_ALIAS_TO_AGENCY = {alias.casefold(): agency
                    for agency, aliases in WIRE_AGENCIES.items() for alias in aliases}
_ALIASES = "|".join(sorted((re.escape(a) for aliases in WIRE_AGENCIES.values() for a in aliases),
                           key=len, reverse=True))
# Datelines and bylines: "WASHINGTON (Reuters) -", "(AP) —", "/AFP/". Only in these tight forms
# are short aliases ("AP", "AA", "ANI") credits.
_TIGHT_CREDITS = [
    re.compile(rf"(?:\(|/)(?P<a>{_ALIASES})(?:\)|/)"),
    re.compile(rf"^(?:[A-Z][A-Za-z .,'-]{{0,40}}\s)?(?P<a>{_ALIASES})\s*[-–—:]\s", re.MULTILINE),
]
_SHORT_ALIASES = {"ap", "aa", "ani", "upi", "efe", "pti"}
# Looser phrases, where only the longer names count ("according to Reuters").
_LOOSE_CREDITS = [
    # Copyright and credit lines: "Copyright 2022 Anadolu Agency", "© Reuters 2022", "(c) AFP".
    re.compile(rf"(?:copyright|©|\(c\))(?:\s+\d{{4}})?\s+(?:by\s+)?(?:the\s+)?(?P<a>{_ALIASES})\b",
               re.IGNORECASE),
    # Attribution in prose: "according to Reuters", "Reuters reported", "told the Associated
    # Press" is not a credit (an interview), "reporting by ... for Reuters" is.
    # (The phrases match in any case; the agency names keep theirs, so "ap" is not "AP".)
    re.compile(rf"\b(?i:according\s+to|reported\s+by|cited\s+by|quoted\s+by|via|source:|"
               rf"contributed\s+by|with\s+reporting\s+(?:from|by))\s+(?i:the\s+)?"
               rf"(?P<a>{_ALIASES})\b"),
    re.compile(rf"\b(?:(?i:the)\s+)?(?P<a>{_ALIASES})\s+(?i:reported|news\s+agency\s+reported|"
               rf"contributed\s+to\s+this\s+report|said\s+in\s+a\s+report)\b"),
    re.compile(r"\b(?:reporting|writing)\s+by\b[^\n]{0,120}?\b(?P<a>Reuters)\b", re.IGNORECASE),
]
# Reuters house style closes with "Reporting by X; Editing by Y" even when the name is absent.
_REUTERS_SIGNOFF = re.compile(r"^\(?Reporting by [^\n]{3,200}(?:;|\band\b)[^\n]*Editing by [^\n]+$",
                              re.MULTILINE)


def wire_sources(text: str) -> list[str]:
    """The news agencies `text` credits, canonical names in order of first credit."""
    found: dict[str, int] = {}
    credits = [(pattern, True) for pattern in _TIGHT_CREDITS] + \
        [(pattern, False) for pattern in _LOOSE_CREDITS]
    for pattern, tight in credits:
        for match in pattern.finditer(text):
            alias = match.group("a").casefold()
            if alias in _SHORT_ALIASES and not tight:
                continue
            agency = _ALIAS_TO_AGENCY[alias]
            found[agency] = min(found.get(agency, match.start()), match.start())
    if "Reuters" not in found:
        signoff = _REUTERS_SIGNOFF.search(text)
        if signoff:
            found["Reuters"] = signoff.start()
    return sorted(found, key=found.get)


# --- Plain-text articles -------------------------------------------------------------------------


def clean_plain_text(raw: str) -> str:
    """A plain-text article as clean paragraphs separated by blank lines."""
    return "\n\n".join(drop_boilerplate(unwrap_paragraphs(normalize_text(raw))))


def markdown_title(raw: str) -> tuple[str | None, str]:
    """(title, rest) when the text opens with a Markdown heading '# Title', else (None, raw)."""
    match = re.match(r"\s*#\s+(.+?)\s*#*\s*(?:\n|$)", raw)
    if not match:
        return None, raw
    return match.group(1).strip(), raw[match.end():]
