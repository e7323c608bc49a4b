"""Feeds whose entries carry their own text and no link, end to end: `newsbeam run --feed` against
a real server on 127.0.0.1 and over feed files, the Parquet read back; and the guard that turns
an exception while reading a feed or an entry into that input's error row."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import manifests, read_dataset, run_cli
from tests.newssite import article_html
from newsbeam.transforms import feeds

FAST_FETCH = ["--allow_loopback", "--fetch_delay_s", "0.01", "--max_crawl_delay_s", "0.01",
              "--retry_backoff_s", "0.01", "--read_timeout_s", "2", "--fetch_deadline_s", "5"]

POST = ("The harbour ferry will run an hour later from March, the port authority said on "
        "Tuesday, after a year of complaints from commuters who work late shifts in the city.")

OTHER_POST = ("Teachers at the two primary schools on the river road will strike on Thursday over "
              "pay, their union said, and both schools will close for the day.")


def linkless_feed(base: str) -> str:
    """An RSS 0.92-style item (escaped HTML description, nothing else), a Ghost-style post
    (content:encoded, a guid that is no URL), an item too short to be an article, and an
    ordinary item with a link."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"
 xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>Harbour Notes</title>
<link>{base}/</link><description>Notes</description>
<item><description>The council &lt;b&gt;approved&lt;/b&gt; the new library budget on Monday
 evening, with seven votes in favour and two against, after a debate about
 &lt;a href="{base}/x"&gt;opening hours&lt;/a&gt;.</description></item>
<item><title>Ferry timetable changes</title><guid isPermaLink="false">6203a1</guid>
 <dc:creator>Ann Lee</dc:creator><category>Transport</category>
 <pubDate>Tue, 15 Feb 2022 08:00:00 GMT</pubDate>
 <description>The ferry runs later from March.</description>
 <content:encoded><![CDATA[<h2>New times</h2><p>{POST}</p><script>track()</script>]]>
 </content:encoded></item>
<item><title>Short</title><guid isPermaLink="false">note-3</guid>
 <description>Too short.</description></item>
<item><title>Linked story</title><link>{base}/news/linked.html</link>
 <guid isPermaLink="false">linked</guid></item>
