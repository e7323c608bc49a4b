"""Topic classifier quality on articles it never saw, the shipped model beside an earlier one.

    .venv/bin/python bench/bench_topics.py [--data ../shared/data] [--before OLD.npz]
                                           [--folds 5] [--embedding_cache PATH]

What it reports (each model at its default threshold; the 18-way output's accuracy, where an
`unclassified` article counts as wrong; per-class recall; a reliability table: for the scores in
each band, how many there are, their mean and how often the topic was right):
1. Cross-validation over the news articles of the training data (MasakhaNEWS English and French,
   `--folds` folds by a hash of the id): each fold's model is trained by the shipped recipe on
   the other folds plus every short text, and tested on its fold and on the BBC articles (never
   trained on: their licence keeps them out of the shipped model), `--terms_folds` for the
   TF-IDF head (English, French; minutes a fold), `--folds` for the multilingual head (every
   other language) over the articles it samples, French also scored by a head trained without
   French, as German or Spanish meet it.
2. The shipped models on fixed test sets: the BBC articles; the held-out 20 % of the MasakhaNEWS
   articles (train_topics.is_test), English and French apart; the held-out 20 % of the short
   texts, one by one (the TF-IDF head; the multilingual head's held-out figures are the
   cross-validation's: encoding every test text would take hours on the 2-core machine).
3. html-dev (../shared/data/html-dev, extracted by trafilatura as newsbeam does): the share left
   `unclassified` overall and per language, section topics included, and where section topics
   come from; per language, how often the classifier alone (section ignored) names the topic
   of the page's URL section (/sport/, /politik/: a real but noisy label); and a hand-labelled
   spot check of 67 pages (bench/topics_spot_check.json: German, Spanish, French; how they were
   labelled is written in the file).
`--before` defaults to the model of the last commit that changed it (git), if any.
Writes bench/results/topics.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gzip
import hashlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsbeam.pipelines import train_topics  # noqa: E402
from newsbeam.pipelines.train_topics import (DEFAULT_EMBEDDING_CACHE, EmbeddingCache,  # noqa: E402
                                             article_examples, bundles, capped,
                                             held_out_short_texts, is_test, masakhane_examples,
                                             short_examples, training_sets)
from newsbeam.schemas.records import Document  # noqa: E402
from newsbeam.transforms.topics import (DEFAULT_TOPIC_THRESHOLD, SHIPPED_MODEL,  # noqa: E402
                                        UNCLASSIFIED, TopicModel, assign_topic,
                                        categories_topic, classify, encoder_text,
                                        url_topic)

BEFORE_THRESHOLD = 0.25
HTML_DEV_LANGUAGES = ("en", "de", "es", "fr")
RELIABILITY_BANDS = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0001)
SPOT_CHECK = ROOT / "bench" / "topics_spot_check.json"


# --- Scoring -------------------------------------------------------------------------------------


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


def reliability(gold: list[str], best: list[tuple[str, float]]) -> list[dict]:
    """For the best scores in each band: how many, their mean, how often the topic was right."""
    bands = []
    for low, high in zip(RELIABILITY_BANDS, RELIABILITY_BANDS[1:]):
        inside = [(g == p, s) for g, (p, s) in zip(gold, best) if low <= s < high]
        if inside:
            bands.append({"band": f"{low:.2f}-{min(high, 1.0):.2f}", "n": len(inside),
                          "mean_score": round(float(np.mean([s for _, s in inside])), 3),
                          "right": round(sum(r for r, _ in inside) / len(inside), 3)})
    return bands


def score(gold: list[str], best: list[tuple[str, float]], threshold: float) -> dict:
    predicted = [topic if s >= threshold else UNCLASSIFIED for topic, s in best]
    classes = per_class(gold, predicted)
    confusions = Counter((g, p) for g, p in zip(gold, predicted) if g != p)
    return {
        "examples": len(gold),
        "accuracy": round(sum(g == p for g, p in zip(gold, predicted)) / len(gold), 3),
        "top1_accuracy_without_threshold": round(
            sum(g == p for g, (p, _) in zip(gold, best)) / len(gold), 3),
        "macro_f1": round(sum(c["f1"] for c in classes.values()) / len(classes), 3),
        "unclassified_share": round(predicted.count(UNCLASSIFIED) / len(gold), 3),
        "per_class": classes,
        "reliability": reliability(gold, best),
        "top_confusions": [f"{g} -> {p}: {n}" for (g, p), n in confusions.most_common(5)],
    }


def best_of(scores: dict[str, float]) -> tuple[str, float]:
    return min(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def terms_best(model: TopicModel, examples) -> list[tuple[str, float]]:
    return [best_of(model.scores(text)) for _, text, _ in examples]


def head_best(model: TopicModel, examples, cache: EmbeddingCache) -> list[tuple[str, float]]:
    vectors = cache.embed([encoder_text(text) for _, text, _ in examples])
    return [best_of(model.embedding_scores(v)) for v in vectors]


# --- 1. Cross-validation -------------------------------------------------------------------------


def fold_of(example_id: str, folds: int) -> int:
    return int(hashlib.sha256(f"fold:{example_id}".encode()).hexdigest()[:8], 16) % folds


def cross_validate_terms(folder: Path, folds: int, temperature: float) -> dict:
    """The TF-IDF head trained `folds` times by the shipped recipe, each time without one fold
    of the MasakhaNEWS articles (every short text, in bundles, is kept), and scored on that fold
    (English and French apart) and on BBC. The temperature is the shipped model's (fitted on
    its own held-out split), so that the threshold means the same."""
    articles = masakhane_examples(folder)
    short = short_examples(folder)
    short_bundles = bundles([e for e in short if not is_test(e[0])])
    bbc = article_examples(folder, "bbc")
    collected = {name: {"gold": [], "best": []} for name in ("folds", "folds_en", "folds_fr",
                                                             "bbc")}
    per_fold = []
    for fold in range(folds):
        started = time.perf_counter()
        test = [e for e in articles if fold_of(e[0], folds) == fold]
        train = [e for e in articles if fold_of(e[0], folds) != fold]
        model = train_topics.train(train + short_bundles, {"temperature": temperature})
        parts = {"folds": test, "folds_en": [e for e in test if "-fra-" not in e[0]],
                 "folds_fr": [e for e in test if "-fra-" in e[0]], "bbc": bbc}
        fold_scores = {}
        for name, examples in parts.items():
            best = terms_best(model, examples)
            collected[name]["gold"] += [topic for _, _, topic in examples]
            collected[name]["best"] += best
            fold_scores[name] = score([t for _, _, t in examples], best,
                                      DEFAULT_TOPIC_THRESHOLD)["accuracy"]
        per_fold.append({"fold": fold, "test_articles": len(test),
                         "seconds": round(time.perf_counter() - started, 1), **fold_scores})
        print(f"  TF-IDF fold {fold}: {per_fold[-1]}", flush=True)
    return {"folds": folds, "per_fold": per_fold,
            **{name: score(c["gold"], c["best"], DEFAULT_TOPIC_THRESHOLD)
               for name, c in collected.items()}}


def cross_validate_head(folder: Path, folds: int, cache: EmbeddingCache,
                        head_temperature: float) -> dict:
    """The multilingual head trained `folds` times by the shipped recipe over the articles it
    samples (train_topics.head_training_sets: training and calibration samples pooled), each
    time without one fold, and scored on that fold: English and French apart, and French also
    with the English articles alone trained on, which is how the head meets German or
    Spanish (a language it has no labelled article in)."""
    train_sample, calibration_sample = train_topics.head_training_sets(folder)
    pool = [e for e in train_sample + calibration_sample if e[0].startswith("masakhane")]
    short = [e for e in train_sample if not e[0].startswith("masakhane")]
    collected = {name: {"gold": [], "best": []} for name in (
        "folds", "folds_en", "folds_fr", "folds_fr_trained_without_french")}
    for fold in range(folds):
        test = [e for e in pool if fold_of(e[0], folds) == fold]
        train = [e for e in pool if fold_of(e[0], folds) != fold]
        french = [e for e in test if "-fra-" in e[0]]
        runs = {"folds": (train, test), "folds_en": (train, [e for e in test if e not in french]),
                "folds_fr": (train, french),
                "folds_fr_trained_without_french": (
                    [e for e in train if "-fra-" not in e[0]], french)}
        heads = {}
        for name, (trained_on, examples) in runs.items():
            key = id(trained_on) if trained_on is train else "without_french"
            if key not in heads:
                model = TopicModel([], np.zeros(0), np.zeros((0, 17)), np.zeros(17), [], {})
                model.topics = list(train_topics.IPTC_TOPICS)
                heads[key] = train_topics.train_head(model, trained_on + short, examples, cache)
                heads[key].head_temperature = head_temperature
            best = head_best(heads[key], examples, cache)
            collected[name]["gold"] += [topic for _, _, topic in examples]
            collected[name]["best"] += best
    return {"folds": folds, "articles": len(pool),
            **{name: score(c["gold"], c["best"], DEFAULT_TOPIC_THRESHOLD)
               for name, c in collected.items()}}


# --- 3. html-dev ---------------------------------------------------------------------------------


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


def language_of(article) -> str:
    return article.language if article.language in HTML_DEV_LANGUAGES else "other"


def html_dev_topics(model: TopicModel, threshold: float, articles: list, encoder) -> dict:
    """Unclassified share per language (section topics included), where section topics come
    from, and per language the classifier's agreement (section ignored) with the URL's
    section."""
    by_language: dict[str, Counter] = {}
    section_signals = Counter()
    category_sections = []
    url_gold: dict[str, dict] = {}
    for article in articles:
        assigned = assign_topic(dataclasses.replace(article), model, threshold, encoder)
        counts = by_language.setdefault(language_of(article), Counter())
        counts["articles"] += 1
        counts[assigned.topic_source or UNCLASSIFIED] += 1
        if assigned.topic_source == "section":
            from_categories = categories_topic(article.categories)
            section_signals["categories" if from_categories else "url"] += 1
            if from_categories:
                category_sections.append({"title": article.title, "url": article.url,
                                          "categories": article.categories,
                                          "topic": assigned.topic})
            if len(article.categories) >= 8:
                # A menu or tag cloud never sets it (categories_topic refuses it): these are
                # pages with one whose topic is their URL's section.
                section_signals["url_on_pages_with_8_or_more_categories"] += 1
        gold = url_topic(article.url)
        if gold:
            alone = classify(model, article, threshold, encoder)
            entry = url_gold.setdefault(language_of(article), {"gold": [], "best": []})
            entry["gold"].append(gold)
            entry["best"].append((alone.topic_scores[0].topic, alone.topic_scores[0].score)
                                 if alone.topic_scores else (UNCLASSIFIED, 0.0))
    total = sum(c["articles"] for c in by_language.values())
    return {
        "unclassified_share": round(
            sum(c[UNCLASSIFIED] for c in by_language.values()) / max(total, 1), 3),
        "by_language": {language: {**counts, "unclassified_share": round(
            counts[UNCLASSIFIED] / counts["articles"], 3)}
            for language, counts in sorted(by_language.items())},
        "section_topics_from": dict(section_signals),
        "section_topics_from_categories": category_sections,
        "classifier_vs_url_section": {
            language: score(e["gold"], e["best"], threshold)
            for language, e in sorted(url_gold.items())},
    }


def spot_check(model: TopicModel, threshold: float, articles: list, encoder) -> dict:
    """Accuracy per language on the hand-labelled pages (unclear ones left out): the topic as
    newsbeam assigns it (section first) and the classifier's alone."""
    labels = json.loads(SPOT_CHECK.read_text(encoding="utf-8"))["pages"]
    by_url = {article.url: article for article in articles}
    result: dict[str, dict] = {}
    for url, label in sorted(labels.items()):
        if label["topic"] == "unclear" or url not in by_url:
            continue
        article = by_url[url]
        assigned = assign_topic(dataclasses.replace(article), model, threshold, encoder)
        alone = classify(model, article, threshold, encoder)
        entry = result.setdefault(label["language"], Counter())
        entry["pages"] += 1
        entry["assigned_right"] += assigned.topic == label["topic"]
        entry["classifier_right"] += alone.topic == label["topic"]
        entry["unclassified"] += assigned.topic == UNCLASSIFIED
        entry[f"detected_{article.language}"] += 1
    return {language: {**counts,
                       "assigned_accuracy": round(counts["assigned_right"] / counts["pages"], 3),
                       "classifier_accuracy": round(counts["classifier_right"] /
                                                    counts["pages"], 3)}
            for language, counts in sorted(result.items())}


