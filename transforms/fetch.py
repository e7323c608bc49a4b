"""HTTP fetching: politely (one place per host, robots.txt, delays) and safely (no private
addresses, bounded sizes and times). Feeds, URL lists and feed entries all come through here.

Politeness holds with many workers because requests are grouped by host (GroupByKey): one host's
requests are fetched one after another by one DoFn call, `delay_s` apart (or the robots.txt
Crawl-delay, up to `max_crawl_delay_s`), and its robots.txt is fetched once for all of them.

Safety: every hop (the first URL and each redirect) is checked before any connection: http(s)
only, and the host's resolved address must not be private, loopback, link-local, multicast,
reserved or unspecified (169.254.169.254, the cloud metadata service, is link-local). The client
then connects to exactly the address it checked, so a second DNS answer cannot swap in another
(DNS rebinding). Bodies are read in chunks against a size cap, and gzip/deflate are decoded
incrementally against the same cap, so a gzip bomb stops at the cap.

Every failure is an ErrorRow of stage "fetch" with one of the reason codes below.
"""

from __future__ import annotations

import dataclasses
import email.utils
import http.client
import ipaddress
import re
import socket
import ssl
import time
import zlib
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import apache_beam as beam

from schemas.records import Document
from transforms import errors
from transforms.errors import ERRORS, error_row
from transforms.extract import DecodeError, decode_text

FETCH_STAGE = "fetch"
# Tagged outputs besides ERRORS: robots.txt outcomes, and requests done with for good.
ROBOTS = "robots"
FINISHED = "finished"

USER_AGENT = "newsbeam/0.1 (news ingestion; +https://github.com/newsbeam/newsbeam)"
ROBOTS_AGENT = "newsbeam"

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
# Failures worth another try in a later run: the entry index does not record them.
TRANSIENT_REASONS = frozenset({DNS, CONNECT, TIMEOUT, TLS, HTTP_429, HTTP_5XX, TRUNCATED})

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_ACCEPT_HTML = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"
_ACCEPT_ANY = ("application/rss+xml,application/atom+xml,application/feed+json,"
               "application/xml;q=0.9,text/xml;q=0.9,*/*;q=0.8")
_CHUNK = 64 * 1024
_ROBOTS_MAX_BYTES = 512 * 1024
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


def host_key(url: str) -> str:
    """What politeness is keyed by: scheme-less host[:port], lower case."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    host = (parts.hostname or "").lower()
    return f"{host}:{port}" if port else host


def origin_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
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


def crawl_delay(robots: RobotFileParser | None, policy: FetchPolicy) -> float:
    """Seconds between two requests to one host: the policy's delay or the robots.txt
    Crawl-delay, whichever is longer, but no longer than max_crawl_delay_s."""
    asked = (robots.crawl_delay(ROBOTS_AGENT) if robots else None) or 0
    return max(policy.delay_s, min(float(asked), policy.max_crawl_delay_s))


def robots_from_text(text: str) -> RobotFileParser:
    rules = RobotFileParser()
    rules.parse(text.splitlines())
    return rules


def robots_for_status(status: int) -> RobotFileParser:
    """RFC 9309: a robots.txt that is missing (4xx) allows everything; one that cannot be had
    (5xx) disallows everything."""
    rules = RobotFileParser()
    if status < 500:
        rules.allow_all = True
    else:
        rules.disallow_all = True
    return rules


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
    return error_row(FETCH_STAGE, reason, message, request.source_uri, run_id,
                     url=request.url)


# --- The client ----------------------------------------------------------------------------------


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever the host name resolves to now."""

    def __init__(self, address: str, host: str, port: int, policy: FetchPolicy,
                 connect: Callable):
        super().__init__(host, port, timeout=policy.connect_timeout_s)
        self._address, self._policy, self._connect = address, policy, connect

    def _open_socket(self):
        sock = self._connect((self._address, self.port), self._policy.connect_timeout_s)
        sock.settimeout(self._policy.read_timeout_s)
        return sock

    def connect(self):
        self.sock = self._open_socket()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = 443

    def connect(self):
        context = ssl.create_default_context()
        self.sock = context.wrap_socket(self._open_socket(), server_hostname=self.host)


