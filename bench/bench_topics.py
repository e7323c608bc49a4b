"""Topic classifier quality on articles it never saw, the shipped model beside an earlier one.

    .venv/bin/python bench/bench_topics.py [--data ../shared/data] [--before OLD.npz]

Test sets: (1) the BBC News articles of topics-train (never trained on: their licence keeps
them out of the shipped model), full articles in 5 topics; (2) the held-out 20 % of the
MasakhaNEWS articles (pipelines/train_topics.is_test), English and French apart; (3) the
held-out 20 % of the short texts (headlines, summaries, sentences), one by one. Accuracy is
the 18-way output's: each model at its threshold, an `unclassified` article counts as wrong.
Also per-class recall and F1, and the share of html-dev pages (../shared/data/html-dev,
extracted by trafilatura as newsbeam does) left `unclassified` per language, section topics
included. `--before` defaults to the model of the last commit that changed it (git), if any.
Writes bench/results/topics.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsbeam.pipelines.train_topics import (article_examples, held_out_short_texts,  # noqa: E402
                                             training_sets)
from newsbeam.schemas.records import Document  # noqa: E402
from newsbeam.transforms.topics import (DEFAULT_TOPIC_THRESHOLD, IPTC_TOPICS, SHIPPED_MODEL,  # noqa: E402
                                        UNCLASSIFIED, TopicModel, assign_topic)

BEFORE_THRESHOLD = 0.3   # the default of the models before temperature calibration
HTML_DEV_LANGUAGES = ("en", "de", "es", "fr")


def per_class(gold: list[str], predicted: list[str]) -> dict:
    result = {}
    for topic in sorted(set(gold)):
        tp = sum(g == p == topic for g, p in zip(gold, predicted))
        fp = sum(p == topic != g for g, p in zip(gold, predicted))
        fn = sum(g == topic != p for g, p in zip(gold, predicted))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        result[topic] = {"support": tp + fn, "precision": round(precision, 3),
                         "recall": round(recall, 3), "f1": round(f1, 3)}
    return result


def evaluate(model: TopicModel, threshold: float, examples) -> dict:
    gold = [topic for _, _, topic in examples]
    started = time.perf_counter()
    best = [max(model.scores(text).items(), key=lambda kv: kv[1]) for _, text, _ in examples]
    elapsed = time.perf_counter() - started
    predicted = [topic if score >= threshold else UNCLASSIFIED for topic, score in best]
    classes = per_class(gold, predicted)
    confusions = Counter((g, p) for g, p in zip(gold, predicted) if g != p)
    return {
        "examples": len(examples),
        "accuracy": round(sum(g == p for g, p in zip(gold, predicted)) / len(gold), 3),
        "top1_accuracy_without_threshold": round(
            sum(g == p for g, (p, _) in zip(gold, best)) / len(gold), 3),
        "macro_f1": round(sum(c["f1"] for c in classes.values()) / len(classes), 3),
        "unclassified_share": round(predicted.count(UNCLASSIFIED) / len(gold), 3),
        "per_class": classes,
        "top_confusions": [f"{g} -> {p}: {n}" for (g, p), n in confusions.most_common(5)],
        "articles_per_s": round(len(examples) / elapsed, 1),
    }


def html_dev_articles(folder: Path) -> list:
    """The html-dev pages as newsbeam's extraction makes them (trafilatura, then
    build_article), without topics."""
    from newsbeam.transforms.extract import _html_paragraphs, build_article
    from newsbeam.transforms.text import drop_boilerplate
    from newsbeam.transforms.trafilatura_page import extract_page
    articles = []
    evaldata = json.loads((folder / "evaldata.json").read_text())
    for url, entry in sorted(evaldata.items()):
        path = folder / "html" / f"{entry['file']}.gz"
        if not path.is_file():
            continue
        html = gzip.decompress(path.read_bytes())
        page = extract_page(html, url)
        if not page or not page.get("text"):
            continue
        document = Document(source_uri=str(path), kind="html", content=html, url=url)
        paragraphs = drop_boilerplate(_html_paragraphs(page["text"]))
        articles.append(build_article(document, paragraphs, page["text"], page, "bench",
                                      dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)))
    return articles


def html_dev_unclassified(model: TopicModel, threshold: float, articles: list) -> dict:
    by_language: dict[str, Counter] = {}
    for article in articles:
        topic = assign_topic(dataclasses.replace(article), model, threshold)
        language = article.language if article.language in HTML_DEV_LANGUAGES else "other"
        counts = by_language.setdefault(language, Counter())
        counts["articles"] += 1
        counts[topic.topic_source or UNCLASSIFIED] += 1
    total = sum(c["articles"] for c in by_language.values())
    return {
        "unclassified_share": round(
            sum(c[UNCLASSIFIED] for c in by_language.values()) / max(total, 1), 3),
        "by_language": {language: {**counts, "unclassified_share": round(
            counts[UNCLASSIFIED] / counts["articles"], 3)}
            for language, counts in sorted(by_language.items())},
    }


def model_before() -> str | None:
    """The shipped model as the last commit that changed it had it before, as a temp file."""
    relative = SHIPPED_MODEL.relative_to(ROOT)
    try:
        commits = subprocess.run(["git", "log", "--format=%H", "-n", "2", "--", str(relative)],
                                 cwd=ROOT, capture_output=True, text=True, check=True)
        previous = commits.stdout.split()[1]
        blob = subprocess.run(["git", "show", f"{previous}:{relative}"], cwd=ROOT,
                              capture_output=True, check=True).stdout
    except (subprocess.CalledProcessError, IndexError, OSError):
        return None
    handle, path = tempfile.mkstemp(suffix=".npz")
    os.write(handle, blob)
    os.close(handle)
    return path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.environ.get("NEWSBEAM_SHARED_DATA",
                                                         str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--model", default=str(SHIPPED_MODEL))
    parser.add_argument("--before", default=None,
                        help="an earlier model to compare with (default: the shipped model's "
                             "previous version in git)")
    args = parser.parse_args()
    folder = Path(args.data) / "topics-train"
    before_path = args.before or model_before()
    models = {"after": (TopicModel.load(args.model), DEFAULT_TOPIC_THRESHOLD)}
    if before_path:
        models = {"before": (TopicModel.load(before_path), BEFORE_THRESHOLD), **models}
    _, held_out = training_sets(folder)
    test_sets = {
        "bbc_never_trained_on": article_examples(folder, "bbc"),
        "held_out_masakhane_eng": [e for e in held_out if "-eng-" in e[0]],
        "held_out_masakhane_fra": [e for e in held_out if "-fra-" in e[0]],
        "held_out_short_texts": held_out_short_texts(folder),
    }
    results = {"models": {name: {"path": str(args.model if name == "after" else before_path),
                                 "threshold": threshold}
                          for name, (_, threshold) in models.items()}}
    for set_name, examples in test_sets.items():
        results[set_name] = {name: evaluate(model, threshold, examples)
                             for name, (model, threshold) in models.items()}
    html_dev = Path(args.data) / "html-dev"
    if (html_dev / "evaldata.json").is_file():
        articles = html_dev_articles(html_dev)
        results["html_dev"] = {name: html_dev_unclassified(model, threshold, articles)
                               for name, (model, threshold) in models.items()}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "topics.json").write_text(json.dumps(results, indent=2))

    names = list(models)
    print("18-way accuracy (unclassified counts wrong) / macro-F1 / unclassified share, "
          + " vs ".join(f"{n} (threshold {models[n][1]})" for n in names))
    for set_name in test_sets:
        r = results[set_name]
        print(f"\n{set_name}: {r[names[-1]]['examples']} texts")
        for metric in ("accuracy", "top1_accuracy_without_threshold", "macro_f1",
                       "unclassified_share", "articles_per_s"):
            print(f"  {metric:34} " + "  ".join(f"{r[n][metric]:>8}" for n in names))
        print(f"  {'recall per class':34}")
        for topic in r[names[-1]]["per_class"]:
            print(f"    {topic:32} " + "  ".join(
                f"{r[n]['per_class'][topic]['recall']:>8}" for n in names))
        print("  top confusions (after): " + "; ".join(r[names[-1]]["top_confusions"]))
    if "html_dev" in results:
        print("\nhtml-dev unclassified share (section topics included), by language:")
        for n in names:
            h = results["html_dev"][n]
            print(f"  {n:7} all {h['unclassified_share']}  " + "  ".join(
                f"{lang} {c['unclassified_share']} ({c['articles']})"
                for lang, c in h["by_language"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
