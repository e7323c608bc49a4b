"""Same-story linking: terms, TF-IDF, blocking, the anti-chaining clustering, and LinkStories
(FnApiRunner) with and without earlier runs' stories."""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle
import random

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from newsbeam.schemas.records import Article, Entity
from tests.conftest import SEEDS
from newsbeam.transforms import stories
from newsbeam.transforms.stories import (STORIES, STORY_INDEX, LinkStories, StoryParams, StoryVector,
                                         candidate_pairs, cluster_component, cosine, story_term_counts,
                                         tfidf_vector)
from newsbeam.transforms.text import clean_plain_text

NOW = dt.datetime(2022, 2, 17, 12, tzinfo=dt.timezone.utc)
REUTERS = clean_plain_text((SEEDS / "000_dac305c5b36f0b2f.txt").read_text())
ANADOLU = clean_plain_text((SEEDS / "004_732ed2892add5ac6.txt").read_text())
FOOTBALL = ("Manchester United beat Liverpool two goals to one at Old Trafford on Sunday. Marcus "
            "Rashford scored twice in the second half before Mohamed Salah pulled a goal back "
            "for the visitors, whose title hopes suffered a heavy blow. The manager praised the "
            "striker's finishing and the defence, which held firm during a late Liverpool push.")
FOOTBALL_2 = ("Liverpool's title hopes took a blow at Old Trafford, where two second-half goals "
              "from Marcus Rashford gave Manchester United victory. Salah scored late for "
              "Liverpool but United's defence held on through a tense finish to the match.")


def article(article_id: str, text: str, hours: float = 0, **fields) -> Article:
    values = dict(article_id=article_id, source_uri=f"file:///{article_id}.txt", text=text,
                  word_count=len(text.split()), content_hash="h" + article_id,
                  ingested_at=NOW, date_source="ingested", run_id="run",
                  published_at=NOW + dt.timedelta(hours=hours))
    values.update(fields)
    return Article(**values)


def test_terms_drop_stopwords_fold_plurals_and_weigh_the_title():
    counts = story_term_counts("Troops withdraw", "The troops said they would withdraw.",
                               [Entity(text="Lloyd Austin", label="PERSON", count=2, start=0)])
    assert counts["troop"] == 3 and counts["withdraw"] == 3
    assert "the" not in counts and "said" not in counts
    assert counts["@lloyd"] == 2 and counts["@austin"] == 2     # apart, once per mention
    assert "lloyd" not in counts
    numeric = story_term_counts(None, "x", [Entity(text="Three", label="CARDINAL", count=1,
                                                   start=0)])
    assert not [term for term in numeric if term.startswith("@")]


def test_the_cosine_mixes_words_and_entities_only_when_both_articles_have_entities():
    df = {"ceasefire": 3, "talk": 5, "@blinken": 2, "@kyiv": 2}
    a = tfidf_vector({"ceasefire": 2, "talk": 1, "@blinken": 3}, df, 100, entity_share=0.5)
    b = tfidf_vector({"ceasefire": 1, "talk": 2, "@blinken": 1, "@kyiv": 2}, df, 100,
                     entity_share=0.5)
    a_words = tfidf_vector({"ceasefire": 2, "talk": 1}, df, 100)
    b_words = tfidf_vector({"ceasefire": 1, "talk": 2}, df, 100)
    a_names = tfidf_vector({"@blinken": 3}, df, 100)
    b_names = tfidf_vector({"@blinken": 1, "@kyiv": 2}, df, 100)
    assert abs(cosine(a, b) - (0.5 * cosine(a_words, b_words)
                               + 0.5 * cosine(a_names, b_names))) < 1e-9
    # Without entities on one side, it is the word cosine scaled by the other's word share.
    assert abs(cosine(a_words, b) - 0.5 ** 0.5 * cosine(a_words, b_words)) < 1e-9
    assert abs(sum(w * w for w in a_words.values()) - 1) < 1e-9


