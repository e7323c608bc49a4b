"""Trains the shipped IPTC topic classifier: `python -m newsbeam.pipelines.train_topics` (or
`newsbeam-train-topics`) writes transforms/models/topics.npz.

Only redistributable data goes into the shipped model (TRAINED_ON; the data folder's SOURCES.md
gives each file's terms and mapping to IPTC):
- full articles: MasakhaNEWS English (dev split and train samples) and French train samples
  (AFL-3.0), their classes mapped to IPTC;
- short texts, joined BUNDLE_SIZE at a time per topic into article-length examples: HuffPost
  headlines (+ short descriptions in the 29-desk sample; CC BY 4.0), desks mapped to IPTC; the
  mixed desks (U.S. NEWS, WORLD NEWS) weak-labelled by the IPTC concept names they contain
  (keyword_examples); Wikipedia current-events summaries by portal section (CC BY-SA 4.0);
  SIB-200 English sentences (FLORES-200, CC BY-SA 4.0); the IPTC Media Topics tree's concept
  names and definitions (BSD-2-Clause copy).
The BBC articles in the same folder are "non-commercial and research purposes only": they are
never trained on and serve as the held-out test set (bench/bench_topics.py).

Two heads are fitted on that data: the TF-IDF head (words and word pairs, for English and
French, the languages of the labelled text) and the multilingual head, a logistic regression
over multilingual-e5-small embeddings (TextEncoder) of the same articles and of up to
SHORT_TEXTS_PER_TOPIC short texts per source and topic, one by one, for articles in any other
language: what it learns from English and French text carries over to German or Spanish
through the encoder's shared space.

Deterministic: a fixed split by hash of each example's id, bundles in hash order, sorted
vocabulary, scikit-learn's lbfgs logistic regression (no random state), a grid-searched softmax
temperature, and an encoder whose output does not depend on the number of threads. The model
that ships is numpy arrays only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np

from newsbeam.transforms.topics import (ENCODER_TEXT_WORDS, IPTC_TOPICS, TextEncoder, TopicModel,
                                        classifier_text, encoder_text, terms)

DEFAULT_DATA = Path(os.environ.get("NEWSBEAM_SHARED_DATA",
                                   Path(__file__).resolve().parent.parent.parent / "shared" /
                                   "data")) / "topics-train"

HUFFPOST_TOPICS = {
    "POLITICS": "politics", "ENTERTAINMENT": "arts-culture-entertainment-media",
    "COMEDY": "arts-culture-entertainment-media", "MEDIA": "arts-culture-entertainment-media",
    "CULTURE & ARTS": "arts-culture-entertainment-media", "SPORTS": "sport",
    "CRIME": "crime-law-justice", "STYLE & BEAUTY": "lifestyle-leisure",
    "HOME & LIVING": "lifestyle-leisure", "FOOD & DRINK": "lifestyle-leisure",
    "TRAVEL": "lifestyle-leisure", "WEDDINGS": "lifestyle-leisure",
    "WEIRD NEWS": "human-interest", "ENVIRONMENT": "environment", "WELLNESS": "health",
    "PARENTING": "society", "WOMEN": "society", "QUEER VOICES": "society",
    "BLACK VOICES": "society", "LATINO VOICES": "society", "IMPACT": "society",
    "BUSINESS": "economy-business-finance", "MONEY": "economy-business-finance",
    "TECH": "science-technology", "SCIENCE": "science-technology", "RELIGION": "religion",
    "EDUCATION": "education",
}
MIXED_HUFFPOST_DESKS = ("WORLD NEWS", "U.S. NEWS")
IPTC_TOP_CODES = {
    "medtop:01000000": "arts-culture-entertainment-media", "medtop:16000000": "conflict-war-peace",
    "medtop:02000000": "crime-law-justice", "medtop:03000000": "disaster-accident-emergency",
    "medtop:04000000": "economy-business-finance", "medtop:05000000": "education",
    "medtop:06000000": "environment", "medtop:07000000": "health",
    "medtop:08000000": "human-interest", "medtop:09000000": "labour",
    "medtop:10000000": "lifestyle-leisure", "medtop:11000000": "politics",
    "medtop:12000000": "religion", "medtop:13000000": "science-technology",
    "medtop:14000000": "society", "medtop:15000000": "sport", "medtop:17000000": "weather",
}
TEST_SHARE = 0.2
MIN_DOCUMENT_FREQUENCY = 2
MAX_TERMS = 60_000
# Inverse L2 strength of the logistic regression (scikit-learn's C), chosen on the held-out split.
REGULARISATION_C = 10.0
# Classes weigh 1 / frequency**power: 0 keeps the training prior, 1 balances them fully.
CLASS_WEIGHT_POWER = 0.5
# Headlines, one-line summaries and sentences are joined this many at a time (same topic) into
# article-length training examples: trained on one by one they teach a full-article classifier
# worse than the full articles alone (BBC accuracy 0.857 with every short text, 0.915 in
# bundles of 16, 0.915 from MasakhaNEWS alone, which knows 6 topics only).
BUNDLE_SIZE = 16
# What each source is, under which terms (SOURCES.md in the data folder has the details).
TRAINED_ON = {
    "huffpost-headlines-sample": "HuffPost headlines + descriptions, 29 desks (CC BY 4.0)",
    "huffpost-fewshot41": "HuffPost headlines, 41 desks (CC BY 4.0)",
    "masakhane-eng-dev": "MasakhaNEWS English dev articles (AFL-3.0)",
    "masakhane-eng-train": "MasakhaNEWS English train articles (AFL-3.0)",
    "masakhane-fra-train": "MasakhaNEWS French train articles (AFL-3.0)",
    "wikipedia-current-events": "Wikipedia Portal:Current events summaries (CC BY-SA 4.0)",
    "sib200-eng14": "SIB-200 English sentences (Apache-2.0; FLORES-200 text CC BY-SA 4.0)",
    "medtop": "IPTC Media Topics names and definitions (BSD-2-Clause copy)",
    "keyword": "HuffPost WORLD NEWS / U.S. NEWS, keyword-labelled by IPTC concept names",
}
# The languages of the labelled text: the classifier runs on articles in these.
TRAINED_LANGUAGES = ("en", "fr")
# Temperatures tried when calibrating the softmax on the held-out articles.
TEMPERATURES = tuple(round(0.25 * i, 2) for i in range(1, 17))
# The multilingual head learns from a sample: encoding runs at a few texts a second on the
# 2-core machine, so every text would take hours. Per source and topic, in sha256(id) order:
# HEAD_ARTICLES_PER_TOPIC articles to train on and HEAD_CALIBRATION_PER_TOPIC held-out ones to
# calibrate it, SHORT_TEXTS_PER_TOPIC short texts (the topics the articles lack). Then its
# regularisation (chosen on the held-out split) and texts encoded at a time.
HEAD_ARTICLES_PER_TOPIC = 30
HEAD_CALIBRATION_PER_TOPIC = 20
SHORT_TEXTS_PER_TOPIC = 8
HEAD_REGULARISATION_C = 10.0
EMBEDDING_BATCH = 16
DEFAULT_EMBEDDING_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / \
    "newsbeam" / "topic-embeddings.npz"


# --- Data ----------------------------------------------------------------------------------------


def is_test(example_id: str) -> bool:
    """The fixed held-out split: 20 % of examples by a hash of their id."""
    digest = hashlib.sha256(example_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < TEST_SHARE


def _jsonl(path: Path):
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            if line.strip():
                yield json.loads(line)


def huffpost_examples(folder: Path) -> list[tuple[str, str, str]]:
    """(id, text, topic) for the HuffPost headlines whose desk maps to one IPTC topic."""
    return [(row["link"], classifier_text(row["headline"], row.get("short_description"), ""),
             HUFFPOST_TOPICS[row["category"]])
            for row in _jsonl(folder / "huffpost-headlines-sample.jsonl")
            if row["category"] in HUFFPOST_TOPICS]


def article_examples(folder: Path, source_prefix: str) -> list[tuple[str, str, str]]:
    """(id, text, topic) for the full articles whose id starts with `source_prefix`."""
    return [(row["id"], classifier_text(row.get("title"), None, row["text"]), row["iptc"])
            for row in _jsonl(folder / "bbc-masakhane-train.jsonl")
            if row["id"].startswith(source_prefix)]


def iptc_examples(folder: Path) -> list[tuple[str, str, str]]:
    """(id, name + definition, top-level topic) for every IPTC concept that is not retired."""
    tree = json.loads((folder / "iptc_mapping.json").read_text(encoding="utf-8"))
    examples = []
    for code, concept in sorted(tree.items()):
        retired = concept.get("RetiredDate")
        if isinstance(retired, str) and retired:
            continue
        topic = IPTC_TOP_CODES.get(concept.get("Level1/NewsCode"))
        if topic:
            text = f"{concept['Name (en-GB)']}. {concept.get('Definition (en-GB)') or ''}"
            examples.append((code, text, topic))
    return examples


def concept_names(folder: Path) -> dict[str, str]:
    """Lower-case names of the IPTC concepts below the top level -> their top-level topic,
    for the names that belong to one topic only."""
    tree = json.loads((folder / "iptc_mapping.json").read_text(encoding="utf-8"))
    topics_of: dict[str, set] = {}
    for code, concept in tree.items():
        retired = concept.get("RetiredDate")
        topic = IPTC_TOP_CODES.get(concept.get("Level1/NewsCode"))
        if (isinstance(retired, str) and retired) or not topic or code in IPTC_TOP_CODES:
            continue
        topics_of.setdefault(concept["Name (en-GB)"].casefold(), set()).add(topic)
    return {name: next(iter(topics)) for name, topics in topics_of.items() if len(topics) == 1}


def keyword_examples(folder: Path) -> list[tuple[str, str, str]]:
    """Weak labels for the mixed desks (WORLD NEWS, U.S. NEWS): a headline + description that
    names IPTC concepts ("war", "hurricane", "unemployment") of exactly one top-level topic gets
    that topic. Noisy, but the only news text for topics no labelled source covers; never part
    of a held-out set."""
    names = concept_names(folder)
    pattern = re.compile(r"\b(" + "|".join(
        sorted(map(re.escape, names), key=lambda n: (-len(n), n))) + r")s?\b")
    examples = []
    for row in _jsonl(folder / "huffpost-headlines-sample.jsonl"):
        if row["category"] not in MIXED_HUFFPOST_DESKS:
            continue
        text = classifier_text(row["headline"], row.get("short_description"), "")
        found = {names[name] for name in pattern.findall(text.casefold())}
        if len(found) == 1:
            examples.append((f"keyword:{row['link']}", text, found.pop()))
    return examples


def masakhane_examples(folder: Path) -> list[tuple[str, str, str]]:
    """(id, text, topic) for the MasakhaNEWS full articles: the English dev split (beside the BBC
    articles in bbc-masakhane-train.jsonl) and the English and French train samples."""
    examples = article_examples(folder, "masakhane")
    for name in ("masakhane-eng-train.jsonl", "masakhane-fra-train.jsonl"):
        examples += [(row["id"], classifier_text(row.get("title"), None, row["text"]), row["iptc"])
                     for row in _jsonl(folder / name) if row.get("iptc")]
    return examples


def short_text_examples(folder: Path) -> list[tuple[str, str, str]]:
    """(id, text, topic) for the short labelled texts: HuffPost headlines (the 41-desk sample,
    headline only), Wikipedia current-events summaries by portal section, SIB-200 sentences;
    rows whose label has no single IPTC topic are left out (SOURCES.md gives the mappings)."""
    examples = [(row["id"], row["title"], row["iptc"])
                for row in _jsonl(folder / "huffpost-more.jsonl") if row.get("iptc")]
    examples += [(row["id"], classifier_text(row.get("title") or None, None, row["text"]),
                  row["iptc"])
                 for row in _jsonl(folder / "wikipedia-current-events.jsonl") if row.get("iptc")]
    examples += [(row["id"], row["text"], row["iptc"])
                 for row in _jsonl(folder / "sib200-eng14-train.jsonl") if row.get("iptc")]
    return examples


def bundles(examples: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Short texts of one topic joined BUNDLE_SIZE at a time (in sha256(id) order) into
    article-length examples, id of the first."""
    by_topic: dict[str, list] = {}
    for example in sorted(examples, key=lambda e: hashlib.sha256(e[0].encode()).hexdigest()):
        by_topic.setdefault(example[2], []).append(example)
    joined = []
    for topic, group in sorted(by_topic.items()):
        for start in range(0, len(group), BUNDLE_SIZE):
            part = group[start:start + BUNDLE_SIZE]
            joined.append((part[0][0], "\n".join(text for _, text, _ in part), topic))
    return joined


