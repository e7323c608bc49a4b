"""Dates and metadata of `newsbeam run` on the html-dev pages, scored against the set's gold
annotations (../shared/data/html-dev/evaldata.json), before and after: the same pages through
two checkouts' `newsbeam` (--before: another checkout's, e.g. main's; and this one's), side by
side; without --before, this checkout's figures alone.

Figures (each over the pages it can be judged on):
- publish day: the day the page gives (published_at in the source's own offset when it is
  known) equals the gold date, over the pages with a gold date;
- time of day: share of page-dated rows that carry a time (date_precision 'time'; before the
  column existed, a time other than 00:00:00);
- year/month guesses presented as a day: page-dated rows on 1 January or a 1st of a month whose
  precision is a day (or not stated) while the gold has no such date;
- titles with a site suffix: the title is the gold title followed by a separator and more;
- authors that are not the gold's: author strings not found in the gold author field;
- comma-joined categories: rows with a category holding a comma;
- home-page canonicals: canonical_url is a site root while the page's URL is deeper;
- must-drop snippets: share of the gold's "without" snippets still in the text (and the share
  of "with" snippets kept, so that cleaning is not bought with real text);
- what each boilerplate step dropped (the run's counters: furniture paragraphs at extraction,
  paragraphs repeated across a domain's pages) and the rows and size of index/paragraphs.

    python bench/bench_dates_metadata.py [--data ../shared/data]
        [--before ../main/.venv/bin/newsbeam]        # the other checkout's executable
        [--before-output DIR] [--after-output DIR]   # score existing outputs instead of running
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.dataset as ds

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(os.environ.get("NEWSBEAM_SHARED_DATA", ROOT.parent / "shared" / "data"))
_SUFFIX_SEPARATOR = re.compile(r"^\s*[|\-–—:·»/]")


def _plain(text) -> str:
    if isinstance(text, list):
        text = "; ".join(text)
    return " ".join(unicodedata.normalize("NFKC", text or "").split()).casefold()


def gold_day(value: str | None) -> str | None:
    """The gold date as YYYY-MM-DD (a few are written '2022-29-11' or '2022-11-1')."""
    match = re.match(r"(\d{4})\D(\d{1,2})\D(\d{1,2})$", value or "")
    if not match:
        return None
    year, month, day = map(int, match.groups())
    if month > 12:
        month, day = day, month
    return f"{year:04d}-{month:02d}-{day:02d}"


def local_day(row: dict) -> str | None:
    published = row.get("published_at")
    if published is None:
        return None
    offset = row.get("published_offset_min")
    if offset is not None:
        published = published + dt.timedelta(minutes=offset)
    return published.date().isoformat()


def has_time(row: dict) -> bool:
    if "date_precision" in row:
        return row["date_precision"] == "time"
    published = row["published_at"]
    return (published.hour, published.minute, published.second) != (0, 0, 0)


def presented_as_day(row: dict) -> bool:
    return row.get("date_precision") in (None, "day", "time")


def is_root(url: str | None) -> bool:
    return bool(url) and urlsplit(url).path in ("", "/")


def read_articles(output: Path) -> list[dict]:
    articles = output / "articles"
    return ds.dataset(str(articles), format="parquet", partitioning="hive").to_table().to_pylist()


def score(output: Path, evaldata: dict) -> dict:
    by_file = {value["file"]: (url, value) for url, value in evaldata.items()}
    rows = read_articles(output)
    figures = {"articles": len(rows)}
    day_hits = day_total = 0
    page_dated = timed = fake_day = partial = 0
    suffix = titled = 0
    foreign_authors = authors_total = gold_authors_found = gold_authors = 0
    comma_joined = home_canonical = 0
    without_found = without_total = with_found = with_total = 0
    for row in rows:
        name = Path(row["source_uri"]).name.removesuffix(".gz")
        url, gold = by_file.get(name, (None, None))
        if gold is None:
            continue
        if row["date_source"] == "published" and row["published_at"] is not None:
            page_dated += 1
            timed += has_time(row)
            published = row["published_at"]
            if published.day == 1 and presented_as_day(row) and \
                    gold_day(gold.get("date")) != published.date().isoformat():
                fake_day += 1
            partial += row.get("date_precision") in ("month", "year")
        expected_day = gold_day(gold.get("date"))
        if expected_day:
            day_total += 1
            day_hits += row["date_source"] == "published" and local_day(row) == expected_day
        if gold.get("title"):
            titled += 1
            ours, theirs = _plain(row.get("title")), _plain(gold["title"])
            if ours != theirs and ours.startswith(theirs) and \
                    _SUFFIX_SEPARATOR.match(ours[len(theirs):]):
                suffix += 1
        if "author" in gold:
            gold_author = _plain(gold["author"])
            for author in row.get("authors") or []:
                authors_total += 1
                foreign_authors += _plain(author) not in gold_author
            if gold_author:
                gold_authors += 1
                gold_authors_found += any(_plain(a) in gold_author
                                          for a in row.get("authors") or [])
        comma_joined += any("," in c for c in row.get("categories") or [])
        home_canonical += is_root(row.get("canonical_url")) and not is_root(url)
        text = _plain(row["text"])
        without = [_plain(s) for s in gold.get("without", [])]
        wanted = [_plain(s) for s in gold.get("with", [])]
        without_found += sum(s in text for s in without)
        without_total += len(without)
        with_found += sum(s in text for s in wanted)
        with_total += len(wanted)
    figures.update({
        "publish_day_accuracy": round(day_hits / max(day_total, 1), 4),
        "publish_day_pages": day_total,
        "page_dated_rows": page_dated,
        "time_of_day_share": round(timed / max(page_dated, 1), 4),
        "first_of_period_presented_as_day_not_gold": fake_day,
        "month_or_year_precision_rows": partial,
        "titles_with_site_suffix": suffix,
        "titled_pages": titled,
        "author_strings_not_in_gold": foreign_authors,
        "author_strings": authors_total,
        "gold_authors_found": round(gold_authors_found / max(gold_authors, 1), 4),
        "rows_with_comma_joined_category": comma_joined,
        "home_page_canonicals": home_canonical,
        "must_drop_snippets_present": round(without_found / max(without_total, 1), 4),
        "must_keep_snippets_present": round(with_found / max(with_total, 1), 4),
    })
    return figures


_BOILERPLATE_COUNTERS = ("extract_furniture_paragraphs_dropped",
                         "dedup_boilerplate_articles_cleaned",
                         "dedup_boilerplate_paragraphs_dropped")


def boilerplate_figures(output: Path) -> dict:
    """What each boilerplate step dropped (the runs' counters; absent before they existed) and
    the size of index/paragraphs (the paragraphs recorded for later runs)."""
    counters: dict[str, int] = {}
    for manifest in (output / "_runs").glob("*.json"):
        for name, value in json.loads(manifest.read_text()).get("counters", {}).items():
            counters[name] = counters.get(name, 0) + value
    figures = {name: counters.get(name, 0) for name in _BOILERPLATE_COUNTERS}
    index = output / "index" / "paragraphs"
    files = list(index.glob("*.parquet")) if index.is_dir() else []
    figures["index_paragraphs_rows"] = (
        ds.dataset([str(f) for f in files], format="parquet").count_rows() if files else 0)
    figures["index_paragraphs_kib"] = round(sum(f.stat().st_size for f in files) / 1024, 1)
    return figures


def run_newsbeam(newsbeam: Path, pages: Path, output: Path) -> float:
    started = time.perf_counter()
    subprocess.run([str(newsbeam), "run", "--input", str(pages), "--output", str(output),
                    "--progress_interval_s", "0", "--quiet"], check=True, cwd=ROOT)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--before", type=Path, default=None,
                        help="the `newsbeam` executable of the checkout to compare with")
    parser.add_argument("--before-output", type=Path)
    parser.add_argument("--after-output", type=Path)
    parser.add_argument("--keep", type=Path,
                        help="write the runs' outputs here (kept) instead of a temporary folder")
    parser.add_argument("--json", type=Path,
                        default=ROOT / "bench" / "results" / "dates_metadata.json")
    args = parser.parse_args()

    html_dev = args.data / "html-dev"
    if not (html_dev / "evaldata.json").is_file():
        print(f"skipped: no html-dev at {html_dev} (set --data or NEWSBEAM_SHARED_DATA)")
        return 0
    evaldata = json.loads((html_dev / "evaldata.json").read_text())
    after = Path(sys.executable).parent / "newsbeam"
    with tempfile.TemporaryDirectory(prefix="newsbeam-bench-") as temporary:
        work = args.keep or Path(temporary)
        pages = Path(work) / "pages"
        pages.mkdir(parents=True)
        for page in sorted((html_dev / "html").glob("*.html.gz")):
            (pages / page.name).symlink_to(page.resolve())
        outputs, seconds = {}, {}
        for name, given, executable in (("before", args.before_output, args.before),
                                        ("after", args.after_output, after)):
            if given is not None:
                outputs[name] = given
                continue
            if executable is None:
                continue  # no checkout to compare with: this one's figures alone
            if not executable.exists():
                print(f"skipped: no {name} executable at {executable}")
                return 0
            outputs[name] = Path(work) / name
            seconds[name] = round(run_newsbeam(executable, pages, outputs[name]), 1)
        results = {name: {**score(output, evaldata), **boilerplate_figures(output)}
                   for name, output in outputs.items()}

    print(f"\nhtml-dev: {len(evaldata)} pages; before = {args.before_output or args.before}\n")
    print(f"{'figure':46} {'before':>10} {'after':>10}")
    for key in results["after"]:
        print(f"{key:46} {results.get('before', {}).get(key, '-')!s:>10} "
              f"{results['after'][key]!s:>10}")
    for name, value in seconds.items():
        print(f"{name} run: {value} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"results": results, "seconds": seconds}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
