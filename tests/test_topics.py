"""Unit tests for transforms/topics.py: section names and URL sections to IPTC topics."""

import copy
import datetime as dt

import pytest

from schemas.records import Article, TopicScore
from transforms.topics import (IPTC_TOPICS, SECTION_TOPICS, UNCLASSIFIED, assign_topic,
                               section_topic)


def make_article(**fields) -> Article:
    base = dict(article_id="a1", source_uri="seeds/x.txt", text="Some text.", word_count=2,
                content_hash="h", ingested_at=dt.datetime(2022, 2, 16, tzinfo=dt.timezone.utc),
                date_source="ingested", run_id="run-1")
    base.update(fields)
    return Article(**base)


# --- section_topic -------------------------------------------------------------------------------


@pytest.mark.parametrize("categories, expected", [
    (["Politics"], "politics"),
    (["US Politics"], "politics"),
    (["Arts & Culture"], "arts-culture-entertainment-media"),
    (["Arts and Culture"], "arts-culture-entertainment-media"),
    (["Science & Technology"], "science-technology"),
    (["SPORTS"], "sport"),
    (["Climate Change"], "environment"),
    (["COVID-19"], "health"),
    (["Business"], "economy-business-finance"),
])
def test_section_topic_from_categories(categories, expected):
    assert section_topic(categories, None) == expected


def test_first_category_that_maps_wins():
    assert section_topic(["Opinion", "Editor's picks", "Sports", "Politics"], None) == "sport"


def test_categories_beat_the_url():
    assert section_topic(["Health"], "https://example.com/sport/football/x") == "health"


@pytest.mark.parametrize("url, expected", [
    ("https://example.com/sport/football/cup-final", "sport"),
    ("https://example.com/news/world/business/oil-prices", "economy-business-finance"),
    ("https://example.com/Business/oil-prices", "economy-business-finance"),
    ("https://example.com/us-politics/2022/02/16/vote", "politics"),
    ("https://example.com/arts-and-culture/review", "arts-culture-entertainment-media"),
])
def test_section_topic_from_url(url, expected):
    assert section_topic([], url) == expected


def test_unmapped_categories_fall_back_to_url():
    assert section_topic(["Opinion"], "https://example.com/science/space-probe") == \
        "science-technology"


def test_only_leading_url_segments_are_sections():
    # A section name deep in the path (a slug, a tag) is not the outlet's section.
    assert section_topic([], "https://example.com/a/b/c/sport/x") is None


def test_domain_is_not_a_section():
    assert section_topic([], "https://sport.example.com/news/x") is None


@pytest.mark.parametrize("categories, url", [
    ([], None),
    (["Opinion", "Editorial"], None),
    ([], "https://example.com/news/2022/02/16/story"),
    ([""], ""),
    ([], "http://[broken"),
])
def test_section_topic_unknown_is_none(categories, url):
    assert section_topic(categories, url) is None


# --- assign_topic --------------------------------------------------------------------------------


def test_assign_topic_from_section():
    article = make_article(categories=["Politics"], url="https://example.com/news/x")
    result = assign_topic(article)
    assert result.topic == "politics"
    assert result.topic_source == "section"
    assert result.topic_confidence == 1.0
    assert result.topic_scores == [TopicScore(topic="politics", score=1.0)]
    # Everything else is carried over.
    assert result.article_id == article.article_id
    assert result.text == article.text
    assert result.categories == ["Politics"]


def test_assign_topic_unclassified():
    article = make_article(categories=["Opinion"], url="https://example.com/news/x",
                           topic="sport", topic_source="section", topic_confidence=1.0,
                           topic_scores=[TopicScore("sport", 1.0)])
    result = assign_topic(article)
    assert result.topic == UNCLASSIFIED
    assert result.topic_source is None
    assert result.topic_confidence is None
    assert result.topic_scores == []


def test_assign_topic_returns_new_article_and_leaves_input_alone():
    article = make_article(categories=["Sport"], url="https://example.com/sport/x")
    before = copy.deepcopy(article)
    result = assign_topic(article)
    assert result is not article
    assert article == before
    assert article.topic == UNCLASSIFIED and article.topic_scores == []
    assert result.topic == "sport"
    # Changing the result's scores does not reach the input either.
    result.topic_scores.append(TopicScore("weather", 0.1))
    assert article.topic_scores == []


def test_assign_topic_maps_known_sections_and_leaves_the_rest_unclassified():
    expected = {("Politics",): "politics", ("Opinion",): UNCLASSIFIED, (): UNCLASSIFIED,
                ("Opinion", "Sports"): "sport"}
    for categories, topic in expected.items():
        assert assign_topic(make_article(categories=list(categories))).topic == topic


# --- the tables ----------------------------------------------------------------------------------


def test_every_section_topic_is_an_iptc_topic():
    unknown = {section: topic for section, topic in SECTION_TOPICS.items()
               if topic not in IPTC_TOPICS}
    assert unknown == {}


def test_section_keys_are_in_lookup_form():
    # URL segments are looked up case-folded, categories through section_key: keys must be
    # lower case words joined by '-'.
    bad = [key for key in SECTION_TOPICS if key != key.casefold() or " " in key or "&" in key]
    assert bad == []


def test_iptc_topics_are_unique_and_exclude_unclassified():
    assert len(set(IPTC_TOPICS)) == len(IPTC_TOPICS)
    assert UNCLASSIFIED not in IPTC_TOPICS