def training_rows(folder: Path) -> list[tuple[str, str, str]]:
    """Every example trained on, before the short texts are bundled."""
    return [e for e in masakhane_examples(folder) + short_examples(folder) if not is_test(e[0])]


def short_examples(folder: Path) -> list[tuple[str, str, str]]:
    return huffpost_examples(folder) + short_text_examples(folder) + iptc_examples(folder) + \
        keyword_examples(folder)


def training_sets(folder: Path) -> tuple[list, list]:
    """(train, held-out test). The test set is the held-out 20 % (is_test) of the full
    articles, which calibrates the model; the short texts, definitions and keyword labels are
    trained on in bundles (all but their own held-out 20 %)."""
    articles = masakhane_examples(folder)
    short = short_examples(folder)
    train = [e for e in articles if not is_test(e[0])]
    test = [e for e in articles if is_test(e[0])]
    return train + bundles([e for e in short if not is_test(e[0])]), test


def held_out_short_texts(folder: Path) -> list[tuple[str, str, str]]:
    """The held-out 20 % of the headlines, summaries and sentences, one by one."""
    return [e for e in huffpost_examples(folder) + short_text_examples(folder) if is_test(e[0])]


def source_of(example_id: str) -> str:
    """The training source an example id comes from (for the model's `trained_on`)."""
    if example_id.startswith("http"):
        return "huffpost-headlines-sample"
    return example_id.split("/", 1)[0].split(":", 1)[0]


