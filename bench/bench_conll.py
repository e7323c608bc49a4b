"""Entities on CoNLL-2003 English dev: newsbeam's plain-text path beside the bare spaCy model.

    nice -n 10 .venv/bin/python bench/bench_conll.py [--data ../shared/data] [--path both]

Data: ../shared/data/ner-dev/conll2003-dev.docs.jsonl (216 Reuters documents of eng.testa; one
sentence a line, tokens separated by spaces; evaluation only, nothing is trained on it).

Scoring is document-level, as ../shared/data/README.md says: per document, the set of
(normalised text, type) pairs, gold against predicted, micro-averaged over documents; spaCy
labels map PERSON->PER, GPE/LOC/FAC->LOC, NORP/EVENT/PRODUCT/WORK_OF_ART/LAW/LANGUAGE->MISC,
ORG->ORG (and the French/Spanish models' PER/LOC/ORG/MISC, already mapped by newsbeam, the same
way); numeric labels are left out. Text is normalised by folding white space and case.

Variants:
- `bare`: spacy.load(model), every component, nlp.pipe over the raw document text, doc.ents.
- `newsbeam`: each document written as a .txt file and run through `newsbeam run` (plain-text
  cleaner, language detection, dedup, NER and the entity stage), entities read back from the
  Parquet output. A document's predicted set is each entity's `text` and its surface `variants`
  (the forms the article wrote it in); `newsbeam-canonical` scores `text` alone. A document that
  newsbeam stored as an error or a duplicate predicts nothing.
- `--path stages` runs the same stages in this process (extraction's plain-text article, then
  the entity stage's functions) instead of `newsbeam run`: quicker, for development.
Writes bench/results/conll.json.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsbeam.transforms.entities import DEFAULT_SPACY_MODEL  # noqa: E402

TYPE_OF = {"PERSON": "PER", "PER": "PER", "ORG": "ORG", "GPE": "LOC", "LOC": "LOC",
           "FAC": "LOC", "NORP": "MISC", "EVENT": "MISC", "WORK_OF_ART": "MISC",
           "PRODUCT": "MISC", "LAW": "MISC", "LANGUAGE": "MISC", "MISC": "MISC"}
TYPES = ("PER", "ORG", "LOC", "MISC")


def normalise(text: str) -> str:
    return " ".join(text.replace("’", "'").split()).casefold()


def gold_sets(docs: list[dict]) -> list[set]:
    return [{(normalise(e["text"]), e["label"]) for e in doc["entities"]} for doc in docs]


def score(gold: list[set], predicted: list[set]) -> dict:
    """Per type and overall: document-level precision, recall and F1, micro over documents."""
    counts = {t: [0, 0, 0] for t in TYPES}   # true positives, predicted, gold
    for gold_set, predicted_set in zip(gold, predicted):
        for _, etype in gold_set:
            counts[etype][2] += 1
        for item in predicted_set:
            counts[item[1]][1] += 1
            counts[item[1]][0] += item in gold_set
    counts["all"] = [sum(c[i] for c in counts.values()) for i in range(3)]
    result = {}
    for etype, (tp, predicted_n, gold_n) in counts.items():
        p = tp / predicted_n if predicted_n else 0.0
        r = tp / gold_n if gold_n else 0.0
        result[etype] = {"f1": round(2 * p * r / (p + r), 3) if p + r else 0.0,
                         "precision": round(p, 3), "recall": round(r, 3),
                         "gold": gold_n, "predicted": predicted_n}
    return result


def bare_predictions(docs: list[dict], model: str) -> list[set]:
    import spacy
    nlp = spacy.load(model)
    return [{(normalise(e.text), TYPE_OF[e.label_]) for e in doc.ents if e.label_ in TYPE_OF}
            for doc in nlp.pipe([d["text"] for d in docs])]


def entity_sets(entities: list[dict]) -> tuple[set, set]:
    """(canonical names, names and surface variants) of an article's entities, typed."""
    canonical, surface = set(), set()
    for entity in entities:
        etype = TYPE_OF.get(entity["label"])
        if etype is None:
            continue
        canonical.add((normalise(entity["text"]), etype))
        for form in [entity["text"], *(entity.get("variants") or [])]:
            surface.add((normalise(form), etype))
    return canonical, surface


