"""Sitemaps as a source beside feeds: the parsing (urlsets, Google News tags, indexes, gzip,
plain text, robots.txt `Sitemap:` lines), and `newsbeam run --sitemaps_from_robots / --sitemap`
end to end against the real 127.0.0.1 news site: indexes followed to a bounded depth, the
news metadata carried into the articles, and a re-run that fetches only what is new."""

from __future__ import annotations

import gzip

import duckdb
import pytest

from tests.conftest import manifests, read_dataset, run_cli
from tests.newssite import ROBOTS, news_sitemap, running_site, sitemap_index
from newsbeam.transforms.feeds import (ROBOTS_TXT, SITEMAP, FeedSpec, InvalidFeedList, gunzipped,
                                       parse_feed_list, parse_robots_sitemaps, parse_sitemap,
                                       parse_source, sitemap_entry)

FAST_FETCH = ["--allow_loopback", "--fetch_delay_s", "0.01", "--max_crawl_delay_s", "0.01",
              "--retry_backoff_s", "0.01", "--read_timeout_s", "2", "--fetch_deadline_s", "5"]

ENTRY = {"link": "https://news.test/a.html", "title": "Alpha &amp; co", "category": "Cup",
         "iso_date": "2022-02-16T09:30:00+01:00"}


def test_a_google_news_sitemap_carries_title_date_publisher_and_keywords():
    parsed = parse_sitemap(news_sitemap([ENTRY]).encode())
    assert not parsed.ill_formed and not parsed.children
    [entry] = parsed.entries
    assert (entry.entry_id, entry.link, entry.title, entry.published, entry.publisher,
            entry.categories) == ("https://news.test/a.html", "https://news.test/a.html",
                                  "Alpha & co", "2022-02-16T08:30:00+00:00", "Example Times",
                                  ["Cup"])


def test_indexes_list_children_and_gzip_and_text_sitemaps_are_read():
    index = parse_sitemap(gzip.compress(sitemap_index(["https://news.test/a.xml",
                                                       "https://news.test/b.xml.gz"]).encode()))
    assert (index.entries, index.children) == ([], ["https://news.test/a.xml",
                                                    "https://news.test/b.xml.gz"])
    text = parse_sitemap(b"https://news.test/x.html\nhttps://news.test/y.html\n")
    assert [e.link for e in text.entries] == ["https://news.test/x.html",
                                              "https://news.test/y.html"]
    plain = parse_sitemap(b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/'
                          b'sitemap/0.9"><url><loc>https://news.test/p</loc></url></urlset>')
    assert [(e.link, e.title, e.published) for e in plain.entries] == [
        ("https://news.test/p", None, None)]


def test_empty_garbage_and_oversized_sitemaps():
    empty = parse_sitemap(b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/'
                          b'schemas/sitemap/0.9"></urlset>')
    assert (empty.entries, empty.ill_formed) == ([], False)
    garbage = parse_sitemap(b"<html><body>not a sitemap</body></html>")
    assert (garbage.entries, garbage.ill_formed) == ([], True)
    with pytest.raises(ValueError, match="more than 100 bytes"):
        gunzipped(gzip.compress(b"x" * 1000), max_bytes=100)
    broken = parse_sitemap(b"\x1f\x8b\x08\x00garbage")
    assert broken.ill_formed and "gzip" in broken.problem


def test_robots_sitemap_lines_and_sniffing_a_sitemap_given_as_a_feed():
    robots = parse_robots_sitemaps(
        (ROBOTS + "Sitemap: https://news.test/s1.xml\nsitemap: https://news.test/s2.xml\n"
         "Sitemap: https://news.test/s1.xml\n").encode())
    assert robots.children == ["https://news.test/s1.xml", "https://news.test/s2.xml"]
    assert parse_robots_sitemaps(ROBOTS.encode()).children == []
    as_feed = parse_source(FeedSpec("https://news.test/sitemap.xml"),
                           news_sitemap([ENTRY]).encode())
    assert [e.title for e in as_feed.entries] == ["Alpha & co"]
    assert parse_source(FeedSpec("https://news.test/robots.txt", kind=ROBOTS_TXT),
                        b"Sitemap: https://news.test/s.xml").children == ["https://news.test/s.xml"]


def test_feeds_files_name_sitemaps_and_robots_by_kind():
    text = ("feeds:\n  - https://a.test/rss\n  - {url: https://a.test/news.xml, kind: sitemap}\n"
            "  - {url: https://b.test/, kind: robots, publisher: B}\n")
    assert parse_feed_list(text, frozenset()) == [
        FeedSpec("https://a.test/rss"), FeedSpec("https://a.test/news.xml", kind=SITEMAP),
        FeedSpec("https://b.test/", "B", kind=ROBOTS_TXT)]
    with pytest.raises(InvalidFeedList, match="kind 'atom'"):
        parse_feed_list("- {url: https://a.test/rss, kind: atom}\n", frozenset())


def test_a_page_without_news_tags_is_its_url_only():
    class Page:
        url, news_story = "https://news.test/p", None
    assert sitemap_entry(Page()).title is None


@pytest.fixture
def site():
    with running_site() as running:
        yield running


def _rows(output):
    return duckdb.sql(f"""
        SELECT url, title, publisher, published_at, date_source, categories, feed_url
        FROM read_parquet('{output}/articles/**/*.parquet', hive_partitioning = true)
        ORDER BY url""").fetchall()