# --- Training ------------------------------------------------------------------------------------


def _vectorizer():
    from sklearn.feature_extraction.text import TfidfVectorizer
    # The same vector as TopicModel.features: sublinear tf, smoothed idf, L2 norm.
    return TfidfVectorizer(analyzer=terms, sublinear_tf=True, min_df=MIN_DOCUMENT_FREQUENCY,
                           max_features=MAX_TERMS, dtype=np.float64)


def fit_softmax(features, topics_of_examples: list[str], regularisation_c: float):
    """(weights features x topics, bias) of a multinomial logistic regression (scikit-learn,
    lbfgs: deterministic), classes weighted by 1/frequency**CLASS_WEIGHT_POWER so the many
    headlines of a few desks do not drown the rare topics."""
    from sklearn.linear_model import LogisticRegression
    topics = list(IPTC_TOPICS)
    labels = np.array([topics.index(topic) for topic in topics_of_examples])
    counts = np.bincount(labels, minlength=len(topics)).astype(np.float64)
    sample_weight = (1.0 / np.maximum(counts, 1.0) ** CLASS_WEIGHT_POWER)[labels]
    sample_weight *= len(labels) / sample_weight.sum()
    regression = LogisticRegression(C=regularisation_c, max_iter=300, tol=1e-4)
    regression.fit(features, labels, sample_weight=sample_weight)
    weights = np.zeros((features.shape[1], len(topics)))
    # A topic with no training example can never win.
    bias = np.full(len(topics), -30.0)
    coefficients = regression.coef_ if len(regression.classes_) > 2 else np.vstack(
        [-regression.coef_[0], regression.coef_[0]]) / 2
    intercepts = regression.intercept_ if len(regression.classes_) > 2 else np.array(
        [-regression.intercept_[0], regression.intercept_[0]]) / 2
    for row, topic_index in enumerate(regression.classes_):
        weights[:, topic_index] = coefficients[row]
        bias[topic_index] = intercepts[row]
    return weights.astype(np.float32), bias.astype(np.float32)


