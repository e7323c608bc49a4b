"""Compaction, `inspect --check`, `repair` and schema evolution over real Parquet datasets laid
out as runs write them (many small files per partition), read back with DuckDB and pyarrow."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
from pathlib import Path

import apache_beam as beam
import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from newsbeam.pipelines.cli import main
from newsbeam.schemas.records import (SCHEMA_CHANGES, SCHEMA_VERSION, Article, Entity, IndexEntry,
                                      Story, TopicScore, arrow_schema, to_table)
from newsbeam.transforms import check, compact, dataset
from newsbeam.transforms.sinks import PARQUET_COMPRESSION

DAY = dt.datetime(2024, 3, 1, 8, tzinfo=dt.timezone.utc)
TOPICS = ("politics", "sport")


def _write(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression=PARQUET_COMPRESSION,
                   use_compliant_nested_type=True)


def _article(number: int, run: int) -> Article:
    rng = random.Random(number)
    return Article(
        article_id=f"a{number:05d}", source_uri=f"/in/{number}.txt",
        text=" ".join(rng.choice(["harbour", "ferry", "council", "budget", "match", "goal"])
                      for _ in range(60)),
        word_count=60, content_hash=f"h{number}", ingested_at=DAY + dt.timedelta(minutes=run),
        date_source="published", run_id=f"run-{run:03d}", title=f"Story {number}",
        published_at=DAY + dt.timedelta(days=number % 3, minutes=rng.randint(0, 600)),
        topic=TOPICS[number % 2], authors=["A. Writer"],
        entities=[Entity("Harbour Board", "ORG", 2, 0)],
        topic_scores=[TopicScore(TOPICS[number % 2], 0.9)], story_id=f"s{number % 7}")


def _story(story: int, run: int, members: int) -> Story:
    return Story(story_id=f"s{story}", lead_article_id=f"a{story:05d}",
                 lead_published_at=DAY, member_count=members, first_published=DAY,
                 last_published=DAY + dt.timedelta(minutes=run),
                 updated_at=DAY + dt.timedelta(minutes=run), run_id=f"run-{run:03d}",
                 title=f"Story {story}", top_terms=["harbour"])


def make_dataset(output: Path, runs: int = 12, per_run: int = 5) -> None:
    """`runs` runs' worth of files: one per partition each, as WriteDataset writes them, with
    their manifests; every story grows in every run (a row per run)."""
    article_schema = arrow_schema(Article, drop=("topic",))
    number = 0
    for run in range(runs):
        run_id = f"run-{run:03d}"
        articles = [_article(number + i, run) for i in range(per_run)]
        number += per_run
        by_partition: dict[str, list] = {}
        for article in articles:
            part = f"date={article.published_at:%Y-%m-%d}/topic={article.topic}"
            by_partition.setdefault(part, []).append(article)
        for part, rows in by_partition.items():
            _write(output / "articles" / part / f"part-{run_id}-00000.parquet",
                   to_table(rows, article_schema))
        stories = [_story(s, run, run + 1) for s in range(3)]
        _write(output / "stories" / f"date={DAY:%Y-%m-%d}" / f"part-{run_id}-00000.parquet",
               to_table(stories, arrow_schema(Story)))
        _write(output / "index" / "articles" / f"part-{run_id}-00000.parquet",
               to_table([IndexEntry(a.article_id, a.content_hash, a.run_id, a.ingested_at)
                         for a in articles], arrow_schema(IndexEntry)))
        (output / "_runs").mkdir(parents=True, exist_ok=True)
        (output / "_runs" / f"{run_id}.json").write_text(json.dumps({"run_id": run_id}))


def _duck_rows(output: Path, name: str, exclude: str = "") -> list[tuple]:
    with duckdb.connect() as db:
        return sorted(db.execute(
            f"SELECT * {exclude} FROM read_parquet('{output}/{name}/**/*.parquet', "
            "hive_partitioning = true, union_by_name = true)").fetchall(), key=repr)


def _files(output: Path, name: str) -> list[Path]:
    return sorted((output / name).rglob("*.parquet"))


# --- compact -------------------------------------------------------------------------------------


def test_compact_merges_small_files_keeping_every_row(tmp_path, capsys):
    output = tmp_path / "out"
    make_dataset(output)
    before = {name: _duck_rows(output, name) for name in ("articles", "index/articles")}
    stories_before = _duck_rows(output, "stories")
    files_before = len(_files(output, "articles"))
    partitions = {p.parent for p in _files(output, "articles")}

    assert main(["compact", "--output", str(output)]) == 0
    printed = capsys.readouterr().out

    # The same multiset of rows, read with DuckDB; one file per partition now.
    for name, rows in before.items():
        assert _duck_rows(output, name) == rows, name
    assert {p.parent for p in _files(output, "articles")} == partitions
    assert len(_files(output, "articles")) == len(partitions) < files_before
    assert len(_files(output, "index/articles")) == 1
    assert f"articles/: {len(partitions)} partitions, {files_before} files" in printed
    # Sorted by published_at within each file, one row group (the file is under 16 MiB).
    for path in _files(output, "articles"):
        parquet = pq.ParquetFile(path)
        assert parquet.metadata.num_row_groups == 1
        times = parquet.read(columns=["published_at"]).column(0).to_pylist()
        assert times == sorted(times)
        assert path.name.startswith("part-compact-")
    # stories/: the current row of each story (the latest updated_at) and nothing else.
    latest = {}
    for row in stories_before:
        latest[row[0]] = max(latest.get(row[0], row), row, key=lambda r: r[6])
    assert sorted(_duck_rows(output, "stories"), key=repr) == sorted(latest.values(), key=repr)
    # pyarrow agrees, and the dataset keeps its contract.
    table = ds.dataset(str(output / "articles"), format="parquet", partitioning="hive").to_table()
    assert table.num_rows == len(before["articles"])
    assert sorted(table.column("article_id").to_pylist()) == \
        sorted(r[0] for r in before["index/articles"])
    record = json.loads(next((output / "_compactions").glob("*.json")).read_text())
    assert record["datasets"]["articles"]["rows_after"] == len(before["articles"])
    assert not (output / ".tmp").exists() and dataset.pending_intents(str(output)) == []
    assert main(["inspect", "--output", str(output), "--check"]) == 0

    # Again: nothing left to merge.
    assert main(["compact", "--output", str(output)]) == 0
    assert "nothing to compact" in capsys.readouterr().out


def test_compact_by_date_and_dataset(tmp_path):
    output = tmp_path / "out"
    make_dataset(output)
    counts = {p: len(list(p.iterdir())) for p in (output / "articles").glob("*/*")}
    assert main(["compact", "--output", str(output), "--dataset", "articles",
                 "--date", "2024-03-02:2024-03-02"]) == 0
    for folder, files in counts.items():
        now = len(list(folder.iterdir()))
        assert now == (1 if "date=2024-03-02" in str(folder) else files), folder
    assert len(_files(output, "index/articles")) == 12  # not chosen
    assert main(["compact", "--output", str(output), "--date", "2024-13-01"]) == 2
    assert main(["compact", "--output", str(output), "--date", "2024-03-02:2024-03-01"]) == 2


def test_compact_killed_between_new_files_and_old_ones_is_rolled_forward(tmp_path,
                                                                         monkeypatch):
    """The swap of a compaction is a commit too: a kill after the new files are in and before
    the old are out (a reader sees rows twice meanwhile) is completed by the next recovery."""
    output = tmp_path / "out"
    make_dataset(output, runs=4)
    rows = _duck_rows(output, "articles")
    killed = []
    monkeypatch.setattr(dataset, "_kill_point",
                        lambda step: killed.append(step) or (_ for _ in ()).throw(
                            SystemExit("killed")) if step == "before_deletes" else None)
    with pytest.raises(SystemExit):
        compact.compact(str(output), ["articles"])
    assert killed == ["before_deletes"]
    assert len(_duck_rows(output, "articles")) == 2 * len(rows)  # both, until recovery
    assert check.check(str(output))  # the interrupted commit is reported
    assert main(["inspect", "--output", str(output), "--check"]) == 1

    monkeypatch.undo()
    assert main(["repair", "--output", str(output)]) == 0
    assert _duck_rows(output, "articles") == rows
    assert main(["inspect", "--output", str(output), "--check"]) == 0


# --- inspect --check and repair ------------------------------------------------------------------


def test_check_reports_what_breaks_the_contract_and_repair_fixes_it(tmp_path, capsys):
    output = tmp_path / "out"
    make_dataset(output, runs=10, per_run=3)
    assert main(["inspect", "--output", str(output), "--check"]) == 0
    printed = capsys.readouterr().out
    assert "keeps its contract" in printed
    assert f"articles/: schema versions v{SCHEMA_VERSION}: 30 rows" in printed
    assert "index/articles/: 1 partitions of more than 8 files" in printed
    assert f"newsbeam compact --output {output} --dataset index" in printed

    # A run killed before its commit; a file stored twice (as runs before the protocol did).
    (output / ".tmp" / "dead-run" / "articles").mkdir(parents=True)
    (output / ".tmp" / "dead-run" / "articles" / "x.parquet").write_bytes(b"PAR1")
    (output / "_commits").mkdir()
    (output / "_commits" / "dead-run.started.json").write_text('{"id": "dead-run"}')
    twice = _files(output, "articles")[0]
    twice_copy = twice.with_name("part-run-again-00000.parquet")
    twice_copy.write_bytes(twice.read_bytes())
    doubled = pq.read_table(twice).num_rows

    assert main(["inspect", "--output", str(output), "--check"]) == 1
    printed = capsys.readouterr().out
    assert "run dead-run started and never committed" in printed
    assert "1 orphan temp files in .tmp/dead-run/" in printed
    assert f"articles/: {doubled} ids stored more than once" in printed
    assert f"repair: newsbeam repair --output {output} --drop_duplicate_ids" in printed

    assert main(["repair", "--output", str(output), "--drop_duplicate_ids"]) == 0
    printed = capsys.readouterr().out
    assert "cleared dead-run" in printed and f"articles/: dropped {doubled} rows" in printed
    assert main(["inspect", "--output", str(output), "--check"]) == 0
    ids = [r[0] for r in _duck_rows(output, "articles")]
    assert len(ids) == len(set(ids)) == 30
    assert json.loads((output / "_commits" / "abandoned" / "dead-run.json").read_text())


def test_repair_rolls_an_interrupted_commit_forward(tmp_path):
    """An intent whose moves stopped half-way (a kill): `repair` moves the rest and writes the
    run's manifest, marked as completed by recovery; a second repair changes nothing."""
    output = tmp_path / "out"
    temp = output / ".tmp" / "run-x"
    table = to_table([_article(i, 0) for i in range(4)], arrow_schema(Article, drop=("topic",)))
    moves = []
    for number in range(4):
        path = temp / "articles" / f"{number}.parquet"
        _write(path, table.slice(number, 1))
        final = output / "articles" / "date=2024-03-01" / "topic=politics" / \
            f"part-run-x-{number:05d}.parquet"
        moves.append(["articles", str(path), str(final)])
    intent = {"kind": "ingest", "id": "run-x", "moves": moves, "deletes": [],
              "done": {"path": str(output / "_runs" / "run-x.json"),
                       "record": {"run_id": "run-x"}}}
    (output / "_commits").mkdir()
    (output / "_commits" / "run-x.intent.json").write_text(json.dumps(intent))
    for _, source, final in moves[:2]:  # the first two moved before the kill
        Path(final).parent.mkdir(parents=True, exist_ok=True)
        Path(source).rename(final)

    assert main(["repair", "--output", str(output)]) == 0
    assert len(_files(output, "articles")) == 4 and not temp.exists()
    manifest = json.loads((output / "_runs" / "run-x.json").read_text())
    assert manifest["committed_by_recovery"]["by"].startswith("repair-")
    assert dataset.pending_intents(str(output)) == []
    assert main(["repair", "--output", str(output)]) == 0
    assert len(_files(output, "articles")) == 4


