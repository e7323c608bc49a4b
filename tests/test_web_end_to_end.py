"""End to end over the web sources: `newsbeam run --feed/--feeds/--urls` against a real server
on 127.0.0.1, and `--input x.warc.gz`; the Parquet read back with pyarrow and DuckDB."""

from __future__ import annotations

import http.client
import io
import json
import socket

import apache_beam as beam
import duckdb
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import manifests, read_dataset, run_cli
from tests.newssite import running_site
from newsbeam.transforms.errors import ERRORS
from newsbeam.transforms.fetch import FINISHED, FetchPages, FetchPolicy
from newsbeam.transforms.web import url_request

FAST_FETCH = ["--allow_loopback", "--fetch_delay_s", "0.01", "--max_crawl_delay_s", "0.01",
              "--retry_backoff_s", "0.01", "--read_timeout_s", "0.5", "--fetch_deadline_s", "1",
              "--max_retry_after_s", "5", "--max_document_bytes", str(2**20)]


@pytest.fixture
def site():
    with running_site() as running:
        yield running


def _articles(output):
    return duckdb.sql(f"""
        SELECT url, canonical_url, title, authors, categories, publisher, published_at,
               date_source, feed_url, feed_entry_id, topic, topic_source, description, text
        FROM read_parquet('{output}/articles/**/*.parquet', hive_partitioning = true)
        ORDER BY url""").fetchall()


def test_feed_runs_fetch_only_what_is_new(capsys, tmp_path, site):
    site.add_entry("alpha", "Alpha wins the cup", 14, category="Misc")
    site.add_entry("beta", "Beta loses the final", 15, category="Misc")
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(f"feeds:\n  - url: {site.base}/feed.xml\n    publisher: Example News\n"
                     "    topic: politics\n")
    output = tmp_path / "out"
    run = lambda: run_cli(capsys, "run", "--feeds", str(feeds), "--output", str(output),
                          *FAST_FETCH)

    status, printed = run()
    assert status == 0, printed
    rows = _articles(output)
    assert [(r[0], r[2], r[3], r[4], r[5], r[7], r[8], r[9], r[10], r[11]) for r in rows] == [
        (f"{site.base}/news/{slug}.html", title, [f"{slug.title()} Reporter"], ["Misc"],
         "Example News", "feed", f"{site.base}/feed.xml", f"tag:{slug}", "politics", "feed")
        for slug, title in (("alpha", "Alpha wins the cup"), ("beta", "Beta loses the final"))]
    assert [r[6].day for r in rows] == [14, 15]
    assert "Reporters in alpha wrote" in rows[0][13]
    assert len(site.requests_to("/robots.txt")) == 1  # once per run, feeds and pages alike
    first = manifests(output)[-1]["accounting"]
    assert (first["inputs"], first["articles"], first["balanced"]) == (2, 2, True)

    # Unchanged feed: asked "modified since?", answered 304, no page fetched, nothing added.
    pages_before = len([p for _, p, _ in site.log if p.startswith("/news/")])
    status, printed = run()
    assert status == 0 and "unchanged" in printed
    _, conditional = site.requests_to("/feed.xml")[-1]
    assert conditional["If-None-Match"] == f'"v{site.feed_version}"'
    assert len([p for _, p, _ in site.log if p.startswith("/news/")]) == pages_before
    second = manifests(output)[-1]["accounting"]
    assert (second["inputs"], second["articles"], second["skipped_unchanged"],
            second["balanced"]) == (1, 0, 1, True)

    # A new entry: only its page is fetched; the two known entries are counted as skipped.
    site.add_entry("gamma", "Gamma draws level", 16, category="Misc")
    status, printed = run()
    assert status == 0, printed
    fetched = [p for _, p, _ in site.log if p.startswith("/news/")][pages_before:]
    assert fetched == ["/news/gamma.html"]
    third = manifests(output)[-1]
    assert third["counts"]["entries_seen_before"] == 2
    assert (third["accounting"]["inputs"], third["accounting"]["articles"],
            third["accounting"]["balanced"]) == (3, 1, True)
    assert len(read_dataset(output / "articles")) == 3
    assert len(read_dataset(output / "index" / "entries")) == 3

    # An entry whose page fails for now (503): its feed's validators are not stored, so the
    # next run reads the feed again, although it has not changed, and retries only that entry.
    site.add_entry("delta", "Delta delayed", 17, category="Misc", path="/unavailable.html")
    feed_states = len(read_dataset(output / "index" / "feeds"))
    status, printed = run()
    assert status == 0 and site.hits["/unavailable.html"] == 1
    assert len(read_dataset(output / "index" / "feeds")) == feed_states
    status, printed = run()
    assert status == 0 and site.hits["/unavailable.html"] == 2
    assert site.requests_to("/feed.xml")[-1][1].get("If-None-Match") != f'"v{site.feed_version}"'
    fifth = manifests(output)[-1]
    assert (fifth["counts"]["entries_seen_before"], fifth["counts"]["fetch_errors"],
            fifth["accounting"]["errors_recorded_before"], fifth["accounting"]["balanced"]) == (
        3, 1, 1, True)


