"""Same-story linking on story-pairs-dev.jsonl (SemEval-2022 Task 8, 197 human-rated pairs).

The 391 distinct texts go through the pipeline's LinkStories composite together, in one
FnApiRunner run (not pair by pair), at the shipped defaults unless --threshold is given. As in the
pipeline, the entity stage (spaCy, transforms/entities.py) runs first; the figure without
entities is reported beside it. A pair is predicted "same story" when both articles got the same
story_id. Reported: precision, recall and F1 of same_story against different (pairs rated
"related" are left out of F1, and their linking rate is shown), and the false-positive rate on
different. The texts have no dates, so every article has the same time: the window does not
block.

197 pairs are few to tune on, so a cross-validated figure is reported too (--folds, default 5):
the pairs are split into folds by a hash of their pair_id; for each fold, the threshold of a grid
with the best F1 on the other folds (ties: the lower false-positive rate, then the higher
threshold) predicts that fold, and the pooled predictions of all folds are scored.

    python bench/bench_stories.py [--data DIR] [--threshold T ...] [--entities on|off|both]
                                  [--folds K]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import apache_beam as beam  # noqa: E402
from apache_beam.testing.test_pipeline import TestPipeline  # noqa: E402

from newsbeam.schemas.records import Article  # noqa: E402
from newsbeam.transforms.entities import (DEFAULT_MAX_CHARS, DEFAULT_SPACY_MODEL, load_ner,  # noqa: E402
                                          merge_mentions, mentions_in, ner_text)
from newsbeam.transforms.stories import LinkStories, StoryParams  # noqa: E402

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
# The thresholds cross-validation chooses from.
THRESHOLD_GRID = tuple(round(0.10 + 0.01 * step, 2) for step in range(31))


def load_pairs(data: Path) -> list[dict]:
    with open(data / "story-pairs-dev.jsonl") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def articles_of(pairs: list[dict]) -> list[Article]:
    """One article per distinct text (a text that occurs in two pairs is one article)."""
    by_id = {}
    for pair in pairs:
        for side in ("1", "2"):
            text = pair["text" + side]
            article_id = hashlib.sha256(text.encode()).hexdigest()[:24]
            by_id[article_id] = Article(
                article_id=article_id, source_uri=pair["url" + side], text=text,
                word_count=len(text.split()), content_hash=article_id, ingested_at=NOW,
                date_source="ingested", run_id="bench", url=pair["url" + side])
    return list(by_id.values())


def with_entities(articles: list[Article]) -> list[Article]:
    """The articles as the entity stage (TagEntities, its defaults) leaves them."""
    nlp = load_ner(DEFAULT_SPACY_MODEL)
    texts = [ner_text(article, DEFAULT_MAX_CHARS, recase=True) for article in articles]
    tagged = []
    for article, doc in zip(articles, nlp.pipe(texts, batch_size=32)):
        mentions = mentions_in(article.text, [(e.start_char, e.end_char, e.label_)
                                              for e in doc.ents])
        tagged.append(dataclasses.replace(article, entities=merge_mentions(mentions)))
    return tagged


def story_ids(articles: list[Article], params: StoryParams, out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    result = out / "stories.jsonl"
    if result.exists():
        result.unlink()
    with TestPipeline(runner="FnApiRunner") as p:
        linked = (p | beam.Create(articles)
                  | LinkStories(p | "NoIndex" >> beam.Create([]), "bench", NOW, params))
        (linked["articles"] | beam.Map(lambda a: json.dumps([a.article_id, a.story_id]))
         | beam.combiners.ToList()
         | beam.Map(lambda rows: result.write_text("\n".join(rows))))
    return dict(json.loads(line) for line in result.read_text().splitlines())


def linked_pairs(pairs: list[dict], assigned: dict[str, str]) -> list[bool]:
    """Per pair: did both articles get the same story_id?"""
    linked = []
    for pair in pairs:
        ids = [hashlib.sha256(pair[k].encode()).hexdigest()[:24] for k in ("text1", "text2")]
        linked.append(assigned[ids[0]] == assigned[ids[1]])
    return linked


def evaluate(pairs: list[dict], linked: list[bool]) -> dict:
    tp = fp = fn = tn = related_linked = related = 0
    for pair, same in zip(pairs, linked):
        if pair["label"] == "same_story":
            tp, fn = tp + same, fn + (not same)
        elif pair["label"] == "different":
            fp, tn = fp + same, tn + (not same)
        else:
            related, related_linked = related + 1, related_linked + same
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": round(precision, 4),
            "recall": round(recall, 4), "f1": round(f1, 4),
            "fpr_different": round(fp / (fp + tn), 4) if fp + tn else 0.0,
            "related_linked": f"{related_linked}/{related}"}


def fold_of(pair: dict, folds: int) -> int:
    return int(hashlib.sha256(pair["pair_id"].encode()).hexdigest(), 16) % folds


def cross_validated(pairs: list[dict], linked_at: dict[float, list[bool]], folds: int) -> dict:
    """Scores of the pooled held-out predictions, each fold predicted at the threshold that did
    best on the other folds; with the threshold each fold chose."""
    def rank(threshold, chosen_pairs):
        scores = evaluate([pairs[i] for i in chosen_pairs],
                          [linked_at[threshold][i] for i in chosen_pairs])
        return scores["f1"], -scores["fpr_different"], threshold

    predicted = [False] * len(pairs)
    chosen = []
    for fold in range(folds):
        held_out = [i for i, pair in enumerate(pairs) if fold_of(pair, folds) == fold]
        training = [i for i, pair in enumerate(pairs) if fold_of(pair, folds) != fold]
        threshold = max(linked_at, key=lambda t: rank(t, training))
        chosen.append(threshold)
        for i in held_out:
            predicted[i] = linked_at[threshold][i]
    return {**evaluate(pairs, predicted), "folds": folds, "thresholds": chosen}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "NEWSBEAM_SHARED_DATA", HERE.parent.parent / "shared" / "data")))
    parser.add_argument("--threshold", type=float, action="append")
    parser.add_argument("--entities", choices=("on", "off", "both"), default="both")
    parser.add_argument("--folds", type=int, default=5, help="0: no cross-validation")
    args = parser.parse_args(argv)
    pairs = load_pairs(args.data)
    plain = articles_of(pairs)
    runs = {"on": [("entities", None)], "off": [("no entities", plain)],
            "both": [("entities", None), ("no entities", plain)]}[args.entities]
    out = HERE / "results"
    results = []
    for name, articles in runs:
        articles = with_entities(plain) if articles is None else articles
        thresholds = args.threshold or [StoryParams().link_threshold]
        linked_at = {}
        for threshold in sorted(set(thresholds) | set(THRESHOLD_GRID if args.folds else ())):
            params = dataclasses.replace(StoryParams(), link_threshold=threshold)
            started = time.perf_counter()
            linked_at[threshold] = linked_pairs(
                pairs, story_ids(articles, params, out / "stories-work"))
            if threshold in thresholds:
                scores = evaluate(pairs, linked_at[threshold])
                scores.update(run=name, threshold=threshold, articles=len(articles),
                              pairs=len(pairs), seconds=round(time.perf_counter() - started, 1))
                print(json.dumps(scores))
                results.append(scores)
        if args.folds:
            scores = {"run": name, "cross_validated": True,
                      **cross_validated(pairs, linked_at, args.folds)}
            print(json.dumps(scores))
            results.append(scores)
    (out / "stories.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