def train(examples: list[tuple[str, str, str]], info: dict) -> TopicModel:
    """The TF-IDF head: fit_softmax over TF-IDF terms. Only the fitted numbers ship: the model
    runs on numpy alone."""
    vectorizer = _vectorizer()
    features = vectorizer.fit_transform([text for _, text, _ in examples])
    weights, bias = fit_softmax(features, [topic for _, _, topic in examples], REGULARISATION_C)
    return TopicModel(vectorizer.get_feature_names_out().tolist(),
                      vectorizer.idf_.astype(np.float32), weights, bias, list(IPTC_TOPICS), info)


def calibrate(model: TopicModel, examples) -> float:
    """The softmax temperature (of TEMPERATURES) with the lowest log-loss on the held-out
    examples, so that a score reads as the chance the topic is right."""
    logits = np.array([model.logits(text) for _, text, _ in examples])
    return best_temperature(logits, [topic for _, _, topic in examples])


def best_temperature(logits: np.ndarray, gold_topics: list[str]) -> float:
    """The temperature of TEMPERATURES with the lowest log-loss of these logits."""
    gold = np.array([list(IPTC_TOPICS).index(topic) for topic in gold_topics])

    def log_loss(temperature: float) -> float:
        scaled = logits / temperature
        scaled -= scaled.max(axis=1, keepdims=True)
        log_probabilities = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        return float(-log_probabilities[np.arange(len(gold)), gold].mean())

    return min(TEMPERATURES, key=log_loss)


