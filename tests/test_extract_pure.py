"""Unit tests for the pure functions of transforms/extract.py."""

import datetime as dt
import random
from pathlib import Path

import pytest

from newsbeam.schemas.records import Document
from newsbeam.transforms.extract import (DecodeError, build_article, decode_text, make_article_id,
                                         parse_datetime)
from newsbeam.transforms.trafilatura_page import extract_page

UTC = dt.timezone.utc
SEEDS = Path(__file__).resolve().parent.parent / "seeds"

# --- decode_text ---------------------------------------------------------------------------------

NEWS = ("Café owners in Zürich said the “pilot scheme” – launched in 2021 – had failed, "
        "and the façade of the old bakery was repainted.\n")


def test_decode_utf8():
    assert decode_text(NEWS.encode("utf-8")) == NEWS


def test_decode_utf8_with_bom_drops_bom():
    assert decode_text(b"\xef\xbb\xbf" + NEWS.encode("utf-8")) == NEWS


def test_decode_utf16_with_bom():
    assert decode_text(NEWS.encode("utf-16")) == NEWS


def test_decode_ascii():
    assert decode_text(b"Plain text.\n") == "Plain text.\n"


@pytest.mark.parametrize("seed", sorted(SEEDS.glob("*.txt")), ids=lambda p: p.name[:3])
def test_decode_cp1252_article(seed):
    # The seeds use curly quotes and apostrophes, which cp1252 has and Latin-1 has not.
    text = seed.read_text(encoding="utf-8")
    assert decode_text(text.encode("cp1252")) == text


FRENCH = ("Le président français a déclaré mercredi que les négociations avec la Russie étaient "
          "« difficiles » mais nécessaires. Selon l'Élysée, la rencontre à Moscou a duré près de "
          "cinq heures, et les deux dirigeants ont évoqué la sécurité en Europe. Les ministres des "
          "Affaires étrangères se réuniront à nouveau la semaine prochaine à Genève.\n")
GERMAN = ("Die Bundesregierung hat am Mittwoch neue Maßnahmen gegen die steigenden Energiepreise "
          "beschlossen. Verbraucher sollen bei den Heizkosten entlastet werden, sagte der "
          "Wirtschaftsminister in Berlin. Für Familien mit Kindern gibt es zusätzliche "
          "Zuschüsse.\n")


@pytest.mark.parametrize("text", [FRENCH, GERMAN], ids=["fr", "de"])
def test_decode_latin1_article(text):
    assert decode_text(text.encode("latin-1")) == text


def test_decode_short_cp1252_sentence():
    text = ("Café owners in Zürich said the naïve “pilot scheme” – launched in 2021 – had "
            "failed.")
    assert decode_text(text.encode("cp1252")) == text


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_raise_decode_error(seed):
    data = random.Random(seed).randbytes(4096)
    with pytest.raises(DecodeError):
        decode_text(data)


def test_decode_error_is_a_value_error():
    assert issubclass(DecodeError, ValueError)


