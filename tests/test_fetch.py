"""The HTTP client and per-host sessions against a real server on 127.0.0.1: every misbehaving
endpoint ends in its reason code or a successful retry. Pure helpers are tested alongside."""

from __future__ import annotations

import dataclasses
import gzip
import socket
import time
import urllib.parse
import zlib

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import manifests, read_dataset, run_cli
from tests.newssite import running_site
from newsbeam.transforms.errors import ERRORS
from newsbeam.transforms.fetch import (ROBOTS, TRANSIENT_REASONS, FetchByHost, FetchFailed, FetchPages,
                                       FetchPolicy, FetchRequest, HostSession, HostSessions, HttpClient,
                                       _CappedDecoder, blocked_ip, check_url, crawl_delay, decode_html,
                                       parse_retry_after, robots_allow, robots_for_status,
                                       robots_from_text)
from newsbeam.transforms.web import url_request

FAST = FetchPolicy(delay_s=0.0, connect_timeout_s=2, read_timeout_s=0.5, total_timeout_s=1.0,
                   max_bytes=2**20, retries=2, backoff_s=0.01, max_retry_after_s=5,
                   max_crawl_delay_s=0.05, allow_loopback=True)


@pytest.fixture(scope="module")
def site():
    with running_site() as running:
        yield running


def failure_of(call) -> FetchFailed:
    with pytest.raises(FetchFailed) as caught:
        call()
    return caught.value


# --- Pure helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize("address, allowed_with_loopback", [
    ("127.0.0.1", True), ("::1", True), ("10.1.2.3", False), ("192.168.0.1", False),
    ("172.16.5.4", False), ("169.254.169.254", False), ("fe80::1", False), ("224.0.0.1", False),
    ("0.0.0.0", False), ("240.0.0.1", False), ("::ffff:10.0.0.1", False), ("100.64.0.1", False),
    ("fd00::1", False), ("93.184.216.34", True), ("2606:4700::1111", True)])
def test_blocked_addresses(address, allowed_with_loopback):
    assert blocked_ip(address, allow_loopback=True) is not allowed_with_loopback
    if address in ("127.0.0.1", "::1"):
        assert blocked_ip(address, allow_loopback=False)


@pytest.mark.parametrize("url, reason", [
    ("file:///etc/passwd", "unsupported_scheme"), ("ftp://example.test/x", "unsupported_scheme"),
    ("gopher://127.0.0.1:70/", "unsupported_scheme"), ("http:///nohost", "invalid_url"),
    ("www.example.test/a", "invalid_url"),
    ("http://example.test:99999/", "invalid_url")])
def test_urls_that_are_never_fetched(url, reason):
    assert failure_of(lambda: check_url(url)).reason == reason


def test_retry_after_in_seconds_or_as_a_date():
    assert parse_retry_after("7", now=0) == 7.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=40) == 60.0
    assert parse_retry_after("soon", now=0) is None and parse_retry_after(None, now=0) is None


def test_crawl_delay_is_honoured_up_to_the_cap():
    robots = robots_from_text("User-agent: *\nCrawl-delay: 20\nDisallow: /private/\n")
    assert crawl_delay(robots, FetchPolicy(delay_s=1, max_crawl_delay_s=30)) == 20
    assert crawl_delay(robots, FetchPolicy(delay_s=1, max_crawl_delay_s=5)) == 5
    assert crawl_delay(None, FetchPolicy(delay_s=1)) == 1
    assert not robots_allow(robots, "http://x.test/private/a.html")
    assert robots_allow(robots, "http://x.test/news/a.html")
    assert robots_allow(robots_for_status(404), "http://x.test/any")
    assert not robots_allow(robots_for_status(503), "http://x.test/any")


