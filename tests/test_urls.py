"""Unit tests for transforms/urls.py: IRI to URI, canonical URLs, domains and dates in paths."""

import datetime as dt

import pytest

from newsbeam.transforms.urls import canonicalize_url, date_from_url, domain_of, header_text, iri_to_uri

CANONICAL = "https://example.com/news/story?a=1&b=2"


# --- canonicalize_url ----------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "https://example.com/news/story?a=1&b=2",
    "https://example.com/news/story?b=2&a=1",                                 # order
    "https://www.example.com/news/story?a=1&b=2",                             # www.
    "http://example.com/news/story?a=1&b=2",                                  # http
    "http://www.example.com/news/story?a=1&b=2",
    "HTTPS://WWW.EXAMPLE.COM/news/story?a=1&b=2",                             # case of host
    "https://example.com:443/news/story?a=1&b=2",                             # default port
    "http://example.com:80/news/story?a=1&b=2",
    "https://example.com/news/story?a=1&b=2#comments",                        # fragment
    "https://example.com/news/story/?a=1&b=2",                                # trailing slash
    "https://example.com/news/story?utm_source=twitter&a=1&utm_medium=social&b=2"
    "&utm_campaign=spring&fbclid=IwAR0abc",                                   # tracking
    "https://example.com/news/story?a=1&b=2&gclid=xyz&UTM_Content=foo",
    "  https://example.com/news/story?a=1&b=2  ",                             # white space
])
def test_variants_of_one_url_are_equal(url):
    assert canonicalize_url(url) == CANONICAL


def test_tracking_params_dropped_content_params_kept():
    url = "https://example.com/article?id=42&utm_source=rss&page=2&fbclid=abc"
    assert canonicalize_url(url) == "https://example.com/article?id=42&page=2"


def test_only_tracking_params_leaves_no_query():
    assert canonicalize_url("https://example.com/a?utm_source=x&fbclid=y") == \
        "https://example.com/a"


def test_fragment_dropped():
    assert canonicalize_url("https://example.com/a#section-2") == "https://example.com/a"


def test_non_default_port_kept():
    assert canonicalize_url("https://example.com:8443/a") == "https://example.com:8443/a"
    assert canonicalize_url("https://example.com:8443/a") != canonicalize_url(
        "https://example.com/a")


def test_path_case_is_significant():
    assert canonicalize_url("https://example.com/News/A") != canonicalize_url(
        "https://example.com/news/a")


def test_different_content_params_differ():
    assert canonicalize_url("https://example.com/a?id=1") != canonicalize_url(
        "https://example.com/a?id=2")


def test_root_url():
    assert canonicalize_url("http://www.example.com") == "https://example.com/"
    assert canonicalize_url("https://example.com/") == "https://example.com/"


def test_canonical_form_is_a_fixed_point():
    once = canonicalize_url("http://www.Example.com:80/a/b/?z=1&utm_source=x&y=2#top")
    assert once == "https://example.com/a/b?y=2&z=1"
    assert canonicalize_url(once) == once


@pytest.mark.parametrize("url", [
    None, "", "   ",
    "ftp://example.com/file.txt",
    "mailto:editor@example.com",
    "javascript:alert(1)",
    "file:///etc/passwd",
    "data:text/html,<p>hi</p>",
    "not a url",
    "example.com/news/story",          # no scheme
    "//example.com/news/story",        # scheme-relative
    "/news/story",
    "http://",
    "https:///path-only",
    "http://[::1",                      # broken IPv6 literal
    "https://example.com:99999/",       # port out of range
])
def test_non_http_and_junk_give_none(url):
    assert canonicalize_url(url) is None


def test_host_with_space_is_junk():
    assert canonicalize_url("https://exa mple.com/") is None


# --- domain_of -----------------------------------------------------------------------------------


@pytest.mark.parametrize("url, expected", [
    ("https://www.BBC.co.uk/news/world", "bbc.co.uk"),
    ("http://example.com:8080/x", "example.com"),
    ("https://news.example.com/a", "news.example.com"),
    ("https://www.example.com./", "example.com"),
    ("https://wwwexample.com/", "wwwexample.com"),     # only the 'www.' label is dropped
])
def test_domain_of(url, expected):
    assert domain_of(url) == expected


