"""Unit tests for schemas/records.py: Arrow schemas derived from the record dataclasses."""

import dataclasses
import datetime as dt

import pyarrow as pa
import pytest

from newsbeam.schemas.records import (Article, Duplicate, Entity, ErrorRow, IndexEntry, TopicScore,
                                      arrow_schema, to_row, to_table)

UTC = dt.timezone.utc
WRITTEN = [Article, Duplicate, ErrorRow, IndexEntry]


# --- arrow_schema --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", WRITTEN, ids=lambda c: c.__name__)
def test_schema_has_every_field_in_order(cls):
    assert arrow_schema(cls).names == [f.name for f in dataclasses.fields(cls)]


@pytest.mark.parametrize("cls", WRITTEN, ids=lambda c: c.__name__)
def test_optional_fields_nullable_others_not(cls):
    # In these records a field is Optional[...] exactly when its default is None.
    schema = arrow_schema(cls)
    for field in dataclasses.fields(cls):
        assert schema.field(field.name).nullable == (field.default is None), field.name


def test_article_nullability_by_name():
    schema = arrow_schema(Article)
    for name in ("title", "url", "canonical_url", "published_at", "topic_confidence",
                 "language", "story_id"):
        assert schema.field(name).nullable, name
    for name in ("article_id", "text", "content_hash", "ingested_at", "word_count", "topic",
                 "authors", "entities", "is_story_lead", "schema_version"):
        assert not schema.field(name).nullable, name


def test_scalar_types():
    schema = arrow_schema(Article)
    assert schema.field("text").type == pa.string()
    assert schema.field("word_count").type == pa.int64()
    assert schema.field("topic_confidence").type == pa.float64()
    assert schema.field("is_story_lead").type == pa.bool_()
    assert schema.field("ingested_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("published_at").type == pa.timestamp("us", tz="UTC")


def test_list_of_strings():
    authors = arrow_schema(Article).field("authors").type
    assert pa.types.is_list(authors)
    assert authors.value_type == pa.string()
    assert not authors.value_field.nullable


def test_list_of_entities_is_list_of_struct():
    entities = arrow_schema(Article).field("entities").type
    assert pa.types.is_list(entities)
    item = entities.value_type
    assert pa.types.is_struct(item)
    assert [item.field(i).name for i in range(item.num_fields)] == ["text", "label", "count",
                                                                    "start", "variants"]
    assert item.field("text").type == pa.string()
    assert item.field("label").type == pa.string()
    assert item.field("count").type == pa.int64()
    assert item.field("start").type == pa.int64()
    assert item.field("variants").type == pa.list_(pa.field("element", pa.string(),
                                                            nullable=False))
    assert not any(item.field(i).nullable for i in range(item.num_fields))


def test_topic_scores_is_list_of_struct():
    item = arrow_schema(Article).field("topic_scores").type.value_type
    assert item == pa.struct([pa.field("topic", pa.string(), nullable=False),
                              pa.field("score", pa.float64(), nullable=False)])


def test_drop_removes_columns():
    full = arrow_schema(Article)
    dropped = arrow_schema(Article, drop=("topic", "published_at"))
    assert "topic" not in dropped.names and "published_at" not in dropped.names
    assert dropped.names == [n for n in full.names if n not in ("topic", "published_at")]
    # A name that is not a column is no error.
    assert arrow_schema(Article, drop=("no_such_column",)).names == full.names


def test_unsupported_type_raises():
    @dataclasses.dataclass
    class Bad:
        blob: dict

    with pytest.raises(TypeError):
        arrow_schema(Bad)


# --- to_table round trip -------------------------------------------------------------------------


def full_article() -> Article:
    return Article(
        article_id="0123456789abcdef01234567", source_uri="gs://bucket/feed.jsonl#L3",
        text="Joe Biden said...\n\nMore text.", word_count=5, content_hash="ab" * 32,
        ingested_at=dt.datetime(2022, 2, 17, 8, 0, 0, 123456, tzinfo=UTC),
        date_source="published", run_id="run-1", source_id="42",
        url="https://www.example.com/a?utm_source=x", canonical_url="https://example.com/a",
        publisher="Example News", domain="example.com", title="Title", description=None,
        authors=["A. Writer", "B. Editor"], language="en",
        # 15:00 at +05:00 is 10:00 UTC.
        published_at=dt.datetime(2022, 2, 16, 15, 0, tzinfo=dt.timezone(dt.timedelta(hours=5))),
        categories=["World", "Politics"], wire_sources=["Reuters"], topic="politics",
        topic_confidence=0.75, topic_source="section",
        topic_scores=[TopicScore("politics", 0.75), TopicScore("conflict-war-peace", 0.25)],
        entities=[Entity("Joe Biden", "PERSON", 2, 0, ["Biden"]), Entity("Ukraine", "GPE", 1, 31)],
        duplicate_count=3, story_id=None, is_story_lead=True)


def from_row(row: dict) -> Article:
    row = dict(row)
    row["entities"] = [Entity(**e) for e in row["entities"]]
    row["topic_scores"] = [TopicScore(**t) for t in row["topic_scores"]]
    return Article(**row)


def test_to_table_round_trip():
    article = full_article()
    schema = arrow_schema(Article)
    table = to_table([article], schema)
    assert table.schema == schema
    assert table.num_rows == 1
    # Through Arrow's Python conversion both ways.
    rows = pa.Table.from_pylist(table.to_pylist(), schema=schema).to_pylist()
    back = from_row(rows[0])
    assert back == article   # aware datetimes compare as instants


def test_to_table_timestamps_are_utc_microseconds():
    table = to_table([full_article()], arrow_schema(Article))
    row = table.to_pylist()[0]
    assert row["published_at"].utcoffset() == dt.timedelta(0)
    assert row["published_at"].replace(tzinfo=None) == dt.datetime(2022, 2, 16, 10, 0)
    assert row["ingested_at"].microsecond == 123456
    assert row["entities"] == [{"text": "Joe Biden", "label": "PERSON", "count": 2, "start": 0,
                                "variants": ["Biden"]},
                               {"text": "Ukraine", "label": "GPE", "count": 1, "start": 31,
                                "variants": []}]
    assert row["topic_scores"] == [{"topic": "politics", "score": 0.75},
                                   {"topic": "conflict-war-peace", "score": 0.25}]
    assert row["description"] is None and row["story_id"] is None


def test_to_table_with_dropped_columns_and_several_rows():
    first = full_article()
    second = dataclasses.replace(first, article_id="b" * 24, entities=[], topic_scores=[],
                                 published_at=None, title=None)
    schema = arrow_schema(Article, drop=("topic",))
    table = to_table([first, second], schema)
    assert "topic" not in table.column_names
    assert table.column("article_id").to_pylist() == [first.article_id, "b" * 24]
    assert table.column("entities").to_pylist()[1] == []
    assert table.column("published_at").null_count == 1


def test_to_table_empty():
    schema = arrow_schema(IndexEntry)
    table = to_table([], schema)
    assert table.num_rows == 0 and table.schema == schema


def test_to_row_nests_records():
    row = to_row(full_article())
    assert row["entities"][0] == {"text": "Joe Biden", "label": "PERSON", "count": 2, "start": 0,
                                  "variants": ["Biden"]}
    assert row["topic_scores"][1] == {"topic": "conflict-war-peace", "score": 0.25}
