"""Paragraphs repeated across one publisher's pages in a run are the site's, not the article's
("Mit unserem Newsletter erhalten Sie ...", a standing author box, a related-links header): they
are dropped from each page's text.

The evidence is the run itself: pages are grouped by domain (all workers' pages of one domain
meet in one group), and a paragraph found on at least `min_pages` different pages of the domain
is boilerplate. A page most of whose text would go is left alone: it is a version of another
page (an update, a reprint under another URL), not a page wrapped in the site's furniture, and
the near-copy stage judges it. Only the text and its word count change: `article_id` and
`content_hash` stay those of the text as extracted, so that an article keeps its id whichever
pages came in the same run (a later run recognises it, and the article is never stored twice).
Each run judges its own pages: a domain with fewer than `min_pages` pages in a run keeps its
paragraphs that run.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter

import apache_beam as beam

from newsbeam.schemas.records import Article
from newsbeam.transforms.text import fingerprint_text, word_count

DEFAULT_MIN_PAGES = 3
# A page that would lose more than this share of its characters keeps them all.
_MOST_OF_THE_TEXT = 0.5


# --- Pure functions ------------------------------------------------------------------------------


def paragraph_key(paragraph: str) -> str:
    return hashlib.sha1(fingerprint_text(paragraph).encode("utf-8")).hexdigest()[:16]


def repeated_paragraphs(texts: list[str], min_pages: int) -> set[str]:
    """Keys of the paragraphs found on at least `min_pages` of `texts` (each text counted once,
    however often it holds the paragraph; identical texts counted once)."""
    pages = Counter()
    for text in set(texts):
        pages.update({paragraph_key(p) for p in text.split("\n\n") if p.strip()})
    return {key for key, count in pages.items() if count >= min_pages}


def without_repeated(text: str, repeated: set[str]) -> str:
    """`text` without its repeated paragraphs; unchanged when they are most of it."""
    paragraphs = text.split("\n\n")
    kept = [p for p in paragraphs if paragraph_key(p) not in repeated]
    if not kept or len(text) - len("\n\n".join(kept)) > _MOST_OF_THE_TEXT * len(text):
        return text
    return "\n\n".join(kept)


def clean_publisher_pages(articles: list[Article], min_pages: int) -> list[Article]:
    """The articles of one domain, each without the paragraphs repeated across them."""
    if len(articles) < min_pages:
        return articles
    repeated = repeated_paragraphs([a.text for a in articles], min_pages)
    if not repeated:
        return articles
    cleaned = []
    for article in articles:
        text = without_repeated(article.text, repeated)
        cleaned.append(article if text == article.text else dataclasses.replace(
            article, text=text, word_count=word_count(text)))
    return cleaned


# --- Composite -----------------------------------------------------------------------------------


class DropRepeatedParagraphs(beam.PTransform):
    """Articles -> the same articles, paragraphs repeated across `min_pages` pages of their
    domain dropped (0: off). Articles without a domain pass as they are."""

    def __init__(self, min_pages: int = DEFAULT_MIN_PAGES):
        super().__init__()
        self._min_pages = min_pages

    def expand(self, articles):
        if not self._min_pages:
            return articles
        min_pages = self._min_pages
        by_domain = articles | "ByDomain" >> beam.Partition(
            lambda article, _: 0 if article.domain else 1, 2)
        cleaned = (
            by_domain[0]
            | "KeyByDomain" >> beam.Map(lambda article: (article.domain, article))
            | "GroupByDomain" >> beam.GroupByKey()
            | "DropRepeated" >> beam.FlatMap(
                lambda item: clean_publisher_pages(list(item[1]), min_pages)))
        return (cleaned, by_domain[1]) | "AllArticles" >> beam.Flatten()
