"""Publish days on html-dev: newsbeam's page date beside htmldate's alone, page by page.

    nice -n 10 .venv/bin/python bench/dates_vs_htmldate.py [--data ../shared/data] [--limit N]

For every page with a gold date (../shared/data/html-dev/evaldata.json): newsbeam's date as
extraction stores it (trafilatura and htmldate in `extract_page`, then `build_article`'s choice;
counted, as bench_dates_metadata does, only when its source is the page: `date_source =
published`; the day in the source's own offset when it gave a time), and
`htmldate.find_date` alone over the same bytes under several of its own option sets. Prints
each one's share of exact days, how the misses fall (no date, a day off, a month or more off),
and the pages where htmldate alone is right and newsbeam is not (newsbeam must never be worse
than htmldate alone). Writes bench/results/dates_vs_htmldate.json.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import gzip
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(os.environ.get("NEWSBEAM_SHARED_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_dates_metadata import gold_day  # noqa: E402

# htmldate's own options: its default call, and what newsbeam asks (extensive search for the
# original date, with the time of day and the offset).
HTMLDATE_VARIANTS = {
    "default": {},
    "original": {"original_date": True},
    "no_extensive": {"extensive_search": False},
    "original_time": {"original_date": True, "outputformat": "%Y-%m-%dT%H:%M:%S%z"},
}


def newsbeam_day(html: bytes, source_uri: str, now: dt.datetime) -> tuple[str | None, dict]:
    """(the local publish day newsbeam stores for the page or None, details)."""
    from newsbeam.schemas.records import Document
    from newsbeam.transforms.extract import _html_paragraphs, build_article
    from newsbeam.transforms.text import drop_boilerplate
    from newsbeam.transforms.trafilatura_page import extract_page
    page = extract_page(html, None)
    if not page or not (page.get("text") or "").strip():
        return None, {"outcome": "no_text"}
    document = Document(source_uri=source_uri, kind="html", content=html)
    article = build_article(document, drop_boilerplate(_html_paragraphs(page["text"])),
                            page["text"], page, "bench", now)
    details = {"page_date": page.get("date"), "precision": page.get("date_precision"),
               "source": article.date_source}
    # As bench_dates_metadata scores it: only a date the page (or record) gave counts.
    if article.published_at is None or article.date_source != "published":
        return None, details
    at = article.published_at
    if article.published_offset_min is not None:
        at = at + dt.timedelta(minutes=article.published_offset_min)
    return at.date().isoformat(), details


def htmldate_day(html: bytes, options: dict) -> str | None:
    import htmldate
    value = htmldate.find_date(html, **options)
    return value[:10] if value else None


def miss_kind(found: str | None, gold: str) -> str:
    if found is None:
        return "no date"
    days = abs((dt.date.fromisoformat(found) - dt.date.fromisoformat(gold)).days)
    return "a day off" if days == 1 else "2-31 days off" if days <= 31 else "more than a month off"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()
    html_dev = args.data / "html-dev"
    if not (html_dev / "evaldata.json").is_file():
        print(f"skipped: no html-dev at {html_dev}")
        return 0
    evaldata = json.loads((html_dev / "evaldata.json").read_text())
    golds = [(value["file"], gold_day(value.get("date"))) for value in evaldata.values()]
    golds = [(name, day) for name, day in golds if day]
    if args.limit:
        golds = golds[:args.limit]
    now = dt.datetime.now(dt.timezone.utc)
    rows = []
    for name, gold in golds:
        html = gzip.decompress((html_dev / "html" / f"{name}.gz").read_bytes())
        ours, details = newsbeam_day(html, name, now)
        row = {"file": name, "gold": gold, "newsbeam": ours, **details}
        for variant, options in HTMLDATE_VARIANTS.items():
            row[variant] = htmldate_day(html, options)
        rows.append(row)

    print(f"html-dev: {len(rows)} pages with a gold day")
    summary = {}
    for variant in ("newsbeam", *HTMLDATE_VARIANTS):
        hits = sum(row[variant] == row["gold"] for row in rows)
        misses = collections.Counter(miss_kind(row[variant], row["gold"]) for row in rows
                                     if row[variant] != row["gold"])
        summary[variant] = {"exact": round(hits / len(rows), 4), "hits": hits,
                            "misses": dict(misses)}
        print(f"  {variant:14} exact {hits / len(rows):.4f} ({hits})  misses "
              + ", ".join(f"{kind} {n}" for kind, n in misses.most_common()))
    worse = [row for row in rows if row["default"] == row["gold"] != row["newsbeam"]]
    better = [row for row in rows if row["newsbeam"] == row["gold"] != row["default"]]
    print(f"  htmldate default right, newsbeam wrong: {len(worse)}; the reverse: {len(better)}")
    for row in worse:
        print(f"    {row['file']:48} gold {row['gold']} newsbeam {row['newsbeam']} "
              f"({row.get('source')}, {row.get('precision')}, page {row.get('page_date')}) "
              f"htmldate {row['default']}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "dates_vs_htmldate.json").write_text(
        json.dumps({"summary": summary, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
