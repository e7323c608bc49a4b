"""Trains the shipped IPTC topic classifier: `python -m pipelines.train_topics` (or
`newsbeam-train-topics`) writes transforms/models/topics.npz.

Only redistributable data goes into the shipped model:
- HuffPost headlines + short descriptions (commonly cited as CC BY 4.0), desk categories mapped
  to IPTC by HUFFPOST_TOPICS; the mixed desks (U.S. NEWS, WORLD NEWS) are left out;
- MasakhaNEWS English dev articles (AFL-3.0), their classes mapped to IPTC;
- the IPTC Media Topics tree itself (BSD-2-Clause copy): every concept's name and definition,
  labelled with its top-level topic. For conflict-war-peace, disaster-accident-emergency, labour
  and weather this is the only labelled signal;
- weak labels: the HuffPost headlines of the mixed desks that name IPTC concepts of exactly
  one topic (keyword_examples).
The BBC articles in the same folder are "non-commercial and research purposes only": they are
never trained on and serve as the held-out test set (bench/bench_topics.py).

Deterministic: a fixed split by hash of each example's id, sorted vocabulary, full-batch
gradient descent from zeros. numpy only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np

from transforms.topics import IPTC_TOPICS, TopicModel, classifier_text, terms

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
MAX_TERMS = 40_000
EPOCHS = 150
LEARNING_RATE = 0.05
L2 = 3e-5
# An IPTC concept's name and definition are short and few; they count this many times.
IPTC_WEIGHT = 3.0
# Classes weigh 1 / frequency**power: 0.5 keeps some of the prior, 1 balances them fully.
CLASS_WEIGHT_POWER = 0.75


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


def training_sets(folder: Path) -> tuple[list, list]:
    """(train, held-out test) of the redistributable sources. IPTC concepts and the keyword
    labels are all trained on (definitions and weak labels, not gold articles)."""
    articles = huffpost_examples(folder) + article_examples(folder, "masakhane")
    train = [e for e in articles if not is_test(e[0])]
    test = [e for e in articles if is_test(e[0])]
    return train + iptc_examples(folder) + keyword_examples(folder), test


# --- Training ------------------------------------------------------------------------------------


def build_vocabulary(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Terms in at least MIN_DOCUMENT_FREQUENCY texts, the MAX_TERMS most frequent (ties by
    term), sorted; and their smoothed idf."""
    frequency = Counter()
    for text in texts:
        frequency.update(set(terms(text)))
    kept = [t for t, n in frequency.items() if n >= MIN_DOCUMENT_FREQUENCY]
    kept = sorted(sorted(kept), key=lambda t: -frequency[t])[:MAX_TERMS]
    vocabulary = sorted(kept)
    n = len(texts)
    idf = np.array([math.log((1 + n) / (1 + frequency[t])) + 1 for t in vocabulary],
                   dtype=np.float32)
    return vocabulary, idf


def sparse_rows(model: TopicModel, texts: list[str]):
    """The texts' feature vectors as (row, column, value) arrays."""
    rows, columns, values = [], [], []
    for i, text in enumerate(texts):
        c, v = model.features(text)
        rows.append(np.full(len(c), i, dtype=np.int64))
        columns.append(c)
        values.append(v)
    return np.concatenate(rows), np.concatenate(columns), np.concatenate(values)


def train(examples: list[tuple[str, str, str]], info: dict) -> TopicModel:
    """A softmax regression fitted by full-batch Adam, classes weighted by 1/sqrt(frequency)
    (CLASS_WEIGHT_POWER) so the many politics headlines do not drown the rare topics."""
    texts = [t for _, t, _ in examples]
    topics = list(IPTC_TOPICS)
    vocabulary, idf = build_vocabulary(texts)
    model = TopicModel(vocabulary, idf, np.zeros((len(vocabulary), len(topics))),
                       np.zeros(len(topics)), topics, info)
    rows, columns, values = sparse_rows(model, texts)
    labels = np.array([topics.index(c) for _, _, c in examples])
    counts = np.bincount(labels, minlength=len(topics)).astype(np.float64)
    class_weight = 1.0 / np.maximum(counts, 1.0) ** CLASS_WEIGHT_POWER
    sample_weight = class_weight[labels] * np.array(
        [IPTC_WEIGHT if i.startswith("medtop:") else 1.0 for i, _, _ in examples])
    sample_weight /= sample_weight.sum()
    onehot = np.eye(len(topics))[labels]
    weights = np.zeros((len(vocabulary), len(topics)))
    bias = np.zeros(len(topics))
    moments = [np.zeros_like(weights), np.zeros_like(weights), np.zeros_like(bias),
               np.zeros_like(bias)]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, EPOCHS + 1):
        logits = np.zeros((len(texts), len(topics)))
        np.add.at(logits, rows, values[:, None] * weights[columns])
        logits += bias
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        error = (probabilities - onehot) * sample_weight[:, None]
        grad_w = np.zeros_like(weights)
        np.add.at(grad_w, columns, values[:, None] * error[rows])
        grad_w += L2 * weights
        grad_b = error.sum(axis=0)
        for param, grad, m, v in ((weights, grad_w, moments[0], moments[1]),
                                  (bias, grad_b, moments[2], moments[3])):
            m *= beta1
            m += (1 - beta1) * grad
            v *= beta2
            v += (1 - beta2) * grad * grad
            param -= LEARNING_RATE * (m / (1 - beta1**step)) / (
                np.sqrt(v / (1 - beta2**step)) + eps)
    model.weights = weights.astype(np.float32)
    model.bias = bias.astype(np.float32)
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
    args = parser.parse_args(argv)
    folder = Path(args.data)
    train_set, test_set = training_sets(folder)
    per_topic = Counter(c for _, _, c in train_set)
    info = {
        "language": "en",
        "trained_on": {
            "huffpost-headlines-sample (CC BY 4.0)": sum(
                1 for i, _, _ in train_set if i.startswith("http")),
            "masakhanews-eng-dev (AFL-3.0)": sum(
                1 for i, _, _ in train_set if i.startswith("masakhane")),
            "iptc-media-topics-tree (BSD-2-Clause)": sum(
                1 for i, _, _ in train_set if i.startswith("medtop:")),
            "huffpost WORLD NEWS / U.S. NEWS, keyword-labelled by IPTC concept names": sum(
                1 for i, _, _ in train_set if i.startswith("keyword:")),
        },
        "examples_per_topic": dict(sorted(per_topic.items())),
        "held_out": "20% of HuffPost and MasakhaNEWS by sha256(id); all BBC articles",
    }
    model = train(train_set, info)
    model.save(args.output)
    print(json.dumps({"terms": len(model.vocabulary), **info,
                      "held_out_accuracy": evaluate(TopicModel.load(args.output), test_set)},
                     indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
