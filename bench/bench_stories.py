"""Same-story linking on story-pairs-dev.jsonl (SemEval-2022 Task 8, 197 human-rated pairs).

All 394 texts go through the pipeline's LinkStories composite together, in one FnApiRunner run
(not pair by pair), at the shipped defaults unless --threshold is given. A pair is predicted
"same story" when both articles got the same story_id. Reported: precision, recall and F1 of
same_story against different (pairs rated "related" are left out of F1, and their linking rate
is shown), and the false-positive rate on different. The texts have no dates, so every article
has the same time: the window does not block.

    python bench/bench_stories.py [--data DIR] [--threshold T ...]
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

from schemas.records import Article  # noqa: E402
from transforms.stories import LinkStories, StoryParams  # noqa: E402

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


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


def evaluate(pairs: list[dict], assigned: dict[str, str]) -> dict:
    tp = fp = fn = tn = related_linked = related = 0
    for pair in pairs:
        ids = [hashlib.sha256(pair[k].encode()).hexdigest()[:24] for k in ("text1", "text2")]
        same = assigned[ids[0]] == assigned[ids[1]]
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


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "NEWSBEAM_SHARED_DATA", HERE.parent.parent / "shared" / "data")))
    parser.add_argument("--threshold", type=float, action="append")
    args = parser.parse_args(argv)
    pairs = load_pairs(args.data)
    articles = articles_of(pairs)
    out = HERE / "results"
    results = []
    for threshold in args.threshold or [StoryParams().link_threshold]:
        params = dataclasses.replace(StoryParams(), link_threshold=threshold)
        started = time.perf_counter()
        scores = evaluate(pairs, story_ids(articles, params, out / "stories-work"))
        scores.update(threshold=threshold, articles=len(articles), pairs=len(pairs),
                      seconds=round(time.perf_counter() - started, 1))
        print(json.dumps(scores))
        results.append(scores)
    (out / "stories.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