def run_newsbeam(docs: list[dict], workdir: Path) -> tuple[dict, dict]:
    """`newsbeam run` over the documents as .txt files: {doc index: entities}, and the counts
    of documents stored as errors or duplicates."""
    import pyarrow.dataset as ds
    inputs = workdir / "in"
    inputs.mkdir()
    for index, doc in enumerate(docs):
        (inputs / f"conll-{index:03d}.txt").write_text(doc["text"] + "\n", encoding="utf-8")
    output = workdir / "out"
    command = [str(ROOT / ".venv" / "bin" / "newsbeam"), "run", "--input", str(inputs),
               "--output", str(output)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    articles = ds.dataset(output / "articles", format="parquet", partitioning="hive").to_table(
        columns=["source_uri", "entities", "language"]).to_pylist()
    by_doc, languages = {}, collections.Counter()
    for row in articles:
        index = int(Path(row["source_uri"]).stem.split("-")[1])
        by_doc[index] = row["entities"]
        languages[row["language"]] += 1
    others = {}
    for folder in ("errors", "duplicates"):
        if (output / folder).is_dir():
            others[folder] = ds.dataset(output / folder, format="parquet",
                                        partitioning="hive").count_rows()
    return by_doc, {**others, "languages": dict(languages)}


def run_stages(docs: list[dict], model: str) -> tuple[dict, dict]:
    """The same stages in this process: extraction's plain-text article (cleaner, language),
    then the entity stage's functions."""
    from newsbeam.schemas.records import Document
    from newsbeam.transforms.entities import EntityTagger
    from newsbeam.transforms.extract import build_article, plain_text_parts
    now = dt.datetime.now(dt.timezone.utc)
    tagger = EntityTagger.load(model)
    articles, languages = [], collections.Counter()
    for index, doc in enumerate(docs):
        document = Document(source_uri=f"conll-{index:03d}.txt", kind="text", content="")
        document, paragraphs, raw = plain_text_parts(document, doc["text"] + "\n")
        article = build_article(document, [p for p in paragraphs if p], raw, {}, "bench", now)
        articles.append(article)
        languages[article.language] += 1
    tagged = tagger.tag(articles)
    by_doc = {i: [dict(e.__dict__) for e in a.entities] for i, a in enumerate(tagged)}
    return by_doc, {"languages": dict(languages)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.environ.get("NEWSBEAM_SHARED_DATA",
                                                         str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--model", default=DEFAULT_SPACY_MODEL)
    parser.add_argument("--path", choices=("run", "stages"), default="run",
                        help="newsbeam through `newsbeam run` (default) or its stages in-process")
    parser.add_argument("--label", default="", help="a name for this run in the results file")
    args = parser.parse_args()
    source = Path(args.data) / "ner-dev" / "conll2003-dev.docs.jsonl"
    docs = [json.loads(line) for line in source.open(encoding="utf-8")]
    gold = gold_sets(docs)

    started = time.perf_counter()
    bare = bare_predictions(docs, args.model)
    bare_s = time.perf_counter() - started
    started = time.perf_counter()
    if args.path == "run":
        with tempfile.TemporaryDirectory() as workdir:
            by_doc, outcome = run_newsbeam(docs, Path(workdir))
    else:
        by_doc, outcome = run_stages(docs, args.model)
    newsbeam_s = time.perf_counter() - started
    canonical, surface = [], []
    for index in range(len(docs)):
        names, forms = entity_sets(by_doc.get(index, []))
        canonical.append(names)
        surface.append(forms)
    results = {"documents": len(docs), "gold_entities": sum(map(len, gold)),
               "model": args.model, "path": args.path, "label": args.label,
               "date": dt.date.today().isoformat(), "outcome": outcome,
               "seconds": {"bare": round(bare_s, 1), "newsbeam": round(newsbeam_s, 1)},
               "scores": {"bare": score(gold, bare), "newsbeam": score(gold, surface),
                          "newsbeam-canonical": score(gold, canonical)}}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    name = f"conll{'-' + args.label if args.label else ''}.json"
    (out / name).write_text(json.dumps(results, indent=2))

    print(f"CoNLL-2003 dev: {len(docs)} documents, {results['gold_entities']} distinct "
          f"(text, type) pairs; model {args.model}; newsbeam via {args.path}: {outcome}")
    print(f"  {'variant':20}" + "".join(f"{t:>20}" for t in (*TYPES, "all")))
    for variant, scores in results["scores"].items():
        print(f"  {variant:20}" + "".join(
            f"{s['f1']:>8.3f} ({s['precision']:.2f}/{s['recall']:.2f})"
            for s in (scores[t] for t in (*TYPES, "all"))))
    bare_f1 = results["scores"]["bare"]["all"]["f1"]
    print(f"  newsbeam F1 / bare F1: {results['scores']['newsbeam']['all']['f1'] / bare_f1:.3f}"
          f"   time: bare {bare_s:.1f} s, newsbeam {newsbeam_s:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