def test_decompression_stops_at_the_cap():
    bomb = gzip.compress(b"\0" * (20 * 2**20))
    decoder = _CappedDecoder("gzip", max_bytes=2**20)
    with pytest.raises(FetchFailed) as caught:
        for start in range(0, len(bomb), 4096):
            decoder.feed(bomb[start:start + 4096])
    assert caught.value.reason == "too_large"
    small = _CappedDecoder("deflate", max_bytes=100)
    raw_deflate = zlib.compressobj(wbits=-15)
    assert small.feed(raw_deflate.compress(b"hello") + raw_deflate.flush()) == b"hello"


def test_charset_from_header_then_meta_then_detection():
    assert decode_html("café".encode("cp1252"), "text/html; charset=windows-1252") == "café"
    meta = '<meta charset="iso-8859-1"><p>naïve</p>'.encode("latin-1")
    assert "naïve" in decode_html(meta, "text/html")
    wrong = "Le café au lait et la crème brûlée".encode("cp1252")
    assert "café" in decode_html(wrong, "text/html; charset=utf-8")
    with pytest.raises(FetchFailed) as caught:
        decode_html(bytes(range(0x80, 0x100)) * 40, "text/html")
    assert caught.value.reason == "undecodable"


# --- The client against the local server ---------------------------------------------------------


@pytest.mark.parametrize("path, reason", [
    ("/hang.html", "timeout"), ("/trickle.html", "timeout"), ("/missing.html", "http_4xx"),
    ("/gone.html", "http_4xx"), ("/rate-limited.html", "http_429"),
    ("/unavailable.html", "http_5xx"),
    ("/loop-a", "redirect_loop"), ("/to-metadata", "blocked_address"),
    ("/notes.txt", "not_html"), ("/truncated.html", "truncated"), ("/huge.html", "too_large"),
    ("/bomb.html", "too_large")])
def test_misbehaving_endpoints_end_in_their_reason(site, path, reason):
    client = HttpClient(FAST)
    failure = failure_of(lambda: client.get_with_retries(site.base + path, html_only=True))
    assert failure.reason == reason, str(failure)


def test_a_retry_after_longer_than_allowed_is_not_waited_for(site):
    before = site.hits.get("/unavailable.html", 0)
    failure = failure_of(lambda: HttpClient(FAST).get_with_retries(
        site.base + "/unavailable.html"))
    assert "Retry-After asks for 120 s" in str(failure)
    assert site.hits["/unavailable.html"] == before + 1


def test_500_then_success_and_429_waits_for_retry_after(site):
    client = HttpClient(FAST)
    assert b"Second time lucky" in client.get_with_retries(site.base + "/flaky.html").body
    response = client.get_with_retries(site.base + "/throttled.html")
    assert b"After the wait" in response.body
    (first, _), (second, _) = site.requests_to("/throttled.html")
    assert second - first >= 0.95  # Retry-After: 1


def test_redirects_are_followed_up_to_the_limit(site):
    client = HttpClient(FAST)  # max_redirects 5
    assert client.get(site.base + "/chain-5").url == site.base + "/chain-0"
    failure = failure_of(lambda: client.get(site.base + "/chain-6"))
    assert (failure.reason, str(failure)) == ("redirect_loop", "more than 5 redirects")


def test_slow_response_within_the_limits_and_redirects_followed(site):
    client = HttpClient(FAST)
    assert b"Slow but fine" in client.get(site.base + "/slow.html").body
    moved = client.get(site.base + "/moved.html")
    assert moved.url == site.base + "/news/moved-here.html?utm_source=rss"


def test_loopback_is_refused_unless_allowed(site):
    strict = HttpClient(FetchPolicy(allow_loopback=False))
    assert failure_of(lambda: strict.get(site.base + "/slow.html")).reason == "blocked_address"


def test_a_redirect_to_the_metadata_address_is_refused_before_any_connect(site):
    connected = []

    def recording_connect(address, timeout):
        connected.append(address)
        return socket.create_connection(address, timeout)

    client = HttpClient(FAST, connect=recording_connect)
    assert failure_of(lambda: client.get(site.base + "/to-metadata")).reason == "blocked_address"
    assert connected == [("127.0.0.1", site.port)]


