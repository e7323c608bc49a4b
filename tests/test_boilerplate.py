"""Paragraphs repeated across one publisher's pages, in one run or across runs: dropped from each
page's text, in a real Beam pipeline and in real runs into one dataset; ids unchanged; the index
of paragraphs bounded; a refused flag value."""

from __future__ import annotations

import datetime as dt

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from newsbeam.pipelines.cli import main
from newsbeam.schemas.records import Article
from newsbeam.transforms import boilerplate
from newsbeam.transforms.boilerplate import (PARAGRAPH_INDEX, DropRepeatedParagraphs,
                                             clean_publisher_pages, merge_sightings,
                                             new_index_entries, pages_by_paragraph,
                                             paragraph_key, repeated_paragraphs, without_repeated)
from tests.conftest import read_dataset, run_cli

NEWSLETTER = "Mit unserem Newsletter erhalten Sie monatlich Informationen rund um das Land."
RELATED = "Das könnte Sie auch interessieren:"
STORIES = [
    "Der Gemeinderat hat am Dienstag den Haushalt für das kommende Jahr beschlossen.",
    "Die Feuerwehr rückte in der Nacht zu einem Brand in der Altstadt aus.",
    "Der Verein feiert am Wochenende sein hundertjähriges Bestehen mit einem Fest.",
    "Die neue Buslinie verbindet ab Montag den Bahnhof mit dem Krankenhaus.",
]


SEEN_AT = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _article(number: int, text: str, domain: str | None = "zeitung.example",
             url: str | None = None) -> Article:
    return Article(article_id=f"a{number}", source_uri=f"{number}.html", text=text,
                   word_count=len(text.split()), content_hash=f"h{number}",
                   ingested_at=SEEN_AT, date_source="ingested", run_id="run", domain=domain,
                   canonical_url=url)


def _page(story: str) -> str:
    return "\n\n".join([story, "Ein zweiter Absatz, nur auf dieser Seite: " + story[:30],
                        NEWSLETTER, RELATED])


def test_repeated_paragraphs_count_pages_not_occurrences():
    texts = [_page(s) for s in STORIES[:3]]
    assert len(repeated_paragraphs(texts, 3)) == 2
    # Three copies of one text are one page.
    assert repeated_paragraphs([texts[0]] * 3, 3) == set()
    assert repeated_paragraphs(texts, 4) == set()


def test_a_page_that_would_lose_most_of_its_text_keeps_it():
    text = "\n\n".join([NEWSLETTER, RELATED, "Kurz."])
    repeated = repeated_paragraphs([text, text + "\n\nA", text + "\n\nB"], 3)
    assert without_repeated(text, repeated) == text


def test_clean_publisher_pages_keeps_ids_and_recounts_words():
    articles = [_article(i, _page(s)) for i, s in enumerate(STORIES)]
    cleaned = clean_publisher_pages(articles, 3)
    for before, after in zip(articles, cleaned):
        assert NEWSLETTER not in after.text and RELATED not in after.text
        assert after.text.startswith(before.text.split("\n\n")[0])
        assert (after.article_id, after.content_hash) == (before.article_id, before.content_hash)
        assert after.word_count < before.word_count
    # Fewer pages than min_pages: nothing is judged.
    assert clean_publisher_pages(articles[:2], 3) == articles[:2]


def test_pages_of_earlier_runs_count_and_one_page_counts_once():
    ours = [_article(i, _page(s), url=f"https://zeitung.example/{i}") for i, s in
            enumerate(STORIES[:1])]
    key = paragraph_key(NEWSLETTER)
    # Seen on two other pages in earlier runs: with this run's page, three.
    cleaned = clean_publisher_pages(ours, 3, {key: {"p1", "p2"}})
    assert NEWSLETTER not in cleaned[0].text and RELATED in cleaned[0].text
    # Seen before only on this very page (an earlier fetch of its URL): still one page.
    this_page = boilerplate.page_key(ours[0])
    assert clean_publisher_pages(ours, 3, {key: {this_page, "p1"}}) == ours


def test_index_entries_hold_new_sightings_only_and_are_capped(monkeypatch):
    seen = pages_by_paragraph({"p1": _page(STORIES[0]), "p2": _page(STORIES[1])})
    key = paragraph_key(NEWSLETTER)
    entries = new_index_entries("zeitung.example", seen, {key: {"p1", "p9"}}, "run", SEEN_AT)
    by_key = {e.paragraph_key: e for e in entries}
    assert by_key[key].pages == ["p2"]          # p1 was recorded already
    assert entries[0].paragraph_key == key      # on most pages: first, kept under a cap
    monkeypatch.setattr(boilerplate, "MAX_KNOWN_PARAGRAPHS", 2)
    capped = new_index_entries("zeitung.example", seen, {key: {"p1", "p9"}}, "run", SEEN_AT)
    assert len(capped) == 2 and capped[0].paragraph_key == key
    # Merged sightings keep at most MAX_PAGES_KEPT pages, whatever order they come in.
    many = [((f"p{i}",), SEEN_AT + dt.timedelta(minutes=i)) for i in range(40)]
    pages, latest = merge_sightings(many)
    assert len(pages) == boilerplate.MAX_PAGES_KEPT and latest == many[-1][1]
    assert merge_sightings(reversed(many)) == (pages, latest)


