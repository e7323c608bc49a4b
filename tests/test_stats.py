"""`newsbeam inspect`'s breakdowns (pipelines/stats.py) over a dataset of two real runs, checked
against DuckDB queries of the same folder: an engine that shares no code with newsbeam."""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest

from newsbeam.pipelines import stats
from newsbeam.pipelines.cli import main
from tests import dataset
from tests.conftest import run_cli
from tests.objectstore import SCHEME, MemoryObjectStore


def _query(output, name: str, sql: str) -> list[tuple]:
    """`sql` over OUTPUT/<name>/ as the table `t`."""
    relation = f"read_parquet('{output}/{name}/**/*.parquet', hive_partitioning = true, " \
               "union_by_name = true)"
    return duckdb.sql(sql.replace("FROM t", f"FROM {relation}")).fetchall()


def _counts(output, name: str, expression: str) -> dict:
    return dict(_query(output, name, f"SELECT {expression}, count(*) FROM t GROUP BY 1"))


@pytest.fixture(scope="module")
def inspected(sample_dataset):
    return stats.dataset_stats(str(sample_dataset))


def test_article_breakdowns_match_duckdb(sample_dataset, inspected):
    a = inspected["articles"]
    assert a["rows"] == dataset.ARTICLES == _query(sample_dataset, "articles",
                                                   "SELECT count(*) FROM t")[0][0]
    assert a["topics"] == _counts(sample_dataset, "articles", "topic")
    assert a["languages"] == _counts(sample_dataset, "articles", "coalesce(language, '(none)')")
    assert a["date_sources"] == _counts(sample_dataset, "articles", "date_source")
    assert a["per_day"] == {str(day): n for day, n in _counts(
        sample_dataset, "articles", "date").items()}
    per_day_topic = _query(sample_dataset, "articles",
                           "SELECT date, topic, count(*) FROM t GROUP BY 1, 2 ORDER BY 1, 2")
    assert [(r["date"], r["topic"], r["articles"]) for r in a["per_day_topic"]] == [
        (str(day), topic, n) for day, topic, n in per_day_topic]
    publishers = _counts(sample_dataset, "articles", "coalesce(publisher, domain, '(none)')")
    assert a["publishers"] == stats.ranked(publishers, stats.TOP)
    assert a["publishers_distinct"] == len(publishers)
    wires = dict(_query(sample_dataset, "articles",
                        "SELECT w, count(*) FROM t, unnest(wire_sources) AS u(w) GROUP BY 1"))
    assert a["wire_sources"] == stats.ranked(wires)
    # The ordering is the one people read: most first, ties by name.
    assert list(a["topics"].values()) == sorted(a["topics"].values(), reverse=True)
    # What the inputs hold, so the checks above compare something: several days, topics,
    # both languages, both kinds of date, three agencies.
    assert a["days"] >= 8 and len(a["topics"]) >= 6
    assert {"en", "de"} <= set(a["languages"]) and set(a["date_sources"]) == {"published",
                                                                             "ingested"}
    assert {"Reuters", "AFP", "Anadolu Agency"} <= set(wires)
    assert (a["first_date"], a["last_date"]) == (min(a["per_day"]), max(a["per_day"]))


def test_entities_are_counted_by_articles_then_mentions(sample_dataset, inspected):
    expected = _query(sample_dataset, "articles", """
        SELECT e.text, e.label, count(*) AS articles, sum(e.count) AS mentions
        FROM t, unnest(entities) AS u(e) GROUP BY 1, 2
        ORDER BY articles DESC, mentions DESC, 1, 2 LIMIT 10""")
    got = inspected["articles"]["entities"]
    assert [(e["text"], e["label"], e["articles"], e["mentions"]) for e in got] == expected
    assert inspected["articles"]["entities_distinct"] == _query(
        sample_dataset, "articles",
        "SELECT count(DISTINCT (e.text, e.label)) FROM t, unnest(entities) AS u(e)")[0][0]


def test_duplicates_errors_and_stories_match_duckdb(sample_dataset, inspected):
    d, e, s = inspected["duplicates"], inspected["errors"], inspected["stories"]
    assert d["rows"] == dataset.DUPLICATES
    assert d["methods"] == _counts(sample_dataset, "duplicates", "method")
    # Copies per kept article, articles without copies included.
    copies = dict(_query(sample_dataset, "articles", f"""
        SELECT coalesce(c.n, 0), count(*) FROM t
        LEFT JOIN (SELECT duplicate_of, count(*) AS n FROM read_parquet(
                   '{sample_dataset}/duplicates/**/*.parquet') GROUP BY 1) c
               ON c.duplicate_of = article_id GROUP BY 1"""))
    assert {h["size"]: h["count"] for h in d["copies_per_article"]} == copies
    assert copies[1] == dataset.DUPLICATES

    assert e["rows"] == dataset.ERRORS
    reasons = _query(sample_dataset, "errors", "SELECT stage, reason, count(*) FROM t "
                                               "GROUP BY 1, 2")
    assert e["by_stage"] == {"read": {reason: n for _, reason, n in reasons}}
    assert set(e["by_stage"]["read"]) == {"empty_input", "invalid_record", "malformed_jsonl"}

    # A story grown by the second run has two rows; the later one is current.
    current = _query(sample_dataset, "stories", """
        SELECT member_count, count(*) FROM (
            SELECT story_id, arg_max(member_count, updated_at) AS member_count FROM t
            GROUP BY story_id) GROUP BY 1""")
    assert {h["size"]: h["count"] for h in s["sizes"]} == dict(current)
    assert s["stories"] == sum(n for _, n in current)
    assert s["rows"] == _query(sample_dataset, "stories", "SELECT count(*) FROM t")[0][0]
    assert s["with_several_articles"] == sum(n for size, n in current if size > 1) > 0
    assert [x["articles"] for x in s["largest"]] == sorted(
        (x["articles"] for x in s["largest"]), reverse=True)
    assert s["largest"][0]["articles"] == max(size for size, _ in current)