def test_a_name_resolving_to_a_private_address_is_refused_and_dns_failures_reported():
    def resolver(host, port, type=0):
        if host == "rebind.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    client = HttpClient(FetchPolicy(resolver=resolver, allow_loopback=True))
    assert failure_of(lambda: client.get("http://rebind.test/")).reason == "blocked_address"
    assert failure_of(lambda: client.get("http://no-such-host.test/")).reason == "dns"


def test_a_name_is_connected_to_at_the_address_that_was_checked(site):
    """The resolver answers once; the connection goes to that answer (no second lookup)."""
    answers = []

    def resolver(host, port, type=0):
        answers.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    client = HttpClient(FetchPolicy(resolver=resolver, allow_loopback=True, read_timeout_s=2))
    response = client.get(f"http://news.test:{site.port}/slow.html")
    assert b"Slow but fine" in response.body and answers == ["news.test"]
    _, headers = site.requests_to("/slow.html")[-1]
    assert headers["Host"] == f"news.test:{site.port}"
    assert headers["User-Agent"].startswith("newsbeam/")


def test_host_session_reads_robots_once_and_keeps_its_distance(site):
    policy = FetchPolicy(delay_s=0.0, max_crawl_delay_s=0.2, allow_loopback=True,
                         read_timeout_s=2)
    session = HostSession(HttpClient(policy), site.base)
    robots_before = len(site.requests_to("/robots.txt"))
    for slug in ("p1", "p2", "p3"):
        session.fetch(FetchRequest(url=f"{site.base}/news/{slug}.html", source_uri=slug))
    failure = failure_of(lambda: session.fetch(FetchRequest(
        url=site.base + "/private/secret.html", source_uri="secret")))
    assert failure.reason == "robots_disallowed"
    assert site.hits.get("/private/secret.html", 0) == 0
    assert len(site.requests_to("/robots.txt")) == robots_before + 1
    times = [t for t, path, _ in site.log if path.startswith("/news/p")]
    # Crawl-delay: 1 in robots.txt, capped at 0.2 s by the policy.
    assert all(b - a >= 0.19 for a, b in zip(times, times[1:]))


def test_a_redirect_to_another_host_obeys_that_hosts_robots_and_delay():
    policy = FetchPolicy(delay_s=0.0, max_crawl_delay_s=0.3, allow_loopback=True,
                         read_timeout_s=2)
    with running_site() as proxy, running_site() as publisher:
        proxy.robots = "User-agent: *\nDisallow:\n"   # no delay of its own

        def via_proxy(path: str) -> FetchRequest:
            target = urllib.parse.quote(publisher.base + path, safe="")
            return FetchRequest(url=f"{proxy.base}/away?to={target}", source_uri=path)

        sessions = HostSessions(HttpClient(policy), known_robots={})
        for slug in ("r1", "r2", "r3"):
            assert b"Story " + slug.encode() in sessions.fetch(
                via_proxy(f"/news/{slug}.html")).body
        failure = failure_of(lambda: sessions.fetch(via_proxy("/private/secret.html")))
        assert failure.reason == "robots_disallowed"
        assert publisher.hits.get("/private/secret.html", 0) == 0
        assert len(publisher.requests_to("/robots.txt")) == 1
        assert [origin for origin, _ in sessions.robots_read()] == sorted([proxy.base,
                                                                            publisher.base])
        # The proxy lets requests go back to back; the publisher's Crawl-delay (1 s, capped at
        # 0.3 s) spaces the pages it serves.
        times = [t for t, path, _ in publisher.log if path.startswith("/news/r")]
        assert len(times) == 3 and all(b - a >= 0.29 for a, b in zip(times, times[1:]))


