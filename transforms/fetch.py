"""HTTP fetching: politely (one place per host, robots.txt, delays) and safely (no private
addresses, bounded sizes and times). Feeds, URL lists and feed entries all come through here.

Politeness holds with many workers because requests are grouped by host (GroupByKey): one host's
requests are fetched one after another by one DoFn call, each starting no sooner than `delay_s`
(or the robots.txt Crawl-delay, up to `max_crawl_delay_s`) after the one before it ended, every
hop counted (robots.txt, redirects, retries); its robots.txt (RFC 9309, parsed by protego) is
fetched once for all of them. Different hosts are fetched at the same time, on a bounded pool of
threads per worker (`concurrency`): the client is blocking I/O, one host at a time would let one
slow host hold up every other.

Safety: every hop (the first URL and each redirect) is checked before any connection: http(s)
only, and the host's resolved address must not be private, loopback, link-local, multicast,
reserved or unspecified (169.254.169.254, the cloud metadata service, is link-local). The client
then connects to exactly the address it checked, so a second DNS answer cannot swap in another
(DNS rebinding). Bodies are read in chunks against a size cap, and gzip/deflate are decoded
incrementally against the same cap, so a gzip bomb stops at the cap. One deadline bounds each
response in all (connect, headers, body), however slowly its bytes trickle in. IRIs (non-ASCII
hosts, paths, redirect targets) are sent as URIs (transforms/urls.py `iri_to_uri`).

Every failure is an ErrorRow of stage "fetch" with one of the reason codes below; an exception
nobody foresaw is that request's `internal_error`, never the end of the run.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import email.utils
import http.client
import io
import ipaddress
import re
import socket
import ssl
import threading
import time
import zlib
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue
from protego import Protego

from newsbeam.schemas.records import Document
from newsbeam.transforms import errors, metrics
from newsbeam.transforms.errors import ERRORS, error_row
from newsbeam.transforms.extract import DecodeError, decode_text
from newsbeam.transforms.urls import header_text, iri_to_uri

# Tagged outputs besides ERRORS: robots.txt outcomes, and requests done with for good.
ROBOTS = "robots"
FINISHED = "finished"

USER_AGENT = "newsbeam/0.1 (news ingestion; +https://github.com/newsbeam/newsbeam)"
ROBOTS_AGENT = "newsbeam"

# Live counters (transforms/metrics.py): requests (feeds and pages) to make, and made.
FETCH_REQUESTS = f"{metrics.STAGE_FETCH}_requests"
FETCH_REQUESTS_DONE = f"{metrics.STAGE_FETCH}_requests_done"

# Reason codes (stage "fetch").
DNS = "dns"
CONNECT = "connect"
TIMEOUT = "timeout"
TLS = "tls"
HTTP_4XX = "http_4xx"
HTTP_429 = "http_429"   # still rate limited after the retries
HTTP_5XX = "http_5xx"
ROBOTS_DISALLOWED = "robots_disallowed"
TOO_LARGE = errors.TOO_LARGE
TRUNCATED = "truncated"
NOT_HTML = "not_html"
REDIRECT_LOOP = "redirect_loop"
BLOCKED_ADDRESS = "blocked_address"
UNSUPPORTED_SCHEME = "unsupported_scheme"
INVALID_URL = "invalid_url"
UNSUPPORTED_ENCODING = "unsupported_encoding"
UNDECODABLE = errors.UNDECODABLE
BAD_RESPONSE = "bad_response"   # not HTTP/1.x: a bad status line, over-long or too many headers
INTERNAL_ERROR = errors.INTERNAL_ERROR
# Failures worth another try in a later run: the entry index does not record them. Everything
# else is a property of the URL or of what the server says about it (a 4xx, robots.txt, a
# refused address, content newsbeam does not take) or a newsbeam bug (internal_error): trying
# again every run would cost a request each run and change nothing.
TRANSIENT_REASONS = frozenset({DNS, CONNECT, TIMEOUT, TLS, HTTP_429, HTTP_5XX, TRUNCATED})

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_ACCEPT_HTML = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"
_ACCEPT_ANY = ("application/rss+xml,application/atom+xml,application/feed+json,"
               "application/xml;q=0.9,text/xml;q=0.9,*/*;q=0.8")
_CHUNK = 64 * 1024
# RFC 9309 2.5: a crawler parses at least the first 500 KiB of a robots.txt; past that, the rest
# is left unread rather than the file treated as missing.
_ROBOTS_MAX_BYTES = 512 * 1024
# RFC 9309 2.4: a robots.txt is not used for more than a day (a long-running worker reads it
# again).
ROBOTS_MAX_AGE_S = 24 * 3600.0
# What a robots.txt fetch that ends in these means (RFC 9309 2.3.1): "unavailable" (4xx, more
# redirects than followed) allows everything; anything else ("unreachable": 5xx, 429, network)
# disallows everything for now.
_ROBOTS_UNAVAILABLE = frozenset({HTTP_4XX, REDIRECT_LOOP, NOT_HTML, TOO_LARGE})
_DISALLOW_ALL = "User-agent: *\nDisallow: /\n"
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class FetchPolicy:
    """How to fetch. `resolver` has socket.getaddrinfo's signature (tests inject their own)."""
    user_agent: str = USER_AGENT
    delay_s: float = 1.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    total_timeout_s: float = 120.0   # the --fetch_deadline_s default
    max_bytes: int = 10 * 2**20
    max_redirects: int = 5
    retries: int = 3
    backoff_s: float = 1.0
    max_retry_after_s: float = 60.0
    max_crawl_delay_s: float = 30.0
    allow_loopback: bool = False
    concurrency: int = 16            # hosts fetched at the same time per worker
    resolver: Callable = socket.getaddrinfo