# --- parse_datetime ------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("2022-02-16T10:00:00Z", dt.datetime(2022, 2, 16, 10, 0, tzinfo=UTC)),
    ("2022-02-16T10:00:00.250Z", dt.datetime(2022, 2, 16, 10, 0, 0, 250000, tzinfo=UTC)),
    ("2022-02-16T10:00:00+00:00", dt.datetime(2022, 2, 16, 10, 0, tzinfo=UTC)),
    # Offsets are converted to UTC, across a date line too.
    ("2022-02-16T10:00:00+05:00", dt.datetime(2022, 2, 16, 5, 0, tzinfo=UTC)),
    ("2022-02-16T22:30:00-05:00", dt.datetime(2022, 2, 17, 3, 30, tzinfo=UTC)),
    ("2022-02-16", dt.datetime(2022, 2, 16, tzinfo=UTC)),
    (" 2022-02-16 ", dt.datetime(2022, 2, 16, tzinfo=UTC)),
    ("Wed, 16 Feb 2022 10:00:00 GMT", dt.datetime(2022, 2, 16, 10, 0, tzinfo=UTC)),
    ("Wed, 16 Feb 2022 10:00:00 +0000", dt.datetime(2022, 2, 16, 10, 0, tzinfo=UTC)),
    ("Wed, 16 Feb 2022 10:00:00 -0500", dt.datetime(2022, 2, 16, 15, 0, tzinfo=UTC)),
    # Naive times are UTC.
    ("2022-02-16 10:00:00", dt.datetime(2022, 2, 16, 10, 0, tzinfo=UTC)),
    (dt.datetime(2022, 2, 16, 10, 0), dt.datetime(2022, 2, 16, 10, 0, tzinfo=UTC)),
    (dt.datetime(2022, 2, 16, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
     dt.datetime(2022, 2, 16, 10, 0, tzinfo=UTC)),
])
def test_parse_datetime(value, expected):
    parsed = parse_datetime(value)
    assert parsed == expected
    assert parsed.utcoffset() == dt.timedelta(0)
    # The same wall-clock fields as the UTC expectation, not merely the same instant.
    assert parsed.replace(tzinfo=None) == expected.replace(tzinfo=None)


@pytest.mark.parametrize("value", [
    None, "", "   ", "garbage", "yesterday", "2022-13-45", "Wed, 45 Foo 2022",
    "1800-01-01", "1800-01-01T00:00:00Z", "Mon, 01 Jan 1800 00:00:00 GMT",
    "1989-12-31T23:59:59Z",                                  # before the earliest date
    "2999-01-01", "2100-06-01T00:00:00Z",                    # far future
])
def test_parse_datetime_none(value):
    assert parse_datetime(value) is None


def test_parse_datetime_future_bounds():
    now = dt.datetime.now(UTC)
    # A day ahead is clock skew between time zones; a week ahead is not a publication date.
    assert parse_datetime((now + dt.timedelta(days=1)).isoformat()) is not None
    assert parse_datetime((now + dt.timedelta(days=7)).isoformat()) is None
    assert parse_datetime(dt.datetime(1990, 1, 2, tzinfo=UTC)) is not None


# --- make_article_id -----------------------------------------------------------------------------


def test_article_id_stable():
    first = make_article_id("https://example.com/a", "ab" * 32)
    assert first == make_article_id("https://example.com/a", "ab" * 32)
    assert len(first) == 24
    int(first, 16)


def test_article_id_differs_with_url_and_text():
    base = make_article_id("https://example.com/a", "ab" * 32)
    assert make_article_id("https://example.com/b", "ab" * 32) != base
    assert make_article_id("https://example.com/a", "cd" * 32) != base
    assert make_article_id(None, "ab" * 32) != base


def test_article_id_without_url():
    assert make_article_id(None, "h") == make_article_id("", "h")
    assert make_article_id(None, "h") != make_article_id(None, "i")


# --- extract_page --------------------------------------------------------------------------------

PARAGRAPHS = [
    "The harbour bridge reopened to traffic on Wednesday morning after eight months of repairs "
    "that cost the city more than 40 million dollars, officials said.",
    "Engineers replaced the corroded steel cables that had forced the closure last June, when "
    "inspectors found that several of them had lost almost a third of their strength.",
    "Commuters who had faced detours of up to an hour each way welcomed the reopening. \u201cIt "
    "is a relief to have my mornings back,\u201d said one driver waiting at the toll gate.",
    "The mayor said a second phase of work, on the pedestrian walkway, would begin in the "
    "autumn and would not require the bridge to close again.",
]

PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Harbour bridge reopens after repairs | The Coastal Times</title>
  <meta property="og:title" content="Harbour bridge reopens after repairs">
  <meta property="article:published_time" content="2022-02-14T09:30:00Z">
  <meta name="description" content="The city's main bridge is open again.">