def test_a_redirect_to_a_blocked_host_is_refused_before_its_robots_are_asked_for(site):
    sessions = HostSessions(HttpClient(FAST), known_robots={})
    failure = failure_of(lambda: sessions.fetch(FetchRequest(
        url=site.base + "/to-metadata", source_uri="metadata")))
    assert failure.reason == "blocked_address"
    assert [origin for origin, _ in sessions.robots_read()] == [site.base]


# --- Non-ASCII URLs (IRIs) and unforeseen exceptions ---------------------------------------------


def _idn_resolver(host, port, type=0):
    """The IDNA name of bücher.example is the local site; nothing else resolves."""
    if host in ("xn--bcher-kva.example", "127.0.0.1"):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def test_a_non_ascii_path_and_host_are_sent_encoded(site):
    client = HttpClient(dataclasses.replace(FAST, resolver=_idn_resolver))
    response = client.get(f"{site.base}/straße", html_only=True)
    assert b"Die Stra" in response.body
    assert response.url == f"{site.base}/stra%C3%9Fe"
    response = client.get(f"http://Bücher.example:{site.port}/straße")
    assert response.url == f"http://xn--bcher-kva.example:{site.port}/stra%C3%9Fe"
    _, headers = site.requests_to("/stra%C3%9Fe")[-1]
    assert headers["Host"] == f"xn--bcher-kva.example:{site.port}"


@pytest.mark.parametrize("path", ["/to-iri-utf8", "/to-iri-latin1"])
def test_a_redirect_to_a_non_ascii_location_is_followed(site, path):
    response = HttpClient(FAST).get(site.base + path)
    assert response.url == f"{site.base}/stra%C3%9Fe" and b"Die Stra" in response.body


@pytest.mark.parametrize("url", ["http://☃.example/news/a.html", "http://example.test/\ud800",
                                 "http://example.test/a page.html"])
def test_a_url_that_cannot_be_a_uri_is_invalid(url):
    assert failure_of(lambda: HttpClient(FAST).get(url)).reason == "invalid_url"


class _Unforeseen(Exception):
    pass


def _broken_resolver(host, port, type=0):
    """127.0.0.1 is the local site; looking up broken*.test raises what nobody expects."""
    if host.startswith("broken"):
        raise _Unforeseen("the resolver fell over\nfor good")
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]


def test_iri_and_failing_requests_become_rows_and_the_run_goes_on(site):
    policy = dataclasses.replace(FAST, resolver=_broken_resolver, read_timeout_s=2)
    broken_page = f"http://broken.test:{site.port}/news/b.html"     # its robots.txt is known
    broken_robots = f"http://broken-robots.test:{site.port}/news/c.html"
    urls = [f"{site.base}/straße", f"{site.base}/to-iri-utf8", f"{site.base}/news/iri-ok.html",
            "http://☃.example/news/a.html", broken_page, broken_robots, f"{site.base}/to-space"]
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        known = p | "Known" >> beam.Create([(f"http://broken.test:{site.port}", ("missing",))])
        fetched = (p | beam.Create([url_request(u) for u in urls])
                   | FetchPages(policy, "run", known_robots=known))
        assert_that(fetched["documents"] | beam.Map(lambda d: d.url), equal_to(
            [f"{site.base}/stra%C3%9Fe"] * 2 + [f"{site.base}/news/iri-ok.html"]),
            label="documents")
        assert_that(fetched[ERRORS] | beam.Map(lambda e: (e.url, e.reason, e.message)),
                    equal_to([
                        ("http://☃.example/news/a.html", "invalid_url",
                         "not a valid URL: Codepoint U+2603 at position 1 of '☃' not allowed"),
                        (broken_page, "internal_error", "_Unforeseen: for good"),
                        (broken_robots, "internal_error", "robots.txt: _Unforeseen: for good"),
                        (f"{site.base}/to-space", "invalid_url",
                         "HTTP 302 redirect to '/a page.html', not a valid URL: white space or "
                         "a control character in the URL")]), label="errors")


