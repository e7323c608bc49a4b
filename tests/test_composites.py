"""Each stage's PTransform in a TestPipeline (FnApiRunner: no network)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import json
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from newsbeam.schemas.records import Article, Document
from tests.conftest import FIXTURES, SEEDS
from newsbeam.transforms.dedup import ALREADY_INGESTED, DUPLICATES, DropKnownAndExactCopies
from newsbeam.transforms.errors import ERRORS, DropRecordedErrors, error_row
from newsbeam.transforms.extract import ExtractArticles
from newsbeam.transforms import dataset
from newsbeam.transforms.sinks import TempFile, WriteDataset, article_partition
from newsbeam.transforms.sources import ReadInputs
from newsbeam.transforms.topics import AssignTopics

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def pipeline():
    return test_pipeline.TestPipeline(runner="FnApiRunner")


def article(article_id: str, source_uri: str, **fields) -> Article:
    values = dict(article_id=article_id, source_uri=source_uri, text="Some text.", word_count=2,
                  content_hash="h" + article_id, ingested_at=NOW, date_source="ingested",
                  run_id="run")
    values.update(fields)
    return Article(**values)


def test_read_inputs_reads_each_file_once_and_routes_bad_ones(tmp_path: Path):
    (tmp_path / "a.txt").write_text("Plain text article.")
    (tmp_path / "b.html.gz").write_bytes(gzip.compress(b"<p>page</p>"))
    (tmp_path / "c.jsonl").write_text('{"text": "one", "id": 1}\n\n[1, 2]\n')
    (tmp_path / "d.pdf").write_bytes(b"%PDF-1.7")
    # The folder, a glob over it and one file by name: every file still read once.
    inputs = [str(tmp_path), str(tmp_path / "*.txt"), str(tmp_path / "a.txt")]

    with pipeline() as p:
        read = p | ReadInputs(inputs, run_id="run", max_document_bytes=1000)
        assert_that(read["documents"] | beam.Map(lambda d: (Path(d.source_uri).name, d.kind)),
                    equal_to([("a.txt", "text"), ("b.html.gz", "html"),
                              ("c.jsonl#L1", "text")]), label="documents")
        assert_that(read[ERRORS] | beam.Map(lambda e: (Path(e.source_uri).name, e.reason)),
                    equal_to([("c.jsonl#L3", "invalid_record"), ("d.pdf", "unsupported_type")]),
                    label="errors")


def test_read_inputs_accounts_for_odd_inputs(tmp_path: Path, monkeypatch):
    (tmp_path / ".named-outright.txt").write_text("A dot-file the user asked for by name.")
    (tmp_path / "hostile.jsonl").write_text("\n".join([
        "[" * 100_000,                                   # nested past the recursion limit
        '{"id": ' + "9" * 5000 + ', "text": "x"}',       # an integer past the digit limit
        '{"id": "s", "text": "Lone surrogate \\ud800 here.", "title": "\\udc00"}',
        '{"text": "Two authors.", "author": "Doe, Jane; Roe, Richard", "category": "a, b"}',
    ]))
    monkeypatch.chdir(tmp_path)
    inputs = [".named-outright.txt", "hostile.jsonl", str(tmp_path / "*.none")]

    with pipeline() as p:
        read = p | ReadInputs(inputs, run_id="run", max_document_bytes=1_000_000)
        assert_that(read["documents"] | beam.Map(
            lambda d: (d.source_uri, d.content, d.title, d.authors, d.categories)),
            equal_to([
                (f"{tmp_path}/.named-outright.txt",
                 b"A dot-file the user asked for by name.", None, [], []),
                (f"{tmp_path}/hostile.jsonl#L3", "Lone surrogate ? here.", "?", [], []),
                (f"{tmp_path}/hostile.jsonl#L4", "Two authors.", None,
                 ["Doe, Jane", "Roe, Richard"], ["a", "b"])]), label="documents")
        assert_that(read[ERRORS] | beam.Map(lambda e: (e.source_uri, e.reason)),
                    equal_to([(f"{tmp_path}/hostile.jsonl#L1", "malformed_jsonl"),
                              (f"{tmp_path}/hostile.jsonl#L2", "malformed_jsonl"),
                              (f"{tmp_path}/*.none", "no_match")]), label="errors")


def test_extract_articles_cleans_text_and_reports_failures():
    seed = (SEEDS / "004_732ed2892add5ac6.txt").read_bytes()
    documents = [
        Document(source_uri="seed.txt", kind="text", content=seed),
        Document(source_uri="page.html", kind="html",
                 content=(FIXTURES / "sport-article.html").read_bytes()),
        Document(source_uri="menu.html", kind="html",
                 content=b"<html><body><nav><a href='/'>Home</a></nav></body></html>"),
        Document(source_uri="short.txt", kind="text", content=b"Too short."),
        Document(source_uri="bytes.txt", kind="text", content=bytes(range(0x80, 0x100)) * 8),
    ]
    with pipeline() as p:
        extracted = p | beam.Create(documents) | ExtractArticles(
            run_id="run", ingested_at=NOW, timeout_s=60, min_words=5)
        assert_that(extracted.articles | beam.Map(
            lambda a: (a.source_uri, a.wire_sources, a.title, "All rights reserved" in a.text)),
            equal_to([("seed.txt", ["Anadolu Agency"], None, False),
                      ("page.html", [], "City edge United in late derby drama", False)]),
            label="articles")
        assert_that(extracted[ERRORS] | beam.Map(lambda e: (e.source_uri, e.stage, e.reason)),
                    equal_to([("menu.html", "extract", "empty_extraction"),
                              ("short.txt", "extract", "empty_extraction"),
                              ("bytes.txt", "extract", "undecodable")]), label="errors")


def test_a_page_over_the_time_limit_is_an_error_and_the_next_page_still_extracts():
    # 60,000 paragraphs: trafilatura's work grows faster than the page (about 10 s here), while
    # an ordinary page takes a few milliseconds.
    slow = "<html><body><article>" + "".join(
        f"<p>Paragraph {i} about the city council and its budget vote.</p>"
        for i in range(60_000)) + "</article></body></html>"
    documents = [Document(source_uri="slow.html", kind="html", content=slow),
                 Document(source_uri="page.html", kind="html",
                          content=(FIXTURES / "sport-article.html").read_bytes())]
    with pipeline() as p:
        extracted = p | beam.Create(documents) | ExtractArticles(
            run_id="run", ingested_at=NOW, timeout_s=2, min_words=5)
        assert_that(extracted[ERRORS] | beam.Map(lambda e: (e.source_uri, e.reason)),
                    equal_to([("slow.html", "extraction_timeout")]))
        assert_that(extracted.articles | beam.Map(lambda a: a.source_uri),
                    equal_to(["page.html"]), label="articles")


def test_a_page_past_the_parsers_depth_limit_is_unparseable_html_not_empty():
    nest = "<div>" * 100_000
    words = "Coast guards rescued twelve sailors from a cargo ship that ran aground. "
    documents = [
        # Nothing before the point where the parser stopped.
        Document(source_uri="deep.html", kind="html",
                 content=f"<html><body>{nest}{words * 5}</body></html>"),
        # A few words before it: fewer than --min_words.
        Document(source_uri="shallow-start.html", kind="html",
                 content=f"<html><body><article><p>Breaking news.</p></article>{nest}"
                         f"{words * 5}</body></html>"),
        # The article's text comes before the deep part: kept.
        Document(source_uri="text-first.html", kind="html",
                 content=f"<html><body><article><p>{words * 5}</p></article>{nest}x"
                         "</body></html>"),
        Document(source_uri="menu.html", kind="html",
                 content=b"<html><body><nav><a href='/'>Home</a></nav></body></html>"),
    ]
    with pipeline() as p:
        extracted = p | beam.Create(documents) | ExtractArticles(
            run_id="run", ingested_at=NOW, timeout_s=60, min_words=10)
        assert_that(extracted[ERRORS] | beam.Map(
            lambda e: (e.source_uri, e.stage, e.reason, "Excessive depth" in e.message)),
            equal_to([("deep.html", "extract", "unparseable_html", True),
                      ("shallow-start.html", "extract", "unparseable_html", True),
                      ("menu.html", "extract", "empty_extraction", False)]), label="errors")
        assert_that(extracted.articles | beam.Map(lambda a: a.source_uri),
                    equal_to(["text-first.html"]), label="articles")


def test_exact_copies_keep_one_and_known_articles_are_skipped():
    early = dt.datetime(2022, 2, 16, tzinfo=dt.timezone.utc)
    articles = [
        article("same", "z-late.txt", published_at=early + dt.timedelta(hours=5)),
        article("same", "a-early.txt", published_at=early),
        article("same", "b-undated.txt"),
        article("known", "old.txt"),
        article("fresh", "new.txt"),
    ]
    with pipeline() as p:
        index = p | "Index" >> beam.Create(["known", "unrelated"])
        resolved = p | beam.Create(articles) | DropKnownAndExactCopies(index)
        assert_that(resolved.articles | beam.Map(
            lambda a: (a.article_id, a.source_uri, a.duplicate_count)),
            equal_to([("same", "a-early.txt", 2), ("fresh", "new.txt", 0)]), label="kept")
        assert_that(resolved[DUPLICATES] | beam.Map(
            lambda d: (d.source_uri, d.duplicate_of, d.method, d.similarity)),
            equal_to([("z-late.txt", "same", "exact", 1.0),
                      ("b-undated.txt", "same", "exact", 1.0)]), label="duplicates")
        assert_that(resolved[ALREADY_INGESTED], equal_to(["known"]), label="skipped")


def test_recorded_errors_are_not_written_twice():
    first = error_row("read", "too_large", "big", "/in/big.txt", "run")
    again = error_row("read", "too_large", "big", "/in/big.txt", "run")
    other = error_row("read", "empty_input", "empty", "/in/empty.txt", "run")
    known = error_row("read", "binary_content", "bin", "/in/image.txt", "run")
    with pipeline() as p:
        index = p | "Index" >> beam.Create([known.error_id])
        kept = p | beam.Create([first, again, other, known]) | DropRecordedErrors(index)
        assert_that(kept | beam.Map(lambda e: e.source_uri),
                    equal_to(["/in/big.txt", "/in/empty.txt"]))


def test_assign_topics_partitions_by_section():
    articles = [article("1", "a", categories=["Sport"]),
                article("2", "b", url="https://x.test/business/2022/a-story"),
                article("3", "c")]
    with pipeline() as p:
        topics = p | beam.Create(articles) | AssignTopics("none")
        assert_that(topics | beam.Map(lambda a: (a.article_id, a.topic, a.topic_source)),
                    equal_to([("1", "sport", "section"),
                              ("2", "economy-business-finance", "section"),
                              ("3", "unclassified", None)]))


@pytest.mark.parametrize("rows_per_file", [2, 100])
def test_write_dataset_writes_one_file_per_partition_and_commits_whole_files(
        tmp_path: Path, rows_per_file: int):
    day = dt.datetime(2022, 2, 16, 12, tzinfo=dt.timezone.utc)
    topics = ["sport", "sport", "sport", "politics", "../../escape"]
    articles = [article(str(i), f"s{i}", published_at=day, topic=topic)
                for i, topic in enumerate(topics)]
    with pipeline() as p:
        written = (p | beam.Create(articles)
                   # Several bundles: one writer per partition all the same.
                   | beam.Reshuffle()
                   | WriteDataset(str(tmp_path), "articles", Article, "run-1",
                                  article_partition, ("topic",), rows_per_file=rows_per_file))
        (written | beam.Map(lambda t: json.dumps(dataclasses.asdict(t)))
         | beam.io.WriteToText(str(tmp_path / "written"), shard_name_template=""))

    temp_files = [TempFile(**json.loads(line))
                  for line in (tmp_path / "written").read_text().splitlines()]
    (tmp_path / "written").unlink()

    # Nothing is visible before the commit: every file waits in .tmp/run-1/.
    assert not (tmp_path / "articles").exists()
    assert {Path(t.path).relative_to(tmp_path).parts[:2] for t in temp_files} == {
        (".tmp", "run-1")}
    per_partition = {}
    for temp in temp_files:
        per_partition.setdefault(temp.partition, []).append(temp.rows)
    # One file per partition, more only past rows_per_file.
    assert {k: sorted(v) for k, v in per_partition.items()} == {
        "date=2022-02-16/topic=sport": [3] if rows_per_file > 3 else [1, 2],
        "date=2022-02-16/topic=politics": [1], "date=2022-02-16/topic=escape": [1]}

    planned = dataset.plan_moves(str(tmp_path), "run-1", temp_files)
    dataset.apply_intent(str(tmp_path), {"kind": "ingest", "id": "run-1",
                                         "moves": [[f.dataset, f.temp_path, f.path]
                                                   for f in planned],
                                         "deletes": [], "done": {
                                             "path": str(tmp_path / "_runs" / "run-1.json"),
                                             "record": {}}})
    files = sorted(tmp_path.rglob("*.parquet"))
    rows = {f: pq.ParquetFile(f).metadata.num_rows for f in files}
    folders = {f.parent.relative_to(tmp_path).as_posix() for f in files}
    assert folders == {"articles/date=2022-02-16/topic=sport",
                       "articles/date=2022-02-16/topic=politics",
                       "articles/date=2022-02-16/topic=escape"}
    assert all(f.name.startswith("part-run-1-") for f in files)
    assert sum(rows.values()) == 5 and max(rows.values()) <= rows_per_file
    assert all(p.resolve().is_relative_to(tmp_path.resolve()) for p in tmp_path.rglob("*"))
    assert not (tmp_path / ".tmp").exists()