def test_url_list_of_misbehaving_endpoints(capsys, tmp_path, site):
    endpoints = {
        "/slow.html": None, "/throttled.html": None, "/flaky.html": None,
        "/latin1.html": None, "/moved.html": None, "/news/plain.html": None,
        "/amp/plain.html": "duplicate",
        "/hang.html": "timeout", "/trickle.html": "timeout", "/missing.html": "http_4xx",
        "/gone.html": "http_4xx", "/unavailable.html": "http_5xx", "/loop-a": "redirect_loop",
        "/to-metadata": "blocked_address", "/notes.txt": "not_html",
        "/truncated.html": "truncated", "/garbage.html": "undecodable",
        "/huge.html": "too_large", "/bomb.html": "too_large",
        "/private/secret.html": "robots_disallowed"}
    urls = tmp_path / "urls.txt"
    lines = ["# endpoints of the local news site", ""] + [site.base + p for p in endpoints]
    urls.write_text("\n".join(lines + ["file:///etc/passwd", "not a url"]) + "\n")
    output = tmp_path / "out"

    status, printed = run_cli(capsys, "run", "--urls", str(urls), "--output", str(output),
                              *FAST_FETCH)

    assert status == 0, printed
    errors = {(r["url"], r["stage"], r["reason"]) for r in
              read_dataset(output / "errors").to_pylist()}
    expected_errors = {(site.base + p, "fetch", reason) for p, reason in endpoints.items()
                       if reason and reason != "duplicate"} | {
        ("file:///etc/passwd", "fetch", "unsupported_scheme"),
        ("not a url", "fetch", "invalid_url")}
    assert errors == expected_errors
    rows = {r[0]: r for r in _articles(output)}
    plain_pair = {site.base + "/news/plain.html", site.base + "/amp/plain.html"}
    assert set(rows) - plain_pair == {site.base + p for p, reason in endpoints.items()
                                      if reason is None and p not in (
                                          "/moved.html", "/news/plain.html")} | {
        f"{site.base}/news/moved-here.html?utm_source=rss"}
    assert rows[f"{site.base}/news/moved-here.html?utm_source=rss"][1] == \
        f"https://127.0.0.1:{site.port}/news/moved-here.html"
    assert "café" in rows[site.base + "/latin1.html"][13]
    assert site.hits["/flaky.html"] == 2 and site.hits["/throttled.html"] == 2
    assert "/private/secret.html" not in site.hits
    accounting = manifests(output)[-1]["accounting"]
    # The AMP page names the plain page as canonical: one article under two URLs is one article.
    (kept,) = [r for url, r in rows.items() if url in plain_pair]
    assert kept[1] == f"https://127.0.0.1:{site.port}/news/plain.html"
    (duplicate,) = read_dataset(output / "duplicates").to_pylist()
    assert {duplicate["url"], kept[0]} == plain_pair
    assert accounting == {"inputs": len(endpoints) + 2, "articles": 6, "duplicates": 1,
                          "errors": len(expected_errors), "errors_recorded_before": 0,
                          "already_ingested": 0, "skipped_unchanged": 0, "balanced": True}