</channel></rss>"""


class _FeedSite:
    """Serves /feed.xml (the linkless feed), /empty.xml (no items) and article pages."""

    def __enter__(self):
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/feed.xml":
                    body, kind = linkless_feed(site.base).encode(), "application/rss+xml"
                elif self.path == "/empty.xml":
                    body = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>E'
                            b'</title></channel></rss>')
                    kind = "application/rss+xml"
                elif self.path.startswith("/news/"):
                    body, kind = article_html("linked", "Linked story").encode(), "text/html"
                else:
                    body, kind = b"not here", "text/plain"
                self.send_response(200 if body != b"not here" else 404)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def feed_site():
    with _FeedSite() as site:
        yield site


def test_entries_without_links_become_articles_of_their_own_text(capsys, tmp_path, feed_site):
    feed = f"{feed_site.base}/feed.xml"
    output = tmp_path / "out"
    run = lambda: run_cli(capsys, "run", "--feed", feed, "--feed", f"{feed_site.base}/empty.xml",
                          "--output", str(output), *FAST_FETCH)

    status, printed = run()

    assert status == 0, printed
    rows = {r["source_uri"]: r for r in read_dataset(output / "articles").to_pylist()}
    (note_uri,) = [uri for uri in rows if uri.startswith(f"{feed}#entry=")
                   and not uri.endswith("6203a1")]
    note = rows[note_uri]
    assert note["text"] == ("The council approved the new library budget on Monday evening, "
                            "with seven votes in favour and two against, after a debate about "
                            "opening hours.")
    assert (note["url"], note["title"], note["publisher"], note["feed_url"],
            note["date_source"]) == (None, None, "Harbour Notes", feed, "ingested")
    post = rows[f"{feed}#entry=6203a1"]
    assert post["text"] == f"New times\n\n{POST}"
    assert (post["title"], post["authors"], post["categories"], post["description"],
            post["feed_entry_id"], post["date_source"], post["published_at"].isoformat()) == (
        "Ferry timetable changes", ["Ann Lee"], ["Transport"],
        "The ferry runs later from March.", "6203a1", "feed", "2022-02-15T08:00:00+00:00")
    assert f"{feed_site.base}/news/linked.html" in rows
    errors = {r["source_uri"]: (r["stage"], r["reason"], r["message"])
              for r in read_dataset(output / "errors").to_pylist()}
    assert errors == {
        f"{feed}#entry=note-3": ("feed", "entry_without_link", "the entry has no link to fetch, "
                                 "and 2 words of text of its own; at least 10 are needed "
                                 "(--min_words)"),
        f"{feed_site.base}/empty.xml": ("feed", "empty_feed", "the feed has no entries")}
    accounting = manifests(output)[-1]["accounting"]
    assert (accounting["inputs"], accounting["articles"], accounting["errors"],
            accounting["balanced"]) == (5, 3, 2, True)

    # The next run: the entries stored are seen before, the short one is counted again (its
    # row is not written twice), and nothing is added.
    status, printed = run()
    assert status == 0, printed
    second = manifests(output)[-1]
    assert second["counts"]["entries_seen_before"] == 3
    assert (second["accounting"]["articles"], second["accounting"]["errors_recorded_before"],
            second["accounting"]["balanced"]) == (0, 2, True)
    assert len(read_dataset(output / "articles")) == 3


# --- The guard: an exception is that input's error row ---------------------------------------


def test_an_exception_reading_one_feed_or_entry_is_its_error_row(capsys, tmp_path, monkeypatch):
    items = "".join(
        f"<item><title>{title}</title><guid isPermaLink=\"false\">{guid}</guid>"
        f"<description>{text}</description></item>"
        for guid, title, text in (("good-1", "Good one", POST),
                                  ("cursed", "Cursed", f"Cursed words. {POST}"),
                                  ("good-2", "Good two", OTHER_POST)))
    (tmp_path / "posts.xml").write_text(
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Posts</title>{items}'
        "</channel></rss>")
    (tmp_path / "cursed-feed.xml").write_text(
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Cursed feed</title>'
        f"<item><description>{POST}</description></item></channel></rss>")
    real_html_text, real_parse_feed = feeds.html_text, feeds.parse_feed

    def html_text(fragment):
        if "Cursed words" in fragment:
            raise KeyError("an entry the parser could not handle")
        return real_html_text(fragment)

    def parse_feed(body, base_url=None):
        if b"Cursed feed" in body:
            raise RuntimeError("a feed the parser could not handle\nsecond line")
        return real_parse_feed(body, base_url)

    monkeypatch.setattr(feeds, "html_text", html_text)
    monkeypatch.setattr(feeds, "parse_feed", parse_feed)
    output = tmp_path / "out"

    status, printed = run_cli(capsys, "run", "--feed", str(tmp_path / "posts.xml"),
                              "--feed", str(tmp_path / "cursed-feed.xml"),
                              "--output", str(output))

    assert status == 0, printed
    titles = sorted(r["title"] for r in read_dataset(output / "articles").to_pylist())
    assert titles == ["Good one", "Good two"]
    errors = {(r["source_uri"], r["stage"], r["reason"], r["message"])
              for r in read_dataset(output / "errors").to_pylist()}
    assert errors == {
        (f"{tmp_path}/posts.xml#entry=cursed", "feed", "internal_error",
         "KeyError: 'an entry the parser could not handle'"),
        (f"{tmp_path}/cursed-feed.xml", "feed", "internal_error", "RuntimeError: second line")}
    manifest = manifests(output)[-1]
    assert manifest["errors_by_stage"] == {"feed": {"internal_error": 2}}
    assert (manifest["accounting"]["inputs"], manifest["accounting"]["balanced"]) == (4, True)


def test_fetch_and_feed_counters_agree_with_the_manifest(capsys, tmp_path, feed_site):
    """The live counters of the web stages (transforms/metrics.py), as the run's manifest keeps
    them from result.metrics(): every request listed is counted done, and the errors by reason,
    a fetch failure made on a pool thread included, are those of errors/."""
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{feed_site.base}/missing.html\n")
    output = tmp_path / "out"
    run = lambda: run_cli(capsys, "run", "--feed", f"{feed_site.base}/feed.xml", "--feed",
                          f"{feed_site.base}/empty.xml", "--urls", str(urls),
                          "--output", str(output), *FAST_FETCH)
    status, printed = run()
    assert status == 0, printed
    manifest = manifests(output)[-1]
    counters = manifest["counters"]
    assert counters["fetch_requests"] == counters["fetch_requests_done"] == 4  # 2 feeds, 2 pages
    assert counters["fetch_documents"] == manifest["counts"]["documents"] == 3
    by_reason = {f"{stage}_error_{reason}": n for stage, reasons in
                 manifest["errors_by_stage"].items() for reason, n in reasons.items()}
    assert {k: v for k, v in counters.items() if "_error_" in k} == by_reason == {
        "feed_error_empty_feed": 1, "feed_error_entry_without_link": 1,
        "fetch_error_http_4xx": 1}
    assert manifest["stage_seconds"]["fetch"] > 0

    status, printed = run()
    assert status == 0, printed
    second = manifests(output)[-1]
    assert second["counters"]["fetch_dropped_seen_before"] \
        == second["counts"]["entries_seen_before"] == 3
