"""Entity quality and speed: newsbeam's entity stage beside the bare spaCy loop.

    nice -n 10 .venv/bin/python bench/bench_entities.py [--data ../shared/data] [--rounds 3]

Quality: document-level precision/recall/F1 per PER/ORG/LOC/MISC against bench/entities_gold.json
(25 texts of story-pairs-dev.jsonl, hand-annotated). A document's predicted entities are its
distinct (text, type) pairs; a prediction matching any surface form of a gold entity of the same
type finds that entity (several forms of one entity count once); the canonical name the shipped
alias table gives a gold form is one of its forms ('United States' for 'U.S.'). spaCy labels map
to CoNLL types:
PERSON->PER, ORG->ORG, GPE/LOC/FAC->LOC, NORP/EVENT/WORK_OF_ART/PRODUCT/LAW/LANGUAGE->MISC;
numeric and date labels are left out of every variant (the gold set has none).

Variants: `bare` is what a user writes first (spacy.load(model), every component, nlp.pipe,
doc.ents); `bare-ner-only` the same with only the components NER needs; `newsbeam` the stage's
functions (recasing, NER-only pipeline, span cleaning and merging), scored on each entity's
`text` and surface `variants` (the forms the text wrote it in); `newsbeam-no-recase`; and
`newsbeam-canonical`, the same entities scored on `text` alone (a canonical name from the alias
table that the text never writes, "United Kingdom" for "Britain", counts as a miss and a false
positive there).
Each on the texts as they are, with the headline (the first line, else the first 10 words) set
in capitals, as wire copy and some sites print it, and behind a dateline in capitals
('NAIROBI (Reuters) - ' or 'NAIROBI 1996-08-30'; the place and the agency join the gold set).

Speed: words per second over all 394 texts of story-pairs-dev.jsonl, each variant in rotation,
`--rounds` times, median; model load time apart; and the TagEntities composite in a Beam
pipeline (FnApiRunner), start-up and model load included. Writes bench/results/entities.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsbeam.transforms.entities import (DEFAULT_SPACY_MODEL, NUMERIC_LABELS, load_ner,  # noqa: E402
                                          mentions_in, merge_mentions, recase_for_ner,
                                          shipped_aliases)

TYPE_OF = {"PERSON": "PER", "ORG": "ORG", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC",
           "NORP": "MISC", "EVENT": "MISC", "WORK_OF_ART": "MISC", "PRODUCT": "MISC",
           "LAW": "MISC", "LANGUAGE": "MISC"}
TYPES = ("PER", "ORG", "LOC", "MISC")


def normalise(text: str) -> str:
    return " ".join(text.replace("’", "'").split()).casefold()


def caps_headline(text: str) -> str:
    """The text with its headline in capitals, on a line of its own."""
    newline = text.find("\n")
    if 0 < newline < 200:
        head, rest = text[:newline], text[newline:]
    else:
        words = text.split(" ")
        head, rest = " ".join(words[:10]), "\n\n" + " ".join(words[10:])
    return head.upper() + rest


DATELINE_PLACES = ("LONDON", "NEW DELHI", "WASHINGTON", "BRUSSELS", "JAKARTA", "NAIROBI")


def with_dateline(index: int, text: str) -> tuple[str, list]:
    """The text behind a dateline in capitals, alternately wire style ('NAIROBI (Reuters) - ')
    and CoNLL style ('NAIROBI 1996-08-30'); and the gold entities the dateline adds."""
    place = DATELINE_PLACES[index % len(DATELINE_PLACES)]
    gold = [["LOC", place.title(), []]]
    if index % 2 == 0:
        return f"{place} (Reuters) - {text}", gold + [["ORG", "Reuters", []]]
    return f"{place} 1996-08-30\n\n{text}", gold


def bare_entities(doc) -> set[tuple[str, str]]:
    return {(ent.text, TYPE_OF[ent.label_]) for ent in doc.ents if ent.label_ in TYPE_OF}


def newsbeam_entities(text: str, doc, canonical_only: bool = False) -> set[tuple[str, str]]:
    """An article's entities as the stage writes them: each entity's canonical `text` and the
    surface forms it was written in (`variants`), or its `text` alone."""
    mentions = mentions_in(text, [(e.start_char, e.end_char, e.label_) for e in doc.ents])
    return {(form, TYPE_OF[e.label]) for e in merge_mentions(mentions) if e.label in TYPE_OF
            for form in [e.text, *([] if canonical_only else e.variants)]}


def run_variant(name: str, models: dict, texts: list[str]) -> list[set[tuple[str, str]]]:
    if name == "bare":
        return [bare_entities(d) for d in models["full"].pipe(texts)]
    if name == "bare-ner-only":
        return [bare_entities(d) for d in models["ner"].pipe(texts)]
    recase = name != "newsbeam-no-recase"
    prepared = [recase_for_ner(t) if recase else t for t in texts]
    return [newsbeam_entities(t, d, canonical_only=name == "newsbeam-canonical")
            for t, d in zip(texts, models["ner"].pipe(prepared))]


def beam_stage_seconds(texts: list[str], model: str) -> float:
    """Wall time of the TagEntities composite in a Beam pipeline (FnApiRunner) over the texts as
    English articles: pipeline start-up and the model's load in setup() included."""
    import datetime as dt

    import apache_beam as beam

    from newsbeam.schemas.records import Article
    from newsbeam.transforms.entities import TagEntities
    now = dt.datetime.now(dt.timezone.utc)
    articles = [Article(article_id=str(i), source_uri=f"bench/{i}", text=t,
                        word_count=len(t.split()), content_hash=str(i), ingested_at=now,
                        date_source="ingested", run_id="bench", language="en")
                for i, t in enumerate(texts)]
    started = time.perf_counter()
    with beam.Pipeline(runner="FnApiRunner") as p:
        _ = p | beam.Create(articles) | TagEntities(model) | beam.combiners.Count.Globally()
    return time.perf_counter() - started


