"""Feed parsing (RSS, Atom, RDF, JSON Feed), feeds files, and the robustness corpus in
../shared/data/feeds (skipped without it)."""

from __future__ import annotations

import datetime as dt
import json

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import SHARED_DATA
from newsbeam.transforms import feeds
from newsbeam.transforms.errors import ERRORS
from newsbeam.transforms.extract import parse_datetime
from newsbeam.transforms.feeds import (ENTRIES, FEED_STATES, FeedSpec, InvalidFeedList, ParseFeedFn,
                                       entry_document, entry_key, entry_source_uri, html_text,
                                       page_request, parse_feed, parse_feed_list)
from newsbeam.transforms.topics import TOPIC_SLUGS

FEEDS = SHARED_DATA / "feeds"

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Wire</title>
 <entry><id>urn:uuid:1</id><title>Ceasefire talks resume</title>
  <link href="/world/talks.html"/><updated>2022-02-16T09:00:00+01:00</updated>
  <author><name>Jane Roe</name></author><category term="World"/><category term="Politics"/>
  <summary>Talks resumed on Wednesday.</summary></entry>
 <entry><id>urn:uuid:1</id><title>Same id again</title><link href="/x"/></entry>
 <entry><title>No id but a link</title><link href="https://wire.test/b"/></entry>
</feed>"""

RDF = b"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
 xmlns:dc="http://purl.org/dc/elements/1.1/">
 <channel rdf:about="https://rdf.test/"><title>RDF</title><link>https://rdf.test/</link>
  <description>d</description></channel>
 <item rdf:about="https://rdf.test/a"><title>RDF item</title><link>https://rdf.test/a</link>
  <dc:date>2022-02-15T08:00:00Z</dc:date><dc:creator>Ann Lee</dc:creator></item>
</rdf:RDF>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY secret SYSTEM "file:///etc/hostname">]>
<rss version="2.0"><channel><title>t</title>
<item><title>Leak &secret;</title><link>https://x.test/a</link></item></channel></rss>"""


def test_atom_entries_with_relative_links_dates_and_unique_ids():
    parsed = parse_feed(ATOM, base_url="https://wire.test/feeds/atom.xml")
    assert not parsed.ill_formed and parsed.title == "Wire"
    assert [e.entry_id for e in parsed.entries] == ["urn:uuid:1", "https://wire.test/b"]
    first = parsed.entries[0]
    assert first.link == "https://wire.test/world/talks.html"
    assert first.published == "2022-02-16T08:00:00+00:00"
    assert first.authors == ["Jane Roe"] and first.categories == ["World", "Politics"]
    assert first.summary == "Talks resumed on Wednesday."


def test_rdf_and_json_feed():
    (rdf_entry,) = parse_feed(RDF).entries
    assert (rdf_entry.title, rdf_entry.link, rdf_entry.published, rdf_entry.authors) == (
        "RDF item", "https://rdf.test/a", "2022-02-15T08:00:00+00:00", ["Ann Lee"])
    json_feed = json.dumps({"version": "https://jsonfeed.org/version/1", "items": [
        {"id": "7", "url": "https://j.test/7", "title": "Seven", "tags": ["Tech"],
         "date_published": "2022-02-16T10:00:00Z", "author": {"name": "Kim"}},
        {"id": "8"}, "not an item"]}).encode()
    entries = parse_feed(json_feed).entries
    assert [(e.entry_id, e.link, e.authors, e.categories) for e in entries] == [
        ("7", "https://j.test/7", ["Kim"], ["Tech"]), ("8", None, [], [])]
    assert parse_feed(b'{"items": []}').ill_formed


def test_external_entities_are_never_loaded():
    parsed = parse_feed(XXE)
    titles = " ".join(e.title or "" for e in parsed.entries)
    with open("/etc/hostname") as hostname:
        assert hostname.read().strip() not in titles


def test_garbage_is_flagged_not_raised():
    parsed = parse_feed(b"\x00\x01 this is no feed <<<")
    assert parsed.ill_formed and parsed.entries == []


def test_feed_entries_become_page_requests_carrying_their_metadata():
    (entry, _) = parse_feed(ATOM, "https://wire.test/").entries
    spec = FeedSpec("https://wire.test/atom.xml", publisher="Wire", topic="politics")
    request = page_request(spec, entry)
    document = request.payload
    assert request.url == document.url == "https://wire.test/world/talks.html"
    assert (document.published_at_kind, document.feed_url, document.feed_entry_id,
            document.feed_topic, document.publisher) == (
        "feed", "https://wire.test/atom.xml", "urn:uuid:1", "politics", "Wire")
    assert entry_key(spec.location, entry.entry_id) != entry_key("https://other.test/",
                                                                 entry.entry_id)


