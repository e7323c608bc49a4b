"""Graph assembly both graphs share: the batch graph (pipelines/ingest.py) and the streaming one
(pipelines/stream.py) apply the same stage composites, in the same order, through these.

    articles ─► repeated paragraphs (this run's pages and index/paragraphs) ─► already ingested? / exact copies ─► near copies
    ─► entities ─► topic ─► story
    (index/articles, duplicates, signatures, stories, paragraphs: IndexReads)
    ─► articles/, duplicates/, errors/, stories/ and their index/ entries, in .tmp/ (write_all)

The only difference is when the index is read: once when the batch job runs (off an Impulse,
or after the job's StartRun step when the job holds its own lease), or again for each window of
the stream (IndexReads started from the window's tick), so that a window meets what earlier
windows committed and the windowed joins of the stages see the index rows in their own window.
"""

from __future__ import annotations

import datetime as dt

import apache_beam as beam

from newsbeam.schemas.records import (Article, Duplicate, DuplicateIndexEntry, ErrorIndexEntry,
                                      ErrorRow, IndexEntry, Story)
from newsbeam.transforms import sinks
from newsbeam.transforms.boilerplate import PARAGRAPH_INDEX, DropRepeatedParagraphs
from newsbeam.transforms.dataset import (INDEX_ARTICLES, INDEX_DUPLICATES, INDEX_ERRORS,
                                         INDEX_PARAGRAPHS, INDEX_SIGNATURES, INDEX_STORIES,
                                         IndexSpec, ReadIndex, ReadIndexIds)
from newsbeam.transforms.dedup import (ALREADY_INGESTED, DUPLICATES, SIGNATURES,
                                       DropKnownAndExactCopies, DropNearCopies)
from newsbeam.transforms.entities import TagEntities
from newsbeam.transforms.errors import DropRecordedErrors
from newsbeam.transforms.extract import ExtractArticles
from newsbeam.transforms.fetch import FetchPolicy
from newsbeam.transforms.sinks import WriteDataset
from newsbeam.transforms.stories import (STORIES, STORY_INDEX, LinkStories, StoryParams,
                                         TimeSpanFn, story_partition, within_reach)
from newsbeam.transforms.topics import AssignTopics


def index_entry(article: Article) -> IndexEntry:
    return IndexEntry(article_id=article.article_id, content_hash=article.content_hash,
                      run_id=article.run_id, ingested_at=article.ingested_at,
                      canonical_url=article.canonical_url, published_at=article.published_at)


def stored_as(row: dict, batch_of: str):
    """An index/articles or index/duplicates row as DropKnownAndExactCopies takes it: (article
    id, the article a copy of it is a duplicate of, when a batch of the run `batch_of` stored
    it; else None: a copy is already ingested)."""
    same_run = row["run_id"] is not None and row["run_id"].startswith(f"{batch_of}-b")
    return row["article_id"], (row.get("duplicate_of") or row["article_id"]) if same_run \
        else None


def fetch_policy(options) -> FetchPolicy:
    return FetchPolicy(
        delay_s=options.fetch_delay_s, connect_timeout_s=options.connect_timeout_s,
        read_timeout_s=options.read_timeout_s, total_timeout_s=options.fetch_deadline_s,
        max_bytes=options.max_document_bytes, max_redirects=options.max_redirects,
        retries=options.fetch_retries, backoff_s=options.retry_backoff_s,
        max_retry_after_s=options.max_retry_after_s,
        max_crawl_delay_s=options.max_crawl_delay_s, allow_loopback=options.allow_loopback,
        concurrency=options.fetch_concurrency)