# --- Report --------------------------------------------------------------------------------------


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


def print_score(name: str, r: dict) -> None:
    print(f"  {name:44} accuracy {r['accuracy']:.3f}  top-1 {r['top1_accuracy_without_threshold']:.3f}"
          f"  macro-F1 {r['macro_f1']:.3f}  unclassified {r['unclassified_share']:.3f}"
          f"  ({r['examples']})")


def print_reliability(name: str, r: dict) -> None:
    print(f"    reliability {name}: " + "; ".join(
        f"{b['band']}: n {b['n']}, mean {b['mean_score']}, right {b['right']}"
        for b in r["reliability"]))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.environ.get("NEWSBEAM_SHARED_DATA",
                                                         str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--model", default=str(SHIPPED_MODEL))
    parser.add_argument("--before", default=None,
                        help="an earlier model to compare with (default: the shipped model's "
                             "previous version in git)")
    parser.add_argument("--folds", type=int, default=5,
                        help="folds of the multilingual head's cross-validation (0: none)")
    parser.add_argument("--terms_folds", type=int, default=5,
                        help="folds of the TF-IDF head's cross-validation (0: none; each fold "
                             "retrains it, minutes)")
    parser.add_argument("--embedding_cache", default=str(DEFAULT_EMBEDDING_CACHE))
    parser.add_argument("--html_dev_cache", default=None,
                        help="a pickle of the extracted html-dev articles, written if absent "
                             "(extraction takes minutes; default: extract every time)")
    args = parser.parse_args()
    folder = Path(args.data) / "topics-train"
    cache = EmbeddingCache(Path(args.embedding_cache).expanduser())
    before_path = args.before or model_before()
    models = {"after": (TopicModel.load(args.model), DEFAULT_TOPIC_THRESHOLD)}
    if before_path:
        models = {"before": (TopicModel.load(before_path), BEFORE_THRESHOLD), **models}
    after = models["after"][0]
    results: dict = {"models": {name: {"path": str(args.model if name == "after" else
                                                   before_path), "threshold": threshold,
                                       "multilingual": model.multilingual}
                                for name, (model, threshold) in models.items()}}

    if args.folds and after.multilingual:
        results["cross_validation_multilingual_head"] = cross_validate_head(
            folder, args.folds, cache, after.head_temperature)
    if args.terms_folds:
        print(f"cross-validating the TF-IDF head, {args.terms_folds} folds (each trained anew, "
              "minutes each):", flush=True)
        results["cross_validation_tfidf_head"] = cross_validate_terms(
            folder, args.terms_folds, after.temperature)

    _, held_out = training_sets(folder)
    test_sets = {
        "bbc_never_trained_on": article_examples(folder, "bbc"),
        "held_out_masakhane_eng": [e for e in held_out if "-eng-" in e[0]],
        "held_out_masakhane_fra": [e for e in held_out if "-fra-" in e[0]],
        "held_out_short_texts": held_out_short_texts(folder),
    }
    for set_name, examples in test_sets.items():
        gold = [topic for _, _, topic in examples]
        results[set_name] = {name: score(gold, terms_best(model, examples), threshold)
                             for name, (model, threshold) in models.items()}

    html_dev = Path(args.data) / "html-dev"
    if (html_dev / "evaldata.json").is_file():
        cached = Path(args.html_dev_cache) if args.html_dev_cache else None
        if cached and cached.is_file():
            articles = pickle.loads(cached.read_bytes())
        else:
            articles = html_dev_articles(html_dev)
            if cached:
                cached.write_bytes(pickle.dumps(articles))
        results["html_dev_languages"] = dict(Counter(language_of(a) for a in articles))
        results["html_dev"] = {name: html_dev_topics(model, threshold, articles, cache)
                               for name, (model, threshold) in models.items()}
        results["spot_check"] = {name: spot_check(model, threshold, articles, cache)
                                 for name, (model, threshold) in models.items()}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "topics.json").write_text(json.dumps(results, indent=2))

    names = list(models)
    print("\n18-way accuracy (unclassified counts wrong), top-1, macro-F1, unclassified share; "
          + ", ".join(f"{n}: threshold {models[n][1]}" for n in names))
    for key, label in (("cross_validation_tfidf_head", "TF-IDF head"),
                       ("cross_validation_multilingual_head", "multilingual head")):
        if key in results:
            cv = results[key]
            print(f"\ncross-validated {label} ({cv['folds']} folds over the MasakhaNEWS "
                  "articles" + ("; BBC scored by every fold's model" if "bbc" in cv else "")
                  + "):")
            for name, r in cv.items():
                if isinstance(r, dict) and "accuracy" in r:
                    print_score(name, r)
            print_reliability("folds", cv["folds"])
    for set_name in test_sets:
        print(f"\n{set_name}:")
        for name, r in results[set_name].items():
            print_score(name, r)
        print_reliability(names[-1], results[set_name][names[-1]])
        print("    recall per class: " + ", ".join(
            f"{topic} " + "/".join(str(results[set_name][n]["per_class"][topic]["recall"])
                                   for n in results[set_name])
            for topic in results[set_name][names[-1]]["per_class"]))
    if "html_dev" in results:
        print(f"\nhtml-dev pages by detected language: {results['html_dev_languages']}")
        print("html-dev unclassified share (section topics included), by language:")
        for n in names:
            h = results["html_dev"][n]
            print(f"  {n:7} all {h['unclassified_share']}  " + "  ".join(
                f"{lang} {c['unclassified_share']} ({c['articles']})"
                for lang, c in h["by_language"].items()))
            print(f"          section topics from: {h['section_topics_from']}")
        print("classifier alone vs the URL's section, by language:")
        for n in names:
            for lang, r in results["html_dev"][n]["classifier_vs_url_section"].items():
                print_score(f"{n} {lang}", r)
        print("hand-labelled spot check (bench/topics_spot_check.json):")
        for n in names:
            for lang, r in results["spot_check"][n].items():
                print(f"  {n:7} {lang}: {r['pages']} pages, as assigned {r['assigned_accuracy']}"
                      f", classifier alone {r['classifier_accuracy']}, unclassified "
                      f"{r['unclassified']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