class HttpClient:
    """GET with redirects, checked hop by hop. `connect` has socket.create_connection's
    signature; `sleep` and `clock` are time.sleep and time.monotonic (tests may inject)."""

    def __init__(self, policy: FetchPolicy, connect: Callable = socket.create_connection,
                 sleep: Callable = time.sleep, clock: Callable = time.monotonic):
        self.policy = policy
        self._connect = connect
        self._sleep = sleep
        self._clock = clock

    def get(self, url: str, headers: dict | None = None, html_only: bool = False,
            max_bytes: int | None = None,
            before_other_origin: Callable[[str], None] | None = None) -> Response:
        """The response at the end of the redirects; FetchFailed for anything else.
        `before_other_origin(url)` is called before a redirect to another origin is followed
        (it may wait, or refuse by raising FetchFailed)."""
        seen = {url}
        for _ in range(self.policy.max_redirects + 1):
            response = self._get_once(url, headers or {}, html_only, max_bytes)
            if response.status not in (301, 302, 303, 307, 308):
                return response
            location = response.headers.get("location")
            if not location:
                raise FetchFailed(INVALID_URL, f"HTTP {response.status} redirect without a "
                                  "Location")
            previous, url = url, urljoin(url, location.strip())
            if url in seen:
                raise FetchFailed(REDIRECT_LOOP, f"redirects come back to {url}")
            seen.add(url)
            if before_other_origin and origin_of(url) != origin_of(previous):
                before_other_origin(url)
        raise FetchFailed(REDIRECT_LOOP, f"more than {self.policy.max_redirects} redirects")

    def get_with_retries(self, url: str, headers: dict | None = None, html_only: bool = False,
                         max_bytes: int | None = None,
                         before_other_origin: Callable[[str], None] | None = None) -> Response:
        """get(), retried with backoff on 429 and 5xx (honouring Retry-After, when it asks
        for no more than max_retry_after_s)."""
        attempt = 0
        while True:
            try:
                return self.get(url, headers, html_only, max_bytes, before_other_origin)
            except FetchFailed as failure:
                attempt += 1
                if not failure.retryable or attempt > self.policy.retries:
                    raise
                if (failure.retry_after_s or 0) > self.policy.max_retry_after_s:
                    raise FetchFailed(failure.reason, f"{failure}; Retry-After asks for "
                                      f"{failure.retry_after_s:.0f} s, more than "
                                      f"{self.policy.max_retry_after_s:g} (--max_retry_after_s)")
                self._sleep(backoff_delay(attempt, failure.retry_after_s, self.policy))

    def _get_once(self, url: str, headers: dict, html_only: bool,
                  max_bytes: int | None) -> Response:
        scheme, host, port = check_url(url)
        address = safe_address(host, port, self.policy)
        connection_type = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
        connection = connection_type(address, host, port, self.policy, self._connect)
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        deadline = self._clock() + self.policy.total_timeout_s
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
                                   deadline)
            return Response(url, status, response_headers, body)
        except FetchFailed:
            raise
        except socket.timeout:
            raise FetchFailed(TIMEOUT, "no answer within the timeout") from None
        except ssl.SSLError as error:
            raise FetchFailed(TLS, f"TLS: {error}") from None
        except http.client.IncompleteRead as error:
            raise FetchFailed(TRUNCATED, f"the body ended after {len(error.partial)} bytes, "
                              "before its announced length") from None
        except (ConnectionError, OSError, http.client.HTTPException) as error:
            raise FetchFailed(CONNECT, f"{type(error).__name__}: {error}") from None
        finally:
            connection.close()

    def _raise_for_status(self, status: int, headers: dict):
        reason = HTTP_429 if status == 429 else HTTP_4XX if status < 500 else HTTP_5XX
        raise FetchFailed(reason, f"HTTP {status}", retryable=status in RETRY_STATUSES,
                          retry_after_s=parse_retry_after(headers.get("retry-after"),
                                                          time.time()))

    def _read_body(self, raw, headers: dict, max_bytes: int, deadline: float) -> bytes:
        announced = headers.get("content-length", "")
        if announced.isdigit() and int(announced) > max_bytes:
            raise FetchFailed(TOO_LARGE, f"Content-Length {announced}; the limit is {max_bytes}")
        decoder = _CappedDecoder(headers.get("content-encoding", "").strip().lower(), max_bytes)
        received, parts = 0, []
        while True:
            chunk = raw.read1(_CHUNK)  # what has arrived: a trickle meets the deadline
            if not chunk:
                break
            received += len(chunk)
            if received > max_bytes:
                raise FetchFailed(TOO_LARGE, f"more than {max_bytes} bytes")
            if self._clock() > deadline:
                raise FetchFailed(TIMEOUT, f"the body took longer than "
                                  f"{self.policy.total_timeout_s:g} s")
            parts.append(decoder.feed(chunk))
        if announced.isdigit() and received < int(announced):
            raise FetchFailed(TRUNCATED, f"the body ended after {received} of {announced} "
                              "bytes")
        return b"".join(parts)


