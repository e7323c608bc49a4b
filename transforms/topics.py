"""Topics: the IPTC Media Topics top level as slugs, and the topic that partitions the dataset.

Until a classifier lands (it has its own issue), an article's topic is its source's own section,
mapped to an IPTC slug by SECTION_TOPICS: first the categories the page or record gives, then
the sections in its URL path (/sport/, /business/...). Nothing recognised: `unclassified`.
"""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import urlsplit

import apache_beam as beam

from schemas.records import Article, TopicScore

UNCLASSIFIED = "unclassified"

IPTC_TOPICS = (
    "arts-culture-entertainment-media", "conflict-war-peace", "crime-law-justice",
    "disaster-accident-emergency", "economy-business-finance", "education", "environment",
    "health", "human-interest", "labour", "lifestyle-leisure", "politics", "religion",
    "science-technology", "society", "sport", "weather",
)
TOPIC_SLUGS = frozenset(IPTC_TOPICS + (UNCLASSIFIED,))

# Section names as outlets write them (lower case, words joined by '-') -> IPTC top-level slug.
SECTION_TOPICS = {
    **dict.fromkeys(["arts", "art", "culture", "entertainment", "media", "movies", "film", "films",
                     "music", "books", "theatre", "theater", "television", "tv", "celebrity",
                     "showbiz", "arts-and-culture", "kultur", "feuilleton"],
                    "arts-culture-entertainment-media"),
    **dict.fromkeys(["war", "conflict", "conflicts", "defence", "defense", "military",
                     "terrorism", "ukraine-war", "russia-ukraine-war"], "conflict-war-peace"),
    **dict.fromkeys(["crime", "crimes", "law", "justice", "courts", "court", "legal", "police"],
                    "crime-law-justice"),
    **dict.fromkeys(["disaster", "disasters", "accident", "accidents", "emergency"],
                    "disaster-accident-emergency"),
    **dict.fromkeys(["business", "economy", "economics", "finance", "markets", "money",
                     "companies", "industry", "wirtschaft", "finanzen", "business-news"],
                    "economy-business-finance"),
    **dict.fromkeys(["education", "schools", "universities", "bildung"], "education"),
    **dict.fromkeys(["environment", "climate", "climate-change", "energy-and-environment",
                     "umwelt", "klima"], "environment"),
    **dict.fromkeys(["health", "medicine", "wellness", "gesundheit", "coronavirus", "covid-19"],
                    "health"),
    **dict.fromkeys(["human-interest", "offbeat", "odd-news", "oddities", "good-news"],
                    "human-interest"),
    **dict.fromkeys(["labour", "labor", "jobs", "employment", "work", "careers"], "labour"),
    **dict.fromkeys(["lifestyle", "life", "travel", "food", "style", "fashion", "leisure",
                     "living", "home-and-garden", "reise", "leben"], "lifestyle-leisure"),
    **dict.fromkeys(["politics", "politik", "elections", "election", "government",
                     "us-politics", "uk-politics"], "politics"),
    **dict.fromkeys(["religion", "faith", "religion-and-belief"], "religion"),
    **dict.fromkeys(["science", "technology", "tech", "science-and-technology", "sci-tech",
                     "space", "digital", "wissenschaft", "technik"], "science-technology"),
    **dict.fromkeys(["society", "social-affairs", "community", "gesellschaft", "panorama"],
                    "society"),
    **dict.fromkeys(["sport", "sports", "football", "soccer", "cricket", "tennis", "golf",
                     "formula1", "f1", "nba", "nfl", "rugby", "olympics"], "sport"),
    **dict.fromkeys(["weather", "wetter"], "weather"),
}

_PATH_SEGMENTS_LOOKED_AT = 3


# --- Pure functions ------------------------------------------------------------------------------


def section_key(name: str) -> str:
    """A section name in the form SECTION_TOPICS is keyed by: 'Arts & Culture' -> 'arts-culture',
    'US Politics' -> 'us-politics'."""
    words = re.findall(r"\w+", name.casefold().replace("&", " and "))
    key = "-".join(words)
    return key


def topic_from_section(name: str) -> str | None:
    """The IPTC slug of one section name, or None."""
    key = section_key(name)
    if key in SECTION_TOPICS:
        return SECTION_TOPICS[key]
    # "Arts and Culture" is keyed with 'and'; "arts-culture" without: try both spellings.
    return SECTION_TOPICS.get(key.replace("-and-", "-"))


def section_topic(categories: list[str], url: str | None) -> str | None:
    """The source's own section as an IPTC slug: the first category that maps, else the first of
    the URL's leading path segments that maps, else None."""
    for category in categories:
        topic = topic_from_section(category)
        if topic:
            return topic
    if url:
        try:
            path = urlsplit(url).path
        except ValueError:
            return None
        for segment in [s for s in path.split("/") if s][:_PATH_SEGMENTS_LOOKED_AT]:
            topic = SECTION_TOPICS.get(segment.casefold())
            if topic:
                return topic
    return None


def assign_topic(article: Article) -> Article:
    """The article with its partition topic set from its source's section, or unclassified."""
    topic = section_topic(article.categories, article.url)
    if topic is None and article.feed_topic in TOPIC_SLUGS:
        # The feeds list's topic for the article's feed: a default, below its own section.
        return dataclasses.replace(article, topic=article.feed_topic, topic_source="feed",
                                   topic_confidence=1.0,
                                   topic_scores=[TopicScore(topic=article.feed_topic, score=1.0)])
    if topic is None:
        return dataclasses.replace(article, topic=UNCLASSIFIED, topic_source=None,
                                   topic_confidence=None, topic_scores=[])
    return dataclasses.replace(article, topic=topic, topic_source="section",
                               topic_confidence=1.0,
                               topic_scores=[TopicScore(topic=topic, score=1.0)])


# --- Composite -----------------------------------------------------------------------------------


class AssignTopics(beam.PTransform):
    """Articles -> Articles with `topic` (the partition key), its source and confidence."""

    def expand(self, articles):
        return articles | "SectionTopic" >> beam.Map(assign_topic)
