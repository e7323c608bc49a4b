"""A real HTTP server on 127.0.0.1 for the fetch and feed tests: a small news site with a
robots.txt, RSS / Atom / JSON feeds, article pages, and every misbehaving endpoint the fetcher
must survive. Started and stopped by the tests; it never talks to any other address."""

from __future__ import annotations

import email.utils
import gzip
import json
import random
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"

ROBOTS = "User-agent: *\nDisallow: /private/\nCrawl-delay: 1\n"

WORDS = ("council budget vote school roads harbour ferry museum river bridge library market "
         "festival hospital farmers rail station mayor teachers nurses").split()


def article_html(slug: str, title: str, published: str | None = None, extra: str = "",
                 canonical: str | None = None) -> str:
    """An article page whose text is made from its slug, so each page is distinct."""
    seed = sum(map(ord, slug))
    sentences = []
    for i in range(12):
        words = [WORDS[(seed + i * 7 + j * 3) % len(WORDS)] for j in range(14)]
        sentences.append(f"Reporters in {slug} wrote that the " + " ".join(words) + ".")
    paragraphs = "".join(f"<p>{' '.join(sentences[k:k + 3])}</p>" for k in range(0, 12, 3))
    date_meta = f'<meta property="article:published_time" content="{published}">' \
        if published else ""
    link = f'<link rel="canonical" href="{canonical}">' if canonical else ""
    return (f"<!DOCTYPE html><html><head><title>{title}</title>{date_meta}{link}</head><body>"
            f"<article><h1>{title}</h1>{extra}{paragraphs}</article></body></html>")


def live_article_html(slug: str) -> str:
    """A published entry's page: words drawn at random, seeded by the slug, so that no two
    pages are near copies of each other (article_html's differ only by their slug)."""
    rng = random.Random(slug)
    paragraphs = "".join(
        "<p>" + " ".join(" ".join(rng.choice(WORDS) for _ in range(14)).capitalize() + "."
                         for _ in range(3)) + "</p>" for _ in range(4))
    return (f"<!DOCTYPE html><html><head><title>Story {slug}</title></head><body><article>"
            f"<h1>Story {slug}</h1>{paragraphs}</article></body></html>")


def rss_feed(entries: list[dict]) -> str:
    items = "".join(
        f"<item><title>{e['title']}</title><link>{e['link']}</link>"
        f"<guid isPermaLink=\"false\">{e['guid']}</guid>"
        f"<pubDate>{e['date']}</pubDate><author>{e.get('author', 'desk@example.test')}</author>"
        f"<category>{e.get('category', 'Sport')}</category>"
        f"<description>{e.get('summary', 'Summary of ' + e['title'])}</description></item>"
        for e in entries)
    return ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            "<title>Example News</title><link>http://example.test/</link>"
            f"<description>News</description>{items}</channel></rss>")


def news_sitemap(entries: list[dict]) -> str:
    """A Google News sitemap of the feed's entries (title, publication date, publisher)."""
    urls = "".join(
        f"<url><loc>{e['link']}</loc><news:news><news:publication><news:name>Example Times"
        "</news:name><news:language>en</news:language></news:publication>"
        f"<news:publication_date>{e['iso_date']}</news:publication_date>"
        f"<news:title>{e['title']}</news:title><news:keywords>{e.get('category', 'Sport')}"
        "</news:keywords></news:news></url>" for e in entries)
    return ('<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/'
            'schemas/sitemap/0.9" xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">'
            f"{urls}</urlset>")


def sitemap_index(locations: list[str]) -> str:
    items = "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locations)
    return ('<?xml version="1.0" encoding="UTF-8"?><sitemapindex xmlns="http://www.sitemaps.org/'
            f'schemas/sitemap/0.9">{items}</sitemapindex>')


