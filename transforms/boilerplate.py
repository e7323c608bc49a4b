"""Paragraphs repeated across one publisher's pages are the site's, not the article's ("Mit
unserem Newsletter erhalten Sie ...", a standing author box, a related-links header): they are
dropped from each page's text, whether the pages came in one run or in many.

The evidence is what the dataset has seen of the domain: the pages of this run (all workers'
pages of one domain meet in one group) and the paragraphs earlier runs recorded in
index/paragraphs (one row per domain, paragraph and run, with the pages it was newly seen on).
A paragraph found on at least `min_pages` different pages of the domain is boilerplate. A page is
its canonical URL (else its URL, else its text): a page re-fetched or updated under its URL is
one page, however many runs see it. The index is bounded: rows older than --index_max_age_days
are not read, and a domain's earlier paragraphs are read up to MAX_KNOWN_PARAGRAPHS (those seen on
most pages, then the most recent), a run records up to that many per domain. Its rows are written
with the run's other index rows and committed with it (transforms/dataset.py), so a run that dies
leaves none.

A page most of whose text would go is left alone: it is a version of another page (an update, a
reprint under another URL), not a page wrapped in the site's furniture, and the near-copy stage
judges it. Only the text and its word count change: `article_id` and `content_hash` stay those
of the text as extracted, so that an article keeps its id whatever the index held when it came
(a later run recognises it, and the article is never stored twice).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections import defaultdict

import apache_beam as beam

from newsbeam.schemas.records import Article, ParagraphIndexEntry
from newsbeam.transforms import metrics
from newsbeam.transforms.text import fingerprint_text, word_count

DEFAULT_MIN_PAGES = 3
# A page that would lose more than this share of its characters keeps them all.
_MOST_OF_THE_TEXT = 0.5
# The earlier paragraphs of one domain a run reads, and the paragraphs it records per domain: a
# site's furniture is a few dozen paragraphs; the rest are candidates (each article's own
# paragraphs, seen once) of which the most recent are kept.
MAX_KNOWN_PARAGRAPHS = 5000
# Pages kept per paragraph and row: more than any useful `min_pages`.
MAX_PAGES_KEPT = 16

PARAGRAPH_INDEX = "paragraph_index"  # tag: the ParagraphIndexEntry rows of the run

DROPPED_PARAGRAPHS = f"{metrics.STAGE_DEDUP}_boilerplate_paragraphs_dropped"
CLEANED_ARTICLES = f"{metrics.STAGE_DEDUP}_boilerplate_articles_cleaned"


# --- Pure functions ------------------------------------------------------------------------------


def paragraph_key(paragraph: str) -> str:
    return hashlib.sha1(fingerprint_text(paragraph).encode("utf-8")).hexdigest()[:16]


def paragraphs_of(text: str) -> list[str]:
    return [p for p in text.split("\n\n") if p.strip()]


def page_key(article: Article) -> str:
    """One page of a site, whichever run fetched it and however its text changed since."""
    address = article.canonical_url or article.url or article.content_hash
    return hashlib.sha1(address.encode("utf-8")).hexdigest()[:16]


def pages_by_paragraph(pages: dict[str, str]) -> dict[str, set[str]]:
    """{paragraph key: the page keys of `pages` ({page key: text}) that hold it}; identical
    texts under several pages count as one page (a reprint is not the site's furniture)."""
    seen: dict[str, set[str]] = defaultdict(set)
    by_text = {}
    for page, text in pages.items():
        by_text.setdefault(text, page)
    for text, page in by_text.items():
        for paragraph in paragraphs_of(text):
            seen[paragraph_key(paragraph)].add(page)
    return seen


def repeated_paragraphs(texts: list[str], min_pages: int,
                        known: dict[str, set[str]] | None = None) -> set[str]:
    """Keys of the paragraphs found on at least `min_pages` pages: `texts` (each counted once,
    however often it holds the paragraph; identical texts counted once) and the pages `known`
    from earlier runs ({key: page keys})."""
    seen = pages_by_paragraph({f"text{i}": text for i, text in enumerate(texts)})
    return repeated_keys(seen, known or {}, min_pages)


def repeated_keys(seen: dict[str, set[str]], known: dict[str, set[str]],
                  min_pages: int) -> set[str]:
    keys = set(seen) | set(known)
    return {key for key in keys
            if len(seen.get(key, set()) | known.get(key, set())) >= min_pages}


def without_repeated(text: str, repeated: set[str]) -> str:
    """`text` without its repeated paragraphs; unchanged when they are most of it."""
    paragraphs = text.split("\n\n")
    kept = [p for p in paragraphs if paragraph_key(p) not in repeated]
    if not kept or len(text) - len("\n\n".join(kept)) > _MOST_OF_THE_TEXT * len(text):
        return text
    return "\n\n".join(kept)


def merge_sightings(sightings) -> tuple[tuple[str, ...], dt.datetime]:
    """One (pages, latest seen_at) of several of a paragraph's (pages, seen_at), at most
    MAX_PAGES_KEPT pages (the same ones whatever the order they come in)."""
    sightings = list(sightings)
    pages = sorted({page for pages, _ in sightings for page in pages})[:MAX_PAGES_KEPT]
    return tuple(pages), max(seen_at for _, seen_at in sightings)


def new_index_entries(domain: str, seen: dict[str, set[str]], known: dict[str, set[str]],
                      run_id: str, seen_at: dt.datetime) -> list[ParagraphIndexEntry]:
    """The rows this run adds for one domain: each paragraph with the pages it was newly seen
    on; at most MAX_KNOWN_PARAGRAPHS, those on most pages first."""
    entries = []
    for key, pages in seen.items():
        new = sorted(pages - known.get(key, set()))
        if new:
            total = len(pages | known.get(key, set()))
            entries.append((total, key, new[:MAX_PAGES_KEPT]))
    entries.sort(key=lambda e: (-e[0], e[1]))
    return [ParagraphIndexEntry(domain=domain, paragraph_key=key, pages=pages, run_id=run_id,
                                seen_at=seen_at)
            for _, key, pages in entries[:MAX_KNOWN_PARAGRAPHS]]


def clean_publisher_pages(articles: list[Article], min_pages: int,
                          known: dict[str, set[str]] | None = None) -> list[Article]:
    """The articles of one domain, each without the paragraphs repeated across them and the
    pages `known` from earlier runs."""
    known = known or {}
    seen = pages_by_paragraph({page_key(a): a.text for a in articles})
    repeated = repeated_keys(seen, known, min_pages)
    if not repeated:
        return articles
    cleaned = []
    for article in articles:
        text = without_repeated(article.text, repeated)
        cleaned.append(article if text == article.text else dataclasses.replace(
            article, text=text, word_count=word_count(text)))
    return cleaned


# --- DoFn and composite --------------------------------------------------------------------------


class _CleanDomainFn(beam.DoFn):
    """(domain, {"articles": [...], "known": [known rows, at most one list]}) -> the articles
    cleaned, and the domain's new ParagraphIndexEntry rows (PARAGRAPH_INDEX)."""

    def __init__(self, min_pages: int):
        self._min_pages = min_pages

    @metrics.timed(metrics.STAGE_DEDUP)
    def process(self, keyed):
        domain, grouped = keyed
        articles = list(grouped["articles"])
        if not articles:
            return
        known = {key: set(pages) for rows in grouped["known"] for key, pages, _ in rows}
        cleaned = clean_publisher_pages(articles, self._min_pages, known)
        for before, after in zip(articles, cleaned):
            if after is not before:
                metrics.count(CLEANED_ARTICLES)
                metrics.count(DROPPED_PARAGRAPHS, len(paragraphs_of(before.text))
                              - len(paragraphs_of(after.text)))
            yield after
        seen = pages_by_paragraph({page_key(a): a.text for a in articles})
        latest = max(articles, key=lambda a: a.ingested_at)
        for entry in new_index_entries(domain, seen, known, latest.run_id, latest.ingested_at):
            yield beam.pvalue.TaggedOutput(PARAGRAPH_INDEX, entry)


class KnownParagraphs(beam.PTransform):
    """index/paragraphs rows -> (domain, [(paragraph key, pages, latest seen_at)]): per domain
    at most MAX_KNOWN_PARAGRAPHS, those seen on most pages first, then the most recent."""

    def expand(self, rows):
        return (
            rows
            | "ByParagraph" >> beam.Map(lambda row: (
                (row["domain"], row["paragraph_key"]), (tuple(row["pages"] or ()), row["seen_at"])))
            | "MergeSightings" >> beam.CombinePerKey(merge_sightings)
            | "ByDomain" >> beam.Map(lambda item: (item[0][0], (item[0][1], *item[1])))
            | "MostSeen" >> beam.combiners.Top.PerKey(
                MAX_KNOWN_PARAGRAPHS, key=lambda known: (len(known[1]), known[2])))


class DropRepeatedParagraphs(beam.PTransform):
    """Articles -> {"articles": the same articles, paragraphs repeated across `min_pages` pages
    of their domain (this run's and earlier runs', `index_rows` of index/paragraphs) dropped;
    PARAGRAPH_INDEX: the rows this run adds to index/paragraphs}. 0: off (articles unchanged,
    nothing recorded). Articles without a domain pass as they are."""

    def __init__(self, min_pages: int, index_rows):
        super().__init__()
        self._min_pages, self._index_rows = min_pages, index_rows

    def expand(self, articles):
        if not self._min_pages:
            nothing = articles.pipeline | "NoParagraphIndex" >> beam.Create([])
            return {"articles": articles, PARAGRAPH_INDEX: nothing}
        by_domain = articles | "ByDomain" >> beam.Partition(
            lambda article, _: 0 if article.domain else 1, 2)
        known = self._index_rows | "KnownParagraphs" >> KnownParagraphs()
        outputs = (
            {"articles": by_domain[0] | "KeyByDomain" >> beam.Map(
                lambda article: (article.domain, article)),
             "known": known}
            | "GroupByDomain" >> beam.CoGroupByKey()
            | "DropRepeated" >> beam.ParDo(_CleanDomainFn(self._min_pages)).with_outputs(
                    PARAGRAPH_INDEX, main="articles"))
        every = (outputs.articles, by_domain[1]) | "AllArticles" >> beam.Flatten()
        return {"articles": every, PARAGRAPH_INDEX: outputs[PARAGRAPH_INDEX]}