def test_sitemaps_from_robots_end_to_end(capsys, tmp_path, site):
    site.robots = ROBOTS + f"Sitemap: {site.base}/sitemap_index.xml\n"
    site.add_entry("alpha", "Alpha wins the cup", 14, category="Cup")
    site.add_entry("beta", "Beta loses the final", 15, category="Final")
    output = tmp_path / "out"
    run = lambda *more: run_cli(capsys, "run", "--sitemaps_from_robots", site.base,
                                "--sitemap_depth", "1", "--output", str(output), *FAST_FETCH,
                                *more)

    status, printed = run()
    assert status == 0, printed
    rows = _rows(output)
    news = f"{site.base}/sitemap-news.xml"
    assert [(r[0], r[1], r[2], r[3] and r[3].isoformat(), r[4], r[5], r[6]) for r in rows] == [
        (f"{site.base}/news/alpha.html", "Alpha wins the cup", "Example Times",
         "2022-02-14T10:00:00+00:00", "feed", ["Cup"], news),
        (f"{site.base}/news/beta.html", "Beta loses the final", "Example Times",
         "2022-02-15T10:00:00+00:00", "feed", ["Final"], news),
        (f"{site.base}/news/older.html", "Story older", f"127.0.0.1:{site.port}", None,
         "ingested", [], f"{site.base}/sitemap-archive.xml.gz")]  # no news tags: the page's
    errors = read_dataset(output / "errors").to_pylist()
    assert [(e["stage"], e["reason"], e["source_uri"]) for e in errors] == [
        ("feed", "sitemap_too_deep", f"{site.base}/sitemap-deep.xml")]
    first = manifests(output)[-1]["accounting"]
    assert (first["inputs"], first["articles"], first["errors"], first["balanced"]) == (
        4, 3, 1, True)
    assert site.hits.get("/news/deep.html") is None

    # Again: the news sitemap answers 304, the archive's page was fetched before; the known
    # error is recorded before. Nothing is fetched twice.
    status, printed = run()
    assert status == 0, printed
    second = manifests(output)[-1]
    assert (second["counts"]["feeds_not_modified"], second["counts"]["entries_seen_before"],
            second["accounting"]["articles"], second["accounting"]["balanced"]) == (1, 1, 0, True)
    assert site.requests_to("/sitemap-news.xml")[-1][1]["If-None-Match"] == \
        f'"s{site.feed_version}"'

    # A new entry: only its page is fetched.
    site.add_entry("gamma", "Gamma draws level", 16)
    status, printed = run()
    assert status == 0, printed
    assert {path: n for path, n in site.hits.items() if path.startswith("/news/")} == {
        "/news/alpha.html": 1, "/news/beta.html": 1, "/news/older.html": 1,
        "/news/gamma.html": 1}
    assert len(read_dataset(output / "articles")) == 4
    assert len(site.requests_to("/robots.txt")) == 2 * 3  # the rules, and the Sitemap: lines


def test_bad_sitemap_flags_are_refused(capsys, tmp_path):
    from newsbeam.pipelines.cli import main
    assert main(["run", "--sitemaps_from_robots", "news.test", "--output",
                 str(tmp_path / "o")]) == 2
    assert "--sitemaps_from_robots news.test: give the site as an http://" in \
        capsys.readouterr().err
    assert main(["run", "--sitemap", str(tmp_path / "nope.xml"), "--output",
                 str(tmp_path / "o")]) == 2
    assert "--sitemap" in capsys.readouterr().err
    assert main(["run", "--min_poll_s", "600", "--max_poll_s", "60", "--output",
                 str(tmp_path / "o")]) == 2
    assert "--min_poll_s 600 is above --max_poll_s 60" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_listed_sitemaps_past_the_count_or_the_depth_are_error_rows():
    """ParseFeedFn on an index of three sitemaps: two followed (--max_sitemaps 2), the third a
    too_many_sitemaps row; at the last level all three are sitemap_too_deep rows. An index
    stores no validators (it is read in full each run)."""
    import datetime as dt

    import apache_beam as beam
    from apache_beam.testing import test_pipeline
    from apache_beam.testing.util import assert_that, equal_to

    from newsbeam.transforms.errors import ERRORS
    from newsbeam.transforms.feeds import CHILD_SITEMAPS, ENTRIES, FEED_STATES, ParseFeedFn
    children = [f"https://news.test/s{k}.xml" for k in range(3)]
    index = (FeedSpec("https://news.test/index.xml", "News", "sport", SITEMAP),
             sitemap_index(children).encode(), "https://news.test/index.xml", ('"e"', None))
    at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        for levels_left, label in ((1, "Follow"), (0, "Last")):
            parsed = p | f"{label}Create" >> beam.Create([index]) | label >> beam.ParDo(
                ParseFeedFn("run", at, 5, child_levels_left=levels_left, max_sitemaps=2)
            ).with_outputs(ERRORS, FEED_STATES, CHILD_SITEMAPS, main=ENTRIES)
            expected_children = [FeedSpec(c, "News", "sport", SITEMAP) for c in children[:2]] \
                if levels_left else []
            expected_errors = [(children[2], "too_many_sitemaps")] if levels_left else \
                [(c, "sitemap_too_deep") for c in children]
            assert_that(parsed[CHILD_SITEMAPS], equal_to(expected_children),
                        label=f"{label}Children")
            assert_that(parsed[ERRORS] | f"{label}Reasons" >> beam.Map(
                lambda e: (e.source_uri, e.reason)), equal_to(expected_errors),
                label=f"{label}Errors")
            assert_that(parsed[FEED_STATES], equal_to([]), label=f"{label}States")
            assert_that(parsed[ENTRIES], equal_to([]), label=f"{label}Entries")
