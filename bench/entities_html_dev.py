"""The entity cases issue 13 found on the html-dev pages, counted in a newsbeam dataset.

    nice -n 10 .venv/bin/newsbeam run --input ../shared/data/html-dev/html --output /tmp/hd
    .venv/bin/python bench/entities_html_dev.py /tmp/hd [--label after]

Counts, over the dataset's articles: articles with entities (all, and by language), the
entities by label, and the cases the issue names: one-word PERSON names that are platforms or
products ('Twitter', and any PERSON with a digit: 'AppleWebKit/537.36', 'Ryzen 5 3550H',
'Python 3.4/3.5'), places written as two or three capitals ('AI' GPE), and the distinct entity
texts the United States is written as ('United States', 'U.S.', 'US': one entity should be
one text). Writes bench/results/entities_html_dev[-LABEL].json.

`--retag` re-runs the current entity stage (and language detection) over the dataset's stored
articles instead of reading their entities: a dataset written by an older newsbeam then gives
the current figures on the very same extracted texts. A stored language that the old detector
gave (py3langid over the first 3,000 characters) is detected again; one the page declared is
kept.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

US_FORMS = ("United States", "U.S.", "US", "USA", "America")


def count(articles: list[dict]) -> dict:
    with_entities = collections.Counter()
    by_language = collections.Counter()
    labels = collections.Counter()
    twitter_person = person_with_digit = initials_place = 0
    us_texts = collections.Counter()
    examples = collections.defaultdict(list)
    for row in articles:
        language = row["language"] or "unknown"
        by_language[language] += 1
        entities = row["entities"] or []
        if entities:
            with_entities[language] += 1
        for entity in entities:
            text, label = entity["text"], entity["label"]
            labels[label] += 1
            if label == "PERSON" and text in ("Twitter", "Facebook", "Instagram", "YouTube"):
                twitter_person += 1
            if label == "PERSON" and any(c.isdigit() for c in text):
                person_with_digit += 1
                examples["person_with_digit"].append(text)
            if label in ("GPE", "LOC") and 2 <= len(text) <= 3 and text.isupper():
                initials_place += 1
                examples["initials_place"].append(text)
            if text in US_FORMS:
                us_texts[text] += 1
    return {
        "articles": len(articles),
        "articles_with_entities": sum(with_entities.values()),
        "by_language": {lang: {"articles": n, "with_entities": with_entities[lang]}
                        for lang, n in by_language.most_common()},
        "labels": dict(labels.most_common()),
        "platform_as_person": twitter_person,
        "person_with_digit": person_with_digit,
        "initials_as_place": initials_place,
        "united_states_texts": dict(us_texts),
        "examples": {k: sorted(set(v))[:20] for k, v in examples.items()},
    }


def retag(rows: list[dict]) -> list[dict]:
    import dataclasses
    import datetime as dt

    import py3langid

    sys.path.insert(0, str(ROOT))
    from newsbeam.schemas.records import Article
    from newsbeam.transforms.entities import DEFAULT_SPACY_MODELS, EntityTagger
    from newsbeam.transforms.extract import detect_language
    now = dt.datetime.now(dt.timezone.utc)
    articles = []
    for row in rows:
        language = row["language"]
        if language == py3langid.classify(row["text"][:3000])[0]:
            language = detect_language(row["text"])
        articles.append(Article(article_id=row["article_id"], source_uri="", text=row["text"],
                                word_count=0, content_hash="", ingested_at=now,
                                date_source="ingested", run_id="retag", language=language))
    tagged = EntityTagger.load(DEFAULT_SPACY_MODELS).tag(articles)
    return [{"language": a.language, "entities": [dataclasses.asdict(e) for e in a.entities]}
            for a in tagged]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", help="a newsbeam --output folder")
    parser.add_argument("--label", default="")
    parser.add_argument("--retag", action="store_true",
                        help="tag the stored articles with the current entity stage")
    args = parser.parse_args()
    import pyarrow.dataset as ds
    columns = ["language", "entities"] + (["text", "article_id"] if args.retag else [])
    articles = ds.dataset(Path(args.dataset) / "articles", format="parquet",
                          partitioning="hive").to_table(columns=columns).to_pylist()
    if args.retag:
        articles = retag(articles)
    results = count(articles)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    name = f"entities_html_dev{'-' + args.label if args.label else ''}.json"
    (out / name).write_text(json.dumps(results, indent=2))
    json.dump({k: v for k, v in results.items() if k != "labels"}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
