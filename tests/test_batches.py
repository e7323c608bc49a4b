"""Batched runs (transforms/batches.py): one `newsbeam run` as a sequence of bounded, committed
batches gives the output of one unbatched run; a large file is read in slices; a re-run skips
the slices already done; a kill between batches loses nothing and stores nothing twice; a
batch size that cannot be honoured is refused."""

from __future__ import annotations

import datetime as dt
import io
import json
import signal
from pathlib import Path

import pytest

from tests.conftest import SEEDS, manifests, read_dataset, run_cli
from tests.test_cli import refused
from newsbeam.transforms.batches import InputBatch, plan_batches, plan_run
from newsbeam.transforms.input_index import input_of
from newsbeam.transforms.sources import WHOLE_FILE, record_count, slice_uri
from newsbeam.transforms.warc import warc_outcomes

REUTERS = (SEEDS / "000_dac305c5b36f0b2f.txt").read_text()
ANADOLU = (SEEDS / "004_732ed2892add5ac6.txt").read_text()
START = dt.datetime(2022, 2, 16, 8, tzinfo=dt.timezone.utc)

# Short articles on unrelated matters, each its own story.
NOTES = [
    "The city council approved a new budget on Tuesday after a long debate about school "
    "funding and road repairs, with seven votes in favour and two against the plan.",
    "The harbour authority said the port reopened on Monday after a week of repairs to the "
    "main quay, and the first container ships came in before noon.",
    "A regional orchestra announced its winter season, with three premieres by young "
    "composers and a festival of chamber music in the old cathedral.",
    "Farmers in the valley began the apple harvest early this year after a warm spring and a "
    "dry summer left the orchards heavy with fruit, the cooperative said.",
    "The national library opened a reading room for rare maps, restored over two years by a "
    "team of conservators who cleaned and mended every sheet by hand.",
]