def _http_response_bytes(site, path: str) -> tuple[bytes, bytes]:
    """(status line + headers, body) of a real response from the local site."""
    connection = http.client.HTTPConnection("127.0.0.1", site.port, timeout=5)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    headers = "".join(f"{k}: {v}\r\n" for k, v in response.getheaders()
                      if k.lower() not in ("content-length", "transfer-encoding"))
    connection.close()
    return f"HTTP/1.1 {response.status} {response.reason}\r\n{headers}".encode(), body


def _write_warc(site, path, pages: list[str], others: list[str]):
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter
    with open(path, "wb") as stream:
        writer = WARCWriter(stream, gzip=True)
        writer.write_record(writer.create_warcinfo_record("test.warc.gz", {"software": "test"}))
        for number, page in enumerate(pages + others):
            head, body = _http_response_bytes(site, page)
            status_line, *header_lines = head.decode().split("\r\n")
            headers = StatusAndHeaders(status_line.split(" ", 1)[1], [
                tuple(line.split(": ", 1)) for line in header_lines if line],
                protocol="HTTP/1.1")
            url = f"https://archive.test{page}"
            request = f"GET {page} HTTP/1.1\r\nHost: archive.test\r\n\r\n".encode()
            writer.write_record(writer.create_warc_record(
                url, "request", payload=io.BytesIO(request), length=len(request)))
            writer.write_record(writer.create_warc_record(
                url, "response", payload=io.BytesIO(body), length=len(body), http_headers=headers,
                warc_headers_dict={"WARC-Date": f"2022-02-1{number % 9}T08:00:00Z"}))


def test_a_warc_of_saved_responses_becomes_articles(capsys, tmp_path, site):
    archive = tmp_path / "crawl.warc.gz"
    pages = ["/news/warc-one.html", "/news/warc-two.html", "/latin1.html"]
    _write_warc(site, archive, pages, others=["/notes.txt", "/missing.html"])
    output = tmp_path / "out"

    status, printed = run_cli(capsys, "run", "--input", str(archive), "--output", str(output))

    assert status == 0, printed
    rows = {r[0]: r for r in _articles(output)}
    assert set(rows) == {f"https://archive.test{p}" for p in pages}
    one = rows["https://archive.test/news/warc-one.html"]
    assert (one[6].isoformat(), one[7]) == ("2022-02-10T08:00:00+00:00", "crawled")
    assert "café" in rows["https://archive.test/latin1.html"][13]
    manifest = manifests(output)[-1]
    # warcinfo + 5 requests + a text/plain and a 404 response: counted, not articles.
    assert manifest["counts"]["warc_records_skipped"] == 8
    assert manifest["accounting"]["inputs"] == 3 and manifest["accounting"]["balanced"]
    table = read_dataset(output / "articles")
    assert all("#offset=" in uri for uri in table.column("source_uri").to_pylist())


def _resolver(host, port, type=0):
    """news.test is the local site; any other name does not exist. No real lookup happens."""
    if host in ("news.test", "127.0.0.1"):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def test_fetch_pages_reports_dns_failures_and_finishes_what_is_final(site):
    policy = FetchPolicy(delay_s=0.0, max_crawl_delay_s=0.0, allow_loopback=True,
                         read_timeout_s=2, resolver=_resolver)
    requests = [url_request(f"http://news.test:{site.port}/news/dns-ok.html"),
                url_request("http://no-such-host.test/news/a.html"),
                url_request(f"http://news.test:{site.port}/missing.html")]
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        fetched = p | beam.Create(requests) | FetchPages(policy, run_id="run")
        assert_that(fetched["documents"] | beam.Map(lambda d: (d.url, "dns-ok" in d.content)),
                    equal_to([(f"http://news.test:{site.port}/news/dns-ok.html", True)]),
                    label="documents")
        assert_that(fetched[ERRORS] | beam.Map(lambda e: (e.url, e.reason)), equal_to([
            ("http://no-such-host.test/news/a.html", "dns"),
            (f"http://news.test:{site.port}/missing.html", "http_4xx")]), label="errors")
        # A DNS failure may heal: it is not final, so a feed entry would be tried again.
        assert_that(fetched[FINISHED] | beam.Map(lambda d: d.url), equal_to([
            f"http://news.test:{site.port}/news/dns-ok.html",
            f"http://news.test:{site.port}/missing.html"]), label="finished")