# --- Schema evolution ----------------------------------------------------------------------------

# Version 1 had no feed columns (added with feeds in version 2).
V1_DROPPED = ("feed_url", "feed_entry_id", "feed_topic")


def test_every_schema_version_says_what_it_changed():
    assert sorted(SCHEMA_CHANGES) == list(range(1, SCHEMA_VERSION + 1))
    assert all(name in SCHEMA_CHANGES[2] for name in V1_DROPPED)


def _old_version_article_file(output: Path) -> None:
    old = dataclasses.replace(_article(90000, 0), schema_version=1)
    table = to_table([old], arrow_schema(Article, drop=("topic", *V1_DROPPED)))
    _write(output / "articles" / "date=2024-03-01" / "topic=politics" /
           "part-old-00000.parquet", table)


def test_files_of_two_schema_versions_read_together(tmp_path):
    output = tmp_path / "out"
    make_dataset(output, runs=2)
    new = dataclasses.replace(_article(90001, 1), feed_url="https://x.test/feed")
    _write(output / "articles" / "date=2024-03-01" / "topic=sport" / "part-new-00000.parquet",
           to_table([new], arrow_schema(Article, drop=("topic",))))
    _old_version_article_file(output)
    glob = f"{output}/articles/**/*.parquet"

    # DuckDB: union_by_name; the old row's feed columns are NULL.
    with duckdb.connect() as db:
        rows = dict(db.execute(
            f"SELECT article_id, (schema_version, feed_url) FROM read_parquet('{glob}', "
            "hive_partitioning = true, union_by_name = true)").fetchall())
    assert rows["a90000"] == (1, None) and rows["a90001"] == (SCHEMA_VERSION, "https://x.test/feed")
    # pyarrow: the unified schema of every file (the first file's alone would drop columns).
    files = ds.dataset(str(output / "articles"), format="parquet", partitioning="hive")
    unified = pa.unify_schemas([f.physical_schema for f in files.get_fragments()] +
                               [files.partitioning.schema])
    table = ds.dataset(str(output / "articles"), format="parquet", partitioning="hive",
                       schema=unified).to_table()
    by_id = {r["article_id"]: r for r in table.to_pylist()}
    assert by_id["a90000"]["feed_url"] is None and by_id["a90000"]["schema_version"] == 1
    assert by_id["a90001"]["feed_url"] == "https://x.test/feed"

    notes = [f.what for f in check.check(str(output)) if not f.broken]
    assert f"articles/: schema versions v1: 1 rows, v{SCHEMA_VERSION}: 11 rows" in notes

    # Compaction merges both versions under the unified schema; each row keeps its version.
    before = _duck_rows(output, "articles")
    assert main(["compact", "--output", str(output), "--dataset", "articles"]) == 0
    assert _duck_rows(output, "articles") == before
    merged = pq.read_table(next((output / "articles" / "date=2024-03-01" / "topic=politics")
                                .glob("*.parquet")))
    assert set(V1_DROPPED) <= set(merged.column_names)
    assert sorted(set(merged.column("schema_version").to_pylist())) == [1, SCHEMA_VERSION]