def near_copy(text: str) -> str:
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    return "WASHINGTON (Reuters) - " + "\n\n".join(paragraphs[: max(2, len(paragraphs) * 2 // 3)])


def write_corpus(folder: Path) -> Path:
    """One JSONL file in time order (as a feed dump or a crawl is): the two seeds (one event),
    a near copy of the first, an exact copy of a note, notes, a record that is no article;
    and two text files beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    # In batches of 4 records: the Anadolu seed, the near copy of the Reuters seed and the
    # exact copy of note 0 come in the batch after the Reuters seed's and note 0's.
    records = [("Reuters", REUTERS), ("Note 0", NOTES[0]), ("Note 1", NOTES[1]),
               ("Note 2", NOTES[2]), ("Anadolu", ANADOLU), ("Copy", near_copy(REUTERS)),
               ("Note 0 again", NOTES[0]), ("Note 3", NOTES[3])]
    lines = []
    for number, (title, text) in enumerate(records):
        lines.append(json.dumps({"id": f"r{number}", "title": title, "text": text,
                                 "published_at": (START + dt.timedelta(hours=number)).isoformat()}))
        if number == 5:
            lines += ["", "{not json"]  # a blank line (no record) and a malformed one
    (folder / "a-feed.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "b-library.txt").write_text(NOTES[4])
    (folder / "c-empty.txt").write_text("")
    return folder


def outcome(output: Path) -> dict:
    """What a user reads of a dataset, by input (source_uri): the stored articles and their
    story groups, each duplicate and the input it is a copy of, each error and its reason."""
    articles = read_dataset(output / "articles").to_pylist()
    by_id = {a["article_id"]: a["source_uri"] for a in articles}
    stories: dict[str, set] = {}
    for article in articles:
        stories.setdefault(article["story_id"], set()).add(article["source_uri"])
    duplicates = read_dataset(output / "duplicates").to_pylist()
    errors = read_dataset(output / "errors").to_pylist()
    return {"articles": sorted(by_id.values()),
            "stories": sorted(sorted(group) for group in stories.values()),
            "story_ids": sorted(stories),
            "duplicates": sorted((d["source_uri"], by_id[d["duplicate_of"]], d["method"])
                                 for d in duplicates),
            "errors": sorted((e["source_uri"], e["reason"]) for e in errors)}


def total(output: Path, key: str) -> int:
    return sum(m["accounting"][key] for m in manifests(output))


# --- Pure functions ------------------------------------------------------------------------------


def test_a_plan_cuts_files_into_slices_of_at_most_the_batch_size():
    batches = plan_batches([("/a.jsonl", 7), ("/b.txt", 1), ("/c.warc", 4)], 3)
    assert [b.files for b in batches] == [
        {"/a.jsonl": (0, 3)}, {"/a.jsonl": (3, 6)}, {"/a.jsonl": (6, None), "/b.txt": WHOLE_FILE,
                                                     "/c.warc": (0, 1)},
        {"/c.warc": (1, None)}]
    assert [b.first for b in batches] == [True, False, False, False]
    assert {b.of for b in batches} == {4}
    # A file that fits is read whole; the last slice of a file reads to its end.
    assert [b.files for b in plan_batches([("/a.jsonl", 3), ("/b.txt", 1)], 3)] == [
        {"/a.jsonl": WHOLE_FILE}, {"/b.txt": WHOLE_FILE}]
    assert [b.files for b in plan_batches([], 3)] == [{}]


def test_slices_are_named_in_the_input_index_and_belong_to_their_file():
    assert slice_uri("/in/a.jsonl") == "/in/a.jsonl"
    assert slice_uri("/in/a.jsonl", (0, 5000)) == "/in/a.jsonl#records=0-5000"
    assert slice_uri("/in/a.jsonl", (5000, None)) == "/in/a.jsonl#records=5000-"
    assert input_of("/in/a.jsonl#records=0-5000") == input_of("/in/a.jsonl#L3") == "/in/a.jsonl"
    assert input_of("/in/a.warc#records=5000-") == "/in/a.warc"


def test_a_batch_keeps_its_files_and_slices_and_the_first_the_match_errors():
    from apache_beam.io.filesystem import FileMetadata

    from newsbeam.transforms.errors import error_row
    batch = InputBatch(number=2, of=2, files={"/a.jsonl": (3, None)})
    problem = error_row("read", "broken_link", "x", "/l", "r")
    found = [("/a.jsonl", FileMetadata("/a.jsonl", 9, 1.0)), ("/b", FileMetadata("/b", 9, 1.0)),
             ("/l", problem)]
    assert [key for item in found for key, _ in batch.keep(item)] == ["/a.jsonl#records=3-"]
    first = InputBatch(number=1, of=2, files={"/b": WHOLE_FILE}, first=True)
    assert [key for item in found for key, _ in first.keep(item)] == ["/b", "/l"]


def test_records_are_counted_as_the_readers_number_them(tmp_path):
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text('{"text": "a"}\n\n   \n{bad\n{"text": "b"}')
    assert record_count(str(jsonl), 1000) == 3
    (tmp_path / "x.txt").write_text("text")
    assert record_count(str(tmp_path / "x.txt"), 1000) == 1
    warc = tmp_path / "x.warc"
    warc.write_bytes(small_warc(5))
    assert record_count(str(warc), 1000) == 10


def small_warc(pages: int) -> bytes:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter
    stream = io.BytesIO()
    writer = WARCWriter(stream, gzip=True)
    for number in range(pages):
        url = f"https://example.test/{number}.html"
        writer.write_record(writer.create_warc_record(
            url, "request", payload=io.BytesIO(b""),
            http_headers=StatusAndHeaders("GET / HTTP/1.1", [], is_http_request=True)))
        writer.write_record(writer.create_warc_record(
            url, "response", payload=io.BytesIO(f"<html><p>{NOTES[number % 5]}</p></html>"
                                                .encode()),
            http_headers=StatusAndHeaders("200 OK", [("Content-Type", "text/html")],
                                          protocol="HTTP/1.1")))
    return stream.getvalue()


def test_an_archive_read_in_slices_gives_what_it_gives_whole():
    data = small_warc(5)
    whole = list(warc_outcomes(io.BytesIO(data), "/x.warc", 10_000))
    sliced = [o for records in ((0, 3), (3, 7), (7, None))
              for o in warc_outcomes(io.BytesIO(data), "/x.warc", 10_000, records)]
    assert [o[0] for o in whole] == ["skipped", "document"] * 5
    assert [(o[0], o[1] if o[0] == "skipped" else o[1].source_uri) for o in sliced] == \
        [(o[0], o[1] if o[0] == "skipped" else o[1].source_uri) for o in whole]


def test_a_batch_reads_only_the_index_rows_it_can_meet(tmp_path):
    """The story leads within the window of the batch's articles, or every lead when one of its
    articles is undated; rows outside are tested on one column, never read whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from newsbeam.transforms.dataset import read_parquet_rows
    from newsbeam.transforms.stories import within_reach
    span = (START, START + dt.timedelta(hours=10), False)
    assert within_reach(START - dt.timedelta(hours=72), span, 72)
    assert not within_reach(START - dt.timedelta(hours=73), span, 72)
    assert within_reach(START + dt.timedelta(hours=82), span, 72)
    assert not within_reach(START + dt.timedelta(hours=83), span, 72)
    assert within_reach(START - dt.timedelta(days=400), (START, START, True), 72)
    assert not within_reach(START, None, 72)
    path = tmp_path / "stories.parquet"
    leads = [START + dt.timedelta(days=day) for day in range(10)]
    pq.write_table(pa.table({"story_id": [f"s{d}" for d in range(10)],
                             "lead_published_at": pa.array(leads, pa.timestamp("us", "UTC"))}),
                   path)
    rows = read_parquet_rows(str(path), ("story_id",), batch_rows=3, where=(
        "lead_published_at", lambda lead: within_reach(lead, span, 72)))
    assert [row["story_id"] for row in rows] == ["s0", "s1", "s2", "s3"]


# --- Runs ----------------------------------------------------------------------------------------


def test_a_batched_run_stores_what_one_unbatched_run_stores(capsys, tmp_path):
    """Batches of 4 records (the JSONL file read in three slices) against one run: the same
    articles, the same duplicates pointing at the same inputs (an exact and a near copy whose
    originals an earlier batch stored), the same errors, the same story groups and ids (the
    Anadolu seed joins the story the Reuters seed started a batch before)."""
    inputs = write_corpus(tmp_path / "in")
    status, printed = run_cli(capsys, "run", "--input", str(inputs), "--output",
                              str(tmp_path / "one"), "--batch_records", "0")
    assert status == 0, printed
    status, printed = run_cli(capsys, "run", "--input", str(inputs), "--output",
                              str(tmp_path / "batched"), "--batch_records", "4")
    assert status == 0, printed
    assert "every input accounted for" in printed

    one, batched = outcome(tmp_path / "one"), outcome(tmp_path / "batched")
    assert one == batched
    assert len(one["articles"]) == 7 and len(one["duplicates"]) == 2
    assert len(one["errors"]) == 2
    # The two seeds tell one event: one story.
    feed = str(inputs / "a-feed.jsonl")
    assert [group for group in one["stories"] if f"{feed}#L1" in group] == [
        [f"{feed}#L1", f"{feed}#L5"]]
    assert len(manifests(tmp_path / "one")) == 1
    runs = manifests(tmp_path / "batched")
    assert len(runs) == 3 and all(m["accounting"]["balanced"] for m in runs)
    assert [m["batch"]["number"] for m in runs] == [1, 2, 3]
    for key in ("inputs", "articles", "duplicates", "errors"):
        assert total(tmp_path / "batched", key) == total(tmp_path / "one", key), key


def test_batch_sizes_a_run_cannot_honour_are_refused(capsys, tmp_path):
    from newsbeam.pipelines.cli import main
    for value in ("-1", "many", "2.5"):
        # argparse refuses the value itself: exit 2 before anything runs, nothing written.
        with pytest.raises(SystemExit) as exited:
            main(["run", "--input", str(SEEDS), "--output", str(tmp_path / "o"),
                  "--batch_records", value])
        assert exited.value.code == 2
        assert "argument --batch_records: invalid" in capsys.readouterr().err
        assert not (tmp_path / "o").exists()
    err = refused(capsys, tmp_path, "--runner", "DataflowRunner", "--project", "p",
                  "--region", "europe-west1", "--temp_location", "gs://b/tmp",
                  "--input", "gs://b/in/", "--output", "gs://b/out", "--batch_records", "100")
    assert "--batch_records 100: batches are for local runners" in err
    err = refused(capsys, tmp_path, "--feed", "http://127.0.0.1:9/feed.xml", "--output",
                  str(tmp_path / "o"), "--batch_records", "100", command="stream")
    assert "--batch_records 100: a stream commits each window" in err


def test_the_run_id_of_a_batched_run_is_taken(capsys, tmp_path):
    """Its batches' files are named after it: a second run of that id would collide."""
    runs = tmp_path / "out" / "_runs"
    runs.mkdir(parents=True)
    (runs / "big-b0001.json").write_text("{}")
    err = refused(capsys, tmp_path, "--input", str(SEEDS), "--output", str(tmp_path / "out"),
                  "--run_id", "big")
    assert "--run_id big: a run of that name already wrote to" in err


def test_planning_counts_records_only_when_batching(tmp_path):
    inputs = write_corpus(tmp_path / "in")
    assert plan_run([str(inputs)], "r", 0, 10_000) == ([], 0)
    assert plan_run([str(inputs)], "r", 100, 10_000) == ([], 11)
    planned, records = plan_run([str(inputs)], "r", 5, 10_000)
    assert records == 11 and [len(b.files) for b in planned] == [1, 2, 1]


@pytest.mark.crash
def test_a_run_killed_between_batches_loses_nothing_and_stores_nothing_twice(capsys, tmp_path):
    """SIGKILL (the process group) right after the first batch's manifest, then the run again:
    the output is one unbatched run's, every id once."""
    from tests.test_commit import assert_exactly_once, finish, newsbeam_process
    inputs = write_corpus(tmp_path / "in")
    status, printed = run_cli(capsys, "run", "--input", str(inputs), "--output",
                              str(tmp_path / "one"), "--batch_records", "0")
    assert status == 0, printed
    output = tmp_path / "batched"
    status, printed = finish(newsbeam_process(
        "run", "--input", str(inputs), "--output", str(output), "--batch_records", "4",
        kill_at="after_manifest"))
    assert status == -signal.SIGKILL, printed
    assert len(manifests(output)) == 1
    status, printed = run_cli(capsys, "run", "--input", str(inputs), "--output", str(output),
                              "--batch_records", "4")
    assert status == 0, printed
    expected, got = outcome(tmp_path / "one"), outcome(output)
    # One difference: the exact copy of note 0, whose original the killed run's first batch
    # stored, is what any later run finds it, already ingested (counted, no duplicates/ row).
    exact = [d for d in expected["duplicates"] if d[2] == "exact"]
    assert len(exact) == 1
    assert got == {**expected, "duplicates": [d for d in expected["duplicates"]
                                              if d not in exact]}
    # Already ingested in the re-run: the 4 records of the slice the first batch finished (a
    # file or slice skipped as unchanged counts its inputs so, sinks.build_manifest), then the
    # exact copy of note 0.
    assert [m["accounting"]["already_ingested"] for m in manifests(output)[1:]] == [4, 1, 0]
    assert_exactly_once(output, len(expected["articles"]), len(expected["duplicates"]) - 1,
                        len(expected["errors"]))
    # The first batch's slice was done: the re-run skipped it unread.
    again = manifests(output)[1:]
    assert [m["counts"]["inputs_unchanged"] for m in again] == [4, 0, 0]

    # And again: every slice and file is recorded as done, nothing is read or added.
    status, printed = run_cli(capsys, "run", "--input", str(inputs), "--output", str(output),
                              "--batch_records", "4")
    assert status == 0, printed
    again = manifests(output)[4:]
    assert sum(m["counts"]["inputs_unchanged"] for m in again) == \
        sum(m["accounting"]["inputs"] for m in again) == 11
    assert outcome(output) == got
