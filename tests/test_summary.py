"""The end-of-run summary (`format_summary`): the newest and the largest partitions rather than
the alphabetically first, articles per topic, and a last line that says how the run went."""

from __future__ import annotations

from newsbeam.pipelines.cli import SUMMARY_PARTITIONS, format_summary

# (date, topic, rows): old archive pages sort first by name, the news of the week last.
PARTITIONS = [("1996-01-01", "sport", 1), ("2000-01-01", "politics", 1),
              ("2003-05-05", "arts-culture-entertainment-media", 1), ("2019-03-02", "health", 30),
              ("2019-03-03", "politics", 25), ("2026-11-26", "sport", 2),
              ("2026-11-27", "politics", 3), ("2026-11-28", "economy-business-finance", 4),
              ("2026-11-29", "sport", 5), ("2026-11-30", "politics", 6),
              ("2026-11-30", "sport", 7), ("2026-12-01", "health", 1)]


def _manifest(partitions=PARTITIONS, balanced=True, errors=0, already=0, unchanged=0):
    parts = {f"date={d}/topic={t}": {"rows": n, "files": 1} for d, t, n in partitions}
    articles = sum(n for _, _, n in partitions)
    return {
        "run_id": "20261201-abc", "elapsed_s": 12.5, "options": {"output": "/data/news"},
        "counts": {"inputs": articles + 2 + errors + already, "documents": articles + 2 + already,
                   "extracted": articles + 2 + already, "already_ingested": already,
                   "duplicates": 2, "errors": errors},
        "accounting": {"inputs": articles + 2 + errors + already + unchanged,
                       "articles": articles, "duplicates": 2, "errors": errors,
                       "errors_recorded_before": 0, "already_ingested": already,
                       "skipped_unchanged": unchanged, "balanced": balanced},
        "errors_by_stage": {"read": {"malformed_jsonl": errors}} if errors else {},
        "datasets": {
            "articles": {"rows": articles, "files": len(parts), "partitions": parts},
            "duplicates": {"rows": 2, "files": 1,
                           "partitions": {"date=2026-11-30": {"rows": 2, "files": 1}}},
            "index/articles": {"rows": articles, "files": 1,
                               "partitions": {".": {"rows": articles, "files": 1}}},
        },
    }


def _block(lines: list[str], title: str) -> list[str]:
    start = lines.index(title) + 1
    block = []
    for line in lines[start:]:
        if not line.startswith("      "):
            break
        block.append(line.strip())
    return block


def test_newest_partitions_first_then_the_largest():
    lines = format_summary(_manifest()).splitlines()
    newest = _block(lines, "    newest:")
    assert newest == ["date=2026-12-01/topic=health: 1", "date=2026-11-30/topic=sport: 7",
                      "date=2026-11-30/topic=politics: 6", "date=2026-11-29/topic=sport: 5",
                      "date=2026-11-28/topic=economy-business-finance: 4"]
    assert len(newest) == SUMMARY_PARTITIONS
    assert _block(lines, "    largest:") == [
        "date=2019-03-02/topic=health: 30", "date=2019-03-03/topic=politics: 25",
        "date=2026-11-30/topic=sport: 7", "date=2026-11-30/topic=politics: 6",
        "date=2026-11-29/topic=sport: 5"]
    # 12 partitions, 7 of them listed (three are both newest and largest).
    assert "    ... 5 more partitions (all in the run manifest)" in lines
    assert not any("1996-01-01" in line for line in lines)


def test_few_partitions_are_all_listed_newest_first():
    lines = format_summary(_manifest(PARTITIONS[:4])).splitlines()
    start = lines.index("  articles/: 33 rows in 4 files") + 1
    assert lines[start:start + 4] == [
        "    date=2019-03-02/topic=health: 30",
        "    date=2003-05-05/topic=arts-culture-entertainment-media: 1",
        "    date=2000-01-01/topic=politics: 1", "    date=1996-01-01/topic=sport: 1"]
    assert "    date=2026-11-30: 2" in lines  # duplicates/ is partitioned by date alone
    assert not any("newest" in line or "largest" in line for line in lines)


def test_articles_per_topic_most_first():
    lines = format_summary(_manifest()).splitlines()
    assert "  articles per topic: politics 35, health 31, sport 15, " \
           "economy-business-finance 4, arts-culture-entertainment-media 1" in lines


def test_the_last_line_is_a_verdict():
    assert format_summary(_manifest()).splitlines()[-1] == (
        "  ok: 86 articles, 2 duplicates, 0 errors; every input accounted for; "
        "output in /data/news")
    assert format_summary(_manifest(errors=3, already=5, unchanged=4)).splitlines()[-1] == (
        "  ok: 86 articles, 2 duplicates, 3 errors, 5 already ingested, 4 unchanged; "
        "every input accounted for; output in /data/news")
    failed = format_summary(_manifest(balanced=False)).splitlines()[-1]
    assert failed.startswith("  FAILED: 86 articles, 2 duplicates, 0 errors of 88 inputs; "
                             "ACCOUNTING MISMATCH")


def test_quiet_prints_only_the_verdict(sample_dataset):
    """The sample dataset's runs ran with --quiet (tests/conftest.py kept what they printed)."""
    from tests import dataset
    printed = {run: (sample_dataset.parent / f"printed-{run}.txt").read_text().splitlines()
               for run in (dataset.FIRST_RUN, dataset.SECOND_RUN)}
    assert printed == {
        dataset.FIRST_RUN: [f"  ok: 29 articles, 2 duplicates, 3 errors; every input accounted "
                            f"for; output in {sample_dataset}"],
        dataset.SECOND_RUN: [f"  ok: 6 articles, 0 duplicates, 0 errors, 2 already ingested; "
                             f"every input accounted for; output in {sample_dataset}"]}