def test_two_worker_processes_give_the_same_articles(capsys, tmp_path, site):
    for day, slug in enumerate(["m1", "m2", "m3", "m4"], 10):
        site.add_entry(slug, f"Story {slug}", day)
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{site.base}/news/u1.html\n{site.base}/missing.html\n")
    results = []
    for name, extra in (("one", []), ("two", ["--direct_num_workers=2",
                                              "--direct_running_mode=multi_processing"])):
        output = tmp_path / name
        status, printed = run_cli(capsys, "run", "--feed", f"{site.base}/feed.xml", "--urls",
                                  str(urls), "--output", str(output), *FAST_FETCH, *extra)
        assert status == 0, printed
        table = read_dataset(output / "articles")
        errors = read_dataset(output / "errors")
        results.append((sorted(zip(table.column("article_id").to_pylist(),
                                   table.column("feed_entry_id").to_pylist())),
                        sorted(errors.column("error_id").to_pylist()),
                        json.dumps(manifests(output)[-1]["accounting"])))
    assert results[0] == results[1]
    assert len(results[0][0]) == 5 and len(results[0][1]) == 1


def test_feed_files_json_feeds_and_bad_feeds(capsys, tmp_path, site):
    site.add_entry("json-one", "JSON one", 14)
    good = tmp_path / "saved.xml"
    good.write_text(
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Saved</title>'
        f"<item><title>From a file</title><link>{site.base}/news/file-one.html</link>"
        "<guid isPermaLink=\"false\">file-1</guid>"
        "<pubDate>Tue, 15 Feb 2022 08:00:00 GMT</pubDate></item>"
        "<item><title>No link here</title><guid isPermaLink=\"false\">file-2</guid></item>"
        "</channel></rss>")
    (tmp_path / "broken.xml").write_bytes(b"\x00\x01 not a feed <<<")
    (tmp_path / "empty.xml").write_text(
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Empty</title></channel></rss>')
    feeds = tmp_path / "feeds.txt"
    feeds.write_text(f"# saved feeds\nsaved.xml\nbroken.xml\nempty.xml\n{site.base}/feed.json\n")
    output = tmp_path / "out"

    status, printed = run_cli(capsys, "run", "--feeds", str(feeds), "--output", str(output),
                              *FAST_FETCH)

    assert status == 0, printed
    rows = {r[0]: r for r in _articles(output)}
    assert set(rows) == {f"{site.base}/news/file-one.html", f"{site.base}/news/json-one.html"}
    from_file = rows[f"{site.base}/news/file-one.html"]
    assert (from_file[2], from_file[7], from_file[8], from_file[9]) == (
        "From a file", "feed", str(good), "file-1")
    from_json = rows[f"{site.base}/news/json-one.html"]
    assert (from_json[4], from_json[10]) == (["Business"], "economy-business-finance")
    errors = {(r["source_uri"], r["stage"], r["reason"])
              for r in read_dataset(output / "errors").to_pylist()}
    assert errors == {(f"{good}#entry=file-2", "feed", "entry_without_link"),
                      (str(tmp_path / "broken.xml"), "feed", "unparseable_feed"),
                      (str(tmp_path / "empty.xml"), "feed", "empty_feed")}
    accounting = manifests(output)[-1]["accounting"]
    assert (accounting["inputs"], accounting["articles"], accounting["errors"],
            accounting["balanced"]) == (5, 2, 3, True)


def test_a_missing_feeds_file_is_a_flag_problem(capsys, tmp_path):
    from newsbeam.pipelines.cli import main
    status = main(["run", "--feeds", str(tmp_path / "nope.yaml"), "--output",
                   str(tmp_path / "out")])
    assert status == 2
    assert f"--feeds {tmp_path / 'nope.yaml'}: no such file" in capsys.readouterr().err