class IndexReads:
    """The index datasets, read when the job runs, from `start`: the pipeline (once, off an
    Impulse), the job's StartRun step (once, after it took the lease), or a windowed graph's
    ticks (again at each, one per window pane, in its window)."""

    def __init__(self, start, output_dir: str):
        self._start, self._output_dir = start, output_dir

    def rows(self, spec: IndexSpec, label: str, since: tuple | None = None,
             columns: tuple[str, ...] = (), where: tuple | None = None):
        return self._start | label >> ReadIndex(self._output_dir, spec, columns, since=since,
                                                 where=where)

    def ids(self, spec: IndexSpec, column: str, label: str):
        return self._start | label >> ReadIndexIds(self._output_dir, spec, column)


def extract(documents, options, run_id: str, ingested_at: dt.datetime | None):
    """ingested_at None (the stream): each article's is its document's event time."""
    return documents | "ExtractArticles" >> ExtractArticles(
        run_id, ingested_at, options.extraction_timeout_s, options.min_words)


def resolve_and_enrich(articles, options, run_id: str, ingested_at: dt.datetime,
                       index: IndexReads, batch_of: str | None = None) -> dict:
    """Extracted articles -> {"articles": the new, distinct, tagged, classified and storied
    ones; DUPLICATES, SIGNATURES, ALREADY_INGESTED, STORIES, STORY_INDEX; and what each stage
    passed on ("distinct", "tagged", "classified") for the live counters}. Copies are dropped
    before any model runs (see DESIGN.md). batch_of: the run id of the batched run this run is
    a batch of (transforms/batches.py). Then an exact copy of what an earlier batch of that run
    stored is a duplicate of it (as in one unbatched run), not already ingested; and of the
    stored signatures and stories only those this batch's articles can meet go further (an
    LSH bucket in common; a lead within the story window), so a batch's work does not grow with
    what earlier batches stored."""
    index_not_before = ingested_at - dt.timedelta(days=options.index_max_age_days)
    bounded_index = batch_of is not None
    paragraphs_since = ("seen_at", index_not_before)
    # Copies recorded in duplicates/ by earlier runs count as ingested too.
    if batch_of is None:
        known_ids = (index.ids(INDEX_ARTICLES, "article_id", "ArticleIndex"),
                     index.ids(INDEX_DUPLICATES, "article_id", "DuplicateIndex")) \
            | "KnownIds" >> beam.Flatten()
        known_paragraphs = index.rows(INDEX_PARAGRAPHS, "ParagraphIndex", since=paragraphs_since)
    else:
        # Only the ids this batch's articles have, and the paragraphs of the domains they
        # come from, are taken from the index.
        ids = (articles | "BatchIds" >> beam.Map(lambda a: a.article_id)
               | "IdSet" >> beam.CombineGlobally(beam.combiners.ToSetCombineFn()))
        among_ids = ("article_id", ids, lambda article_id, ids: article_id in ids)
        known_ids = (
            index.rows(INDEX_ARTICLES, "ArticleIndex", columns=("article_id", "run_id"),
                       where=among_ids)
            | "StoredAs" >> beam.Map(stored_as, batch_of),
            index.rows(INDEX_DUPLICATES, "DuplicateIndex",
                       columns=("article_id", "duplicate_of", "run_id"), where=among_ids)
            | "CopiedAs" >> beam.Map(stored_as, batch_of)) | "KnownIds" >> beam.Flatten()
        domains = (articles | "BatchDomains" >> beam.Map(lambda a: a.domain)
                   | "DomainSet" >> beam.CombineGlobally(beam.combiners.ToSetCombineFn()))
        known_paragraphs = index.rows(
            INDEX_PARAGRAPHS, "ParagraphIndex", since=paragraphs_since,
            where=("domain", domains, lambda domain, domains: domain in domains))
    cleaned = articles | "DropRepeatedParagraphs" >> DropRepeatedParagraphs(
        options.boilerplate_min_pages, known_paragraphs)
    resolved = cleaned["articles"] | "DropKnownAndExactCopies" >> DropKnownAndExactCopies(known_ids)
    distinct = resolved.articles | "DropNearCopies" >> DropNearCopies(
        resolved[DUPLICATES],
        index.rows(INDEX_SIGNATURES, "SignatureIndex", since=("ingested_at", index_not_before)),
        run_id, ingested_at, bounded_index=bounded_index)
    tagged = distinct["articles"] | "TagEntities" >> TagEntities(
        options.spacy_model, options.ner_batch_size, options.ner_max_chars,
        options.numeric_entities, options.ner_recase == "on")
    topical = tagged | "AssignTopics" >> AssignTopics(options.topic_model,
                                                      options.topic_threshold)
    story_reach = None
    if bounded_index:
        span = topical | "TimeSpan" >> beam.CombineGlobally(TimeSpanFn())
        window_hours = options.story_window_hours
        story_reach = ("lead_published_at", span,
                       lambda lead, span: within_reach(lead, span, window_hours))
    storied = topical | "LinkStories" >> LinkStories(
        index.rows(INDEX_STORIES, "StoryIndex", since=("updated_at", index_not_before),
                   where=story_reach),
        run_id, ingested_at, StoryParams(window_hours=options.story_window_hours,
                                         link_threshold=options.story_link_threshold,
                                         same_source_factor=options.story_same_site_factor))
    return {"articles": storied["articles"], DUPLICATES: distinct[DUPLICATES],
            SIGNATURES: distinct[SIGNATURES], ALREADY_INGESTED: resolved[ALREADY_INGESTED],
            STORIES: storied[STORIES], STORY_INDEX: storied[STORY_INDEX],
            PARAGRAPH_INDEX: cleaned[PARAGRAPH_INDEX],
            "distinct": distinct["articles"], "tagged": tagged, "classified": topical}