class NewsSite:
    """The site's state (its feed can change between runs) and a log of every request."""

    def __init__(self):
        self.port = 0
        self.log: list[tuple[float, str, dict]] = []
        self.hits: dict[str, int] = {}
        self.feed_entries: list[dict] = []
        self.feed_version = 1
        self.robots = ROBOTS
        self.robots_status = 200
        # Feeds published to while a stream runs (publish): name -> entries, newest first.
        self.feeds: dict[str, list[dict]] = {}
        self.feed_versions: dict[str, int] = {}
        self.published_at: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_entry(self, slug: str, title: str, day: int, category: str = "Sport",
                  path: str | None = None):
        self.feed_entries.append({
            "title": title, "link": self.base + (path or f"/news/{slug}.html"),
            "guid": f"tag:{slug}",
            "date": email.utils.format_datetime(
                email.utils.parsedate_to_datetime(f"Wed, {day:02d} Feb 2022 10:00:00 GMT")),
            "category": category, "author": f"{slug}@example.test ({slug.title()} Reporter)",
            "iso_date": f"2022-02-{day:02d}T10:00:00Z", "added_at": time.time()})
        self.feed_version += 1

    def publish(self, feed: str, slug: str, title: str | None = None) -> dict:
        """A new entry at the top of /feeds/<feed>.xml (a feed of its own, with its own ETag),
        its page at /live/<slug>.html (a text of its own: /news/ pages whose slugs have the
        same letters share theirs); when it was published is kept in `published_at`."""
        entry = {"title": title or f"Story {slug}", "link": f"{self.base}/live/{slug}.html",
                 "guid": f"tag:{slug}", "date": email.utils.formatdate(usegmt=True),
                 "iso_date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "category": "Sport", "added_at": time.time()}
        with self._lock:
            self.feeds.setdefault(feed, []).insert(0, entry)
            self.feed_versions[feed] = self.feed_versions.get(feed, 0) + 1
            self.published_at[slug] = entry["added_at"]
        return entry

    def publish_steadily(self, feeds: list[str], every_s: float, count: int,
                         prefix: str = "live") -> threading.Thread:
        """Publishes `count` entries, one every `every_s` seconds, round-robin over `feeds`, from
        a thread (started; join it to wait for the last)."""
        def publish_all():
            for number in range(count):
                self.publish(feeds[number % len(feeds)], f"{prefix}-{number:05d}")
                time.sleep(every_s)
        thread = threading.Thread(target=publish_all, daemon=True)
        thread.start()
        return thread

    def record(self, path: str, headers) -> int:
        with self._lock:
            self.log.append((time.monotonic(), path, dict(headers)))
            self.hits[path] = self.hits.get(path, 0) + 1
            return self.hits[path]

    def requests_to(self, path: str) -> list[tuple[float, dict]]:
        return [(t, h) for t, p, h in self.log if p == path]


class _Handler(BaseHTTPRequestHandler):
    site: NewsSite
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes = b"", content_type: str = "text/html; "
              "charset=utf-8", headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: C901 - one branch per endpoint reads best here
        path = self.path
        hit = self.site.record(path, self.headers)
        site = self.site
        if path == "/robots.txt":
            if site.robots_status in (301, 302):  # robots.txt redirecting to itself, forever
                self._send(site.robots_status, headers={"Location": "/robots.txt?again"})
            else:
                self._send(site.robots_status, site.robots.encode(), "text/plain")
        elif path.startswith("/robots.txt?"):
            self._send(302, headers={"Location": f"/robots.txt?{hit}"})
        elif urllib.parse.unquote(path).startswith("/straße"):  # asked for as /stra%C3%9Fe...
            slug = urllib.parse.unquote(path)[1:]
            self._send(200, article_html(slug, f"Die {slug.title()}").encode())
        elif path == "/to-iri-utf8":  # a Location as servers send it: the path's UTF-8 bytes
            self._send(302, headers={"Location": "/straße".encode().decode("latin-1")})
        elif path == "/to-iri-latin1":  # the same path in Latin-1 bytes
            self._send(302, headers={"Location": "/straße"})
        elif path == "/to-space":
            self._send(302, headers={"Location": "/a page.html"})
        elif path == "/trickle-headers.html":  # a header byte every 0.1 s, for 4 s
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for byte in b"X-Slow: " + b"a" * 40:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.1)
                body = article_html("trickle-headers", "Headers in a trickle").encode()
                self.wfile.write(b"\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
                                 b"Connection: close\r\n\r\n%s" % (len(body), body))
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True
        elif path.startswith("/slow/"):  # a slow page of its own for each slug
            time.sleep(0.5)
            slug = path.rsplit("/", 1)[1].split(".")[0]
            self._send(200, article_html(slug, f"Slow {slug}").encode())
        elif path == "/request-timeout.html":
            self._send(408, b"request timeout")
        elif path == "/bad-status.html":
            self.wfile.write(b"ICY 200 OK\r\n\r\nnot http")
            self.close_connection = True
        elif path == "/feed.xml":
            etag = f'"v{site.feed_version}"'
            if self.headers.get("If-None-Match") == etag:
                self._send(304, headers={"ETag": etag})
            else:
                self._send(200, rss_feed(site.feed_entries).encode(), "application/rss+xml",
                           {"ETag": etag, "Last-Modified": "Wed, 16 Feb 2022 12:00:00 GMT"})
        elif path == "/sitemap-news.xml":  # the feed's entries as a Google News sitemap
            etag = f'"s{site.feed_version}"'
            if self.headers.get("If-None-Match") == etag:
                self._send(304, headers={"ETag": etag})
            else:
                self._send(200, news_sitemap(site.feed_entries).encode(), "application/xml",
                           {"ETag": etag})
        elif path == "/sitemap_index.xml":  # news, a gzipped archive sitemap, a nested index
            self._send(200, sitemap_index([f"{site.base}/sitemap-news.xml",
                                           f"{site.base}/sitemap-archive.xml.gz",
                                           f"{site.base}/sitemap-nested.xml"]).encode(),
                       "application/xml")
        elif path == "/sitemap-archive.xml.gz":  # raw gzip, no Content-Encoding
            urlset = ('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/'
                      f'sitemap/0.9"><url><loc>{site.base}/news/older.html</loc>'
                      "<lastmod>2022-02-01</lastmod></url></urlset>")
            self._send(200, gzip.compress(urlset.encode()), "application/gzip")
        elif path == "/sitemap-nested.xml":  # an index below the index
            self._send(200, sitemap_index([f"{site.base}/sitemap-deep.xml"]).encode(),
                       "application/xml")
        elif path == "/sitemap-deep.xml":
            self._send(200, ('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/'
                             f'schemas/sitemap/0.9"><url><loc>{site.base}/news/deep.html</loc>'
                             "</url></urlset>").encode(), "application/xml")
        elif path.startswith("/feeds/") and path.endswith(".xml"):
            name = path[len("/feeds/"):-len(".xml")]
            with site._lock:
                entries, version = list(site.feeds.get(name, [])), site.feed_versions.get(name)
            etag = f'"{name}-v{version}"'
            if version is None:
                self._send(404, b"no such feed")
            elif self.headers.get("If-None-Match") == etag:
                self._send(304, headers={"ETag": etag})
            else:
                self._send(200, rss_feed(entries).encode(), "application/rss+xml",
                           {"ETag": etag})
        elif path.startswith("/live-sitemaps/") and path.endswith(".xml"):
            # The published feeds as Google News sitemaps, and an index of them; each with an
            # ETag (a poll that sends it back gets 304), the index's changing only with the set
            # of feeds.
            name = path[len("/live-sitemaps/"):-len(".xml")]
            with site._lock:
                names, version = sorted(site.feeds), site.feed_versions.get(name)
                entries = list(site.feeds.get(name, []))
            if name == "index":
                etag, body = f'"index-{len(names)}"', sitemap_index(
                    [f"{site.base}/live-sitemaps/{n}.xml" for n in names])
            else:
                etag, body = f'"sitemap-{name}-v{version}"', news_sitemap(entries)
            if name != "index" and version is None:
                self._send(404, b"no such sitemap")
            elif self.headers.get("If-None-Match") == etag:
                self._send(304, headers={"ETag": etag})
            else:
                self._send(200, body.encode(), "application/xml", {"ETag": etag})
        elif path == "/feed.json":
            items = [{"id": e["guid"], "url": e["link"], "title": e["title"],
                      "date_published": "2022-02-16T10:00:00Z", "tags": ["Business"]}
                     for e in site.feed_entries]
            self._send(200, json.dumps({"version": "https://jsonfeed.org/version/1.1",
                                        "title": "Example JSON", "items": items}).encode(),
                       "application/feed+json")
        elif path.startswith("/live/"):
            slug = path.rsplit("/", 1)[1].split(".")[0]
            self._send(200, live_article_html(slug).encode())
        elif path.startswith("/news/"):
            slug = path.rsplit("/", 1)[1].split(".")[0]
            self._send(200, article_html(slug, f"Story {slug}").encode())
        elif path.startswith("/amp/"):  # the AMP variant names its canonical page
            slug = path.rsplit("/", 1)[1].split(".")[0]
            self._send(200, article_html(slug, f"Story {slug}",
                                         canonical=f"{site.base}/news/{slug}.html").encode())
        elif path == "/private/secret.html":
            self._send(200, article_html("secret", "Secret").encode())
        elif path == "/slow.html":
            time.sleep(0.3)
            self._send(200, article_html("slow", "Slow but fine").encode())
        elif path == "/hang.html":
            time.sleep(2.0)
            self._send(200, article_html("hang", "Too late").encode())
        elif path == "/trickle.html":
            body = article_html("trickle", "Trickle").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for start in range(0, len(body), 200):
                self.wfile.write(body[start:start + 200])
                self.wfile.flush()
                time.sleep(0.25)
        elif path == "/missing.html":
            self._send(404, b"not found")
        elif path == "/gone.html":
            self._send(410, b"gone")
        elif path == "/throttled.html":
            if hit == 1:
                self._send(429, b"slow down", headers={"Retry-After": "1"})
            else:
                self._send(200, article_html("throttled", "After the wait").encode())
        elif path == "/rate-limited.html":
            self._send(429, b"slow down", headers={"Retry-After": "0"})
        elif path == "/unavailable.html":
            self._send(503, b"maintenance", headers={"Retry-After": "120"})
        elif path == "/flaky.html":
            if hit == 1:
                self._send(500, b"oops")
            else:
                self._send(200, article_html("flaky", "Second time lucky").encode())
        elif path == "/loop-a":
            self._send(302, headers={"Location": "/loop-b"})
        elif path == "/loop-b":
            self._send(302, headers={"Location": "/loop-a"})
        elif path.startswith("/chain-"):  # /chain-N redirects N times before the page
            hops = int(path.split("-", 1)[1])
            if hops:
                self._send(302, headers={"Location": f"/chain-{hops - 1}"})
            else:
                self._send(200, article_html("chain", "End of the chain").encode())
        elif path.startswith("/away?to="):  # a feed proxy or short link: hands over elsewhere
            self._send(302, headers={"Location": urllib.parse.unquote(path.split("=", 1)[1])})
        elif path == "/to-metadata":
            self._send(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
        elif path == "/moved.html":
            self._send(301, headers={"Location": "/news/moved-here.html?utm_source=rss"})
        elif path == "/notes.txt":
            self._send(200, b"plain text " * 50, "text/plain")
        elif path == "/truncated.html":
            body = article_html("truncated", "Cut short").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body) + 5000))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
        elif path == "/latin1.html":
            page = article_html("latin", "Caf\u00e9 culture", extra="<p>Le caf\u00e9 na\u00efve "
                                "r\u00e9sum\u00e9 \u00e0 la cr\u00e8me br\u00fbl\u00e9e.</p>")
            self._send(200, page.encode("cp1252"))  # declared utf-8, sent cp1252
        elif path == "/garbage.html":
            self._send(200, bytes(range(0x80, 0x100)) * 40, "text/html")
        elif path == "/huge.html":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"<p>" + b"word " * 13000 + b"</p>"
            try:
                for _ in range(60):  # about 4 MB, no Content-Length
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True
        elif path == "/bomb.html":
            self._send(200, BOMB, "text/html", {"Content-Encoding": "gzip"})
        else:
            self._send(404, b"no such page")


BOMB = gzip.compress(b"<p>" + b"a" * (50 * 2**20), compresslevel=9)


class running_site:
    """`with running_site() as site:` a NewsSite served on 127.0.0.1 in a thread."""

    def __enter__(self) -> NewsSite:
        self.site = NewsSite()
        handler = type("Handler", (_Handler,), {"site": self.site})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.site.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self.site

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
