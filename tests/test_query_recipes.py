"""The README's query recipes, run as written against the sample dataset of two real runs
(`output` in the working directory is that dataset), each engine checked against the others'
numbers. Spark runs where pyspark is installed and `java` is on PATH; BigQuery cannot run here,
so its DDL is checked to be what pipelines/bigquery.py writes."""

from __future__ import annotations

import re
import shutil

import duckdb
import pyarrow as pa
import pytest

from newsbeam.pipelines.bigquery import external_table_ddl
from tests import dataset
from tests.conftest import ROOT

_RECIPE = re.compile(r"<!-- recipe: (?P<name>[\w-]+) -->\n```(?P<lang>\w+)\n(?P<code>.*?)```",
                     re.DOTALL)


def readme_recipes() -> dict[str, str]:
    return {m["name"]: m["code"] for m in _RECIPE.finditer((ROOT / "README.md").read_text())}


@pytest.fixture
def in_dataset_folder(sample_dataset, tmp_path, monkeypatch):
    """A working directory whose `output` is the sample dataset, as after `make run`."""
    (tmp_path / "output").symlink_to(sample_dataset, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(name: str) -> dict:
    namespace: dict = {}
    exec(compile(readme_recipes()[name], f"README.md recipe {name}", "exec"), namespace)
    return namespace


def _articles(where: str = "true") -> int:
    return duckdb.sql("SELECT count(*) FROM read_parquet('output/articles/**/*.parquet', "
                      f"hive_partitioning = true) WHERE {where}").fetchall()[0][0]


def test_every_engine_has_its_recipe():
    assert set(readme_recipes()) == {"duckdb", "duckdb-entities", "pandas", "polars", "spark",
                                     "bigquery"}


def test_duckdb(in_dataset_folder):
    found = _run("duckdb")
    sport = found["sport"]
    assert len(sport) == _articles("topic = 'sport'") > 0
    assert [row[0] for row in sport] == sorted((row[0] for row in sport), reverse=True)
    assert all(row[1] == "sport" and isinstance(row[3], list) for row in sport)
    stories = found["stories"]
    assert len(stories) == len({row[0] for row in stories}) == duckdb.sql(
        "SELECT count(DISTINCT story_id) FROM 'output/stories/**/*.parquet'").fetchall()[0][0]
    assert stories[0][2] == max(row[2] for row in stories) > 1


def test_duckdb_entities(in_dataset_folder):
    people = duckdb.sql(readme_recipes()["duckdb-entities"]).fetchall()
    assert people and all(isinstance(name, str) and mentions > 0 for name, mentions in people)


def test_pandas_and_pyarrow(in_dataset_folder):
    found = _run("pandas")
    politics, table = found["politics"], found["table"]
    assert len(politics) == table.num_rows == _articles("topic = 'politics'") > 0
    assert list(politics.columns) == ["date", "title", "publisher"]
    assert set(table.column("topic").to_pylist()) == {"politics"}


def test_polars(in_dataset_folder):
    per_topic = _run("polars")["per_topic"]
    expected = dict(duckdb.sql("SELECT topic, count(*) FROM read_parquet("
                               "'output/articles/**/*.parquet', hive_partitioning = true) "
                               "GROUP BY 1").fetchall())
    assert dict(zip(per_topic["topic"], per_topic["articles"])) == expected
    assert sum(expected.values()) == dataset.ARTICLES


def test_spark(in_dataset_folder, monkeypatch):
    pytest.importorskip("pyspark", reason="pyspark is not installed (pip install -e '.[spark]')")
    if shutil.which("java") is None:
        pytest.skip("Spark needs java on PATH")
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")  # the driver talks to itself on loopback
    found = _run("spark")
    try:
        articles, one_day = found["articles"], found["one_day"]
        assert articles.count() == dataset.ARTICLES
        assert {"date", "topic"} <= set(articles.columns)
        assert dict(articles.dtypes)["date"] == "date"
        # basePath keeps the partition column of the folder read.
        assert "date" in one_day.columns and one_day.count() == _articles(
            "date = DATE '2026-11-30'") == 6
        assert {str(row["date"]) for row in one_day.select("date").collect()} == {"2026-11-30"}
        authors = dict(articles.dtypes)["authors"]
        assert authors == "array<string>"   # the compliant list layout reads as an array
    finally:
        found["spark"].stop()


def test_bigquery_ddl_is_what_the_code_writes():
    ddl = readme_recipes()["bigquery"].strip()
    assert ddl == external_table_ddl("gs://B/news", "PROJECT.DATASET")
    # The two settings that matter, spelled as BigQuery's DDL spells them.
    articles = ddl.split("\n\n")[0]
    assert "WITH PARTITION COLUMNS (`date` DATE, `topic` STRING)" in articles
    assert "hive_partition_uri_prefix = 'gs://B/news/articles/'" in articles
    assert "enable_list_inference = TRUE" in articles


def test_recipes_read_a_dataset_with_schema_3_files(sample_dataset, tmp_path, monkeypatch):
    """A dataset written before schema 4 (no published_offset_min, date_precision) and after:
    the recipes read both kinds of files together."""
    import pyarrow.parquet as pq

    from newsbeam.schemas.records import arrow_schema, Article
    mixed = tmp_path / "output"
    shutil.copytree(sample_dataset, mixed)
    source = next((mixed / "articles").rglob("*.parquet"))
    table = pq.read_table(source)
    old = table.drop_columns(["published_offset_min", "date_precision"])
    old = old.set_column(old.schema.get_field_index("schema_version"), "schema_version",
                         pa.array([3] * old.num_rows, pa.int64()))
    assert "published_offset_min" in arrow_schema(Article).names
    pq.write_table(old, source.with_name("part-v3-00000.parquet"),
                   use_compliant_nested_type=True)
    source.unlink()
    monkeypatch.chdir(tmp_path)
    assert len(_run("duckdb")["sport"]) == _articles("topic = 'sport'")
    assert _run("pandas")["table"].num_rows == _articles("topic = 'politics'")
    assert sum(_run("polars")["per_topic"]["articles"]) == dataset.ARTICLES
