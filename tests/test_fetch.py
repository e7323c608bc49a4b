"""The HTTP client and per-host sessions against a real server on 127.0.0.1: every misbehaving
endpoint ends in its reason code or a successful retry. Pure helpers are tested alongside."""

from __future__ import annotations

import gzip
import socket
import urllib.parse
import zlib

import pytest

from transforms.fetch import (FetchFailed, FetchPolicy, FetchRequest, HostSession, HostSessions,
                              HttpClient,
                              _CappedDecoder, blocked_ip, check_url, crawl_delay, decode_html,
                              parse_retry_after, robots_for_status, robots_from_text)
from tests.newssite import running_site

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
    ("gopher://127.0.0.1:70/", "unsupported_scheme"), ("http:///nohost", "invalid_url"), ("www.example.test/a", "invalid_url"),
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
    assert not robots.can_fetch("newsbeam", "http://x.test/private/a.html")
    assert robots.can_fetch("newsbeam", "http://x.test/news/a.html")
    assert robots_for_status(404).can_fetch("newsbeam", "http://x.test/any")
    assert not robots_for_status(503).can_fetch("newsbeam", "http://x.test/any")


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
