"""Pure functions that clean what a page says about itself: titles without the site's name,
authors that are people, categories as a list.

Each decision rests on evidence in the page's own metadata (the site name, the domain) or in the
string's shape (digits, function words, a host name flattened into words), not on lists of
known bad values.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

from newsbeam.transforms.text import ENGLISH_FUNCTION_WORDS

# What sites put between a title and their name: " | ", " - ", " – ", " — ", " · ", " ⋆ ",
# " » ", " › ", " :: ", " / ".
_TITLE_SEPARATOR = re.compile(r"\s+(?:[|\-–—·⋆»›/]|::)\s+")
_DATE_LIKE = re.compile(r"^\d{1,4}[./-]\d{1,2}[./-]\d{1,4}$")
# A host name's labels that are not the site's name.
_HOST_NOISE = frozenset({"www", "m", "amp", "blog", "news"})


def _squash(text: str | None) -> str:
    """Letters and digits only, case-folded, accents kept: 'MDR.DE' -> 'mdrde'."""
    text = unicodedata.normalize("NFKC", text or "").casefold()
    return "".join(c for c in text if c.isalnum())


def site_names(publisher: str | None, url: str | None) -> list[str]:
    """The squashed forms under which a site can name itself: its publisher or site name (and
    each part of one like 'stol.it / Suedtirol Online'), its host ('mdrde'), and the host's
    name label ('mdr', 'hessenschau')."""
    names = [_squash(publisher)]
    if publisher:
        names += [_squash(part) for part in _TITLE_SEPARATOR.split(publisher)]
    host = ""
    if url:
        try:
            host = (urlsplit(url).hostname or "").lower()
        except ValueError:
            host = ""
    labels = [label for label in host.split(".") if label and label not in _HOST_NOISE]
    if labels:
        names.append(_squash(".".join(labels)))
        if len(labels) >= 2:
            names.append(_squash(labels[-2]))   # the registrable name: 'mdr' of mdr.de
    return list(dict.fromkeys(n for n in names if len(n) >= 2))


def names_the_site(segment: str, names: list[str]) -> bool:
    """Whether a title segment ('MDR.DE', 'Schweizerische Vogelwarte', 'DW') is the site's name:
    equal to one of `names`, containing one (of at least four characters), or a part of one."""
    squashed = _squash(segment)
    if len(squashed) < 2:
        return False
    for name in names:
        if squashed == name:
            return True
        if len(name) >= 4 and name in squashed:
            return True
        if len(squashed) >= 4 and squashed in name:
            return True
        if len(squashed) < 4 and name.startswith(squashed) and len(name) <= 3 * len(squashed) + 4:
            return True
    return False


def strip_site_name(title: str | None, names: list[str]) -> str | None:
    """`title` without the site's name before or after it (' | MDR.DE', ' - Reuters',
    'Diario HOY | '), and without a date trailing after it (' | DW | 23.05.2011'). A title that is
    nothing but the site's name is kept as it is."""
    if not title or not names:
        return title
    segments = _TITLE_SEPARATOR.split(title.strip())
    separators = _TITLE_SEPARATOR.findall(title.strip())
    if len(segments) < 2:
        return title
    end, stripped = len(segments), False
    while end > 1 and (names_the_site(segments[end - 1], names)
                       or (_DATE_LIKE.match(segments[end - 1]) and end > 2
                           and names_the_site(segments[end - 2], names))):
        end -= 1
        stripped = True
    start = 0
    if end - start > 1 and names_the_site(segments[0], names):
        start, stripped = 1, True
    if not stripped:
        return title
    kept = segments[start]
    for separator, segment in zip(separators[start:end - 1], segments[start + 1:end]):
        kept += separator + segment
    return kept


# Words that make an author string a phrase, not a name: English function words (see
# transforms/text.py; not 'will', a given name too) and verbs that bylines and comment headers
# put after a name.
_PHRASE_WORDS = (ENGLISH_FUNCTION_WORDS - {"will"}) | frozenset(
    "says wrote writes posted designed reports reported shared commented".split())
# The word for "by" that opens a byline in the languages of the development data.
_BYLINE_PREFIX = re.compile(r"^(?:by|von|par|por|door|af|av)\s+(?=\S+\s+\S)", re.IGNORECASE)
# Top-level domains as the last word of an author: a host name trafilatura turned into words
# ('Mdr De', 'Ciphacipha Net', 'MesOpinions com').
_TLD_WORDS = frozenset("""
com net org info biz io eu de at ch it fr es nl be pl cz uk us ca au dk se no fi pt ru tv me
""".split())
# Nouns of a role, not a person: the editorial desk, the site's staff or software.
_ROLE_WORDS = frozenset("""
redaktion redaction rédaction redacción redazione editorial editors editor staff team admin
administrator webmaster newsroom desk user unknown anonymous name autor author guest
""".split())


def is_person_name(author: str, names: list[str]) -> bool:
    """Whether an author string can be a person's name. Not one: a string with a digit
    ('On August 3'), a function word or byline verb ('Stephangoeldi Said', 'View all posts by
    X'), a host name in words ('Mdr De'), the site's own name, or a role ('Redaktion',
    'TVT-Redaktion', 'Super User'). (A blog named after its author loses the author too: the
    name is then in `publisher` already.)"""
    if any(c.isdigit() for c in author) or "@" in author or "http" in author.lower():
        return False
    words = author.split()
    lowered = [w.strip(".,:;!?()'\"").casefold() for w in words]
    if not words or len(words) > 6:
        return False
    if any(w in _PHRASE_WORDS for w in lowered):
        return False
    if len(words) >= 2 and lowered[-1] in _TLD_WORDS:
        return False
    parts = [p for w in lowered for p in re.split(r"[-_/]", w) if p]
    if any(p in _ROLE_WORDS or any(p.endswith(r) and len(r) >= 5 for r in _ROLE_WORDS)
           for p in parts):
        return False
    squashed = _squash(author)
    return not any(squashed == name or (len(name) >= 4 and name in squashed
                                        and len(squashed) <= len(name) + 3) for name in names)


def person_authors(authors: list[str], names: list[str]) -> list[str]:
    """The authors that can be people, byline prefixes ('Par ', 'Von ') removed, each once."""
    kept = []
    for author in authors:
        author = _BYLINE_PREFIX.sub("", author.strip())
        if author and is_person_name(author, names) and author not in kept:
            kept.append(author)
    return kept


def split_categories(categories: list[str]) -> list[str]:
    """Categories one a value: trafilatura returns some sites' lists as one comma-joined string
    ('Politik, Inland, Wahlen')."""
    split = []
    for category in categories:
        for part in (category or "").split(","):
            part = part.strip()
            if part and part not in split:
                split.append(part)
    return split