@dataclasses.dataclass
class FetchRequest:
    """One URL to fetch. `accept_html_only` turns other content types into not_html errors
    before their body is read; `payload` travels through untouched (a Document template, a
    feed spec...)."""
    url: str
    source_uri: str
    accept_html_only: bool = True
    headers: dict = dataclasses.field(default_factory=dict)
    payload: Any = None


@dataclasses.dataclass
class Response:
    url: str                # after redirects
    status: int
    headers: dict           # lower-case names
    body: bytes             # content-decoded

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


class FetchFailed(Exception):
    """Why a URL gave no usable response: a reason code and a message. `retryable` answers
    (429, 5xx) are worth another try, after `retry_after_s` if the server said so."""

    def __init__(self, reason: str, message: str, retryable: bool = False,
                 retry_after_s: float | None = None):
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable
        self.retry_after_s = retry_after_s


# --- Pure functions ------------------------------------------------------------------------------


def as_uri(url: str) -> str:
    """`url` as a URI http.client can send (see iri_to_uri); FetchFailed(invalid_url) when it
    cannot be one."""
    try:
        return iri_to_uri(url)
    except ValueError as error:  # IDNAError and UnicodeError among them
        raise FetchFailed(INVALID_URL, f"not a valid URL: {error}") from None


def _uri_or_as_is(url: str) -> str:
    try:
        return iri_to_uri(url)
    except ValueError:
        return url


def host_key(url: str) -> str:
    """What politeness is keyed by: scheme-less host[:port], lower case, the host as DNS
    knows it (an IDN and its xn-- form are one host)."""
    try:
        parts = urlsplit(_uri_or_as_is(url))
        port = parts.port
    except ValueError:
        return ""
    host = (parts.hostname or "").lower()
    return f"{host}:{port}" if port else host