def gold_forms(names: list[str]) -> set[str]:
    """A gold entity's surface forms, normalised, and the canonical name the shipped alias table
    gives any of them: 'United States' names the entity annotated as 'U.S.' (aliases 'US')."""
    table = shipped_aliases()
    known = [table.lookup(name) for name in names]
    return {normalise(n) for n in names} | {normalise(k[0]) for k in known if k}


def score(gold: dict, predicted: dict) -> dict:
    """Per type and overall: document-level precision, recall, F1 (micro over documents)."""
    counts = {t: [0, 0, 0] for t in TYPES}  # found gold, predicted units, gold
    for doc_id, entities in gold.items():
        forms = [(etype, gold_forms([canonical, *aliases]))
                 for etype, canonical, aliases in entities]
        for etype, _ in forms:
            counts[etype][2] += 1
        found, unmatched = set(), set()
        for text, etype in predicted[doc_id]:
            hits = [i for i, (gtype, names) in enumerate(forms)
                    if gtype == etype and normalise(text) in names]
            if hits:
                found.add(hits[0])
            else:
                unmatched.add((normalise(text), etype))
        for i in found:
            counts[forms[i][0]][0] += 1
            counts[forms[i][0]][1] += 1
        for _, etype in unmatched:
            counts[etype][1] += 1
    result = {}
    for etype, (tp, predicted_n, gold_n) in {**counts, "all": [
            sum(c[i] for c in counts.values()) for i in range(3)]}.items():
        p = tp / predicted_n if predicted_n else 0.0
        r = tp / gold_n if gold_n else 0.0
        result[etype] = {"precision": round(p, 3), "recall": round(r, 3),
                         "f1": round(2 * p * r / (p + r), 3) if p + r else 0.0,
                         "gold": gold_n, "predicted": predicted_n}
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.environ.get("NEWSBEAM_SHARED_DATA",
                                                         str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--model", default=DEFAULT_SPACY_MODEL)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import spacy

    pairs = [json.loads(line) for line in
             (Path(args.data) / "story-pairs-dev.jsonl").open(encoding="utf-8")]
    texts_by_id = {f"{p['pair_id']}:text{i}": p[f"text{i}"] for p in pairs for i in (1, 2)}
    gold = {k: v for k, v in json.loads((ROOT / "bench" / "entities_gold.json").read_text())
            .items() if not k.startswith("_")}
    ids = sorted(gold)

    started = time.perf_counter()
    full = spacy.load(args.model)
    load_full = time.perf_counter() - started
    started = time.perf_counter()
    ner = load_ner(args.model)
    load_ner_s = time.perf_counter() - started
    models = {"full": full, "ner": ner}
    variants = ("bare", "bare-ner-only", "newsbeam", "newsbeam-no-recase", "newsbeam-canonical")
    timed = variants[:-1]   # the canonical-only scoring does the same work as newsbeam

    quality = {}
    layouts = {
        "as-is": lambda n, t: (t, []),
        "caps-headline": lambda n, t: (caps_headline(t), []),
        "dateline": with_dateline,
    }
    for layout, transform in layouts.items():
        prepared = [transform(n, texts_by_id[i]) for n, i in enumerate(ids)]
        texts = [text for text, _ in prepared]
        layout_gold = {i: gold[i] + [e for e in extra if e not in gold[i]]
                       for i, (_, extra) in zip(ids, prepared)}
        quality[layout] = {}
        for variant in variants:
            predicted = dict(zip(ids, run_variant(variant, models, texts)))
            quality[layout][variant] = score(layout_gold, predicted)
            if layout == "dateline":
                places = [(i, extra[0][1]) for i, (_, extra) in zip(ids, prepared)]
                found = sum(any(normalise(text) == normalise(place) and etype == "LOC"
                                for text, etype in predicted[i]) for i, place in places)
                quality[layout][variant]["dateline_place_found"] = round(found / len(ids), 3)

    all_texts = list(texts_by_id.values())
    words = sum(len(t.split()) for t in all_texts)
    timings = {v: [] for v in timed}
    for _ in range(args.rounds):
        for variant in timed:
            started = time.perf_counter()
            run_variant(variant, models, all_texts)
            timings[variant].append(time.perf_counter() - started)
    beam_runs = [beam_stage_seconds(all_texts, args.model) for _ in range(args.rounds)]
    if beam_runs:
        timings["newsbeam-in-beam (start-up and load included)"] = beam_runs
    speed = {} if args.rounds < 1 else {v: {"median_s": round(statistics.median(t), 3),
                 "words_per_s": round(words / statistics.median(t)),
                 "vs_bare": round(statistics.median(timings["bare"]) / statistics.median(t), 2)}
             for v, t in timings.items()}

    results = {"model": args.model, "annotated_texts": len(ids),
               "gold_entities": sum(len(v) for v in gold.values()),
               "quality": quality, "speed": {"texts": len(all_texts), "words": words,
                                             "rounds": args.rounds, **speed},
               "load_s": {"full": round(load_full, 2), "ner_only": round(load_ner_s, 2)},
               "numeric_labels_left_out": sorted(NUMERIC_LABELS)}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "entities.json").write_text(json.dumps(results, indent=2))

    print(f"{len(ids)} annotated texts, {results['gold_entities']} gold entities; model "
          f"{args.model}")
    for layout, by_variant in quality.items():
        print(f"\n{layout}: F1 (P/R) per type")
        print(f"  {'variant':20}" + "".join(f"{t:>20}" for t in (*TYPES, "all")))
        for variant, scores in by_variant.items():
            cells = "".join(f"{s['f1']:>8.3f} ({s['precision']:.2f}/{s['recall']:.2f})"
                            for s in (scores[t] for t in (*TYPES, "all")))
            place = scores.get("dateline_place_found")
            print(f"  {variant:20}{cells}" + (f"   dateline place found {place:.2f}"
                                               if place is not None else ""))
    print(f"\nspeed over {len(all_texts)} texts, {words} words, median of {args.rounds}:")
    for variant, s in speed.items():
        print(f"  {variant:46} {s['median_s']:>7.2f} s {s['words_per_s']:>8} words/s "
              f"x{s['vs_bare']:.2f} vs bare")
    print(f"  load: full {load_full:.2f} s, ner only {load_ner_s:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