class HostSession:
    """The requests to one host, made one after another: robots.txt first (once), then each
    URL no sooner than the crawl delay after the one before.

    `robots_outcome` is what robots.txt came to, as plain values an earlier fetch step can hand
    to a later one (`known_robots`), so that a run reads each host's robots.txt once:
    ("rules", text), ("missing",) or ("unreachable", reason, message)."""

    def __init__(self, client: HttpClient, origin: str, sleep: Callable = time.sleep,
                 clock: Callable = time.monotonic, known_robots: tuple | None = None):
        self._client = client
        self._origin = origin
        self._sleep, self._clock = sleep, clock
        self._robots: RobotFileParser | None = None
        self._unreachable: FetchFailed | None = None
        self._last_request: float | None = None
        self.robots_outcome: tuple | None = None
        self.fetched_robots = False
        if known_robots is not None:
            self._apply_robots(known_robots)

    def _wait_turn(self):
        delay = crawl_delay(self._robots, self._client.policy)
        if self._last_request is not None:
            wait = self._last_request + delay - self._clock()
            if wait > 0:
                self._sleep(wait)
        self._last_request = self._clock()

    def _load_robots(self):
        """RFC 9309: a robots.txt that is missing (4xx) allows everything; one that cannot be
        had (5xx, network failure) disallows everything for now, so every request to the host
        fails with the robots.txt failure's reason (transient: a later run tries again)."""
        self._wait_turn()
        self.fetched_robots = True
        try:
            response = self._client.get(self._origin + "/robots.txt",
                                        max_bytes=_ROBOTS_MAX_BYTES)
            outcome = ("rules", response.body.decode("utf-8", "replace"))
        except FetchFailed as failure:
            if failure.reason in (HTTP_4XX, NOT_HTML, TOO_LARGE):
                outcome = ("missing",)
            else:
                outcome = ("unreachable", failure.reason, f"robots.txt: {failure}")
        self._apply_robots(outcome)

    def _apply_robots(self, outcome: tuple):
        self.robots_outcome = outcome
        if outcome[0] == "rules":
            self._robots = robots_from_text(outcome[1])
        elif outcome[0] == "missing":
            self._robots = robots_for_status(404)
        else:
            self._robots = robots_for_status(503)
            self._unreachable = FetchFailed(outcome[1], outcome[2])

    def admit(self, url: str):
        """Returns when `url` may be requested now (robots.txt read, the delay waited);
        FetchFailed when it may not."""
        if self._robots is None:
            self._load_robots()
        if self._unreachable is not None:
            raise self._unreachable
        if not self._robots.can_fetch(ROBOTS_AGENT, url):
            raise FetchFailed(ROBOTS_DISALLOWED, f"robots.txt disallows {url}")
        self._wait_turn()

    def fetch(self, request: FetchRequest,
              before_other_origin: Callable[[str], None] | None = None) -> Response:
        self.admit(request.url)
        return self._client.get_with_retries(request.url, request.headers,
                                             request.accept_html_only,
                                             before_other_origin=before_other_origin)