def test_newsbeam_run_over_non_ascii_urls_writes_what_it_can(capsys, tmp_path):
    """Non-ASCII URLs from a URL list and from a feed's links."""
    with running_site() as site:
        site.add_entry("im-feed", "Die Straße im Feed", 16, path="/straße-im-feed")
        urls = tmp_path / "urls.txt"
        urls.write_text(f"{site.base}/straße\nhttp://☃.example/x\n{site.base}/to-space\n",
                        encoding="utf-8")
        output = tmp_path / "out"
        status, printed = run_cli(capsys, "run", "--urls", str(urls), "--feed",
                                  f"{site.base}/feed.xml", "--output", str(output),
                                  "--allow_loopback", "--fetch_delay_s", "0.01",
                                  "--max_crawl_delay_s", "0.01", "--fetch_concurrency", "4")
    assert status == 0, printed
    assert sorted(read_dataset(output / "articles").column("url").to_pylist()) == [
        f"{site.base}/stra%C3%9Fe", f"{site.base}/stra%C3%9Fe-im-feed"]
    assert sorted(read_dataset(output / "errors").column("reason").to_pylist()) == [
        "invalid_url", "invalid_url"]
    assert manifests(output)[-1]["accounting"]["balanced"]


# --- The deadline --------------------------------------------------------------------------------


def test_the_deadline_holds_while_headers_trickle_in(site):
    """A header byte every 0.1 s never trips the 0.5 s read timeout; the 1 s deadline ends it."""
    started = time.monotonic()
    failure = failure_of(lambda: HttpClient(FAST).get(site.base + "/trickle-headers.html"))
    assert failure.reason == "timeout" and "--fetch_deadline_s" in str(failure)
    assert time.monotonic() - started < 2.5   # the deadline, not the 4 s the headers take


# --- Reason codes --------------------------------------------------------------------------------


@pytest.mark.parametrize("path, reason", [
    ("/to-space", "invalid_url"), ("/bad-status.html", "bad_response"),
    ("/request-timeout.html", "timeout")])
def test_reasons_say_what_went_wrong(site, path, reason):
    assert failure_of(lambda: HttpClient(FAST).get_with_retries(site.base + path)).reason == reason


def test_which_reasons_a_later_run_retries():
    assert TRANSIENT_REASONS == {"dns", "connect", "timeout", "tls", "http_429", "http_5xx",
                                 "truncated"}
    for permanent in ("invalid_url", "bad_response", "internal_error", "robots_disallowed",
                      "http_4xx", "blocked_address"):
        assert permanent not in TRANSIENT_REASONS


# --- Politeness: the delay, measured where the server sees it ------------------------------------


def _start_gaps(site, prefix: str = "/") -> list[float]:
    times = sorted(t for t, path, _ in site.log if path.startswith(prefix))
    return [b - a for a, b in zip(times, times[1:])]


def test_no_two_requests_to_a_host_start_closer_than_the_delay():
    """Every hop counts: robots.txt, pages, redirects on the same host, retries."""
    policy = dataclasses.replace(FAST, delay_s=0.1, max_crawl_delay_s=0.1, read_timeout_s=2,
                                 total_timeout_s=5)
    with running_site() as site:
        site.robots = "User-agent: *\nDisallow: /private/\n"
        sessions = HostSessions(HttpClient(policy), known_robots={})
        paths = [f"/news/g{n}.html" for n in range(8)] + ["/moved.html", "/chain-3",
                                                            "/flaky.html", "/throttled.html"]
        for path in paths:
            sessions.fetch(FetchRequest(url=site.base + path, source_uri=path))
        gaps = _start_gaps(site)
    assert len(gaps) == 1 + 8 + 2 + 4 + 2 + 2 - 1
    assert min(gaps) >= 0.1, sorted(gaps)[:3]


