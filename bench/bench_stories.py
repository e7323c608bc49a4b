"""Same-story linking on the SemEval-2022 Task 8 development pairs.

Two sets (../shared/data, see its README): story-pairs-dev.jsonl (197 English pairs) and
story-pairs-multi-dev.jsonl (552 non-English pairs: de, es, tr, pl, ar, fr and de-en). Each set's
distinct texts go through the pipeline's LinkStories composite together, in one FnApiRunner run
(not pair by pair). The articles are built as the pipeline builds them from a URL and a text: the
site (domain) from the URL, the language (the set's own label, where the pipeline would detect
it), the entity stage (transforms/entities.EntityTagger, the pipeline's default models: English,
French) first, and, in the variants that say so, the publication day written in the URL
(transforms/urls.date_from_url, the extraction stage's fallback) with every other article undated.

A pair is predicted "same story" when both articles got the same story_id. Reported per set and
variant: precision, recall and F1 of same_story against different (pairs rated "related" are
left out of F1, and their linking rate is shown), and the false-positive rate on different, at
the variant's threshold; then a cross-validated figure (--folds, default 5): the pairs are split
into folds by a hash of their pair_id; for each fold, the threshold of a grid with the best F1 on
the other folds (ties: the lower false-positive rate, then the higher threshold) predicts that
fold, and the pooled predictions of all folds are scored. Every threshold of a variant runs in
one pipeline (one LinkStories branch each).

Variants (--variant, repeatable; default: before and after):
  before       what main shipped: no dates, no same-site discount, threshold 0.24
  no-entities  the shipped defaults without the entity stage
  dates-only   URL dates, main's similarity
  after        the shipped defaults (StoryParams()) with URL dates

    python bench/bench_stories.py [--data DIR] [--set dev|multi ...] [--variant NAME ...]
                                  [--threshold T] [--folds K]
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
from newsbeam.transforms.entities import DEFAULT_SPACY_MODELS, EntityTagger  # noqa: E402
from newsbeam.transforms.stories import LinkStories, StoryParams  # noqa: E402
from newsbeam.transforms.urls import date_from_url, domain_of  # noqa: E402

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
# The thresholds cross-validation chooses from.
THRESHOLD_GRID = tuple(round(0.10 + 0.02 * step, 2) for step in range(16))
SETS = {"dev": "story-pairs-dev.jsonl", "multi": "story-pairs-multi-dev.jsonl"}


@dataclasses.dataclass(frozen=True)
class Variant:
    url_dates: bool
    entities: bool
    params: StoryParams


BEFORE = StoryParams(link_threshold=0.24, same_source_factor=1.0)
VARIANTS = {
    "before": Variant(url_dates=False, entities=True, params=BEFORE),
    "no-entities": Variant(url_dates=True, entities=False, params=StoryParams()),
    "dates-only": Variant(url_dates=True, entities=True, params=BEFORE),
    "after": Variant(url_dates=True, entities=True, params=StoryParams()),
}


def load_pairs(data: Path, name: str = SETS["dev"]) -> list[dict]:
    with open(data / name) as stream:
        return [json.loads(line) for line in stream if line.strip()]


def text_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def articles_of(pairs: list[dict], url_dates: bool = False) -> list[Article]:
    """One article per distinct text (a text that occurs in two pairs is one article), with
    what the pipeline knows of a page from its URL: the site and, with `url_dates`, the day the
    URL gives (else undated: only the ingestion time)."""
    by_id = {}
    for pair in pairs:
        for side in ("1", "2"):
            text, url = pair["text" + side], pair["url" + side]
            article_id = text_id(text)
            published = date_from_url(url) if url_dates else None
            by_id[article_id] = Article(
                article_id=article_id, source_uri=url, text=text,
                word_count=len(text.split()), content_hash=article_id, ingested_at=NOW,
                date_source="url" if published else "ingested", published_at=published,
                run_id="bench", url=url, domain=domain_of(url), publisher=domain_of(url),
                language=pair.get("lang" + side, "en"))
    return list(by_id.values())


def with_entities(articles: list[Article]) -> list[Article]:
    """The articles as the entity stage (its default models) leaves them."""
    return EntityTagger.load(DEFAULT_SPACY_MODELS).tag(articles)


def story_ids(articles: list[Article], params: list[StoryParams],
              out: Path) -> list[dict[str, str]]:
    """Per parameter set, article_id -> story_id: one pipeline, one LinkStories branch each."""
    out.mkdir(parents=True, exist_ok=True)
    results = [out / f"stories-{i}.jsonl" for i in range(len(params))]
    for result in results:
        if result.exists():
            result.unlink()
    with TestPipeline(runner="FnApiRunner") as p:
        created = p | beam.Create(articles)
        no_index = p | "NoIndex" >> beam.Create([])
        for i, (one, result) in enumerate(zip(params, results)):
            linked = created | f"Link{i}" >> LinkStories(no_index, "bench", NOW, one)
            (linked["articles"]
             | f"Row{i}" >> beam.Map(lambda a: json.dumps([a.article_id, a.story_id]))
             | f"All{i}" >> beam.combiners.ToList()
             | f"Write{i}" >> beam.Map(lambda rows, path: path.write_text("\n".join(rows)),
                                       path=result))
    return [dict(json.loads(line) for line in result.read_text().splitlines())
            for result in results]


def linked_pairs(pairs: list[dict], assigned: dict[str, str]) -> list[bool]:
    """Per pair: did both articles get the same story_id?"""
    linked = []
    for pair in pairs:
        ids = [text_id(pair[k]) for k in ("text1", "text2")]
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


def run_variant(name: str, variant: Variant, set_name: str, pairs: list[dict],
                tagged: dict[bool, list[Article]], threshold: float | None, folds: int,
                out: Path) -> list[dict]:
    """The scores of one variant on one set: at its threshold, then cross-validated."""
    articles = tagged[variant.url_dates] if variant.entities else [
        dataclasses.replace(a, entities=[]) for a in tagged[variant.url_dates]]
    at = variant.params.link_threshold if threshold is None else threshold
    thresholds = sorted({at} | set(THRESHOLD_GRID if folds else ()))
    started = time.perf_counter()
    assigned = story_ids(articles, [dataclasses.replace(variant.params, link_threshold=t)
                                    for t in thresholds], out / "stories-work")
    seconds = round(time.perf_counter() - started, 1)
    linked_at = {t: linked_pairs(pairs, ids) for t, ids in zip(thresholds, assigned)}
    dated = sum(1 for a in articles if a.published_at is not None)
    common = {"set": set_name, "variant": name, "articles": len(articles), "dated": dated,
              "pairs": len(pairs), "same_source_factor": variant.params.same_source_factor}
    rows = [{**common, "threshold": at, **evaluate(pairs, linked_at[at]),
             "seconds_all_thresholds": seconds}]
    if folds:
        rows.append({**common, "cross_validated": True,
                     **cross_validated(pairs, linked_at, folds)})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "NEWSBEAM_SHARED_DATA", HERE.parent.parent / "shared" / "data")))
    parser.add_argument("--set", choices=sorted(SETS), action="append")
    parser.add_argument("--variant", choices=sorted(VARIANTS), action="append")
    parser.add_argument("--threshold", type=float, help="instead of each variant's own")
    parser.add_argument("--folds", type=int, default=5, help="0: no cross-validation")
    args = parser.parse_args(argv)
    out = HERE / "results"
    results = []
    for set_name in args.set or ["dev", "multi"]:
        pairs = load_pairs(args.data, SETS[set_name])
        plain = {dates: articles_of(pairs, dates) for dates in (False, True)}
        tagged_undated = with_entities(plain[False])
        # Entities do not depend on dates: tag once, date the copies.
        by_id = {a.article_id: a for a in plain[True]}
        tagged = {False: tagged_undated, True: [
            dataclasses.replace(a, published_at=by_id[a.article_id].published_at,
                                date_source=by_id[a.article_id].date_source)
            for a in tagged_undated]}
        for name in args.variant or ["before", "after"]:
            for row in run_variant(name, VARIANTS[name], set_name, pairs, tagged,
                                   args.threshold, args.folds, out):
                print(json.dumps(row), flush=True)
                results.append(row)
    (out / "stories.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
