"""Topic classifier quality on articles it never saw, beside baselines.

    .venv/bin/python bench/bench_topics.py [--data ../shared/data]

Test sets: (1) the BBC News articles of topics-train (never trained on: their licence keeps
them out of the shipped model), full articles in 5 topics; (2) the held-out 20 % of HuffPost
headlines and MasakhaNEWS articles (pipelines/train_topics.is_test). Baselines: the majority
class of the training data, and the section table alone (what newsbeam did before the
classifier: these sources carry no section that maps, except the HuffPost desk, which is the
label itself, so the section-only baseline is `unclassified` throughout). For the shipped
model: accuracy with every prediction, per-class precision/recall/F1, and for each threshold
the share of articles classified and the accuracy of those.
Writes bench/results/topics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines.train_topics import article_examples, training_sets  # noqa: E402
from transforms.topics import (DEFAULT_TOPIC_THRESHOLD, IPTC_TOPICS, SHIPPED_MODEL,  # noqa: E402
                               TopicModel)

THRESHOLDS = (0.0, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6)


def per_class(gold: list[str], predicted: list[str]) -> dict:
    result = {}
    for topic in sorted(set(gold) | (set(predicted) & set(IPTC_TOPICS))):
        tp = sum(g == p == topic for g, p in zip(gold, predicted))
        fp = sum(p == topic != g for g, p in zip(gold, predicted))
        fn = sum(g == topic != p for g, p in zip(gold, predicted))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        result[topic] = {"support": tp + fn, "precision": round(precision, 3),
                         "recall": round(recall, 3), "f1": round(f1, 3)}
    return result


def evaluate(model: TopicModel, examples, majority: str) -> dict:
    gold = [topic for _, _, topic in examples]
    started = time.perf_counter()
    scored = [model.scores(text) for _, text, _ in examples]
    elapsed = time.perf_counter() - started
    best = [max(s.items(), key=lambda kv: kv[1]) for s in scored]
    predicted = [topic for topic, _ in best]
    accuracy = lambda pairs: sum(g == p for g, p in pairs) / max(len(pairs), 1)  # noqa: E731
    f1s = per_class(gold, predicted)
    gold_classes = set(gold)
    thresholds = {}
    for threshold in THRESHOLDS:
        kept = [(g, p) for g, (p, s) in zip(gold, best) if s >= threshold]
        thresholds[str(threshold)] = {"classified_share": round(len(kept) / len(gold), 3),
                                      "accuracy_of_classified": round(accuracy(kept), 3),
                                      "accuracy_unclassified_counted_wrong": round(
                                          sum(g == p for g, p in kept) / len(gold), 3)}
    return {
        "examples": len(examples),
        "gold_distribution": dict(Counter(gold).most_common()),
        "accuracy": {"classifier": round(accuracy(list(zip(gold, predicted))), 3),
                     "majority_class": round(accuracy([(g, majority) for g in gold]), 3),
                     "section_only": 0.0},
        "macro_f1": round(sum(f1s[t]["f1"] for t in gold_classes) / len(gold_classes), 3),
        "per_class": f1s,
        "thresholds": thresholds,
        "articles_per_s": round(len(examples) / elapsed, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.environ.get("NEWSBEAM_SHARED_DATA",
                                                         str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--model", default=str(SHIPPED_MODEL))
    args = parser.parse_args()
    folder = Path(args.data) / "topics-train"
    model = TopicModel.load(args.model)
    train, held_out = training_sets(folder)
    majority = Counter(t for i, _, t in train if not i.startswith("medtop:")).most_common(1)[0][0]
    results = {
        "model": args.model, "default_threshold": DEFAULT_TOPIC_THRESHOLD,
        "majority_class": majority,
        "bbc_never_trained_on": evaluate(model, article_examples(folder, "bbc"), majority),
        "held_out_huffpost_masakhane": evaluate(model, held_out, majority),
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "topics.json").write_text(json.dumps(results, indent=2))
    for name in ("bbc_never_trained_on", "held_out_huffpost_masakhane"):
        r = results[name]
        print(f"\n{name}: {r['examples']} articles; accuracy classifier {r['accuracy']['classifier']}"
              f", majority ({majority}) {r['accuracy']['majority_class']}, section-only 0.0; "
              f"macro F1 {r['macro_f1']}; {r['articles_per_s']} articles/s")
        print(f"  {'topic':34} {'n':>5} {'P':>6} {'R':>6} {'F1':>6}")
        for topic, m in r["per_class"].items():
            print(f"  {topic:34} {m['support']:>5} {m['precision']:>6} {m['recall']:>6} "
                  f"{m['f1']:>6}")
        print("  threshold: share classified / accuracy of those / correct over all")
        for threshold, m in r["thresholds"].items():
            print(f"    {threshold:>5}: {m['classified_share']:.3f} / "
                  f"{m['accuracy_of_classified']:.3f} / "
                  f"{m['accuracy_unclassified_counted_wrong']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
