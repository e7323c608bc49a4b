"""Skipping unchanged inputs (transforms/input_index.py): pure rules, and re-runs of `newsbeam
run` over real files that are left alone, touched, changed, or failed in a way that may heal."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import SEEDS, manifests, read_dataset, run_cli
from tests.test_sources_hardening import BODIES, build_warc
from newsbeam.transforms.input_index import (InputFacts, entry_if_complete, input_of, latest_entry,
                                             listing_matches, outcome_summary)

NOW = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)


# --- pure functions ------------------------------------------------------------------------------


@pytest.mark.parametrize("source_uri, expected", [
    ("/in/a.txt", "/in/a.txt"),
    ("/in/a.jsonl#L12", "/in/a.jsonl"),
    ("/in/crawl.warc.gz#offset=4096", "/in/crawl.warc.gz"),
    ("/in/odd#name.txt", "/in/odd#name.txt"),
])
def test_input_of(source_uri, expected):
    assert input_of(source_uri) == expected


def test_latest_entry_and_listing():
    old = {"size": 10, "mtime": 1.5, "recorded_at": NOW, "run_id": "a"}
    new = {"size": 12, "mtime": 2.5, "recorded_at": NOW + dt.timedelta(days=1), "run_id": "b"}
    assert latest_entry([old, new]) is new and latest_entry([]) is None
    assert listing_matches(12, 2.5, new)
    assert not listing_matches(12, 2.6, new) and not listing_matches(11, 2.5, new)
    assert not listing_matches(12, 2.5, None)


def test_a_file_is_recorded_only_when_every_input_ended_for_good():
    facts = InputFacts("/in/a.jsonl", 100, 1.0, "ab" * 32, inputs=3)
    entry = entry_if_complete(facts, [None, "malformed_jsonl", None], "run", NOW)
    assert (entry.source_uri, entry.inputs, entry.outcome, entry.content_hash) == (
        "/in/a.jsonl", 3, "extracted=2,malformed_jsonl=1", "ab" * 32)
    # A document still unaccounted for, or one that failed in a way that may heal: not recorded.
    assert entry_if_complete(facts, [None, None], "run", NOW) is None
    assert entry_if_complete(facts, [None, None, "extraction_timeout"], "run", NOW) is None
    assert entry_if_complete(facts, [None, None, "internal_error"], "run", NOW) is None
    assert outcome_summary([]) == ""


# --- re-runs -------------------------------------------------------------------------------------


def _run(capsys, inputs: Path, output: Path) -> dict:
    status, printed = run_cli(capsys, "run", "--input", str(inputs), "--output", str(output))
    assert status == 0, printed
    manifest = manifests(output)[-1]
    assert manifest["accounting"]["balanced"], manifest["accounting"]
    return manifest


def _index(output: Path) -> list[dict]:
    return read_dataset(output / "index" / "inputs").to_pylist()


def test_reruns_skip_unchanged_and_touched_files_and_read_changed_ones(capsys, tmp_path):
    inputs, output = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for seed in SEEDS.glob("*.txt"):
        shutil.copy(seed, inputs / seed.name)
    (inputs / "records.jsonl").write_text(
        '{"text": "The port reopened on Monday after a week of repairs to the main quay, the '
        'harbour authority said."}\n{broken\n')
    (inputs / "empty.txt").write_bytes(b"")

    first = _run(capsys, inputs, output)
    assert first["counts"]["documents"] == 3 and first["accounting"]["inputs"] == 5
    assert {(Path(r["source_uri"]).name, r["inputs"]) for r in _index(output)} == {
        ("000_dac305c5b36f0b2f.txt", 1), ("004_732ed2892add5ac6.txt", 1),
        ("records.jsonl", 2), ("empty.txt", 1)}

    # Nothing changed: nothing is read; every input counts as already ingested.
    second = _run(capsys, inputs, output)
    assert second["counts"]["documents"] == 0 and second["counts"]["read_errors"] == 0
    assert second["accounting"]["inputs"] == 5 == second["accounting"]["already_ingested"]
    assert second["counts"]["inputs_unchanged"] == 5

    # Touched (new modification time, same bytes): hashed, not read, its entry refreshed.
    touched = inputs / "records.jsonl"
    os.utime(touched, (touched.stat().st_atime, touched.stat().st_mtime + 60))
    third = _run(capsys, inputs, output)
    assert third["counts"]["documents"] == 0 and third["counts"]["inputs_unchanged"] == 5
    entries = [r for r in _index(output) if r["source_uri"] == str(touched)]
    assert max(entries, key=lambda r: r["recorded_at"])["mtime"] == touched.stat().st_mtime
    fourth = _run(capsys, inputs, output)
    assert fourth["counts"]["documents"] == 0
    assert not [r for r in _index(output) if r["run_id"] == fourth["run_id"]]

    # Changed: read again; only what is new is stored.
    with open(touched, "a") as handle:
        handle.write('{"text": "Firefighters contained a wildfire that had burned across the '
                     'hills above the town for three days, officials said on Sunday."}\n')
    fifth = _run(capsys, inputs, output)
    assert fifth["counts"]["documents"] == 2            # lines 1 and 3; line 2 is an error
    assert fifth["counts"]["inputs_unchanged"] == 3     # the two seeds and the empty file
    assert fifth["accounting"]["articles"] == 1
    assert read_dataset(output / "articles").num_rows == 4


def test_a_file_that_failed_in_a_way_that_may_heal_is_read_again(capsys, tmp_path):
    inputs, output = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    shutil.copy(SEEDS / "000_dac305c5b36f0b2f.txt", inputs / "story.txt")
    data, spans = build_warc(BODIES, gzipped=True)
    archive = inputs / "crawl.warc.gz"
    archive.write_bytes(data[:(spans[2][0] + spans[2][1]) // 2])   # a download cut short

    _run(capsys, inputs, output)
    assert [Path(r["source_uri"]).name for r in _index(output)] == ["story.txt"]

    again = _run(capsys, inputs, output)
    assert again["counts"]["inputs_unchanged"] == 1
    assert again["counts"]["documents"] == 2            # the archive's two whole pages, again
    assert again["accounting"]["already_ingested"] == 3

    archive.write_bytes(data)                            # the download completed
    done = _run(capsys, inputs, output)
    assert done["accounting"]["articles"] == 2           # pages 3 and 4
    assert {Path(r["source_uri"]).name for r in _index(output)} == {"story.txt",
                                                                   "crawl.warc.gz"}