def test_tfidf_weighs_rare_terms_more_and_cosine_is_symmetric():
    df = {"russia": 50, "blinken": 2}
    vector = tfidf_vector({"russia": 1, "blinken": 1}, df, 100)
    assert vector["blinken"] > vector["russia"]
    assert abs(sum(w * w for w in vector.values()) - 1) < 1e-9
    other = tfidf_vector({"blinken": 2, "moscow": 1}, df, 100)
    assert cosine(vector, other) == cosine(other, vector) > 0


def test_candidate_pairs_respect_the_window_and_skip_two_old_stories():
    window = dt.timedelta(hours=72)
    members = [("a", NOW, False, True), ("b", NOW + dt.timedelta(hours=71), False, True),
               ("c", NOW + dt.timedelta(hours=200), False, True), ("x", NOW, True, True),
               ("y", NOW, True, True)]
    assert candidate_pairs(members, window, 200) == [("a", "b"), ("a", "x"), ("a", "y"),
                                                     ("b", "x"), ("b", "y")]
    assert candidate_pairs(members, window, 3) == []


def test_an_undated_article_is_a_candidate_whatever_the_others_time():
    # Ingested years after the others, with no date of its own: its time says nothing.
    window = dt.timedelta(hours=72)
    members = [("a", NOW, False, True), ("c", NOW + dt.timedelta(hours=200), False, True),
               ("u", NOW + dt.timedelta(days=900), False, False),
               ("v", NOW + dt.timedelta(days=900), False, False), ("x", NOW, True, True)]
    assert candidate_pairs(members, window, 200) == [("a", "u"), ("a", "v"), ("a", "x"),
                                                     ("c", "u"), ("c", "v"), ("u", "v"),
                                                     ("u", "x"), ("v", "x")]


def test_blocking_puts_undated_articles_with_dated_ones_sharing_their_terms():
    def keyed(article_id, salient, dated):
        doc = stories.StoryDoc(article_id, NOW, (), dated=dated)
        return stories.StoryVector(doc, (), tuple(salient))
    bucket = stories.time_bucket(NOW, 72)
    undated = list(stories.blocking_keys("u", keyed("u", ["flood", "dam"], False), 72))
    assert [key for key, _ in undated] == [("flood", stories.UNDATED_BUCKET),
                                           ("dam", stories.UNDATED_BUCKET)]
    dated = list(stories.blocking_keys("d", keyed("d", ["flood", "rain"], True), 72,
                                       frozenset({"flood", "dam"})))
    assert [key for key, _ in dated] == [("flood", bucket), ("flood", bucket + 1),
                                         ("flood", stories.UNDATED_BUCKET),
                                         ("rain", bucket), ("rain", bucket + 1)]


def test_one_site_s_two_articles_are_discounted_by_the_same_source_factor():
    a = tfidf_vector({"detroit": 2, "police": 1, "shooting": 1}, {}, 10)
    b = tfidf_vector({"detroit": 2, "police": 1, "missing": 1}, {}, 10)
    plain = cosine(a, b)
    assert stories.similarity(a, b, "wdiv.com", "wdiv.com", 0.5) == 0.5 * plain
    assert stories.similarity(a, b, "wdiv.com", "freep.com", 0.5) == plain
    assert stories.similarity(a, b, None, None, 0.5) == plain


def vector(article_id: str, terms: dict, hours: float = 0, story=None,
           dated: bool = True) -> StoryVector:
    doc = stories.StoryDoc(article_id, NOW + dt.timedelta(hours=hours),
                           tuple(sorted(terms.items())), story=story, dated=dated)
    return StoryVector(doc, tuple(sorted(tfidf_vector(terms, {}, 10).items())), ())


