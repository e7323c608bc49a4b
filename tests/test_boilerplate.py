"""Paragraphs repeated across one publisher's pages in a run: dropped from each page's text, in
a real Beam pipeline; ids unchanged; a refused flag value."""

from __future__ import annotations

import datetime as dt

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from newsbeam.pipelines.cli import main
from newsbeam.schemas.records import Article
from newsbeam.transforms.boilerplate import (DropRepeatedParagraphs, clean_publisher_pages,
                                             repeated_paragraphs, without_repeated)

NEWSLETTER = "Mit unserem Newsletter erhalten Sie monatlich Informationen rund um das Land."
RELATED = "Das könnte Sie auch interessieren:"
STORIES = [
    "Der Gemeinderat hat am Dienstag den Haushalt für das kommende Jahr beschlossen.",
    "Die Feuerwehr rückte in der Nacht zu einem Brand in der Altstadt aus.",
    "Der Verein feiert am Wochenende sein hundertjähriges Bestehen mit einem Fest.",
    "Die neue Buslinie verbindet ab Montag den Bahnhof mit dem Krankenhaus.",
]


def _article(number: int, text: str, domain: str | None = "zeitung.example") -> Article:
    return Article(article_id=f"a{number}", source_uri=f"{number}.html", text=text,
                   word_count=len(text.split()), content_hash=f"h{number}",
                   ingested_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
                   date_source="ingested", run_id="run", domain=domain)


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


def test_drop_repeated_paragraphs_in_a_pipeline():
    articles = [_article(i, _page(s)) for i, s in enumerate(STORIES)] + [
        _article(10, _page(STORIES[0]), domain="other.example"),
        _article(11, _page(STORIES[1]), domain=None)]
    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        out = (pipeline | beam.Create(articles) | DropRepeatedParagraphs(3)
               | beam.Map(lambda a: (a.article_id, NEWSLETTER in a.text)))
        # The other domain's page and the page without a domain keep their text.
        assert_that(out, equal_to([("a0", False), ("a1", False), ("a2", False), ("a3", False),
                                   ("a10", True), ("a11", True)]))


def test_one_page_is_refused(capsys, tmp_path):
    # argparse refuses the value itself: exit 2 before anything runs, nothing written.
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--input", str(tmp_path), "--output", str(tmp_path / "out"),
              "--boilerplate_min_pages", "1"])
    assert exit_.value.code == 2
    assert "--boilerplate_min_pages" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