# --- The multilingual head ------------------------------------------------------------------------


class EmbeddingCache:
    """TextEncoder embeddings by sha256 of the text, kept in one .npz between runs: encoding the
    training texts takes minutes, and the same text always gives the same vector."""

    def __init__(self, path: Path | None):
        self.path = path
        self.vectors: dict[str, np.ndarray] = {}
        self._encoder = None
        if path and path.is_file():
            with np.load(path, allow_pickle=False) as data:
                self.vectors = dict(zip(data["keys"].tolist(), data["vectors"]))

    def embed(self, texts: list[str]) -> np.ndarray:
        keys = [hashlib.sha256(text.encode("utf-8")).hexdigest() for text in texts]
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in self.vectors}.items())
        if missing:
            if self._encoder is None:
                self._encoder = TextEncoder(threads=os.cpu_count() or 1)
            for start in range(0, len(missing), EMBEDDING_BATCH):
                part = missing[start:start + EMBEDDING_BATCH]
                for (key, _), vector in zip(part, self._encoder.embed([t for _, t in part])):
                    self.vectors[key] = vector
            self.save()
        return np.array([self.vectors[key] for key in keys], dtype=np.float32).reshape(
            len(texts), -1)

    def save(self) -> None:
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            keys = sorted(self.vectors)
            temporary = self.path.with_suffix(".tmp.npz")
            np.savez(temporary, keys=np.array(keys),
                     vectors=np.array([self.vectors[k] for k in keys], dtype=np.float32))
            os.replace(temporary, self.path)


def capped(examples: list[tuple[str, str, str]], per_topic: int) -> list[tuple[str, str, str]]:
    """At most `per_topic` examples of each (source, topic), in sha256(id) order."""
    kept, seen = [], Counter()
    for example in sorted(examples, key=lambda e: hashlib.sha256(e[0].encode()).hexdigest()):
        group = (source_of(example[0]), example[2])
        if seen[group] < per_topic:
            seen[group] += 1
            kept.append(example)
    return kept