def test_clustering_compares_with_the_lead_so_a_generic_article_does_not_chain():
    params = StoryParams(link_threshold=0.4)
    election = vector("a", {"election": 3, "ballot": 2, "vote": 2})
    generic = vector("b", {"election": 2, "ballot": 1, "storm": 1, "flood": 2}, hours=1)
    storm = vector("c", {"storm": 3, "flood": 3, "rain": 2}, hours=2)
    assert cosine(generic.as_dict(), storm.as_dict()) >= 0.4      # a chain would form
    clusters = cluster_component([storm, generic, election], params)
    assert [[m.doc.article_id for m in c.members] for c in clusters] == [["a", "b"], ["c"]]


def scan_every_lead(members: list[StoryVector], params: StoryParams) -> list[list[str]]:
    """The clustering rule stated plainly: each new article, in time order, against every
    story's lead."""
    window = dt.timedelta(hours=params.window_hours)
    ordered = sorted(members, key=lambda m: (m.doc.moment, m.doc.article_id))
    clusters = [(m, []) for m in ordered if m.doc.story]
    for member in (m for m in ordered if not m.doc.story):
        best, best_similarity = None, params.link_threshold
        for cluster in clusters:
            if (not (member.doc.dated and cluster[0].doc.dated)
                    or abs(member.doc.moment - cluster[0].doc.moment) <= window):
                similarity = cosine(member.as_dict(), cluster[0].as_dict())
                if similarity >= best_similarity:
                    best, best_similarity = cluster, similarity
        if best is None:
            clusters.append((member, [member]))
        else:
            best[1].append(member)
    return [[m.doc.article_id for m in members] for _, members in clusters if members]


def test_clustering_looks_only_at_leads_within_the_window_with_the_same_result():
    rng = random.Random(3)
    words = ["flood", "storm", "vote", "ballot", "court", "judge", "match", "goal", "oil", "gas"]
    earlier_story = stories.StoryIndexEntry(
        story_id="st-earlier", lead_article_id="old", lead_published_at=NOW,
        member_count=3, first_published=NOW, last_published=NOW, updated_at=NOW, run_id="r0")
    members = [vector(f"a{i:03d}", {w: rng.randint(1, 3) for w in rng.sample(words, 3)},
                      hours=rng.choice([0, 0, 24, 71, 72, 73, 200, 400, 400.5]))
               for i in range(300)]
    members.append(vector("old", {"flood": 2, "storm": 1}, hours=72, story=earlier_story))
    # Undated articles (their hours are ingestion times) meet every lead, and every article
    # meets them.
    members += [vector(f"u{i}", {w: rng.randint(1, 3) for w in rng.sample(words, 3)},
                       hours=rng.choice([0, 300, 5000]), dated=False) for i in range(20)]
    # A tie: "both" is as close to an earlier run's story led at 10 h as to a new one led at 0 h.
    members += [vector("tie-old", {"xylophone": 1}, hours=10, story=dataclasses.replace(
                    earlier_story, story_id="st-tie", lead_article_id="tie-old")),
                vector("tie-new", {"zither": 1}, hours=0),
                vector("both", {"xylophone": 1, "zither": 1}, hours=5)]
    params = StoryParams(link_threshold=0.3)
    clusters = cluster_component(members, params)
    assert [[m.doc.article_id for m in c.members] for c in clusters] == \
        scan_every_lead(members, params)
    assert len(clusters) > 10 and any(c.story_id == "st-earlier" for c in clusters)
    assert any(c.lead.doc.dated and any(not m.doc.dated for m in c.members)
               and any(abs(m.doc.moment - c.lead.doc.moment) > dt.timedelta(hours=72)
                       for m in c.members) for c in clusters)


