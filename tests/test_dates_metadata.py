"""Publication dates with their time, offset and precision; titles, authors, categories and
canonical URLs cleaned by the page's own evidence (issue 13 items 3 and 4). Real htmldate and
trafilatura on small pages; no network."""

from __future__ import annotations

import datetime as dt

import pytest

from newsbeam.schemas.records import Document
from newsbeam.transforms.extract import (PublishedDate, build_article, choose_published,
                                         page_address, parse_published)
from newsbeam.transforms.metadata import (is_person_name, person_authors, site_names,
                                          split_categories, strip_site_name)
from newsbeam.transforms.trafilatura_page import (date_precision, extract_page,
                                                  segment_precision)
from newsbeam.transforms.urls import is_site_root

UTC = dt.timezone.utc
INGESTED = dt.datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
BODY = "<p>" + ("The harbour bridge reopened to traffic on a cold morning after months of "
                "repairs to its deck. ") * 4 + "</p>"


def _page(head: str = "", before_text: str = "", footer: str = "") -> str:
    return (f"<html><head><title>Harbour bridge reopens</title>{head}</head><body><article>"
            f"{before_text}{BODY}</article>{footer}</body></html>")


# --- parse_published -----------------------------------------------------------------------------


@pytest.mark.parametrize("value, precision, expected", [
    # A time with an offset: UTC, the offset kept.
    ("2022-02-14T09:30:00+0100", None,
     PublishedDate(dt.datetime(2022, 2, 14, 8, 30, tzinfo=UTC), 60, "time")),
    ("2022-05-05T21:00:00-05:00", None,
     PublishedDate(dt.datetime(2022, 5, 6, 2, 0, tzinfo=UTC), -300, "time")),
    # A naive time is UTC, its offset unknown.
    ("2020-04-29T11:52:23", None,
     PublishedDate(dt.datetime(2020, 4, 29, 11, 52, 23, tzinfo=UTC), None, "time")),
    # Midnight is a date without a time: the day as written, whatever the offset.
    ("2021-11-05T00:00:00+0100", None,
     PublishedDate(dt.datetime(2021, 11, 5, tzinfo=UTC), None, "day")),
    ("2022-02-16", None, PublishedDate(dt.datetime(2022, 2, 16, tzinfo=UTC), None, "day")),
    ("2021-03-01T00:00:00", "month",
     PublishedDate(dt.datetime(2021, 3, 1, tzinfo=UTC), None, "month")),
    ("2017-01-01T00:00:00", "year", PublishedDate(dt.datetime(2017, 1, 1, tzinfo=UTC), None,
                                                  "year")),
])
def test_parse_published(value, precision, expected):
    assert parse_published(value, precision, INGESTED) == expected


def test_a_date_after_the_ingestion_is_not_a_publication_date():
    # Bounded by the run's ingestion time (plus a day of time zones), not by the clock.
    assert parse_published("2026-01-11T10:00:00Z", latest=INGESTED) is not None
    assert parse_published("2026-01-12T13:00:00Z", latest=INGESTED) is None
    assert parse_published("2026-03-01", latest=INGESTED) is None
    assert parse_published("1989-12-31", latest=INGESTED) is None
    assert parse_published("2022-02-16", "copyright", INGESTED) is None


def test_a_month_or_year_yields_to_a_day_within_it():
    page_month = ("2021-03-01T00:00:00", "month", "published")
    url_day = (dt.datetime(2021, 3, 8, tzinfo=UTC), "day", "url")
    other_day = (dt.datetime(2020, 5, 8, tzinfo=UTC), "day", "url")
    assert choose_published([page_month, url_day], INGESTED) == (
        PublishedDate(dt.datetime(2021, 3, 8, tzinfo=UTC), None, "day"), "url")
    # A day outside the month does not overrule it.
    assert choose_published([page_month, other_day], INGESTED) == (
        PublishedDate(dt.datetime(2021, 3, 1, tzinfo=UTC), None, "month"), "published")
    assert choose_published([(None, None, "published")], INGESTED) == (None, "ingested")


# --- what htmldate gave: its trace ---------------------------------------------------------------


def test_date_precision_from_htmldates_trace():
    assert date_precision("2022-02-14T09:30:00+0100", ["valid date: 2022-02-14 09:30"]) == "time"
    assert date_precision("2022-02-14T00:00:00", ["valid date: 2022-02-14 00:00:00"]) == "day"
    assert date_precision("2019-01-01T00:00:00", [
        "3 components", "switching to two components", "using copyright year as default"]) \
        == "copyright"
    assert date_precision("2016-01-01T00:00:00", [
        "switching to two components", "switching to one component",
        "valid date: 2016-01-01 00:00:00"]) == "year"
    assert date_precision("2022-09-01T00:00:00", [
        "switching to two components", "valid date: 2022-09-01 00:00:00"]) == "month"
    # A full date read from the text after the two-component patterns is a day.
    assert date_precision("2021-11-01T00:00:00", [
        "switching to two components", "multilingual text found: 2021-11-01 00:00:00",
        "valid date: 2021-11-01 00:00:00"]) == "day"
    assert date_precision(None, []) is None