@pytest.mark.parametrize("url", [None, "", "not a url", "/relative/path", "http://[::1"])
def test_domain_of_none(url):
    assert domain_of(url) is None


# --- date_from_url -------------------------------------------------------------------------------

FEB_16 = dt.datetime(2022, 2, 16, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("url", [
    "https://example.com/2022/02/16/russia-troops",
    "https://example.com/world/2022/02/16/russia-troops",
    "https://example.com/news/2022-02-16/russia-troops",
    "https://example.com/20220216/russia-troops",
    "https://example.com/world/2022/2/16/russia-troops",       # month without leading zero
    "https://example.com/world/2022/02/16",                    # at the end of the path
])
def test_date_from_url(url):
    found = date_from_url(url)
    assert found == FEB_16
    assert found.tzinfo is not None and found.utcoffset() == dt.timedelta(0)


def test_date_from_url_leap_day():
    assert date_from_url("https://example.com/2024/02/29/x") == dt.datetime(
        2024, 2, 29, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("url", [
    "https://example.com/2022/13/45/story",       # no month 13
    "https://example.com/2022/02/30/story",       # no February 30
    "https://example.com/2021/02/29/story",       # not a leap year
    "https://example.com/20221345/story",
    "https://example.com/1850/02/16/story",       # not a plausible year
    "https://example.com/article/2022021612345",  # an id that starts like a date
    "https://example.com/story?date=2022/02/16",  # the query is not the path
    "https://example.com/news/story",
    None, "",
])
def test_date_from_url_none(url):
    assert date_from_url(url) is None


@pytest.mark.parametrize("iri, uri", [
    ("http://example.test/news/a.html?id=3", "http://example.test/news/a.html?id=3"),
    ("http://127.0.0.1:8080/straße", "http://127.0.0.1:8080/stra%C3%9Fe"),
    ("http://Bücher.example/b?q=ü#teil-ä",
     "http://xn--bcher-kva.example/b?q=%C3%BC#teil-%C3%A4"),
    ("http://example.test/already%20escaped/ü", "http://example.test/already%20escaped/%C3%BC"),
    ("http://user:pässword@example.test/", "http://user:p%C3%A4ssword@example.test/"),
    ("http://[::1]:8080/ä", "http://[::1]:8080/%C3%A4"),
    ("http://example.test/a|b{c}", "http://example.test/a%7Cb%7Bc%7D")])
def test_iri_to_uri(iri, uri):
    assert iri_to_uri(iri) == uri


@pytest.mark.parametrize("url", ["http://example.test/a b", "http://example.test/a\tb",
                                 "http://☃.example/", "http://example.test:99999/",
                                 "http://example.test/\ud800"])
def test_what_cannot_be_a_uri(url):
    with pytest.raises(ValueError):
        iri_to_uri(url)


def test_header_text_reads_utf8_bytes_as_utf8():
    assert header_text("/straße".encode().decode("latin-1")) == "/straße"
    assert header_text("/straße") == "/straße"   # Latin-1 bytes that are not UTF-8


@pytest.mark.parametrize("url, day", [
    # Shapes seen in SemEval-2022 story-pair URLs (story-pairs-dev / -multi-dev).
    ("https://www.smh.com.au/national/like-armageddon-20220216-p53o62.html", FEB_16),
    ("https://www.diariosur.es/internacional/gobierno-cierra-20220216000533-ntvo.html", FEB_16),
    ("https://www.clm24.es/articulo/ciudad-real/pp/20220216175251266779.html", FEB_16),
    ("https://thepeninsulaqatar.com/article/16/02/2022/Things-to-do", FEB_16),
    ("https://thepeninsulaqatar.com/article/01/01/2020/x",
     dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)),
    ("https://www.elchubut.com.ar/nota/2022-2-16-14-38-0-cushamen", FEB_16),
])
def test_date_from_url_more_shapes(url, day):
    assert date_from_url(url) == day


@pytest.mark.parametrize("url", [
    "https://example.com/article/02/03/2022/x",          # 2 March or 3 February: cannot tell
    "https://example.com/x-20220216999999-y",            # not a time of day after the date
    "https://de.sputniknews.com/p/202202161077913672-x",  # a date, then an id: not read
    "https://example.com/item-2022021612345",
])
def test_date_from_url_ambiguous_or_ids(url):
    assert date_from_url(url) is None