def origin_of(url: str) -> str | None:
    try:
        parts = urlsplit(_uri_or_as_is(url))
        parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def blocked_ip(address: str, allow_loopback: bool) -> bool:
    """True for an address newsbeam must not connect to: private, loopback (unless allowed),
    link-local (169.254.169.254 among them), multicast, reserved, unspecified."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return not allow_loopback
    return (ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or not ip.is_global)


def check_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL newsbeam may fetch; FetchFailed otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise FetchFailed(INVALID_URL, f"not a valid URL: {error}") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise FetchFailed(INVALID_URL, "not an absolute URL")
    if scheme not in ("http", "https"):
        raise FetchFailed(UNSUPPORTED_SCHEME, f"only http and https are fetched, not {scheme!r}")
    if not parts.hostname:
        raise FetchFailed(INVALID_URL, "the URL names no host")
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80)


def safe_address(host: str, port: int, policy: FetchPolicy) -> str:
    """The address to connect to: the first the resolver gives that is not blocked."""
    try:
        answers = policy.resolver(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise FetchFailed(DNS, f"cannot resolve {host}: {error}") from None
    addresses = [info[4][0] for info in answers]
    for address in addresses:
        if not blocked_ip(address, policy.allow_loopback):
            return address
    raise FetchFailed(BLOCKED_ADDRESS, f"{host} resolves to {', '.join(addresses) or 'nothing'}: "
                      "a private, loopback, link-local or reserved address")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, moment.timestamp() - now)


def backoff_delay(attempt: int, retry_after_s: float | None, policy: FetchPolicy) -> float:
    """How long to wait before retry number `attempt` (1-based)."""
    exponential = policy.backoff_s * 2 ** (attempt - 1)
    return max(exponential, retry_after_s or 0.0)


def crawl_delay(robots: Protego | None, policy: FetchPolicy) -> float:
    """Seconds between two requests to one host: the policy's delay or what robots.txt asks
    for (Crawl-delay, or the interval of a Request-rate), whichever is longer, but no longer
    than max_crawl_delay_s."""
    asked = 0.0
    if robots is not None:
        asked = robots.crawl_delay(ROBOTS_AGENT) or 0.0
        rate = robots.request_rate(ROBOTS_AGENT)
        if rate and rate.requests:
            asked = max(asked, rate.seconds / rate.requests)
    return max(policy.delay_s, min(float(asked), policy.max_crawl_delay_s))


def robots_from_text(text: str) -> Protego:
    """RFC 9309 rules (protego: wildcards, '$', the longest match wins, Allow over Disallow on
    a tie)."""
    return Protego.parse(text)


def robots_for_status(status: int) -> Protego:
    """RFC 9309: a robots.txt that is missing (4xx) allows everything; one that cannot be had
    (5xx) disallows everything."""
    return Protego.parse("" if status < 500 else _DISALLOW_ALL)


def robots_allow(robots: Protego, url: str) -> bool:
    return robots.can_fetch(url, ROBOTS_AGENT)


class _CappedDecoder:
    """Content-Encoding decoding, chunk by chunk, never past `max_bytes` of output."""

    def __init__(self, encoding: str, max_bytes: int):
        self._max_bytes = max_bytes
        self._size = 0
        if encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj()
        elif encoding in ("", "identity"):
            self._zlib = None
        else:
            raise FetchFailed(UNSUPPORTED_ENCODING, f"Content-Encoding {encoding!r}, which was "
                              "not asked for (Accept-Encoding: gzip, deflate)")
        self._deflate_raw = encoding == "deflate"

    def feed(self, chunk: bytes) -> bytes:
        if self._zlib is None:
            out = chunk
        else:
            try:
                # At most one byte past the cap: enough to know the cap is passed.
                out = self._zlib.decompress(chunk, self._max_bytes - self._size + 1)
            except zlib.error:
                if not (self._deflate_raw and self._size == 0):
                    raise FetchFailed(TRUNCATED, "corrupt compressed body") from None
                # Some servers send raw deflate without the zlib header.
                self._zlib, self._deflate_raw = zlib.decompressobj(-zlib.MAX_WBITS), False
                return self.feed(chunk)
        self._size += len(out)
        if self._size > self._max_bytes:
            raise FetchFailed(TOO_LARGE, f"more than {self._max_bytes} bytes once decompressed")
        return out


def decode_html(body: bytes, content_type_header: str) -> str:
    """A page's text: the charset the header names, else the one its <meta> names, else
    detection; a declared charset that does not fit falls back to detection."""
    declared = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", content_type_header or "", re.I)
    charset = declared.group(1) if declared else None
    if charset is None:
        meta = _META_CHARSET.search(body[:4096])
        charset = meta.group(1).decode("ascii", "replace") if meta else None
    if charset:
        try:
            return body.decode(charset)
        except (LookupError, UnicodeDecodeError):
            pass
    try:
        return decode_text(body)
    except DecodeError as error:
        raise FetchFailed(UNDECODABLE, str(error)) from None


def page_document(request: FetchRequest, response: Response) -> Document:
    """The Document of a fetched page: the request's template (feed metadata, if any) with the
    page's decoded text and its URL after redirects."""
    text = decode_html(response.body, response.headers.get("content-type", ""))
    return dataclasses.replace(request.payload, content=text, url=response.url)


def fetch_error(request: FetchRequest, reason: str, message: str, run_id: str):
    return error_row(errors.STAGE_FETCH, reason, message, request.source_uri, run_id,
                     url=request.url)


# --- The client ----------------------------------------------------------------------------------


class _DeadlineReader(io.RawIOBase):
    """A socket's reading side under a deadline: each read waits no longer than the read
    timeout, nor past the deadline, so a response whose bytes trickle in (status line,
    headers or body) ends at the deadline, not after read_timeout_s per byte."""

    def __init__(self, sock, read_timeout_s: float, deadline: float, clock: Callable):
        super().__init__()
        self._sock, self._read_timeout_s = sock, read_timeout_s
        self._deadline, self._clock = deadline, clock
        # The socket's own raw reader: it keeps the socket open while the response is read
        # (http.client closes its side of a "Connection: close" exchange early).
        self._raw = sock.makefile("rb", buffering=0)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self._deadline - self._clock()
        if remaining <= 0:
            raise socket.timeout("the deadline passed")
        self._sock.settimeout(min(self._read_timeout_s, remaining))
        return self._raw.readinto(buffer)

    def close(self):
        self._raw.close()
        super().close()