def test_robots_crawl_delay_spaces_the_requests():
    """Our group's Crawl-delay (0.2 s), not the other agents' (5 s, capped at 1 s)."""
    policy = dataclasses.replace(FAST, delay_s=0.0, max_crawl_delay_s=1.0, read_timeout_s=2)
    with running_site() as site:
        site.robots = "User-agent: newsbeam\nCrawl-delay: 0.2\n\nUser-agent: *\nCrawl-delay: 5\n"
        sessions = HostSessions(HttpClient(policy), known_robots={})
        for slug in ("c1", "c2", "c3"):
            sessions.fetch(FetchRequest(url=f"{site.base}/news/{slug}.html", source_uri=slug))
        gaps = _start_gaps(site)
    assert len(gaps) == 3 and all(0.2 <= gap < 0.9 for gap in gaps), gaps


# --- robots.txt as RFC 9309 reads it -------------------------------------------------------------

RFC9309_ROBOTS = ("User-agent: *\nDisallow: /*.pdf$\nDisallow: /*?utm_\nDisallow: /search*\n"
                  "Disallow: /*/amp/\nDisallow: /news/\nAllow: /news/public/\n")


@pytest.mark.parametrize("path, allowed", [
    ("/files/report.pdf", False), ("/files/report.pdf?page=2", True),
    ("/story.html?utm_source=rss", False), ("/story.html?id=3", True),
    ("/search", False), ("/searching/x.html", False), ("/2022/amp/story.html", False),
    ("/amp/story.html", True), ("/news/closed.html", False), ("/news/public/open.html", True)])
def test_robots_rules_wildcards_and_longest_match(path, allowed):
    assert robots_allow(robots_from_text(RFC9309_ROBOTS), "http://x.test" + path) is allowed


def test_robots_rules_are_obeyed_against_the_server():
    policy = dataclasses.replace(FAST, read_timeout_s=2)
    with running_site() as site:
        site.robots = RFC9309_ROBOTS
        sessions = HostSessions(HttpClient(policy), known_robots={})
        outcomes = {}
        for path in ("/news/public/open.html", "/news/closed.html", "/notes.pdf",
                     "/story.html?utm_medium=feed", "/2022/amp/one.html"):
            try:
                sessions.fetch(FetchRequest(url=site.base + path, source_uri=path,
                                            accept_html_only=False))
                outcomes[path] = "fetched"
            except FetchFailed as failure:
                outcomes[path] = failure.reason
        assert outcomes == {"/news/public/open.html": "fetched",
                            "/news/closed.html": "robots_disallowed",
                            "/notes.pdf": "robots_disallowed",
                            "/story.html?utm_medium=feed": "robots_disallowed",
                            "/2022/amp/one.html": "robots_disallowed"}
        assert {path for _, path, _ in site.log} == {"/robots.txt", "/news/public/open.html"}


@pytest.mark.parametrize("status, outcome", [
    (404, "fetched"), (401, "fetched"), (403, "fetched"), (302, "fetched"),
    (503, "http_5xx"), (500, "http_5xx")])
def test_robots_txt_status_rules(status, outcome):
    """RFC 9309 2.3.1: unavailable (4xx, redirects past the limit) allows all; unreachable (5xx)
    disallows all for now, under the robots.txt failure's (transient) reason."""
    policy = dataclasses.replace(FAST, read_timeout_s=2, retries=0)
    with running_site() as site:
        site.robots, site.robots_status = "User-agent: *\nDisallow: /\n", status
        sessions = HostSessions(HttpClient(policy), known_robots={})
        try:
            sessions.fetch(FetchRequest(url=site.base + "/news/s.html", source_uri="s"))
            assert outcome == "fetched"
        except FetchFailed as failure:
            assert (failure.reason, str(failure).startswith("robots.txt: ")) == (outcome, True)


def test_a_robots_txt_over_500_kib_is_read_up_to_the_limit():
    with running_site() as site:
        site.robots = "User-agent: *\nDisallow: /news/\n" + "# padding\n" * 60_000
        sessions = HostSessions(HttpClient(dataclasses.replace(FAST, read_timeout_s=2)), {})
        failure = failure_of(lambda: sessions.fetch(FetchRequest(
            url=site.base + "/news/big.html", source_uri="big")))
        assert failure.reason == "robots_disallowed"