def test_index_files_of_an_older_version_are_read_at_run_time(tmp_path):
    """ReadIndex lists the files when the job runs, and a column an older file lacks is None."""
    output = tmp_path / "out"
    old = pa.table({"article_id": ["old-1"], "content_hash": ["h"], "run_id": ["r0"],
                    "ingested_at": pa.array([DAY], pa.timestamp("us", tz="UTC"))})
    _write(output / "index" / "articles" / "part-r0-00000.parquet", old)
    pipeline = test_pipeline.TestPipeline(runner="FnApiRunner")
    rows = pipeline | dataset.ReadIndex(str(output), dataset.INDEX_ARTICLES)
    # Written after the graph was built: still read, because the listing happens at run time.
    _write(output / "index" / "articles" / "part-r1-00000.parquet",
           to_table([IndexEntry("new-1", "h", "r1", DAY, "https://x.test/a", DAY)],
                    arrow_schema(IndexEntry)))
    assert_that(rows | beam.Map(lambda r: (r["article_id"], r["canonical_url"])),
                equal_to([("old-1", None), ("new-1", "https://x.test/a")]))
    pipeline.run().wait_until_finish()


# Version 3 had no publication offset or date precision (added in version 4).
V3_DROPPED = ("published_offset_min", "date_precision")