# --- Entries without a link ----------------------------------------------------------------------

# Modelled on the RSS 0.92 specification's example: items with a description and no title, link
# or guid; the description is escaped HTML.
RSS_092 = b"""<?xml version="1.0"?>
<rss version="0.92"><channel><title>Dave's Notes</title><link>http://notes.test/</link>
<description>Notes</description>
<item><description>It's been a big week in &lt;b&gt;Washington&lt;/b&gt;: the committee
 approved the &lt;a href="http://notes.test/bill"&gt;transport bill&lt;/a&gt; after a long
 night.&lt;p&gt;Its second paragraph.&lt;/p&gt;</description></item>
<item><description>Another note, with other words.</description></item>
<item><title>Short</title><description>Too short.</description>
 <guid isPermaLink="false">note-3</guid></item>
<item/>
</channel></rss>"""

# A Ghost-style feed: whole posts in content:encoded, guids that are not URLs, no links.
GHOST = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"
 xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>Harbour Blog</title>
<item><title>Ferry timetable changes</title><guid isPermaLink="false">6203a1</guid>
 <dc:creator>Ann Lee</dc:creator><category>Transport</category>
 <pubDate>Tue, 15 Feb 2022 08:00:00 GMT</pubDate>
 <description>The ferry runs later from March.</description>
 <content:encoded><![CDATA[<h2>New times</h2><p>The harbour ferry will run
 <strong>an hour later</strong> from March.</p><script>track()</script><p>First line<br>second
 line</p><ul><li>Weekdays</li><li>Weekends</li></ul>]]></content:encoded></item>
</channel></rss>"""

ATOM_CONTENT = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom posts</title>
 <entry><id>urn:uuid:a1</id><title>HTML content</title><updated>2022-02-16T09:00:00Z</updated>
  <content type="html">&lt;p&gt;Fish &amp;amp; chips&lt;/p&gt;&lt;p&gt;Two&lt;/p&gt;
  </content></entry>
 <entry><id>tag:atom.test,2022:a2</id><title>XHTML content</title>
  <content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>XHTML para</p></div>
  </content></entry>
 <entry><id>urn:uuid:a3</id><title>Text content</title>
  <content type="text">Plain &lt;not a tag&gt; text</content></entry>
 <entry><id>https://atom.test/a4</id><title>An http id is the link</title></entry>
</feed>"""


def test_html_text_keeps_paragraphs_and_drops_tags():
    assert html_text("<h2>Head</h2><p>One <b>bold</b> &amp;\n  more</p>tail<br>next"
                     "<script>x()</script><style>p{}</style><!-- note --><ul><li>a</li>"
                     "<li>b</li></ul>") == "Head\n\nOne bold & more\n\ntail\nnext\n\na\n\nb"
    assert html_text("plain words") == "plain words"
    assert html_text("   ") == html_text("") == ""


def test_rss_092_items_without_title_link_or_guid_are_kept():
    parsed = parse_feed(RSS_092)
    assert not parsed.ill_formed
    first, second, short, empty = parsed.entries
    assert all(e.link is None for e in parsed.entries)
    assert first.title is None
    assert first.text == ("It's been a big week in Washington: the committee approved the "
                          "transport bill after a long night.\n\nIts second paragraph.")
    assert "<" not in first.summary and "\n" not in first.summary
    # No guid: an id from what the item says, distinct per item and stable run to run.
    assert first.entry_id != second.entry_id
    assert first.entry_id == parse_feed(RSS_092).entries[0].entry_id
    assert (short.entry_id, short.text) == ("note-3", "Too short.")
    assert empty.text is None