class _DeadlineSocket:
    """What an HTTPResponse reads from (it only calls makefile): the socket, under a deadline."""

    def __init__(self, sock, read_timeout_s: float, deadline: float, clock: Callable):
        self._reader = _DeadlineReader(sock, read_timeout_s, deadline, clock)

    def makefile(self, mode: str):
        return io.BufferedReader(self._reader)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever the host name resolves to now; the
    connect, the request and the response all end by `deadline` (a `clock()` time)."""

    def __init__(self, address: str, host: str, port: int, policy: FetchPolicy,
                 connect: Callable, deadline: float, clock: Callable):
        super().__init__(host, port, timeout=policy.connect_timeout_s)
        self._address, self._policy, self._connect = address, policy, connect
        self._deadline, self._clock = deadline, clock

    def _remaining(self, limit: float) -> float:
        remaining = self._deadline - self._clock()
        if remaining <= 0:
            raise socket.timeout("the deadline passed")
        return min(limit, remaining)

    def _open_socket(self):
        sock = self._connect((self._address, self.port),
                             self._remaining(self._policy.connect_timeout_s))
        sock.settimeout(self._remaining(self._policy.read_timeout_s))
        return sock

    def connect(self):
        self.sock = self._open_socket()

    def response_class(self, sock, **kwargs):  # what getresponse() builds its response with
        return http.client.HTTPResponse(
            _DeadlineSocket(sock, self._policy.read_timeout_s, self._deadline, self._clock),
            **kwargs)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = 443

    def connect(self):
        context = ssl.create_default_context()
        self.sock = context.wrap_socket(self._open_socket(), server_hostname=self.host)


class HttpClient:
    """GET with redirects, checked hop by hop. `connect` has socket.create_connection's
    signature; `sleep` and `clock` are time.sleep and time.monotonic (tests may inject).
    Thread-safe: it keeps no state between requests."""

    def __init__(self, policy: FetchPolicy, connect: Callable = socket.create_connection,
                 sleep: Callable = time.sleep, clock: Callable = time.monotonic):
        self.policy = policy
        self._connect = connect
        self._sleep = sleep
        self._clock = clock

    def get(self, url: str, headers: dict | None = None, html_only: bool = False,
            max_bytes: int | None = None, gate: Callable | None = None,
            truncate: bool = False) -> Response:
        """The response at the end of the redirects; FetchFailed for anything else. Each hop
        (the first request and every redirect) is made inside `gate(url)`, a context manager
        that may wait its turn (politeness) or refuse by raising FetchFailed. `truncate`: a
        body over `max_bytes` is cut there instead of refused."""
        url = as_uri(url)
        seen = {url}
        for _ in range(self.policy.max_redirects + 1):
            with gate(url) if gate else contextlib.nullcontext():
                response = self._get_once(url, headers or {}, html_only, max_bytes, truncate)
            if response.status not in (301, 302, 303, 307, 308):
                return response
            location = response.headers.get("location")
            if not location:
                raise FetchFailed(INVALID_URL, f"HTTP {response.status} redirect without a "
                                  "Location")
            try:
                url = iri_to_uri(urljoin(url, header_text(location).strip()))
            except ValueError as error:
                raise FetchFailed(INVALID_URL, f"HTTP {response.status} redirect to "
                                  f"{location!r}, not a valid URL: {error}") from None
            if url in seen:
                raise FetchFailed(REDIRECT_LOOP, f"redirects come back to {url}")
            seen.add(url)
        raise FetchFailed(REDIRECT_LOOP, f"more than {self.policy.max_redirects} redirects")

    def get_with_retries(self, url: str, headers: dict | None = None, html_only: bool = False,
                         max_bytes: int | None = None, gate: Callable | None = None) -> Response:
        """get(), retried with backoff on 408, 429 and 5xx (honouring Retry-After, when it asks
        for no more than max_retry_after_s). The backoff is waited outside the gate; the retry
        goes through it again."""
        attempt = 0
        while True:
            try:
                return self.get(url, headers, html_only, max_bytes, gate)
            except FetchFailed as failure:
                attempt += 1
                if not failure.retryable or attempt > self.policy.retries:
                    raise
                if (failure.retry_after_s or 0) > self.policy.max_retry_after_s:
                    raise FetchFailed(failure.reason, f"{failure}; Retry-After asks for "
                                      f"{failure.retry_after_s:.0f} s, more than "
                                      f"{self.policy.max_retry_after_s:g} (--max_retry_after_s)")
                self._sleep(backoff_delay(attempt, failure.retry_after_s, self.policy))

    def _get_once(self, url: str, headers: dict, html_only: bool, max_bytes: int | None,
                  truncate: bool) -> Response:
        scheme, host, port = check_url(url)
        address = safe_address(host, port, self.policy)
        deadline = self._clock() + self.policy.total_timeout_s
        connection_type = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
        connection = connection_type(address, host, port, self.policy, self._connect, deadline,
                                     self._clock)
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request("GET", target, headers={
                "User-Agent": self.policy.user_agent, "Accept-Encoding": "gzip, deflate",
                "Accept": _ACCEPT_HTML if html_only else _ACCEPT_ANY, **headers})
            raw = connection.getresponse()
            response_headers = {k.lower(): v for k, v in raw.getheaders()}
            status = raw.status
            if status in (301, 302, 303, 307, 308, 304):
                return Response(url, status, response_headers, b"")
            if status >= 400:
                self._raise_for_status(status, response_headers)
            content_type = response_headers.get("content-type", "").split(";")[0].strip()
            if html_only and content_type and content_type.lower() not in HTML_TYPES:
                raise FetchFailed(NOT_HTML, f"Content-Type {content_type}, not HTML")
            body = self._read_body(raw, response_headers, max_bytes or self.policy.max_bytes,
                                   deadline, truncate)
            return Response(url, status, response_headers, body)
        except FetchFailed:
            raise
        except socket.timeout:
            if self._clock() >= deadline:
                raise FetchFailed(TIMEOUT, f"no complete response within "
                                  f"{self.policy.total_timeout_s:g} s (--fetch_deadline_s)"
                                  ) from None
            raise FetchFailed(TIMEOUT, "no answer within the timeout") from None
        except ssl.SSLError as error:
            raise FetchFailed(TLS, f"TLS: {error}") from None
        except http.client.IncompleteRead as error:
            raise FetchFailed(TRUNCATED, f"the body ended after {len(error.partial)} bytes, "
                              "before its announced length") from None
        except http.client.InvalidURL as error:
            raise FetchFailed(INVALID_URL, f"not a valid URL: {error}") from None
        except http.client.RemoteDisconnected as error:  # a BadStatusLine, but a network event
            raise FetchFailed(CONNECT, f"{type(error).__name__}: {error}") from None
        except (http.client.BadStatusLine, http.client.LineTooLong,
                http.client.UnknownProtocol) as error:
            raise FetchFailed(BAD_RESPONSE, f"not an HTTP/1.x response: "
                              f"{type(error).__name__}: {error}") from None
        except (ConnectionError, OSError) as error:
            raise FetchFailed(CONNECT, f"{type(error).__name__}: {error}") from None
        except http.client.HTTPException as error:  # "got more than 100 headers" and the like
            raise FetchFailed(BAD_RESPONSE, f"{type(error).__name__}: {error}") from None
        finally:
            connection.close()

    def _raise_for_status(self, status: int, headers: dict):
        reason = (HTTP_429 if status == 429 else TIMEOUT if status == 408
                  else HTTP_4XX if status < 500 else HTTP_5XX)
        raise FetchFailed(reason, f"HTTP {status}", retryable=status in RETRY_STATUSES,
                          retry_after_s=parse_retry_after(headers.get("retry-after"),
                                                          time.time()))

    def _read_body(self, raw, headers: dict, max_bytes: int, deadline: float,
                   truncate: bool) -> bytes:
        announced = headers.get("content-length", "")
        if announced.isdigit() and int(announced) > max_bytes and not truncate:
            raise FetchFailed(TOO_LARGE, f"Content-Length {announced}; the limit is {max_bytes}")
        decoder = _CappedDecoder(headers.get("content-encoding", "").strip().lower(), max_bytes)
        received, decoded, parts = 0, 0, []
        while True:
            chunk = raw.read1(_CHUNK)  # what has arrived: a trickle meets the deadline
            if not chunk:
                break
            received += len(chunk)
            if received > max_bytes and not truncate:
                raise FetchFailed(TOO_LARGE, f"more than {max_bytes} bytes")
            if self._clock() > deadline:
                raise FetchFailed(TIMEOUT, f"the body took longer than "
                                  f"{self.policy.total_timeout_s:g} s (--fetch_deadline_s)")
            try:
                parts.append(decoder.feed(chunk))
            except FetchFailed as failure:
                if truncate and failure.reason == TOO_LARGE:
                    break
                raise
            decoded += len(parts[-1])
            if truncate and (decoded >= max_bytes or received >= max_bytes):
                return b"".join(parts)[:max_bytes]
        if announced.isdigit() and received < int(announced) and not truncate:
            raise FetchFailed(TRUNCATED, f"the body ended after {received} of {announced} "
                              "bytes")
        return b"".join(parts)[:max_bytes]


class _HostPace:
    """When one host may be asked next: one request at a time (`lock`, held for the whole
    exchange), the next one starting no sooner than the delay after the last one ended. Timed
    from the end, so the gaps the server sees between request starts are never shorter than
    the delay, whatever the connect or transfer times."""

    def __init__(self):
        self.lock = threading.Lock()
        self.last_end: float | None = None


class HostSession:
    """One origin (scheme://host[:port]): its robots.txt, read once (and again after a day),
    and the pace of its host, shared with the host's other origins (http and https of one host
    keep one pace). Shared by the threads of one fetch step on one worker.

    `robots_outcome` is what robots.txt came to, as plain values an earlier fetch step can hand
    to a later one (`known_robots`), so that a run reads each host's robots.txt once:
    ("rules", text), ("missing",) or ("unreachable", reason, message)."""

    def __init__(self, client: HttpClient, origin: str, pace: _HostPace | None = None,
                 sleep: Callable = time.sleep, clock: Callable = time.monotonic,
                 known_robots: tuple | None = None):
        self._client = client
        self._origin = origin
        self._pace = pace or _HostPace()
        self._sleep, self._clock = sleep, clock
        self._robots: Protego | None = None
        self._robots_at: float | None = None
        self._unreachable: tuple[str, str] | None = None
        self.robots_outcome: tuple | None = None
        self._unreported = False   # robots.txt fetched and not yet taken by take_robots_read()
        if known_robots is not None:
            self._apply_robots(known_robots)

    @contextlib.contextmanager
    def _paced(self, delay: float):
        """The pace lock must be held."""
        if self._pace.last_end is not None:
            while (wait := self._pace.last_end + delay - self._clock()) > 0:
                self._sleep(wait)
        try:
            yield
        finally:
            self._pace.last_end = self._clock()

    def _robots_hop(self, url: str):
        return self._paced(self._client.policy.delay_s)

    def _load_robots(self):
        """RFC 9309: a robots.txt that is missing (4xx) allows everything; one that cannot be
        had (5xx, network failure) disallows everything for now, so every request to the host
        fails with the robots.txt failure's reason (transient: a later run tries again)."""
        try:
            response = self._client.get(self._origin + "/robots.txt",
                                        max_bytes=_ROBOTS_MAX_BYTES, gate=self._robots_hop,
                                        truncate=True)
            outcome = ("rules", response.body.decode("utf-8", "replace"))
        except FetchFailed as failure:
            if failure.reason in _ROBOTS_UNAVAILABLE:
                outcome = ("missing",)
            else:
                outcome = ("unreachable", failure.reason, f"robots.txt: {failure}")
        except Exception as error:  # noqa: BLE001 - the host's requests carry it, the run goes on
            outcome = ("unreachable", INTERNAL_ERROR,
                       f"robots.txt: {errors.exception_summary(error)}")
        self._unreported = True
        self._apply_robots(outcome)

    def _apply_robots(self, outcome: tuple):
        self.robots_outcome = outcome
        self._robots_at = self._clock()
        self._unreachable = None
        if outcome[0] == "rules":
            try:
                self._robots = robots_from_text(outcome[1])
                return
            except Exception as error:  # noqa: BLE001 - a parser bug stops this host only
                outcome = ("unreachable", INTERNAL_ERROR,
                           f"robots.txt: {errors.exception_summary(error)}")
                self.robots_outcome = outcome
        if outcome[0] == "missing":
            self._robots = robots_for_status(404)
        else:
            self._robots = robots_for_status(503)
            self._unreachable = (outcome[1], outcome[2])

    def take_robots_read(self) -> tuple | None:
        """The robots outcome, once, if this session fetched robots.txt since last asked."""
        with self._pace.lock:
            if not self._unreported:
                return None
            self._unreported = False
            return self.robots_outcome

    @contextlib.contextmanager
    def turn(self, url: str):
        """Entered when `url` may be requested now (robots.txt read, the delay waited; no other
        request to the host in flight); FetchFailed when it may not."""
        with self._pace.lock:
            if self._robots is None or self._clock() - self._robots_at > ROBOTS_MAX_AGE_S:
                self._load_robots()
            if self._unreachable is not None:
                raise FetchFailed(*self._unreachable)
            if not robots_allow(self._robots, url):
                raise FetchFailed(ROBOTS_DISALLOWED, f"robots.txt disallows {url}")
            with self._paced(crawl_delay(self._robots, self._client.policy)):
                yield

    def fetch(self, request: FetchRequest) -> Response:
        """`request`, every hop on this origin admitted by this session (HostSessions admits
        the hops to other origins too)."""
        def gate(url: str):
            return self.turn(url) if origin_of(url) == self._origin else contextlib.nullcontext()
        return self._client.get_with_retries(request.url, request.headers,
                                             request.accept_html_only, gate=gate)


