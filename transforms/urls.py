"""Pure URL helpers: IRI to URI, canonical form, domain, and a publication date written into the
path."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import idna

# Query parameters that only track the click, never choose the content.
_TRACKING_PARAMS = re.compile(
    r"^(?:utm_\w+|fbclid|gclid|dclid|gbraid|wbraid|msclkid|mc_cid|mc_eid|igshid|yclid|_ga|_gl"
    r"|ocid|cmpid|cmp|smid|smtyp|ito|ns_\w+|at_\w+|sr_share|share|shared|ref|ref_src|ref_url"
    r"|referrer|rss|feed|taid|spm|xtor|__twitter_impression)$",
    re.IGNORECASE,
)
_HOST = re.compile(r"[\w.-]+|\[[0-9a-f:.]+\]")  # names (IDN too) and IPv6 literals


_USERINFO = re.compile(r"(?<=://)[^/?#@\s]*@")
# Neither a URI nor an IRI (RFC 3987) may hold white space or control characters.
_NOT_IN_AN_IRI = re.compile(r"[\x00-\x20\x7f-\x9f]")
# What stays as it is in a path, query or fragment: RFC 3986's unreserved and reserved
# characters, and "%" so that what is already escaped is not escaped twice.
_URI_SAFE = "!#$%&'()*+,/:;=?@[]~"


def _ascii_host(host: str) -> str:
    """A host name as DNS and http.client take it: IDNA 2008 with UTS 46 mapping (the `idna`
    package), so 'Bücher.example' is 'xn--bcher-kva.example'. IDNAError (a ValueError) when
    the name cannot be one."""
    if host.isascii():
        return host
    return idna.encode(host, uts46=True).decode("ascii")


def iri_to_uri(url: str) -> str:
    """The URI of an IRI (RFC 3987 section 3.1), what an HTTP request line can carry: the host
    IDNA-encoded, the user info, path, query and fragment percent-encoded as UTF-8 (escapes
    already there are kept). An ASCII URL comes back as it is, apart from the few printable
    characters a URI may not hold ('"<>\\^`{|}'), which are escaped too. ValueError for what
    cannot be a URI: white space or control characters, a bad port, a host IDNA refuses, lone
    surrogates."""
    if _NOT_IN_AN_IRI.search(url):
        raise ValueError("white space or a control character in the URL")
    parts = urlsplit(url)
    parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if hostport.startswith("["):  # an IPv6 literal: ASCII already
        netloc_host = hostport
    else:
        host, colon, port = hostport.partition(":")
        netloc_host = _ascii_host(host) + colon + port
    netloc = quote(userinfo, safe=_URI_SAFE) + at + netloc_host
    return urlunsplit((parts.scheme, netloc, quote(parts.path, safe=_URI_SAFE),
                       quote(parts.query, safe=_URI_SAFE), quote(parts.fragment, safe=_URI_SAFE)))


def header_text(value: str) -> str:
    """A header value as its sender meant it: http.client reads header bytes as Latin-1, while
    servers send a Location's non-ASCII path as UTF-8 bytes. UTF-8 when the bytes are UTF-8,
    else the Latin-1 reading."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def redact_url(text: str | None) -> str | None:
    """`text` with the user:password@ part of every URL in it replaced by '***@': what errors/
    rows, logs and the manifest may show of a URL that carries credentials."""
    if not text:
        return text
    return _USERINFO.sub("***@", text)


def canonicalize_url(url: str | None) -> str | None:
    """The form under which one article's URLs compare equal: http(s) only, lower-case scheme and
    host, no 'www.', no default port, no fragment, no tracking parameters, remaining parameters
    sorted, no trailing slash on a non-root path. Returns None for anything that is not an
    absolute http(s) URL."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower().rstrip(".")
    if not _HOST.fullmatch(host):
        return None
    if host.startswith("www."):
        host = host[4:]
    # Both variants become https, so either default port is no port.
    netloc = host if port in (None, 80, 443) else f"{host}:{port}"
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                   if not _TRACKING_PARAMS.match(k))
    path = re.sub(r"/{2,}", "/", parts.path) or "/"
    if len(path) > 1:
        path = path.rstrip("/")
    # http and https variants of one page are one article: the canonical form says https.
    return urlunsplit(("https", netloc, path, urlencode(query), ""))


def domain_of(url: str | None) -> str | None:
    """The host of `url` without 'www.', lower case."""
    if not url:
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if not host:
        return None
    host = host.lower().rstrip(".")
    return host[4:] if host.startswith("www.") else host


def is_site_root(url: str | None) -> bool:
    """Whether `url` is a site's home page: an http(s) URL with no path (or '/') and no query."""
    if not url:
        return False
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname) and \
        parts.path in ("", "/") and not parts.query


# A publication date in a URL path, in the shapes news sites write it. Separated: '/2022/02/16/',
# '/2022-2-16-'. Compact: '/20220216/', '-20220216-', and a compact date with its time of day and
# maybe a sequence number ('-20220216093012-', '/20220216093012123456.html'): other digits after
# a compact date are an id that only starts like one ('/2022021612345'). Day first: '/16/02/2022/',
# taken only when the day cannot be a month (or equals it): '/02/03/2022/' is left alone.
_END = r"(?=[/._-]|$)"
_URL_DATE = re.compile(
    r"/(?P<y>(?:19|20)\d{2})[/-](?P<m>0?[1-9]|1[0-2])[/-](?P<d>0?[1-9]|[12]\d|3[01])" + _END
    + r"|[/_-](?P<y2>(?:19|20)\d{2})(?P<m2>0[1-9]|1[0-2])(?P<d2>0[1-9]|[12]\d|3[01])"
      r"(?:(?:[01]\d|2[0-3])[0-5]\d[0-5]\d\d*)?" + _END
    + r"|/(?P<d3>0?[1-9]|[12]\d|3[01])/(?P<m3>0?[1-9]|1[0-2])/(?P<y3>(?:19|20)\d{2})" + _END)


def date_from_url(url: str | None) -> dt.datetime | None:
    """The publication day a URL's path gives (see _URL_DATE for the shapes read), as midnight
    UTC, or None. A pure function: the extraction stage falls back on it, and the story stage's
    bench uses it to date pages whose text has no date."""
    if not url:
        return None
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    for match in _URL_DATE.finditer(path):
        shape = next(suffix for suffix in ("", "2", "3") if match.group("y" + suffix))
        y, m, d = (int(match.group(part + shape)) for part in "ymd")
        if shape == "3" and d <= 12 and d != m:
            continue  # day first or month first: cannot tell
        try:
            return dt.datetime(y, m, d, tzinfo=dt.timezone.utc)
        except ValueError:
            continue
    return None
