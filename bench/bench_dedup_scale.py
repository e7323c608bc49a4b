"""Dedup cost per article from 1,000 to 30,000 (or 100,000) articles, with peak memory.

Articles are built from the sentences of the html-dev texts (bench_reprints.py's cache): each
one draws 12-30 sentences at random, so they are distinct; one in ten is then reprinted (a
dateline added, the bottom third cut). They are written to a JSONL file first, so the graph
reads them like an input instead of carrying them in its definition.

For each size, two pipelines run on FnApiRunner (one process), each in a fresh Python process:
"read" reads and decodes the articles and counts them; "dedup" reads them the same way and runs
DropNearCopies (near-identical copies) and LinkStories (same story) and counts what comes out.
The dedup cost is the difference of their wall times; per article it should stay flat. Peak
memory is the larger process's maximum resident set (ru_maxrss).

    python bench/bench_dedup_scale.py [--sizes 1000 10000 30000] [--data DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
RESULTS = HERE / "results"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def sentences(data: Path) -> list[str]:
    from bench.bench_reprints import extracted_texts
    pool = []
    for text in extracted_texts(data):
        pool.extend(s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 6)
    return sorted(set(pool))


def write_corpus(path: Path, size: int, pool: list[str], seed: int = 11) -> None:
    rng = random.Random(seed)
    with open(path, "w") as stream:
        originals = []
        for number in range(size):
            if originals and rng.random() < 0.1:
                paras = rng.choice(originals)
                paras = paras[: max(2, len(paras) * 2 // 3)]
                text = "BERLIN (dpa) - " + "\n\n".join(paras)
            else:
                chosen = rng.sample(pool, rng.randint(12, 30))
                paras = [" ".join(chosen[i:i + 3]) for i in range(0, len(chosen), 3)]
                originals.append(paras)
                if len(originals) > 1000:
                    originals.pop(0)
                text = "\n\n".join(paras)
            moment = NOW + dt.timedelta(minutes=3 * number)
            stream.write(json.dumps({"id": f"a{number:06d}", "text": text,
                                     "published_at": moment.isoformat()}) + "\n")


def run_one(variant: str, corpus: str) -> None:
    """In a child process: one pipeline over the corpus; prints seconds and peak RSS."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline

    from newsbeam.schemas.records import Article
    from newsbeam.transforms.dedup import DUPLICATES, DropNearCopies
    from newsbeam.transforms.stories import LinkStories

    def to_article(line: str) -> Article:
        row = json.loads(line)
        return Article(article_id=row["id"], source_uri=row["id"], text=row["text"],
                       word_count=len(row["text"].split()), content_hash=row["id"],
                       ingested_at=NOW, date_source="published", run_id="bench",
                       published_at=dt.datetime.fromisoformat(row["published_at"]))

    started = time.perf_counter()
    with TestPipeline(runner="FnApiRunner") as p:
        articles = p | beam.io.ReadFromText(corpus) | "Decode" >> beam.Map(to_article)
        if variant == "read":
            counted = [articles]
        elif variant == "near":
            near = articles | DropNearCopies(p | "NoExact" >> beam.Create([]),
                                             p | "NoSignatures" >> beam.Create([]), "bench", NOW)
            counted = [near["articles"], near[DUPLICATES]]
        else:
            near = articles | DropNearCopies(p | "NoExact" >> beam.Create([]),
                                             p | "NoSignatures" >> beam.Create([]), "bench", NOW)
            linked = near["articles"] | LinkStories(p | "NoStories" >> beam.Create([]),
                                                    "bench", NOW)
            counted = [linked["articles"], near[DUPLICATES]]
        for number, pcoll in enumerate(counted):
            pcoll | f"Count{number}" >> beam.combiners.Count.Globally() \
                | f"Print{number}" >> beam.Map(lambda n, k=number: print(f"count{k}", n))
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mib": peak_mib}))


def measure(variant: str, corpus: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", variant, str(corpus)],
                          capture_output=True, text=True, check=True)
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    counts = dict(line.split() for line in lines if line.startswith("count"))
    result["counts"] = [int(counts[f"count{k}"]) for k in range(len(counts))]
    return result


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "NEWSBEAM_SHARED_DATA", HERE.parent.parent / "shared" / "data")))
    # 100,000 takes about 20 minutes and 7-8 GiB on FnApiRunner (it holds every shuffle in
    # memory): ask for it with --sizes 1000 100000.
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 30000])
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args(argv)
    if args.child:
        run_one(*args.child)
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    pool = sentences(args.data)
    rows = []
    for size in args.sizes:
        corpus = RESULTS / f"scale-{size}.jsonl"
        write_corpus(corpus, size, pool)
        read, dedup = measure("read", corpus), measure("dedup", corpus)
        cost = dedup["seconds"] - read["seconds"]
        rows.append({"articles": size, "read_s": round(read["seconds"], 1),
                     "read_and_dedup_s": round(dedup["seconds"], 1),
                     "dedup_ms_per_article": round(1000 * cost / size, 3),
                     "peak_mib": round(dedup["peak_mib"]),
                     "kept": dedup["counts"][0], "duplicates": dedup["counts"][1]})
        print(json.dumps(rows[-1]), flush=True)
        corpus.unlink()
    base = rows[0]["dedup_ms_per_article"]
    for row in rows:
        row["ratio_to_smallest"] = round(row["dedup_ms_per_article"] / base, 2)
    (RESULTS / "dedup_scale.json").write_text(json.dumps(rows, indent=2))
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