class HostRegistry:
    """The HostSessions of one fetch step on one worker, one per origin, and the paces they
    share per host: the threads fetching different hosts meet here when a redirect takes one
    of them to a host another is fetching, so that host still sees one request at a time."""

    def __init__(self, client: HttpClient, sleep: Callable = time.sleep,
                 clock: Callable = time.monotonic):
        self._client = client
        self._sleep, self._clock = sleep, clock
        self._lock = threading.Lock()
        self._sessions: dict[str, HostSession] = {}
        self._paces: dict[str, _HostPace] = {}

    def session(self, origin: str, known_robots: dict) -> HostSession:
        with self._lock:
            if origin not in self._sessions:
                pace = self._paces.setdefault(host_key(origin), _HostPace())
                self._sessions[origin] = HostSession(
                    self._client, origin, pace, self._sleep, self._clock,
                    known_robots=known_robots.get(origin))
            return self._sessions[origin]


class HostSessions:
    """One fetch step's view of a group of requests: each request's hops admitted by the
    session of the origin they go to. A redirect to another origin (a feed proxy or short link
    handing over to the publisher) is admitted by that origin's session: its robots.txt and its
    delay apply, not the first host's. `registry` is shared by the groups a worker fetches at
    the same time; the delay holds across them, while another worker may fetch the same origin
    for its own group at the same time."""

    def __init__(self, client: HttpClient, known_robots: dict,
                 registry: HostRegistry | None = None):
        self._client = client
        self._known_robots = known_robots
        self._registry = registry or HostRegistry(client)
        self._read: dict[str, tuple] = {}

    def _session(self, origin: str) -> HostSession:
        return self._registry.session(origin, self._known_robots)

    @contextlib.contextmanager
    def _turn(self, url: str, first_origin: str):
        origin = origin_of(url)
        if origin != first_origin:  # refuse a blocked host before asking for its robots.txt
            _, host, port = check_url(url)
            safe_address(host, port, self._client.policy)
        session = self._session(origin)
        try:
            with session.turn(url):
                yield
        finally:
            outcome = session.take_robots_read()
            if outcome is not None:
                self._read[origin] = outcome

    def fetch(self, request: FetchRequest) -> Response:
        origin = origin_of(request.url)
        if origin is None:
            check_url(as_uri(request.url))  # raises the reason why
            raise FetchFailed(INVALID_URL, "not a valid URL")
        return self._client.get_with_retries(
            request.url, request.headers, request.accept_html_only,
            gate=lambda url: self._turn(url, origin))

    def robots_read(self) -> list[tuple[str, tuple]]:
        """(origin, robots outcome) of every robots.txt these requests had fetched."""
        return sorted(self._read.items())