def drop_recorded_errors(errors, index: IndexReads):
    return errors | "DropRecordedErrors" >> DropRecordedErrors(
        index.ids(INDEX_ERRORS, "error_id", "ErrorIndex"))


def write_all(pipeline, options, run_id: str, stages: dict, new_errors,
              other_index_entries: dict) -> list:
    """Every dataset's rows into .tmp/<run_id>/: the data first, then one entry PCollection per
    index dataset (the commit moves these after the data's, so an index entry never names a row
    that is not stored). `other_index_entries`: {IndexSpec: PCollection} of the sources' own
    (feeds, entries, inputs). Returns the TempFile PCollections for the commit step."""
    output = options.output
    write = lambda dataset_name, record_type, partition_fn, columns=(): WriteDataset(
        output, dataset_name, record_type, run_id, partition_fn, columns,
        options.rows_per_file, options.row_group_rows)
    data = (
        stages["articles"] | "WriteArticles" >> write("articles", Article,
                                                      sinks.article_partition, ("topic",)),
        stages[DUPLICATES] | "WriteDuplicates" >> write("duplicates", Duplicate,
                                                        sinks.duplicate_partition),
        new_errors | "WriteErrors" >> write("errors", ErrorRow, sinks.error_partition),
        stages[STORIES] | "WriteStories" >> write("stories", Story, story_partition),
    )
    index_entries: dict[IndexSpec, object] = {
        INDEX_ARTICLES: stages["articles"] | "IndexEntries" >> beam.Map(index_entry),
        INDEX_ERRORS: new_errors | "ErrorIndexEntries" >> beam.Map(
            lambda e: ErrorIndexEntry(error_id=e.error_id, run_id=e.run_id)),
        INDEX_DUPLICATES: stages[DUPLICATES] | "DuplicateIndexEntries" >> beam.Map(
            lambda d: DuplicateIndexEntry(article_id=d.article_id, duplicate_of=d.duplicate_of,
                                          run_id=d.run_id)),
        INDEX_SIGNATURES: stages[SIGNATURES],
        INDEX_STORIES: stages[STORY_INDEX],
        INDEX_PARAGRAPHS: stages[PARAGRAPH_INDEX],
        **other_index_entries,
    }
    indexes = [entries | f"Write_{spec.name}" >> write(spec.name, spec.record_type,
                                                         sinks.no_partition)
               for spec, entries in index_entries.items()]
    return [*data, *indexes]