def test_drop_repeated_paragraphs_in_a_pipeline():
    articles = [_article(i, _page(s)) for i, s in enumerate(STORIES)] + [
        _article(10, _page(STORIES[0]), domain="other.example"),
        _article(11, _page(STORIES[1]), domain=None)]
    # An earlier run saw the related-links header on two pages of other.example.
    index_rows = [{"domain": "other.example", "paragraph_key": paragraph_key(RELATED),
                   "pages": [page], "run_id": "earlier", "seen_at": SEEN_AT}
                  for page in ("o1", "o2")]
    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        out = (pipeline | beam.Create(articles)
               | DropRepeatedParagraphs(3, pipeline | "Index" >> beam.Create(index_rows)))
        texts = out["articles"] | beam.Map(
            lambda a: (a.article_id, NEWSLETTER in a.text, RELATED in a.text))
        # The other domain's page loses the header its earlier pages had, not the newsletter
        # prompt; the page without a domain keeps its text.
        assert_that(texts, equal_to([
            ("a0", False, False), ("a1", False, False), ("a2", False, False),
            ("a3", False, False), ("a10", True, False), ("a11", True, True)]))
        recorded = out[PARAGRAPH_INDEX] | beam.Map(lambda e: (e.domain, e.paragraph_key))
        assert_that(recorded | "Newsletter" >> beam.Filter(
            lambda r: r[1] == paragraph_key(NEWSLETTER)), equal_to([
                ("zeitung.example", paragraph_key(NEWSLETTER)),
                ("other.example", paragraph_key(NEWSLETTER))]), label="Recorded")


_SITE_HTML = """<html><head><title>{title}</title>
<link rel="canonical" href="https://zeitung.example/{name}"></head><body><article>
<h1>{title}</h1><p>{story}</p><p>{more}</p><p>{footer}</p></article></body></html>"""
FOOTER = ("Unsere Redaktion freut sich über Hinweise aus der Leserschaft an die Adresse "
          "hinweise@zeitung.example, montags bis freitags von acht bis achtzehn Uhr.")
_BODIES = [
    ("rat", "Der Gemeinderat hat am Dienstagabend nach langer Debatte den Haushalt für das "
            "kommende Jahr beschlossen, mit deutlich mehr Geld für Schulen und Radwege."),
    ("brand", "Die Feuerwehr rückte in der Nacht zu Mittwoch zu einem Brand in einer "
              "Lagerhalle am Stadtrand aus; verletzt wurde nach ersten Angaben niemand."),
    ("fest", "Der Sportverein feiert am Wochenende sein hundertjähriges Bestehen mit einem "
             "großen Fest auf dem Marktplatz, mit Musik, Spielen und einem Umzug."),
]


def _write_site_page(folder, name: str, story: str):
    folder.mkdir(parents=True, exist_ok=True)
    more = ("Wie die Stadtverwaltung am Donnerstag mitteilte, sollen die Einzelheiten in den "
            f"kommenden Wochen veröffentlicht werden ({name}).")
    (folder / f"{name}.html").write_text(_SITE_HTML.format(
        title=f"Meldung {name}", name=name, story=story, more=more, footer=FOOTER))


def test_a_footer_seen_in_earlier_runs_is_dropped_in_a_later_one(capsys, tmp_path):
    """Real runs into one dataset, one page of the site each: the footer is on its third page
    in the third run, and dropped there (and only there: each earlier run had too few pages)."""
    output = tmp_path / "output"
    for run, (name, story) in enumerate(_BODIES):
        _write_site_page(tmp_path / f"in{run}", name, story)
        status, _ = run_cli(capsys, "run", "--input", str(tmp_path / f"in{run}"),
                            "--output", str(output), "--progress_interval_s", "0")
        assert status == 0
    rows = {r["canonical_url"].rsplit("/", 1)[1]: r
            for r in read_dataset(output / "articles").to_pylist()}
    assert set(rows) == {"rat", "brand", "fest"}
    assert FOOTER in rows["rat"]["text"] and FOOTER in rows["brand"]["text"]
    assert FOOTER not in rows["fest"]["text"] and _BODIES[2][1] in rows["fest"]["text"]
    index = read_dataset(output / "index" / "paragraphs").to_pylist()
    footer = [r for r in index if r["paragraph_key"] == paragraph_key(FOOTER)]
    assert len(footer) == 3 and len({r["run_id"] for r in footer}) == 3
    assert {r["domain"] for r in index} == {"zeitung.example"}


def test_off_records_nothing(capsys, tmp_path):
    _write_site_page(tmp_path / "in", *_BODIES[0])
    status, _ = run_cli(capsys, "run", "--input", str(tmp_path / "in"), "--output",
                        str(tmp_path / "output"), "--boilerplate_min_pages", "0",
                        "--progress_interval_s", "0")
    assert status == 0
    assert not list((tmp_path / "output" / "index" / "paragraphs").glob("*.parquet"))


def test_one_page_is_refused(capsys, tmp_path):
    # argparse refuses the value itself: exit 2 before anything runs, nothing written.
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--input", str(tmp_path), "--output", str(tmp_path / "out"),
              "--boilerplate_min_pages", "1"])
    assert exit_.value.code == 2
    assert "--boilerplate_min_pages" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