@pytest.mark.parametrize("segment, expected", [
    ("2021/03", "month"), ("03/2021", "month"), ("14.02.2022", "day"),
    ("March 3, 2021", "day"), ("not a date at all", None),
])
def test_segment_precision(segment, expected):
    assert segment_precision(segment) == expected


@pytest.mark.parametrize("head, before_text, footer, date, precision", [
    ('<meta property="article:published_time" content="2022-02-14T09:30:00+01:00">', "", "",
     "2022-02-14T09:30:00+0100", "time"),
    ('<meta name="date" content="2022-02-14">', "", "", "2022-02-14T00:00:00", "day"),
    # Only a copyright notice: its year is htmldate's last resort, not a publication date.
    ("", "", "<footer>© 2019 Coastal Times</footer>", "2019-01-01T00:00:00", "copyright"),
    # A month without a day: htmldate fills the day in (from today's date, even).
    ("", "<p>2021/03</p>", "", None, "month"),
    # The head gives only a modification date; the page's publication date is in its text.
    ('<meta property="og:updated_time" content="2022-03-20T10:00:00+01:00">',
     '<p class="date">Published 14.02.2022</p>', "", "2022-02-14T00:00:00", "day"),
])
def test_extract_page_dates(head, before_text, footer, date, precision):
    page = extract_page(_page(head, before_text, footer), None)
    assert page["date_precision"] == precision
    if date is not None:
        assert page["date"] == date
    else:
        assert page["date"].startswith("2021-03-")


def _article(page: dict, url: str | None = None, **document_fields):
    document = Document(source_uri="page.html", kind="html", content="<p>x</p>", url=url,
                        **document_fields)
    return build_article(document, ["Some words of text."], "Some words of text.", page, "run",
                         INGESTED)


def test_build_article_keeps_the_time_and_the_offset():
    article = _article({"date": "2022-02-14T09:30:00+0100", "date_precision": "time"})
    assert article.published_at == dt.datetime(2022, 2, 14, 8, 30, tzinfo=UTC)
    assert (article.published_offset_min, article.date_precision, article.date_source) == (
        60, "time", "published")


def test_build_article_year_only_is_not_a_day_and_a_copyright_year_is_no_date():
    year = _article({"date": "2017-01-01T00:00:00", "date_precision": "year"})
    assert (year.published_at.date(), year.date_precision) == (dt.date(2017, 1, 1), "year")
    copyright_only = _article({"date": "2019-01-01T00:00:00", "date_precision": "copyright"})
    assert (copyright_only.published_at, copyright_only.date_precision,
            copyright_only.date_source) == (None, None, "ingested")
    # ... and the URL's day is used instead.
    in_url = _article({"date": "2019-01-01T00:00:00", "date_precision": "copyright"},
                      url="https://news.example/2018/06/22/story")
    assert (in_url.published_at.date(), in_url.date_precision, in_url.date_source) == (
        dt.date(2018, 6, 22), "day", "url")


def test_build_article_a_future_page_date_is_not_published():
    article = _article({"date": "2026-02-01T00:00:00", "date_precision": "day"},
                       url="https://news.example/2025/12/30/story")
    assert (article.published_at.date(), article.date_source) == (dt.date(2025, 12, 30), "url")


def test_a_record_date_gets_its_precision_and_offset():
    article = _article({}, published_at="2022-02-16T09:30:00+02:00")
    assert (article.published_offset_min, article.date_precision) == (120, "time")
    assert _article({}, published_at="2022-02-16").date_precision == "day"


# --- titles, authors, categories, canonical URLs -------------------------------------------------


@pytest.mark.parametrize("title, publisher, url, expected", [
    ("Corona-Lockerungen: Was gilt ab Montag? | MDR.DE", "MDR.DE", "https://www.mdr.de/x",
     "Corona-Lockerungen: Was gilt ab Montag?"),
    ("Oil prices rise - Reuters", None, "https://www.reuters.com/article/x", "Oil prices rise"),
    ("La perte des terres fertiles | Environnement | DW | 23.05.2011", "DW.COM",
     "https://www.dw.com/fr/x", "La perte des terres fertiles | Environnement"),
    ("Die Erklärung | Schweizerische Vogelwarte", "vogelwarte.ch", "https://www.vogelwarte.ch/x",
     "Die Erklärung"),
    ("Diario HOY | Lluvias en Asunción", "Diario HOY", "https://www.hoy.com.py/x",
     "Lluvias en Asunción"),
    # Not the site's name: kept.
    ("Ferienhaus Feinen - Ferienvilla in Florida", "villacc.de", "https://villacc.de/x",
     "Ferienhaus Feinen - Ferienvilla in Florida"),
    ("Paris - Berlin - Rome", "Example", "https://example.org/x", "Paris - Berlin - Rome"),
    # Nothing but the site's name: kept.
    ("MDR.DE", "MDR.DE", "https://www.mdr.de/", "MDR.DE"),
])
def test_strip_site_name(title, publisher, url, expected):
    assert strip_site_name(title, site_names(publisher, url)) == expected