# --- DoFn and composite --------------------------------------------------------------------------


def fetch_group(sessions: HostSessions, requests, run_id: str) -> list:
    """The outputs of one host's requests, made in URL order, one at a time: (FetchRequest,
    Response) pairs, ERRORS (FetchRequest, ErrorRow) pairs, and ROBOTS (origin, outcome) of
    each robots.txt read. Raises nothing: an exception nobody foresaw is that request's
    internal_error."""
    outputs: list = []
    for request in sorted(requests, key=lambda r: (r.url, r.source_uri)):
        try:
            outputs.append((request, sessions.fetch(request)))
        except FetchFailed as failure:
            outputs.append(beam.pvalue.TaggedOutput(ERRORS, (request, fetch_error(
                request, failure.reason, str(failure), run_id))))
        except Exception as error:  # noqa: BLE001 - one input's error row, never the run's end
            outputs.append(beam.pvalue.TaggedOutput(ERRORS, (request, fetch_error(
                request, INTERNAL_ERROR, errors.exception_summary(error), run_id))))
    outputs += [beam.pvalue.TaggedOutput(ROBOTS, pair) for pair in sessions.robots_read()]
    return outputs


def _windowed(output, timestamp, window):
    """An output (or a TaggedOutput's value) as a WindowedValue in its input's window: what a
    DoFn emits for another element than the one it is processing, or from finish_bundle."""
    if isinstance(output, beam.pvalue.TaggedOutput):
        return beam.pvalue.TaggedOutput(output.tag, _windowed(output.value, timestamp, window))
    return WindowedValue(output, timestamp, [window])