def test_content_encoded_is_the_text_and_the_summary_the_description():
    (entry,) = parse_feed(GHOST).entries
    assert (entry.entry_id, entry.link, entry.title, entry.authors, entry.categories,
            entry.published) == ("6203a1", None, "Ferry timetable changes", ["Ann Lee"],
                                 ["Transport"], "2022-02-15T08:00:00+00:00")
    assert entry.text == ("New times\n\nThe harbour ferry will run an hour later from March."
                          "\n\nFirst line\nsecond line\n\nWeekdays\n\nWeekends")
    spec = FeedSpec("https://blog.test/rss", topic="economy-business-finance")
    document = entry_document(spec, entry)
    assert (document.source_uri, document.kind, document.content, document.url,
            document.title, document.description, document.publisher, document.published_at,
            document.published_at_kind, document.feed_url, document.feed_entry_id,
            document.feed_topic) == (
        "https://blog.test/rss#entry=6203a1", "text", entry.text, None,
        "Ferry timetable changes", "The ferry runs later from March.", "Harbour Blog",
        "2022-02-15T08:00:00+00:00", "feed", "https://blog.test/rss", "6203a1",
        "economy-business-finance")
    # The feeds file's publisher wins over the feed's title.
    assert entry_document(FeedSpec("f.xml", publisher="HB"), entry).publisher == "HB"


def test_atom_content_of_each_type_and_ids_that_are_not_links():
    html, xhtml, text, http_id = parse_feed(ATOM_CONTENT).entries
    assert (html.link, html.text) == (None, "Fish & chips\n\nTwo")
    assert (xhtml.link, xhtml.text) == (None, "XHTML para")
    assert (text.link, text.text) == (None, "Plain <not a tag> text")
    assert http_id.link == "https://atom.test/a4"
    # An entry without content: the summary, which feedparser fills from the content, is the
    # description only when it says something else.
    assert entry_document(FeedSpec("a.xml"), html).description is None


def test_json_feed_items_without_url_keep_their_content():
    body = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": [
        {"id": "1", "content_html": "<p>Hello <i>there</i></p><p>again</p>", "summary": "Hi"},
        {"id": "2", "content_text": "Plain <b> text"},
        {"content_text": "No id at all"}]}).encode()
    first, second, third = parse_feed(body).entries
    assert (first.link, first.text, first.summary) == (None, "Hello there\n\nagain", "Hi")
    assert second.text == "Plain <b> text"
    assert third.text == "No id at all" and third.entry_id


def test_entry_source_uris_name_the_feed_and_entry():
    assert entry_source_uri("https://a.test/rss", "tag:a.test,2022:7") == \
        "https://a.test/rss#entry=tag:a.test,2022:7"
    assert entry_source_uri("/feeds/a.xml", "an id with spaces#x") == \
        "/feeds/a.xml#entry=an%20id%20with%20spaces%23x"


def test_an_entry_that_raises_is_its_error_row_and_its_feed_is_not_marked_read(monkeypatch):
    real_html_text = feeds.html_text

    def html_text_or_fail(fragment):
        if "Cursed" in fragment:
            raise KeyError("no such key")
        return real_html_text(fragment)

    monkeypatch.setattr(feeds, "html_text", html_text_or_fail)
    cursed = GHOST.replace(b"</channel>", b"<item><guid isPermaLink='false'>c1</guid>"
                           b"<description>Cursed entry</description></item></channel>")
    fetched = [(FeedSpec("https://clean.test/rss"), GHOST, "https://clean.test/rss", ('"1"', None)),
               (FeedSpec("https://cursed.test/rss"), cursed, "https://cursed.test/rss",
                ('"2"', None))]
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        parsed = p | beam.Create(fetched) | beam.ParDo(ParseFeedFn(
            "run", dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), 5)).with_outputs(
            ERRORS, FEED_STATES, main=ENTRIES)
        assert_that(parsed[ENTRIES] | beam.Map(lambda pair: (pair[0].location, pair[1].entry_id)),
                    equal_to([("https://clean.test/rss", "6203a1"),
                              ("https://cursed.test/rss", "6203a1")]), label="entries")
        assert_that(parsed[ERRORS] | beam.Map(lambda e: (e.source_uri, e.reason, e.message)),
                    equal_to([("https://cursed.test/rss#entry=c1", "internal_error",
                               "KeyError: 'no such key'")]), label="errors")
        # Not marked as read: the next run reads it whole again, that entry included.
        assert_that(parsed[FEED_STATES] | beam.Map(lambda s: s.feed_url),
                    equal_to(["https://clean.test/rss"]), label="states")