def test_schema_3_and_4_files_read_and_compact_together(tmp_path):
    assert all(name in SCHEMA_CHANGES[4] for name in V3_DROPPED)
    output = tmp_path / "out"
    partition = output / "articles" / "date=2024-03-01" / "topic=politics"
    old = dataclasses.replace(_article(90010, 0), schema_version=3)
    _write(partition / "part-v3-00000.parquet",
           to_table([old], arrow_schema(Article, drop=("topic", *V3_DROPPED))))
    new = dataclasses.replace(_article(90011, 1), published_offset_min=60, date_precision="time")
    _write(partition / "part-v4-00000.parquet",
           to_table([new], arrow_schema(Article, drop=("topic",))))
    glob = f"{output}/articles/**/*.parquet"
    with duckdb.connect() as db:
        rows = dict(db.execute(
            f"SELECT article_id, (schema_version, published_offset_min, date_precision) "
            f"FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
        ).fetchall())
    assert rows == {"a90010": (3, None, None), "a90011": (SCHEMA_VERSION, 60, "time")}

    before = _duck_rows(output, "articles")
    assert main(["compact", "--output", str(output), "--dataset", "articles"]) == 0
    assert _duck_rows(output, "articles") == before
    (merged,) = partition.glob("*.parquet")
    table = pq.read_table(merged)
    assert set(V3_DROPPED) <= set(table.column_names)
    by_id = {r["article_id"]: r for r in table.to_pylist()}
    assert (by_id["a90010"]["schema_version"], by_id["a90010"]["date_precision"]) == (3, None)
    assert by_id["a90011"]["published_offset_min"] == 60