class HostSessions:
    """The HostSessions of one fetch step's group of requests, one per origin. A redirect to
    another origin (a feed proxy or short link handing over to the publisher) is admitted by
    that origin's session: its robots.txt and its delay apply, not the first host's. The delay
    holds within this group only; the other origin's own requests may be fetched elsewhere at
    the same time."""

    def __init__(self, client: HttpClient, known_robots: dict):
        self._client = client
        self._known_robots = known_robots
        self._sessions: dict[str, HostSession] = {}

    def _session(self, origin: str) -> HostSession:
        if origin not in self._sessions:
            self._sessions[origin] = HostSession(self._client, origin,
                                                 known_robots=self._known_robots.get(origin))
        return self._sessions[origin]

    def _admit_redirect(self, url: str):
        _, host, port = check_url(url)
        safe_address(host, port, self._client.policy)  # refuse before asking for robots.txt
        self._session(origin_of(url)).admit(url)

    def fetch(self, request: FetchRequest) -> Response:
        origin = origin_of(request.url)
        if origin is None:
            check_url(request.url)  # raises the reason why
            raise FetchFailed(INVALID_URL, "not a valid URL")
        return self._session(origin).fetch(request, before_other_origin=self._admit_redirect)

    def robots_read(self) -> list[tuple[str, tuple]]:
        """(origin, robots outcome) of every robots.txt these sessions asked for."""
        return [(origin, session.robots_outcome)
                for origin, session in sorted(self._sessions.items()) if session.fetched_robots]


# --- DoFn and composite --------------------------------------------------------------------------

class FetchByHostFn(beam.DoFn):
    """(host, FetchRequests) -> (FetchRequest, Response); failures -> ERRORS; (origin, robots
    outcome) of each robots.txt this step read -> ROBOTS. The requests of one host are made in
    URL order, one at a time."""

    def __init__(self, policy: FetchPolicy, run_id: str):
        self._policy = policy
        self._run_id = run_id

    def setup(self):
        self._client = HttpClient(self._policy)

    def process(self, keyed, known_robots):
        _, requests = keyed
        sessions = HostSessions(self._client, known_robots)
        for request in sorted(requests, key=lambda r: (r.url, r.source_uri)):
            try:
                yield request, sessions.fetch(request)
            except FetchFailed as failure:
                yield beam.pvalue.TaggedOutput(ERRORS, (request, fetch_error(
                    request, failure.reason, str(failure), self._run_id)))
        for origin_and_outcome in sessions.robots_read():
            yield beam.pvalue.TaggedOutput(ROBOTS, origin_and_outcome)


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
        return (
            requests
            | "KeyByHost" >> beam.Map(lambda r: (host_key(r.url), r))
            | "GroupByHost" >> beam.GroupByKey()
            | "Fetch" >> beam.ParDo(FetchByHostFn(self._policy, self._run_id),
                                    known_robots=beam.pvalue.AsDict(known)).with_outputs(
                ERRORS, ROBOTS, main="responses"))


class _PageDocumentFn(beam.DoFn):
    def __init__(self, run_id: str):
        self._run_id = run_id

    def process(self, pair):
        request, response = pair
        try:
            yield page_document(request, response)
        except FetchFailed as failure:
            yield beam.pvalue.TaggedOutput(ERRORS, fetch_error(
                request, failure.reason, str(failure), self._run_id))
        yield beam.pvalue.TaggedOutput(FINISHED, request.payload)


def _final_failures(pair):
    """The template of a request that failed for good (not worth trying again next run)."""
    request, row = pair
    if row.reason not in TRANSIENT_REASONS:
        yield request.payload


class FetchPages(beam.PTransform):
    """FetchRequests whose payload is a Document template -> {"documents": Documents,
    ERRORS: ErrorRows, FINISHED: the templates of pages fetched or failed for good}.
    `known_robots`: robots.txt outcomes an earlier step read (see FetchByHost)."""

    def __init__(self, policy: FetchPolicy, run_id: str, known_robots=None):
        super().__init__()
        self._policy = policy
        self._run_id = run_id
        self._known_robots = known_robots

    def expand(self, requests):
        fetched = requests | "FetchByHost" >> FetchByHost(self._policy, self._run_id,
                                                          self._known_robots)
        pages = fetched.responses | "Decode" >> beam.ParDo(
            _PageDocumentFn(self._run_id)).with_outputs(ERRORS, FINISHED, main="documents")
        failed = fetched[ERRORS]
        return {
            "documents": pages.documents,
            ERRORS: (failed | "ErrorRows" >> beam.Values(), pages[ERRORS])
                    | "FetchErrors" >> beam.Flatten(),
            FINISHED: (failed | "FailedForGood" >> beam.FlatMap(_final_failures),
                       pages[FINISHED]) | "Finished" >> beam.Flatten(),
        }