def head_training_sets(folder: Path) -> tuple[list, list]:
    """(train, held-out test) for the multilingual head: samples of the full articles as for the
    TF-IDF head and of the short texts, one by one (an embedding of 16 joined headlines is no
    article's)."""
    articles = masakhane_examples(folder)
    short = capped([e for e in short_examples(folder) if not is_test(e[0])],
                   SHORT_TEXTS_PER_TOPIC)
    train = capped([e for e in articles if not is_test(e[0])], HEAD_ARTICLES_PER_TOPIC)
    return train + short, capped([e for e in articles if is_test(e[0])],
                                 HEAD_CALIBRATION_PER_TOPIC)


def embeddings(cache: EmbeddingCache, examples) -> np.ndarray:
    return cache.embed([encoder_text(text) for _, text, _ in examples])


def train_head(model: TopicModel, train_set, test_set, cache: EmbeddingCache) -> TopicModel:
    """The model with its multilingual head fitted (fit_softmax over the TextEncoder embeddings
    of train_set) and calibrated on test_set."""
    weights, bias = fit_softmax(embeddings(cache, train_set).astype(np.float64),
                                [topic for _, _, topic in train_set], HEAD_REGULARISATION_C)
    model.head_weights, model.head_bias = weights, bias
    logits = embeddings(cache, test_set) @ weights + bias
    model.head_temperature = best_temperature(logits, [topic for _, _, topic in test_set])
    model.info["multilingual"] = {
        "encoder": TextEncoder.NAME, "encoder_text_words": ENCODER_TEXT_WORDS,
        "temperature": model.head_temperature, "examples": len(train_set),
        "per_source_and_topic": {"articles": HEAD_ARTICLES_PER_TOPIC,
                                 "short_texts": SHORT_TEXTS_PER_TOPIC},
        "reads": "articles in every language but " + ", ".join(sorted(model.languages))}
    return model


def evaluate(model: TopicModel, examples) -> dict:
    predictions = [max(model.scores(t).items(), key=lambda kv: kv[1])[0] for _, t, _ in examples]
    correct = sum(p == c for p, (_, _, c) in zip(predictions, examples))
    return {"examples": len(examples), "accuracy": round(correct / max(len(examples), 1), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="newsbeam-train-topics", description="Train the shipped IPTC topic classifier.")
    parser.add_argument("--data", default=str(DEFAULT_DATA),
                        help="the topics-train folder (default: ../shared/data/topics-train)")
    parser.add_argument("--output", required=True,
                        help="where to write the model (`make train-topics` rewrites the "
                             "shipped transforms/models/topics.npz); use it with "
                             "`newsbeam run --topic_model PATH`")
    parser.add_argument("--embedding_cache", default=str(DEFAULT_EMBEDDING_CACHE),
                        help="where the training texts' embeddings are kept between runs "
                             "(default: ~/.cache/newsbeam/topic-embeddings.npz); 'none' keeps "
                             "none")
    parser.add_argument("--no_multilingual", action="store_true",
                        help="train the TF-IDF head only (English and French)")
    args = parser.parse_args(argv)
    folder = Path(args.data)
    train_set, test_set = training_sets(folder)
    info = {
        "languages": sorted(TRAINED_LANGUAGES),
        "trained_on": {TRAINED_ON[source]: n for source, n in sorted(
            Counter(source_of(i) for i, _, _ in training_rows(folder)).items())},
        "examples_per_topic": dict(sorted(Counter(c for _, _, c in training_rows(folder)).items())),
        "held_out": "20% of every source by sha256(id); all BBC articles",
        "short_texts_in_bundles_of": BUNDLE_SIZE,
    }
    model = train(train_set, info)
    model.info["temperature"] = calibrate(model, test_set)
    if not args.no_multilingual:
        cache = EmbeddingCache(None if args.embedding_cache == "none" else
                               Path(args.embedding_cache).expanduser())
        train_head(model, *head_training_sets(folder), cache)
    model.save(args.output)
    print(json.dumps({"terms": len(model.vocabulary), **model.info,
                      "held_out_accuracy": evaluate(TopicModel.load(args.output), test_set)},
                     indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
