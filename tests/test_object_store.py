"""The whole pipeline against an object store (no folders, rename = copy + delete), the way it
runs on Dataflow with gs:// paths: inputs, partitions, temp files, index and manifest."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest

from newsbeam.pipelines import ingest
from tests.conftest import SEEDS
from tests.objectstore import SCHEME, MemoryObjectStore

BUCKET = f"{SCHEME}://bucket"


@pytest.fixture
def store():
    MemoryObjectStore.clear()
    objects = MemoryObjectStore.objects
    for seed in SEEDS.iterdir():
        objects[f"{BUCKET}/in/seeds/{seed.name}"] = (seed.read_bytes(), 0.0)
    objects[f"{BUCKET}/in/records.jsonl"] = (
        b'{"id": 1, "title": "Port reopens", "text": "The port reopened on Monday after '
        b'a week of repairs to the main quay, the harbour authority said."}\n{broken\n', 0.0)
    objects[f"{BUCKET}/in/.DS_Store"] = (b"\x00\x01", 0.0)
    yield objects
    MemoryObjectStore.clear()


def _keys(objects, prefix):
    return sorted(key[len(prefix):] for key in objects if key.startswith(prefix))


def _rows(objects, key):
    return pq.read_table(io.BytesIO(objects[key][0])).to_pylist()


def test_runs_on_an_object_store_and_reruns_add_nothing(store):
    output = f"{BUCKET}/news"
    # A folder named without its trailing slash, and a glob that names nothing.
    argv = ["--input", f"{BUCKET}/in", "--input", f"{BUCKET}/elsewhere/*.txt",
            "--output", output, "--topic_model", "none"]  # one partition: section topics only

    first = ingest.run(argv)

    assert first["accounting"] == {"inputs": 5, "articles": 3, "duplicates": 0, "errors": 2,
                                   "errors_recorded_before": 0, "already_ingested": 0,
                                   "skipped_unchanged": 0,
                                   "balanced": True}
    written = _keys(store, output + "/")
    assert not [key for key in written if ".tmp" in key]
    articles = [key for key in written if key.startswith("articles/")]
    assert len(articles) == 1 and articles[0].startswith("articles/date=")
    assert "/topic=unclassified/part-" in articles[0]
    assert {row["source_uri"] for row in _rows(store, f"{output}/{articles[0]}")} == {
        f"{BUCKET}/in/seeds/000_dac305c5b36f0b2f.txt",
        f"{BUCKET}/in/seeds/004_732ed2892add5ac6.txt", f"{BUCKET}/in/records.jsonl#L1"}
    errors = [row for key in written if key.startswith("errors/")
              for row in _rows(store, f"{output}/{key}")]
    assert sorted((e["source_uri"], e["reason"]) for e in errors) == [
        (f"{BUCKET}/elsewhere/*.txt", "no_match"),
        (f"{BUCKET}/in/records.jsonl#L2", "malformed_jsonl")]
    manifest = json.loads(store[f"{output}/_runs/{first['run_id']}.json"][0])
    assert manifest["accounting"]["balanced"]

    second = ingest.run(argv)

    # Nothing changed in the store (FileSystems metadata: size and update time): no file is
    # read; its 4 inputs count as already ingested. The glob that names nothing fails again.
    assert second["counts"]["documents"] == 0
    assert second["accounting"]["already_ingested"] == 4
    assert second["accounting"]["errors_recorded_before"] == 1
    assert second["accounting"]["balanced"]
    new_keys = set(_keys(store, output + "/")) - set(written)
    assert new_keys == {f"_runs/{second['run_id']}.json"}