class FetchByHostFn(beam.DoFn):
    """(host, FetchRequests) -> (FetchRequest, Response); failures -> ERRORS; (origin, robots
    outcome) of each robots.txt this step read -> ROBOTS. The requests of one host are made in
    URL order, one at a time; up to `policy.concurrency` hosts are fetched at the same time, on
    a thread pool: a host's requests go to a pool thread, its outputs are emitted from the
    bundle's thread (in its element's window) once done, and the bundle finishes when all are."""

    def __init__(self, policy: FetchPolicy, run_id: str):
        self._policy = policy
        self._run_id = run_id

    def setup(self):
        self._client = HttpClient(self._policy)
        self._registry = HostRegistry(self._client)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, self._policy.concurrency), thread_name_prefix="newsbeam-fetch")
        self._pending: list = []

    def start_bundle(self):
        self._pending = []

    @metrics.timed(metrics.STAGE_FETCH)
    def process(self, keyed, known_robots, timestamp=beam.DoFn.TimestampParam,
                window=beam.DoFn.WindowParam):
        _, requests = keyed
        sessions = HostSessions(self._client, known_robots, self._registry)
        future = self._pool.submit(fetch_group, sessions, list(requests), self._run_id)
        self._pending.append((future, timestamp, window))
        yield from self._emit_done(block=len(self._pending) >= max(1, self._policy.concurrency))

    @metrics.timed(metrics.STAGE_FETCH)
    def finish_bundle(self):
        while self._pending:
            yield from self._emit_done(block=True)

    def teardown(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _emit_done(self, block: bool):
        """The outputs of the hosts done by now; with `block`, waits until one is."""
        if block:
            concurrent.futures.wait([future for future, _, _ in self._pending],
                                    return_when=concurrent.futures.FIRST_COMPLETED)
        still = []
        for future, timestamp, window in self._pending:
            if not future.done():
                still.append((future, timestamp, window))
                continue
            for output in future.result():
                # Counted here, on the bundle's thread (a pool thread's counts would be lost).
                tag = getattr(output, "tag", None)
                if tag in (None, ERRORS):
                    metrics.count(FETCH_REQUESTS_DONE)
                if tag == ERRORS:
                    errors.count_error(output.value[1])
                yield _windowed(output, timestamp, window)
        self._pending = still


class FetchByHost(beam.PTransform):
    """FetchRequests -> (FetchRequest, Response) pairs (main), (FetchRequest, ErrorRow) pairs
    (ERRORS) and the robots.txt outcomes read (ROBOTS). Requests are grouped by host so that
    each host is fetched politely from one place, however many workers run. `known_robots`:
    the ROBOTS of an earlier fetch step, whose hosts are not asked again."""

    def __init__(self, policy: FetchPolicy, run_id: str, known_robots=None):
        super().__init__()
        self._policy = policy
        self._run_id = run_id
        self._known_robots = known_robots

    def expand(self, requests):
        known = self._known_robots
        if known is None:
            known = requests.pipeline | "NoKnownRobots" >> beam.Create([])
        _ = requests | "CountRequests" >> metrics.CountElements(FETCH_REQUESTS)
        return (
            requests
            | "KeyByHost" >> beam.Map(lambda r: (host_key(r.url), r))
            | "GroupByHost" >> beam.GroupByKey()
            | "Fetch" >> beam.ParDo(FetchByHostFn(self._policy, self._run_id),
                                    beam.pvalue.AsDict(known)).with_outputs(
                ERRORS, ROBOTS, main="responses"))


class _PageDocumentFn(beam.DoFn):
    def __init__(self, run_id: str):
        self._run_id = run_id

    @metrics.timed(metrics.STAGE_FETCH)
    def process(self, pair):
        request, response = pair
        try:
            document = page_document(request, response)
        except FetchFailed as failure:
            yield errors.counted(fetch_error(request, failure.reason, str(failure), self._run_id))
        except Exception as error:  # noqa: BLE001 - one page's error row, never the run's end
            yield errors.counted(fetch_error(
                request, INTERNAL_ERROR, errors.exception_summary(error), self._run_id))
        else:
            yield document
        yield beam.pvalue.TaggedOutput(FINISHED, request.payload)


def _final_failures(pair):
    """The template of a request that failed for good (not worth trying again next run)."""
    request, row = pair
    if row.reason not in TRANSIENT_REASONS:
        yield request.payload


class FetchPages(beam.PTransform):
    """FetchRequests whose payload is a Document template -> {"documents": Documents,
    ERRORS: ErrorRows, FINISHED: the templates of pages fetched or failed for good}.
    `known_robots`: robots.txt outcomes an earlier step read (see FetchByHost). `fetch`: the
    step that fetches, FetchByHost unless given (the stream gives its unbounded twin,
    transforms/streaming.py's FetchPolitely); it yields responses and ERRORS as FetchByHost."""

    def __init__(self, policy: FetchPolicy, run_id: str, known_robots=None, fetch=None):
        super().__init__()
        self._policy = policy
        self._run_id = run_id
        self._known_robots = known_robots
        self._fetch = fetch

    def expand(self, requests):
        fetched = requests | "FetchByHost" >> (self._fetch or FetchByHost(
            self._policy, self._run_id, self._known_robots))
        pages = fetched.responses | "Decode" >> beam.ParDo(
            _PageDocumentFn(self._run_id)).with_outputs(ERRORS, FINISHED, main="documents")
        failed = fetched[ERRORS]
        return {
            "documents": pages.documents,
            "responses": fetched.responses,   # (FetchRequest, Response), for --archive_warc
            ERRORS: (failed | "ErrorRows" >> beam.Values(), pages[ERRORS])
                    | "FetchErrors" >> beam.Flatten(),
            FINISHED: (failed | "FailedForGood" >> beam.FlatMap(_final_failures),
                       pages[FINISHED]) | "Finished" >> beam.Flatten(),
        }