@pytest.mark.parametrize("author, person", [
    ("Redaktion", False), ("TVT-Redaktion", False), ("Super User", False),
    ("Mdr De", False), ("Ciphacipha Net", False), ("On August 3", False),
    ("Stephangoeldi Said", False), ("View all posts by Daniel Lemire", False),
    ("Art Edwards says", False), ("FOCUS Online", False),
    ("Daniel Lemire", True), ("Benjamin Fischer", True), ("Will Knight", True), ("gnaddrig", True),
    ("Jean-Luc Mélenchon", True), ("Walter von Aachen", True),
])
def test_is_person_name(author, person):
    names = site_names("FOCUS Online", "https://www.mdr.de/nachrichten/x")
    assert is_person_name(author, names) is person


def test_person_authors_drops_byline_words_and_repeats():
    assert person_authors(["Par Stefan Häne", "Redaktion", "Stefan Häne"], []) == ["Stefan Häne"]


def test_split_categories():
    assert split_categories(["Politik, Inland,Wahlen", "Inland", "", "Sport"]) == [
        "Politik", "Inland", "Wahlen", "Sport"]


def test_is_site_root():
    assert is_site_root("https://www.example.com/") and is_site_root("http://example.com")
    assert not is_site_root("https://example.com/news/x")
    assert not is_site_root("https://example.com/?p=123")
    assert not is_site_root(None) and not is_site_root("not a url")


def test_a_home_page_canonical_is_not_the_pages_address():
    deep = "https://news.example/world/2022/02/16/ship-rescue"
    page = {"url": "https://news.example/", "url_candidates": ["https://news.example/"]}
    # The document's own URL is kept; the site root is not its canonical URL.
    article = _article(page, url=deep)
    assert article.canonical_url == "https://news.example/world/2022/02/16/ship-rescue"
    # A deeper URL the page gives for itself (og:url) wins over the site-wide canonical.
    page_with_og = {**page, "url_candidates": ["https://news.example/", deep]}
    assert page_address(None, page_with_og) == deep
    # Without one, the page has no known address, but its domain is still known.
    unknown = _article(page)
    assert (unknown.url, unknown.canonical_url, unknown.domain) == (None, None, "news.example")
    # A home page is its own address.
    assert page_address("https://news.example/", page) == "https://news.example/"


def test_build_article_cleans_title_authors_and_categories():
    article = _article({"title": "Corona-Lockerungen | MDR.DE", "sitename": "MDR.DE",
                        "author": "Redaktion; Mdr De; Anna Schmidt",
                        "categories": ["Politik, Inland"],
                        "url": "https://www.mdr.de/nachrichten/x"})
    assert (article.title, article.authors, article.categories) == (
        "Corona-Lockerungen", ["Anna Schmidt"], ["Politik", "Inland"])


def test_segment_precision_needs_the_filler_in_htmldates_date():
    today = dt.date(2026, 12, 2)
    # htmldate's parser filled the day in from today's date: a month.
    assert segment_precision("2021/03", "2021-03-02T00:00:00", today) == "month"
    assert segment_precision("03/2021", "2021-03-01T00:00:00", today) == "month"
    # A German month name the parser does not know: no evidence, the day stands.
    assert segment_precision("27. Januar 2020", "2020-01-27T00:00:00", today) is None
    assert segment_precision("14.02.2022", "2022-02-14T00:00:00", today) == "day"


# --- boilerplate lines in other languages --------------------------------------------------------


@pytest.mark.parametrize("paragraph, boilerplate", [
    ("À lire aussi » Ballonnements, lourdeurs...Quel est votre profil digestif ?", True),
    ("Das könnte Sie auch interessieren:", True),
    ("Hauptinhalt", True),
    ("Zum Inhalt springen", True),
    ("Mit unserem Newsletter erhalten Sie monatlich Informationen rund um das Urlaubsland.", True),
    ("Subscribe to our newsletter for the week's best stories.", True),
    # Prose that merely starts alike, or mentions a newsletter, stays.
    ("Lesen Sie auch die Hinweise des Ministeriums, bevor Sie einen Antrag stellen, denn die "
     "Fristen haben sich geändert.", False),
    ("The company's newsletter reported a loss.", False),
    ("Auch interessante Zahlen nannte der Minister am Dienstag.", False),
])
def test_related_links_skip_links_and_newsletter_prompts(paragraph, boilerplate):
    from newsbeam.transforms.text import is_boilerplate
    assert is_boilerplate(paragraph) is boilerplate
