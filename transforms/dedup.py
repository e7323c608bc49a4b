"""Deduplication against this run and against earlier runs.

What is here: exact identity. An article whose article_id (same text fingerprint under the same
canonical URL) is already in OUTPUT/index/ was stored by an earlier run: it is counted as
already ingested and not written again, which is what makes a re-run add no rows. Several copies
with one article_id in one run keep one article, the others become duplicates/ rows.
Near-identical copies (MinHash/LSH) and same-story linking build on this; see DESIGN.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import apache_beam as beam

from schemas.records import Article, Duplicate

DUPLICATES = "duplicates"
ALREADY_INGESTED = "already_ingested"

_FAR_FUTURE = dt.datetime.max.replace(tzinfo=dt.timezone.utc)


# --- Pure functions ------------------------------------------------------------------------------


def keep_order(article: Article) -> tuple:
    """Sort key of copies: the first is kept. Earliest published, then the longest text, then
    the source path, so the choice does not depend on the order the runner delivers them."""
    return (article.published_at or _FAR_FUTURE, -article.word_count, article.source_uri,
            article.source_id or "")


def duplicate_of(copy: Article, kept: Article, similarity: float, method: str) -> Duplicate:
    return Duplicate(duplicate_of=kept.article_id, source_uri=copy.source_uri,
                     similarity=similarity, method=method, ingested_at=copy.ingested_at,
                     run_id=copy.run_id, source_id=copy.source_id, url=copy.url,
                     publisher=copy.publisher, title=copy.title,
                     published_at=copy.published_at)


def resolve_exact_copies(article_id: str, new: list[Article], already_indexed: bool):
    """What becomes of the new articles that share `article_id`: (kept article or None,
    duplicates, number already ingested)."""
    if already_indexed:
        return None, [], len(new)
    copies = sorted(new, key=keep_order)
    kept, rest = copies[0], copies[1:]
    duplicates = [duplicate_of(copy, kept, 1.0, "exact") for copy in rest]
    return dataclasses.replace(kept, duplicate_count=len(rest)), duplicates, 0


# --- DoFn and composite --------------------------------------------------------------------------


class _ResolveFn(beam.DoFn):
    def process(self, keyed):
        article_id, grouped = keyed
        new, indexed = list(grouped["new"]), any(True for _ in grouped["index"])
        if not new:
            return
        kept, duplicates, skipped = resolve_exact_copies(article_id, new, indexed)
        if kept is not None:
            yield kept
        for duplicate in duplicates:
            yield beam.pvalue.TaggedOutput(DUPLICATES, duplicate)
        for _ in range(skipped):
            yield beam.pvalue.TaggedOutput(ALREADY_INGESTED, article_id)


class DropKnownAndExactCopies(beam.PTransform):
    """(Articles, article ids in the index) -> Articles (main), Duplicates (DUPLICATES) and the
    ids of articles already ingested by earlier runs (ALREADY_INGESTED)."""

    def __init__(self, indexed_ids):
        super().__init__()
        self._indexed_ids = indexed_ids

    def expand(self, articles):
        keyed_new = articles | "KeyById" >> beam.Map(lambda a: (a.article_id, a))
        keyed_index = self._indexed_ids | "KeyIndex" >> beam.Map(lambda i: (i, None))
        return (
            {"new": keyed_new, "index": keyed_index}
            | "Join" >> beam.CoGroupByKey()
            | "Resolve" >> beam.ParDo(_ResolveFn()).with_outputs(
                DUPLICATES, ALREADY_INGESTED, main="articles"))