</head>
<body>
  <header><nav><a href="/">Home</a> <a href="/news">News</a> <a href="/sport">Sport</a>
    <a href="/subscribe">Subscribe to our newsletter</a></nav></header>
  <main>
    <article>
      <h1>Harbour bridge reopens after repairs</h1>
      {"".join(f"<p>{p}</p>" for p in PARAGRAPHS)}
    </article>
  </main>
  <footer><p>Copyright 2022 The Coastal Times. Privacy policy. Contact us.</p></footer>
</body>
</html>"""


@pytest.fixture(scope="module")
def extracted():
    return extract_page(PAGE, "https://www.coastaltimes.example/news/harbour-bridge")


def test_extract_page_title(extracted):
    assert extracted is not None
    assert extracted["title"] == "Harbour bridge reopens after repairs"


def test_extract_page_text(extracted):
    text = extracted["text"]
    for paragraph in PARAGRAPHS:
        assert paragraph in text
    # Navigation and footer are not article text.
    assert "Subscribe to our newsletter" not in text
    assert "Privacy policy" not in text


def test_extract_page_metadata(extracted):
    # From the meta tag (the URL has no date), with its time of day and offset.
    assert extracted["date"] == "2022-02-14T09:30:00+0000"
    assert extracted["date_precision"] == "time"
    assert extracted["description"] == "The city's main bridge is open again."
    assert set(extracted) >= {"title", "author", "url", "hostname", "description", "sitename",
                              "date", "categories", "tags", "text", "language"}


def test_extract_page_result_is_picklable(extracted):
    # It crosses the process boundary of the time-limited worker.
    import pickle
    assert pickle.loads(pickle.dumps(extracted)) == extracted


def test_extract_page_accepts_bytes():
    page = extract_page(PAGE.encode("utf-8"), None)
    assert page is not None and PARAGRAPHS[2] in page["text"]


def test_extract_page_without_main_text():
    page = extract_page("<html><head><title>x</title></head><body></body></html>", None)
    assert page is None or not (page.get("text") or "").strip()


# Elements nested far past libxml2's depth limit (256), around the only text of the page.
DEEP_PAGE = ("<html><head><title>Deep</title></head><body>" + "<div>" * 100_000
             + "The only words of this page sit under a hundred thousand nested elements. " * 5
             + "</div>" * 100_000 + "</body></html>")


def test_extract_page_reports_the_parser_stopping_at_its_depth_limit():
    page = extract_page(DEEP_PAGE, None)
    assert page is not None and not (page.get("text") or "").strip()
    assert "Excessive depth" in page["parser_limit"]


def test_extract_page_of_an_ordinary_page_reports_no_parser_limit(extracted):
    assert extracted["parser_limit"] is None


# --- build_article: whose date wins ----------------------------------------------------------

_PAGE = {"date": "2023-03-04", "url": "https://example.test/news/2021/01/02/story"}


def _date_of(published_at, kind, page):
    document = Document(source_uri="x.jsonl#L1", kind="html", content="<p>x</p>",
                        published_at=published_at, published_at_kind=kind)
    article = build_article(document, ["Some words of text."], "Some words of text.", page,
                            "run", dt.datetime(2026, 1, 1, tzinfo=UTC))
    # No known date: published_at stays empty; the partition date is the ingestion's.
    moment = article.published_at or article.ingested_at
    return moment.date().isoformat(), article.date_source


def test_a_record_that_states_its_date_beats_the_page():
    assert _date_of("2022-02-16T09:30:00Z", "published", _PAGE) == ("2022-02-16", "published")


def test_the_page_date_beats_a_feed_entry_date():
    assert _date_of("2022-02-16T09:30:00Z", "feed", _PAGE) == ("2023-03-04", "published")
    assert _date_of("2022-02-16T09:30:00Z", "feed", {}) == ("2022-02-16", "feed")


def test_a_date_in_the_url_comes_after_both_and_ingestion_last():
    assert _date_of(None, "published", {"url": _PAGE["url"]}) == ("2021-01-02", "url")
    assert _date_of("not a date", "published", {}) == ("2026-01-01", "ingested")
    assert _date_of(None, "published", {})[1] == "ingested"
