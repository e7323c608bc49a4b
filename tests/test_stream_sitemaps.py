"""Sitemaps in `newsbeam stream`: the installed command on FnApiRunner polling a sitemap index
of the real 127.0.0.1 news site (tests/newssite.py: one Google News sitemap per feed) while the
site publishes; each entry stored once, each page fetched once, the index read in full at
every poll and the sitemaps it lists asked "modified since?"; --archive_warc keeps what was
fetched as WARC captures (read back with warcio)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as pads
from warcio.archiveiterator import ArchiveIterator

from newsbeam.transforms.feeds import (FEED, ROBOTS_TXT, SITEMAP, FeedSpec, fetch_levels,
                                       lists_sitemaps)
from tests.newssite import running_site

NEWSBEAM = str(Path(sys.executable).with_name("newsbeam"))


def test_a_stream_polls_a_sitemap_index_and_the_sitemaps_it_lists(tmp_path):
    output = str(tmp_path / "out")
    feeds = ["city", "sport"]
    with running_site() as site:
        site.robots = f"User-agent: *\nSitemap: {site.base}/live-sitemaps/index.xml\n"
        for name in feeds:
            site.publish(name, f"before-{name}")
        publisher = site.publish_steadily(feeds, every_s=1.5, count=4)
        done = subprocess.run(
            [NEWSBEAM, "stream", f"--sitemaps_from_robots={site.base}", f"--output={output}",
             "--allow_loopback", "--fetch_delay_s=0.2", "--topic_model=none", "--duration=16",
             "--poll_schedule=always", "--poll_interval_s=2", "--window_s=4",
             f"--archive_warc={tmp_path / 'warc'}"],
            capture_output=True, text=True, timeout=600)
        publisher.join()
        assert done.returncode == 0, done.stderr[-3000:]
        assert " ok: 6 articles, 0 duplicates, 0 errors" in done.stdout, done.stdout

        slugs = ["before-city", "before-sport", *(f"live-{n:05d}" for n in range(4))]
        titles = pads.dataset(os.path.join(output, "articles"), format="parquet",
                              partitioning="hive").to_table(columns=["title"]) \
            .column("title").to_pylist()
        assert sorted(titles) == sorted(f"Story {slug}" for slug in slugs)
        assert all(site.hits[f"/live/{slug}.html"] == 1 for slug in slugs)
        # The index (which sends an ETag) is read in full at every poll, so the sitemaps it
        # lists are polled at every poll too; those are asked "modified since?".
        index = site.requests_to("/live-sitemaps/index.xml")
        assert len(index) >= 3 and not any("If-None-Match" in h for _, h in index)
        city = site.requests_to("/live-sitemaps/city.xml")
        assert len(city) >= 3 and all("If-None-Match" in h for _, h in city[1:])

        # The captures: every page once, and each poll of the index, as response records.
        fetched = []
        for path in sorted((tmp_path / "warc").glob("*.warc.gz")):
            with open(path, "rb") as stream:
                fetched += [record.rec_headers.get_header("WARC-Target-URI")
                            for record in ArchiveIterator(stream)
                            if record.rec_type == "response"]
        assert all(fetched.count(f"{site.base}/live/{slug}.html") == 1 for slug in slugs)
        assert fetched.count(f"{site.base}/live-sitemaps/index.xml") == len(index)
        assert not list((tmp_path / "warc").glob(".*"))  # no temporary file left


def test_what_a_stream_asks_in_full_at_every_poll():
    index = b'<?xml version="1.0"?><sitemapindex xmlns="x"><sitemap><loc>u</loc></sitemap>' \
            b'</sitemapindex>'
    urlset = b'<?xml version="1.0"?><urlset xmlns="x"><url><loc>u</loc></url></urlset>'
    assert lists_sitemaps(FeedSpec("https://a.test/s.xml", kind=SITEMAP), index)
    assert lists_sitemaps(FeedSpec("https://a.test/s.xml.gz", kind=SITEMAP), gzip.compress(index))
    assert lists_sitemaps(FeedSpec("https://a.test/robots.txt", kind=ROBOTS_TXT), b"")
    assert not lists_sitemaps(FeedSpec("https://a.test/s.xml", kind=SITEMAP), urlset)
    assert not lists_sitemaps(FeedSpec("https://a.test/rss.xml"), b"<rss></rss>")
    assert fetch_levels({FEED}, 2) == 1
    assert fetch_levels({FEED, SITEMAP}, 2) == 3
    assert fetch_levels({ROBOTS_TXT}, 2) == 4