def test_runs_newest_first_with_their_times(sample_dataset, inspected):
    runs = inspected["runs"]
    assert runs["total"] == 2
    assert [r["run_id"] for r in runs["last"]] == [dataset.SECOND_RUN, dataset.FIRST_RUN]
    second, first = runs["last"]
    assert (first["inputs"], first["articles"], first["duplicates"], first["errors"]) == (
        dataset.FIRST_RUN_INPUTS, 29, dataset.DUPLICATES, dataset.ERRORS)
    assert (second["inputs"], second["articles"], second["already_ingested"]) == (
        dataset.SECOND_RUN_INPUTS, 6, 2)
    assert first["started_at"] < second["started_at"] and first["elapsed_s"] > 0
    assert first["balanced"] and second["balanced"]


def test_one_runs_part_of_the_dataset(sample_dataset):
    second = stats.dataset_stats(str(sample_dataset), run_id=dataset.SECOND_RUN)
    assert second["articles"]["rows"] == 6
    assert second["articles"]["per_day"] == {"2026-11-30": 6}
    assert second["duplicates"]["rows"] == 0 and second["errors"]["rows"] == 0
    assert second["stories"]["rows"] == _query(
        sample_dataset, "stories",
        f"SELECT count(*) FROM t WHERE run_id = '{dataset.SECOND_RUN}'")[0][0]


def test_inspect_json_is_the_stats_and_runs_limits_the_list(capsys, sample_dataset, inspected):
    status, printed = run_cli(capsys, "inspect", "--output", str(sample_dataset), "--json")
    assert status == 0
    assert json.loads(printed) == json.loads(json.dumps(inspected))

    status, printed = run_cli(capsys, "inspect", "--output", str(sample_dataset), "--json",
                              "--runs", "1")
    assert [r["run_id"] for r in json.loads(printed)["runs"]["last"]] == [dataset.SECOND_RUN]


def test_inspect_text_names_the_breakdowns(capsys, sample_dataset, inspected):
    status, printed = run_cli(capsys, "inspect", "--output", str(sample_dataset))
    assert status == 0
    a = inspected["articles"]
    lines = printed.splitlines()
    assert lines[0] == (f"{sample_dataset}: 2 runs, {a['rows']} articles, "
                        f"{dataset.DUPLICATES} duplicates, {dataset.ERRORS} errors, "
                        f"{inspected['stories']['stories']} stories")
    assert f"articles: {a['rows']} rows in {a['files']} files, {a['first_date']} .. " \
           f"{a['last_date']} ({a['days']} days)" in lines
    topic, count = next(iter(a["topics"].items()))
    assert any(line.startswith(f"  by topic: {topic} {count}, ") for line in lines)
    assert any(line.startswith("  by language: en ") and "de 3" in line for line in lines)
    assert "  read: empty_input 1, invalid_record 1, malformed_jsonl 1" in lines
    assert any(line.startswith(f"  {dataset.SECOND_RUN}: ") and "6 articles" in line
               for line in lines)
    assert lines.index(next(line for line in lines if dataset.SECOND_RUN in line)) < \
        lines.index(next(line for line in lines if dataset.FIRST_RUN in line))


def test_inspect_without_runs_says_so(capsys, tmp_path):
    assert main(["inspect", "--output", str(tmp_path), "--json"]) == 1
    assert "no runs under" in capsys.readouterr().err


def test_temp_and_hidden_files_are_not_counted(sample_dataset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(sample_dataset, copy)
    some_file = next((copy / "articles").rglob("*.parquet"))
    # A run in progress, an editor's or Spark's files: not data.
    for name in (".tmp/run/x.parquet", "_temporary/0/x.parquet", "date=2026-11-20/.x.parquet"):
        (copy / "articles" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(some_file, copy / "articles" / name)
    assert stats.article_stats(str(copy), None, stats.TOP)["rows"] == dataset.ARTICLES


def test_same_numbers_on_an_object_store(sample_dataset, inspected):
    """Through Beam's FileSystems, as on gs://: no folders, only object keys."""
    bucket = f"{SCHEME}://bucket/news"
    MemoryObjectStore.clear()
    try:
        for path in sample_dataset.rglob("*"):
            if path.is_file():
                key = f"{bucket}/{path.relative_to(sample_dataset).as_posix()}"
                MemoryObjectStore.objects[key] = (path.read_bytes(), 0.0)
        remote = stats.dataset_stats(bucket)
    finally:
        MemoryObjectStore.clear()
    assert {**remote, "output": None} == {**inspected, "output": None}


def test_pure_helpers():
    assert stats.partition_keys("/d/articles", "/d/articles/date=2026-11-30/topic=sport/p.parquet"
                                ) == {"date": "2026-11-30", "topic": "sport"}
    assert stats.partition_keys("gs://b/articles", "gs://b/articles/date=2026-11-30/p.parquet"
                                ) == {"date": "2026-11-30"}
    assert stats.is_data_file("/d/a", "/d/a/date=x/part-1.parquet")
    assert not stats.is_data_file("/d/a", "/d/a/.tmp/part-1.parquet")
    assert not stats.is_data_file("/d/a", "/d/a/date=x/_SUCCESS")
    assert stats.ranked({"b": 2, "a": 2, "c": 5}, 2) == {"c": 5, "a": 2}