# --- Concurrency: hosts side by side, each host one request at a time ----------------------------


def _interval(site, prefix: str) -> tuple[float, float]:
    times = [t for t, path, _ in site.log if path.startswith(prefix)]
    return min(times), max(times)


def test_different_hosts_are_fetched_at_the_same_time_each_one_request_at_a_time():
    policy = dataclasses.replace(FAST, delay_s=0.05, max_crawl_delay_s=0.05, read_timeout_s=2,
                                 total_timeout_s=5, concurrency=4)
    with running_site() as slow, running_site() as fast, running_site() as other:
        requests = ([FetchRequest(url=f"{slow.base}/slow/s{n}.html", source_uri=f"s{n}")
                     for n in range(4)]
                    + [FetchRequest(url=f"{site.base}/news/f{n}.html", source_uri=f"f{n}")
                       for site in (fast, other) for n in range(3)])
        with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
            fetched = p | beam.Create(requests) | FetchByHost(policy, "run")
            assert_that(fetched.responses | beam.Map(lambda pair: pair[1].status),
                        equal_to([200] * 10), label="responses")
            assert_that(fetched[ROBOTS] | beam.Keys(), equal_to(
                [slow.base, fast.base, other.base]), label="robots")
        slow_start, slow_end = _interval(slow, "/slow/")
        for site in (fast, other):
            start, end = _interval(site, "/news/")
            assert start < slow_end and slow_start < end   # they overlap in time
        # The slow host: one at a time, each request starting the delay after the last ended.
        assert min(_start_gaps(slow, "/slow/")) >= 0.5 + 0.05


def test_a_publisher_behind_two_proxies_gets_one_request_at_a_time():
    """Two proxies fetched side by side both hand over to one publisher: the publisher still
    sees one request at a time, the delay apart."""
    policy = dataclasses.replace(FAST, delay_s=0.2, max_crawl_delay_s=0.2, read_timeout_s=2,
                                 concurrency=4)
    with running_site() as one, running_site() as two, running_site() as publisher:
        publisher.robots = "User-agent: *\nDisallow:\n"
        requests = [FetchRequest(url=f"{proxy.base}/away?to="
                                 + urllib.parse.quote(f"{publisher.base}/news/{name}{n}.html",
                                                      safe=""), source_uri=f"{name}{n}")
                    for name, proxy in (("a", one), ("b", two)) for n in range(3)]
        with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
            fetched = p | beam.Create(requests) | FetchByHost(policy, "run")
            assert_that(fetched.responses | beam.Map(lambda pair: pair[1].status),
                        equal_to([200] * 6))
        assert len(publisher.requests_to("/robots.txt")) == 1
        gaps = _start_gaps(publisher)
        assert len(gaps) == 6 and min(gaps) >= 0.2, gaps


def _in_window(pair, window=beam.DoFn.WindowParam):
    request, _ = pair
    return request.source_uri, window.start.micros // 10**6


def test_outputs_keep_the_window_of_their_requests(site):
    """What a streaming graph needs: each host's outputs in the window its requests came in,
    though they are emitted when the host is done, not while its element is processed."""
    policy = dataclasses.replace(FAST, read_timeout_s=2)
    requests = [(FetchRequest(url=f"{site.base}/news/w{n}.html", source_uri=f"w{n}"), 60 * n)
                for n in range(3)]
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        fetched = (p | beam.Create(requests)
                   | beam.MapTuple(lambda r, t: beam.window.TimestampedValue(r, t))
                   | beam.WindowInto(beam.window.FixedWindows(60))
                   | FetchByHost(policy, "run"))
        assert_that(fetched.responses | beam.Map(_in_window),
                    equal_to([("w0", 0), ("w1", 60), ("w2", 120)]))