def test_seeds_and_football_pair_up_in_the_composite():
    articles = [article("reuters", REUTERS, title=None), article("anadolu", ANADOLU, hours=5),
                article("football", FOOTBALL, hours=1), article("football2", FOOTBALL_2, hours=3),
                article("later", REUTERS.replace("Ukraine", "Kyiv"), hours=24 * 10)]
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        linked = (p | beam.Create(articles)
                  | LinkStories(p | "NoIndex" >> beam.Create([]), "run", NOW))
        assert_that(linked["articles"] | beam.Map(
            lambda a: (a.article_id, a.story_id == stories.story_id_for(
                {"anadolu": "reuters", "football2": "football"}.get(a.article_id, a.article_id)),
                a.is_story_lead)),
            equal_to([("reuters", True, True), ("anadolu", True, False),
                      ("football", True, True), ("football2", True, False),
                      ("later", True, True)]))
        assert_that(linked[STORIES] | beam.Map(lambda s: (s.lead_article_id, s.member_count)),
                    equal_to([("reuters", 2), ("football", 2), ("later", 1)]), label="stories")


def test_an_undated_article_joins_the_dated_story_it_tells_in_the_composite():
    # Anadolu's copy has no date and is ingested 900 days after Reuters' dated one: the
    # ingestion time does not keep them apart (it did: the window compared it as a date).
    articles = [article("reuters", REUTERS),
                article("anadolu", ANADOLU, published_at=None,
                        ingested_at=NOW + dt.timedelta(days=900)),
                article("football", FOOTBALL, hours=1)]
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        linked = (p | beam.Create(articles)
                  | LinkStories(p | "NoIndex" >> beam.Create([]), "run", NOW))
        assert_that(linked["articles"] | beam.Map(lambda a: (a.article_id, a.story_id)),
                    equal_to([("reuters", stories.story_id_for("reuters")),
                              ("anadolu", stories.story_id_for("reuters")),
                              ("football", stories.story_id_for("football"))]))


def test_a_later_run_joins_an_earlier_story_and_counts_on(tmp_path):
    saved = tmp_path / "index.pickle"
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        linked = (p | beam.Create([article("reuters", REUTERS), article("football", FOOTBALL)])
                  | LinkStories(p | "NoIndex" >> beam.Create([]), "run0", NOW))
        (linked[STORY_INDEX] | beam.Map(dataclasses.asdict) | beam.combiners.ToList()
         | beam.Map(lambda rows: saved.write_bytes(pickle.dumps(rows))))
    first = {row["lead_article_id"]: row for row in pickle.loads(saved.read_bytes())}
    assert set(first) == {"reuters", "football"}
    later = NOW + dt.timedelta(hours=6)
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        linked = (p | beam.Create([article("anadolu", ANADOLU, hours=6)])
                  | LinkStories(p | "Index" >> beam.Create(list(first.values())), "run1", later))
        assert_that(linked["articles"] | beam.Map(lambda a: (a.story_id, a.is_story_lead)),
                    equal_to([(first["reuters"]["story_id"], False)]))
        assert_that(linked[STORIES] | beam.Map(lambda s: (s.story_id, s.member_count,
                                                          s.updated_at == later)),
                    equal_to([(first["reuters"]["story_id"], 2, True)]), label="stories")


def test_a_link_threshold_above_one_is_refused_before_the_run(tmp_path):
    from newsbeam.pipelines.options import NewsOptions
    problems = NewsOptions(["--story_link_threshold", "1.5", "--output",
                            str(tmp_path)]).validate_news()
    assert problems == ["--story_link_threshold 1.5: use a cosine above 0, at most 1"]


def test_the_shipped_background_is_found_by_name_not_by_the_launcher_path():
    # A graph carries the name; each worker resolves it against its own installed package.
    from newsbeam.transforms.stories import SHIPPED_BACKGROUND, load_background
    frequencies, documents = load_background(SHIPPED_BACKGROUND)
    assert documents > 1000 and frequencies
    assert load_background(None) == ({}, 0)


def test_a_same_site_factor_above_one_is_refused_before_the_run(tmp_path):
    from newsbeam.pipelines.options import NewsOptions
    problems = NewsOptions(["--story_same_site_factor", "1.5", "--output",
                            str(tmp_path)]).validate_news()
    assert problems == ["--story_same_site_factor 1.5: use a factor above 0, at most 1"]
    assert NewsOptions(["--output", str(tmp_path)]).story_same_site_factor == \
        StoryParams().same_source_factor
