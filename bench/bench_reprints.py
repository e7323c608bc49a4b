"""Near-identical copies: precision and recall of duplicate pairs on a reprint corpus built from
real texts, beside the common baseline (word 5-shingle Jaccard >= 0.8 over the raw text).

The corpus: main texts of the html-dev pages (trafilatura, the settings newsbeam uses; cached
under bench/results/). Each of --originals texts gets --variants reprints, each with two or
three of the edits wire copy goes through: a new headline, the bottom third or half cut, new
paragraphs (a developing story), a rewritten first paragraph, an agency dateline, a byline,
"Also Read" lines and a copyright footer, U.S./per cent copy edits, hard wrapping at 72
columns, curly quotes and dashes. Against false merges: short articles of one outlet that share
a long newsletter footer, and the same_story pairs of story-pairs-dev.jsonl (independent
coverage of one event). True pairs: an original and its reprints, all pairs among them.

Everything goes through the DropNearCopies composite together, in one FnApiRunner run; a
predicted pair is two articles in one cluster (kept + its duplicates). The baseline clusters
are the connected components of pairs with exact 5-shingle Jaccard >= 0.8.

    python bench/bench_reprints.py [--data DIR] [--originals 300] [--variants 4] [--seed 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import itertools
import json
import os
import random
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import apache_beam as beam  # noqa: E402
from apache_beam.testing.test_pipeline import TestPipeline  # noqa: E402

from newsbeam.schemas.records import Article  # noqa: E402
from newsbeam.transforms.components import components_of  # noqa: E402
from newsbeam.transforms.dedup import DUPLICATES, DropNearCopies  # noqa: E402

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
RESULTS = HERE / "results"

FOOTER = ("Get the Morning Brief in your inbox every weekday: the stories that matter, picked by "
          "our editors, with analysis from our correspondents around the world, market data, "
          "the weather in your region and a crossword to finish. Members enjoy unlimited access "
          "to every article, the digital edition of the newspaper, our archive going back to "
          "1990, events with our journalists and a monthly letter from the editor. Your support "
          "keeps our reporting independent and free of advertising influence. Thank you for "
          "reading, and for sharing our journalism with your friends and family.")


def extracted_texts(data: Path) -> list[str]:
    cache = RESULTS / "reprint-texts.json.gz"
    if cache.exists():
        with gzip.open(cache, "rt") as stream:
            return json.load(stream)
    import trafilatura
    texts = []
    for path in sorted((data / "html-dev" / "html").glob("*.html.gz")):
        text = trafilatura.extract(gzip.decompress(path.read_bytes()), include_comments=False,
                                   include_tables=False)
        if text:
            texts.append(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with gzip.open(cache, "wt") as stream:
        json.dump(texts, stream)
    return texts


def paragraphs(text: str) -> list[str]:
    return [p.strip() for p in text.split("\n") if p.strip()]


# --- The edits ----------------------------------------------------------------------------------

def cut_bottom(paras, rng, donor):
    keep = max(1, round(len(paras) * rng.choice([0.5, 0.67])))
    return paras[:keep]


def add_paragraphs(paras, rng, donor):
    new = donor[:rng.randint(1, 2)]
    at = rng.randint(1, len(paras))
    return paras[:at] + new + paras[at:]


def rewrite_lede(paras, rng, donor):
    words = paras[0].split()
    rng.shuffle(words)
    return [" ".join(words[: max(5, len(words) * 2 // 3)]) + " " + donor[0]] + paras[1:]


def dateline(paras, rng, donor):
    city = rng.choice(["WASHINGTON", "BERLIN", "LONDON", "ANKARA", "NEW DELHI"])
    agency = rng.choice(["Reuters", "AP", "AFP", "dpa"])
    return [f"{city} ({agency}) - {paras[0]}"] + paras[1:]


def byline_and_footer(paras, rng, donor):
    also = "Also Read | " + " ".join(donor[0].split()[:8])
    return (["By " + rng.choice(["Jane Miller", "Ahmet Yilmaz", "Anna Schmidt"])] + paras[:2]
            + [also] + paras[2:] + ["Copyright 2022 Example Media. All rights reserved."])


def copy_edits(paras, rng, donor):
    swap = lambda p: (p.replace("US ", "U.S. ").replace("USA", "U.S.").replace("%", " per cent")
                      .replace("Prozent", "per cent"))
    return [swap(p) for p in paras]


def hard_wrap(paras, rng, donor):
    import textwrap
    return ["\n".join(textwrap.wrap(p, 72)) for p in paras]


def typography(paras, rng, donor):
    curly = lambda p: re.sub(r'"([^"]*)"', "\u201c\\1\u201d", p).replace("'", "\u2019") \
        .replace(" - ", " \u2014 ")
    return [curly(p) for p in paras]


EDITS = [cut_bottom, add_paragraphs, rewrite_lede, dateline, byline_and_footer, copy_edits,
         hard_wrap, typography]


def article(number: int, text: str, title: str, domain: str) -> Article:
    article_id = hashlib.sha256(f"{number}:{text}".encode()).hexdigest()[:24]
    return Article(article_id=article_id, source_uri=f"bench://{number}", text=text,
                   word_count=len(text.split()), content_hash=article_id, ingested_at=NOW,
                   date_source="ingested", run_id="bench", domain=domain, title=title,
                   published_at=NOW + dt.timedelta(minutes=number))


def build_corpus(texts: list[str], pairs_data: list[dict], originals: int, variants: int,
                 seed: int):
    """(articles, family by article_id: the original's number, or None for negatives)."""
    rng = random.Random(seed)
    usable = [t for t in texts if len(t.split()) >= 150 and len(paragraphs(t)) >= 4]
    rng.shuffle(usable)
    # Each family draws new paragraphs from a donor text of its own, and the short notes come
    # from other texts again: text shared across families would make real near copies.
    sources, donors = usable[:originals], usable[originals:2 * originals]
    shorts = usable[2 * originals:]
    if len(donors) < originals or len(shorts) < 30:
        raise SystemExit(f"only {len(usable)} usable texts: ask for fewer --originals")
    articles, family, number = [], {}, 0
    for index, text in enumerate(sources):
        paras = paragraphs(text)
        versions = [("\n\n".join(paras), "Original headline")]
        donor = paragraphs(donors[index])
        for _ in range(variants):
            edited = paras
            for edit in rng.sample(EDITS, rng.randint(2, 3)):
                edited = edit(edited, rng, donor)
            versions.append(("\n\n".join(edited), f"Another headline {rng.random():.6f}"))
        for text_version, title in versions:
            a = article(number, text_version, title, f"outlet{rng.randint(1, 40)}.example")
            articles.append(a)
            family[a.article_id] = index
            number += 1
    for short in shorts[:30]:  # one outlet, short notes, one long shared footer
        body = " ".join(short.split()[:rng.randint(40, 90)])
        a = article(number, body + "\n\n" + FOOTER, "Brief", "daily-brief.example")
        articles.append(a)
        family[a.article_id] = None
        number += 1
    for pair in (p for p in pairs_data if p["label"] == "same_story"):
        for side in ("text1", "text2"):
            a = article(number, pair[side], "Coverage", f"wire{number}.example")
            articles.append(a)
            family[a.article_id] = None
            number += 1
    return articles, family


def true_pairs(family: dict) -> set:
    members = defaultdict(list)
    for article_id, index in family.items():
        if index is not None:
            members[index].append(article_id)
    return {tuple(sorted(p)) for ids in members.values() for p in itertools.combinations(ids, 2)}


def cluster_pairs(clusters: dict[str, str]) -> set:
    """All pairs of ids that share a cluster label."""
    members = defaultdict(list)
    for article_id, label in clusters.items():
        members[label].append(article_id)
    return {tuple(sorted(p)) for ids in members.values() if len(ids) > 1
            for p in itertools.combinations(ids, 2)}


def pipeline_clusters(articles: list[Article]) -> dict[str, str]:
    out = RESULTS / "reprints-duplicates.jsonl"
    if out.exists():
        out.unlink()
    with TestPipeline(runner="FnApiRunner") as p:
        near = (p | beam.Create(articles)
                | DropNearCopies(p | "NoExact" >> beam.Create([]), p | "NoIndex" >> beam.Create([]),
                                 "bench", NOW))
        (near[DUPLICATES] | beam.Map(lambda d: json.dumps([d.source_uri, d.duplicate_of]))
         | beam.combiners.ToList() | beam.Map(lambda rows: out.write_text("\n".join(rows))))
    by_uri = {a.source_uri: a.article_id for a in articles}
    clusters = {}
    for line in out.read_text().splitlines():
        uri, kept = json.loads(line)
        clusters[by_uri[uri]] = kept
        clusters[kept] = kept
    return clusters


def baseline_clusters(articles: list[Article], threshold: float = 0.8) -> dict[str, str]:
    shingles = {}
    for a in articles:
        words = re.findall(r"\w+", a.text.casefold())
        shingles[a.article_id] = {tuple(words[i:i + 5]) for i in range(max(1, len(words) - 4))}
    postings = defaultdict(list)
    for article_id, grams in shingles.items():
        for gram in grams:
            postings[gram].append(article_id)
    candidates = set()
    for ids in postings.values():
        if len(ids) <= 50:
            candidates.update(itertools.combinations(sorted(ids), 2))
    edges = [(a, b) for a, b in candidates
             if len(shingles[a] & shingles[b]) / len(shingles[a] | shingles[b]) >= threshold]
    return components_of(edges)


def scores(predicted: set, truth: set) -> dict:
    tp = len(predicted & truth)
    precision = tp / len(predicted) if predicted else 1.0
    recall = tp / len(truth) if truth else 1.0
    return {"precision": round(precision, 4), "recall": round(recall, 4),
            "predicted_pairs": len(predicted), "true_pairs": len(truth), "correct": tp}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "NEWSBEAM_SHARED_DATA", HERE.parent.parent / "shared" / "data")))
    parser.add_argument("--originals", type=int, default=300)
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    texts = extracted_texts(args.data)
    with open(args.data / "story-pairs-dev.jsonl") as stream:
        pairs_data = [json.loads(line) for line in stream]
    articles, family = build_corpus(texts, pairs_data, args.originals, args.variants, args.seed)
    truth = true_pairs(family)
    started = time.perf_counter()
    newsbeam = scores(cluster_pairs(pipeline_clusters(articles)), truth)
    newsbeam["seconds"] = round(time.perf_counter() - started, 1)
    baseline = scores(cluster_pairs(baseline_clusters(articles)), truth)
    result = {"articles": len(articles), "originals": args.originals, "variants": args.variants,
              "seed": args.seed, "newsbeam": newsbeam, "baseline_5shingle_jaccard_0.8": baseline}
    print(json.dumps(result, indent=2))
    (RESULTS / "reprints.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
