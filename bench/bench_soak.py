"""Soak: many tiny scheduled runs into one dataset, then `newsbeam compact`; and the html-dev
pages ingested in several runs, before and after compaction.

Part 1 (soak): --runs runs, each over a folder holding a few new articles, the previous run's
inputs again (already ingested) and an exact copy, every article dated today, as a 15-minute
schedule writes them. After the runs and again after compaction: each article once (pyarrow and
DuckDB agree), `inspect --check` clean, files and bytes per 1,000 articles, and the DuckDB scan
time of `text` (median of --scans).

Part 2 (html-dev, skipped when the data is absent): the 990 pages in --html_runs runs, the same
figures before and after compaction.

    python bench/bench_soak.py [--runs 200] [--per_run 3] [--html_runs 10] [--scans 5] [--keep DIR]

Runs happen in this process (newsbeam's `ingest.run`), one after the other; writes
bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = Path(os.environ.get("NEWSBEAM_SHARED_DATA", ROOT.parent / "shared" / "data"))

_WORDS = ("harbour ferry council budget school road bridge river storm rain farmers market "
          "prices hospital nurses doctors court judge police station train line airport flights "
          "museum concert festival league match goal coach players minister parliament vote "
          "election campaign mayor village town city workers union strike factory energy grid "
          "wind solar water supply drought flood bank loan rates inflation housing rent").split()


def tiny_article(rng: random.Random, number: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(60, 120))]
    sentences = [" ".join(words[i:i + 12]).capitalize() + "." for i in range(0, len(words), 12)]
    return f"Report {number}: " + " ".join(sentences)


def soak_runs(output: Path, inputs: Path, runs: int, per_run: int, seed: int = 1,
              log=print) -> dict:
    """`runs` runs of `per_run` new articles each (plus the last run's again and one exact
    copy); returns {"articles": distinct articles given, "seconds": per run}."""
    from newsbeam.pipelines import ingest
    rng = random.Random(seed)
    previous: list[tuple[str, str]] = []
    number, seconds = 0, []
    for run in range(runs):
        folder = inputs / f"run-{run:04d}"
        folder.mkdir(parents=True)
        new = [(f"a{number + i}.txt", tiny_article(rng, number + i)) for i in range(per_run)]
        number += per_run
        for name, text in new + previous:
            (folder / name).write_text(text)
        (folder / "copy.txt").write_text(new[0][1])
        started = time.perf_counter()
        manifest = ingest.run(["--input", str(folder), "--output", str(output),
                               "--topic_model", "none"])
        seconds.append(time.perf_counter() - started)
        assert manifest["accounting"]["balanced"], manifest["accounting"]
        log(f"  run {run + 1}/{runs}: {manifest['accounting']['articles']} articles, "
            f"{manifest['accounting']['already_ingested']} already ingested, "
            f"{seconds[-1]:.1f} s")
        previous = new
        shutil.rmtree(folder)
    return {"articles": number, "seconds": seconds}


def dataset_figures(output: Path, scans: int) -> dict:
    """Files, bytes, rows and the DuckDB scan time of `text` of articles/ (and the file counts
    of the other datasets)."""
    import duckdb
    files = list((output / "articles").rglob("*.parquet"))
    size = sum(f.stat().st_size for f in files)
    glob = f"{output}/articles/**/*.parquet"
    times = []
    with duckdb.connect() as db:
        rows = db.execute(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = "
                          "true)").fetchone()[0]
        for _ in range(scans):
            started = time.perf_counter()
            db.execute(f"SELECT sum(length(text)) FROM read_parquet('{glob}', "
                       "hive_partitioning = true)").fetchone()
            times.append(time.perf_counter() - started)
    others = {name: len(list((output / name).rglob("*.parquet")))
              for name in ("stories", "duplicates", "errors", "index") if (output / name).exists()}
    return {"rows": rows, "files": len(files), "bytes": size,
            "files_per_1000": round(1000 * len(files) / max(rows, 1), 1),
            "bytes_per_1000": round(1000 * size / max(rows, 1)),
            "scan_text_s": round(statistics.median(times), 4), "other_files": others}


def assert_exactly_once(output: Path) -> None:
    import duckdb
    import pyarrow.dataset as ds

    from newsbeam.transforms.check import check
    table = ds.dataset(str(output / "articles"), format="parquet", partitioning="hive")
    ids = table.to_table(columns=["article_id"]).column(0).to_pylist()
    with duckdb.connect() as db:
        duck = db.execute(f"SELECT count(*), count(DISTINCT article_id) FROM read_parquet("
                          f"'{output}/articles/**/*.parquet', hive_partitioning = true)").fetchone()
    assert len(ids) == len(set(ids)) == duck[0] == duck[1], (len(ids), len(set(ids)), duck)
    broken = [f.what for f in check(str(output)) if f.broken]
    assert not broken, broken


def compact_figures(output: Path, scans: int) -> tuple[dict, dict, float]:
    from newsbeam.transforms import compact
    before = dataset_figures(output, scans)
    started = time.perf_counter()
    compact.compact(str(output))
    seconds = time.perf_counter() - started
    after = dataset_figures(output, scans)
    assert after["rows"] == before["rows"]
    assert_exactly_once(output)
    return before, after, seconds


def _print_side_by_side(title: str, before: dict, after: dict, seconds: float) -> None:
    print(f"\n{title} ({before['rows']} articles); compaction took {seconds:.1f} s")
    print(f"  {'':22} {'before':>12} {'after':>12} {'after/before':>13}")
    for key in ("files", "files_per_1000", "bytes", "bytes_per_1000", "scan_text_s"):
        ratio = after[key] / before[key] if before[key] else float("nan")
        print(f"  {key:22} {before[key]:>12} {after[key]:>12} {ratio:>13.3f}")
    print(f"  other datasets' files: {before['other_files']} -> {after['other_files']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--per_run", type=int, default=3)
    parser.add_argument("--html_runs", type=int, default=10)
    parser.add_argument("--scans", type=int, default=5)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="work in DIR (kept) instead of a temporary folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results: dict = {"runs": args.runs, "per_run": args.per_run}
    with tempfile.TemporaryDirectory(prefix="newsbeam-soak-") as temporary:
        work = args.keep or Path(temporary)
        if args.runs:
            print(f"soak: {args.runs} runs of {args.per_run} new articles")
            soaked = soak_runs(work / "soak", work / "in", args.runs, args.per_run)
            assert_exactly_once(work / "soak")
            before, after, seconds = compact_figures(work / "soak", args.scans)
            assert after["rows"] == soaked["articles"]
            results["soak"] = {"before": before, "after": after, "compact_s": round(seconds, 1),
                               "run_s_median": round(statistics.median(soaked["seconds"]), 1)}
            _print_side_by_side(f"soak, {args.runs} runs", before, after, seconds)

        pages = sorted((args.data / "html-dev" / "html").glob("*"))
        if pages and args.html_runs:
            from newsbeam.pipelines import ingest
            output = work / "html"
            share = -(-len(pages) // args.html_runs)
            for run in range(args.html_runs):
                folder = work / "html-in" / f"run-{run}"
                folder.mkdir(parents=True)
                for page in pages[run * share:(run + 1) * share]:
                    os.symlink(page, folder / page.name)
                manifest = ingest.run(["--input", str(folder), "--output", str(output)])
                print(f"  html-dev run {run + 1}/{args.html_runs}: "
                      f"{manifest['accounting']['articles']} articles")
            assert_exactly_once(output)
            before, after, seconds = compact_figures(output, args.scans)
            results["html_dev"] = {"runs": args.html_runs, "before": before, "after": after,
                                   "compact_s": round(seconds, 1)}
            _print_side_by_side(f"html-dev in {args.html_runs} runs", before, after, seconds)
        else:
            print(f"\nhtml-dev: no pages under {args.data} (skipped)")
    out = ROOT / "bench" / "results" / ("soak.json" if args.runs else "soak-html-dev.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