def test_feeds_files_yaml_and_plain():
    yaml_text = """
feeds:
  - https://a.test/rss
  - url: https://b.test/atom.xml
    publisher: B News
    topic: sport
"""
    assert parse_feed_list(yaml_text, TOPIC_SLUGS) == [
        FeedSpec("https://a.test/rss"), FeedSpec("https://b.test/atom.xml", "B News", "sport")]
    plain = "# my feeds\nhttps://a.test/rss\n\n  local/feed.xml\n"
    assert parse_feed_list(plain, TOPIC_SLUGS) == [FeedSpec("https://a.test/rss"),
                                                   FeedSpec("local/feed.xml")]
    for bad, why in (("- url: https://a.test\n  topic: gossip\n", "not an IPTC slug"),
                     ("- url: https://a.test\n  colour: red\n", "unknown keys"),
                     ("- [1, 2]\n", "give a URL")):
        with pytest.raises(InvalidFeedList, match=why):
            parse_feed_list(bad, TOPIC_SLUGS)


# --- The robustness corpus -----------------------------------------------------------------------

needs_corpus = pytest.mark.skipif(not FEEDS.is_dir(), reason="no ../shared/data/feeds")


def _expected_bozo(path) -> bool | None:
    """What a feedparser test file's `Expect:` line says about bozo (ill-formed), if anything;
    None also for tests that need HTTP headers (`Header:` lines) newsbeam does not pass."""
    head = path.read_bytes()[:600].decode("utf-8", "replace")
    if "Header:" in head:
        return None
    for line in head.splitlines():
        if "Expect:" in line:
            expression = line.split("Expect:", 1)[1].strip()
            if expression.startswith("not bozo"):
                return False
            if expression.startswith("bozo"):
                return True
    return None


@needs_corpus
def test_every_corpus_feed_parses_and_ill_formed_ones_are_flagged():
    tests = sorted(p for p in (FEEDS / "feedparser-tests").rglob("*.xml"))
    assert len(tests) > 600
    flagged = []
    for path in tests:
        parsed = parse_feed(path.read_bytes(), base_url="https://feeds.test/")
        expected = _expected_bozo(path)
        if expected is not None:
            assert parsed.ill_formed is expected, path
            flagged.append(path)
        for entry in parsed.entries:
            assert entry.entry_id
            if entry.published is not None:
                assert dt.datetime.fromisoformat(entry.published).tzinfo is not None
    assert len([p for p in flagged if "illformed" in p.parts]) >= 13
    real = sorted((FEEDS / "real-world").glob("*/*.xml"))
    assert len(real) >= 139
    without_entries = [p for p in real if not parse_feed(p.read_bytes()).entries]
    assert len(without_entries) <= 0.05 * len(real), without_entries
    news = sorted((FEEDS / "real-world" / "news").glob("*.xml"))
    assert len(news) == 28
    for path in news:
        entries = parse_feed(path.read_bytes()).entries
        assert entries, path
        assert all(e.link and e.link.startswith("http") for e in entries), path
        assert sum(bool(e.title) for e in entries) >= 0.9 * len(entries), path
        assert sum(bool(e.published) for e in entries) >= 0.5 * len(entries), path


def _expected_pairs(expected: dict) -> list[tuple]:
    pairs = []
    for entry in expected["entries"]:
        published = entry.get("published") or entry.get("updated")
        when = parse_datetime(published) if published else None
        pairs.append((entry.get("title"), entry.get("link"), when))
    return pairs


@needs_corpus
@pytest.mark.parametrize("name", ["davidbau", "gamersnexus", "kagi", "pypy", "stackoverflow",
                                  "utf16_encoded", "osm", "postgis", "foolcontrol"])
def test_entries_match_the_expected_parse(name):
    folder = FEEDS / "real-world" / "integration_with_expected"
    expected = json.loads((folder / f"{name}.json").read_text())
    entries = parse_feed((folder / f"{name}.xml").read_bytes()).entries
    got = [(e.title, e.link, parse_datetime(e.published) if e.published else None)
           for e in entries]
    assert got == _expected_pairs(expected)


@needs_corpus
def test_the_json_feed_sample_matches_its_expected_parse():
    folder = FEEDS / "real-world" / "integration_with_expected"
    expected = json.loads((folder / "json_feed_sample.expected.json").read_text())
    entries = parse_feed((folder / "json_feed_sample.json").read_bytes()).entries
    got = [(e.title, e.link, parse_datetime(e.published) if e.published else None)
           for e in entries]
    assert got == _expected_pairs(expected)
    assert [e.authors for e in entries] == [
        [a["name"] for a in entry.get("authors", [])] for entry in expected["entries"]]
