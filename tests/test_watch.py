"""Watched folders in `newsbeam stream` (transforms/watch.py): the settling rule on
BundleBasedDirectRunner --streaming driven by a TestStream of polls, and end to end, the
installed command on FnApiRunner with a real temp folder where files appear (one of them
written slowly, across several polls) while it also polls the real 127.0.0.1 news site."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import apache_beam as beam
import pyarrow.dataset as pads
from apache_beam.io.filesystem import FileMetadata
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from newsbeam.pipelines import cli
from newsbeam.transforms.errors import error_row
from newsbeam.transforms.input_index import UNCHANGED
from newsbeam.transforms.watch import (KeepSettledFilesFn, listing_of, watch_problems,
                                       watched_folder)
from tests.newssite import live_article_html, running_site

NEWSBEAM = str(Path(sys.executable).with_name("newsbeam"))
STREAMING = ["--runner=BundleBasedDirectRunner", "--streaming"]

OBSERVED: dict[str, list] = {}


def _observe_as(value, name: str) -> None:
    OBSERVED.setdefault(name, []).append(value)


def test_pure_helpers(tmp_path):
    assert listing_of(FileMetadata("/in/a.txt", 10, 5.5)) == (10, 5.5)
    row = error_row("read", "broken_link", "a link to nothing", "/in/l", "run")
    assert listing_of(row) == ("error", row.error_id)
    assert watched_folder(str(tmp_path)) == str(tmp_path)
    assert watched_folder(str(tmp_path / "in" / "*.jsonl")) == str(tmp_path / "in")
    assert watched_folder(str(tmp_path / "a.txt")) == str(tmp_path)
    assert watch_problems([str(tmp_path), str(tmp_path / "*.txt"), "gs://bucket/in/"]) == []
    assert watch_problems([str(tmp_path / "nowhere" / "*.txt")]) == [
        f"--input {tmp_path / 'nowhere' / '*.txt'}: the folder {tmp_path / 'nowhere'} does not "
        "exist (a stream watches a folder that is there when it starts)"]


def test_a_file_is_passed_on_once_it_settles_and_once_per_version():
    """Four polls (TestStream elements at t=1..4). growing.jsonl changes at the first three
    polls and is passed on at the fourth; still.txt is the same at polls 1 and 2 (passed on at
    2, not again at 3 or 4); twice.txt is listed twice in poll 1 (two patterns name it), which
    is no second poll; known.txt is in index/inputs as it is: 2 UNCHANGED, once; a broken link
    is passed on once; touched.txt changes after it was passed on and is passed on again."""
    meta = lambda name, size, mtime: (name, FileMetadata(name, size, mtime))
    broken = error_row("read", "broken_link", "a link to nothing", "/in/l", "run")
    polls = {
        1: [meta("/in/growing.jsonl", 10, 1.0), meta("/in/still.txt", 5, 0.5),
            meta("/in/twice.txt", 7, 0.7), meta("/in/twice.txt", 7, 0.7),
            meta("/in/known.txt", 3, 0.3), ("/in/l", broken), meta("/in/touched.txt", 1, 0.1)],
        2: [meta("/in/growing.jsonl", 20, 2.0), meta("/in/still.txt", 5, 0.5),
            meta("/in/known.txt", 3, 0.3), ("/in/l", broken), meta("/in/touched.txt", 1, 0.1)],
        3: [meta("/in/growing.jsonl", 30, 3.0), meta("/in/still.txt", 5, 0.5),
            meta("/in/twice.txt", 7, 0.7), meta("/in/touched.txt", 2, 3.0)],
        4: [meta("/in/growing.jsonl", 30, 3.0), meta("/in/still.txt", 5, 0.5),
            meta("/in/twice.txt", 7, 0.7), meta("/in/touched.txt", 2, 3.0)],
    }
    events = TestStream().advance_watermark_to(0)
    for poll, items in polls.items():
        events = events.add_elements([TimestampedValue(item, poll) for item in items]) \
            .advance_watermark_to(poll + 0.5)
    events = events.advance_watermark_to_infinity()
    indexed = [("/in/known.txt", {"source_uri": "/in/known.txt", "size": 3, "mtime": 0.3,
                                  "inputs": 2, "content_hash": "h"})]
    OBSERVED.clear()
    with beam.Pipeline(options=PipelineOptions(STREAMING)) as pipeline:
        index = pipeline | "Index" >> beam.Create(indexed)
        out = (pipeline | events
               | beam.ParDo(KeepSettledFilesFn(), beam.pvalue.AsDict(index)).with_outputs(
                   UNCHANGED, main="to_read"))
        (out.to_read
         | "Named" >> beam.Map(lambda pair, ts=beam.DoFn.TimestampParam: (
             getattr(pair[0], "path", None) or pair[0].source_uri, float(ts)))
         | "ObserveRead" >> beam.Map(_observe_as, "to_read"))
        out[UNCHANGED] | "ObserveUnchanged" >> beam.Map(_observe_as, "unchanged")
    assert sorted(OBSERVED["to_read"]) == sorted([
        ("/in/still.txt", 2.0), ("/in/l", 2.0), ("/in/touched.txt", 2.0),
        ("/in/twice.txt", 3.0), ("/in/growing.jsonl", 4.0), ("/in/touched.txt", 4.0)])
    assert OBSERVED["unchanged"] == ["/in/known.txt", "/in/known.txt"]


# --- End to end ----------------------------------------------------------------------------------


def _jsonl_line(slug: str) -> str:
    return json.dumps({"url": f"https://files.example.test/{slug}", "title": f"File {slug}",
                       "html": live_article_html(slug)}) + "\n"


def _write_files(folder: Path, log: list) -> None:
    """What a producer does while the stream runs: a page written at once, a JSONL file
    appended to line by line (half a line at a time) faster than the polls come, and a file
    written under a dot-name and renamed into place."""
    (folder / "page.html").write_text(live_article_html("page-one"))
    slow = folder / "slow.jsonl"
    with open(slow, "w") as stream:
        for number in range(4):
            line = _jsonl_line(f"slow-{number}")
            for part in (line[: len(line) // 2], line[len(line) // 2:]):
                stream.write(part)
                stream.flush()
                log.append((time.monotonic(), os.path.getsize(slow)))
                time.sleep(0.6)
    hidden = folder / ".renamed.jsonl.part"
    hidden.write_text(_jsonl_line("renamed-0") + _jsonl_line("renamed-1"))
    hidden.rename(folder / "renamed.jsonl")


def _titles(output: str) -> list[str | None]:
    return pads.dataset(os.path.join(output, "articles"), format="parquet",
                        partitioning="hive").to_table(columns=["title"]).column("title") \
        .to_pylist()


def _manifests(output: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(output, "_runs").glob("*.json"))]


def test_a_stream_reads_each_new_file_once_settled_beside_its_feed(tmp_path):
    folder, output = tmp_path / "incoming", str(tmp_path / "out")
    folder.mkdir()
    (folder / "before.txt").write_text("A file that was there before the stream started. "
                                       "It has enough words to be an article of its own, and "
                                       "then some more words about the harbour and the ferry.")
    with running_site() as site:
        site.robots = "User-agent: *\n"
        site.publish("city", "before-city")
        process = subprocess.Popen(
            [NEWSBEAM, "stream", f"--feed={site.base}/feeds/city.xml", f"--input={folder}",
             f"--output={output}", "--allow_loopback", "--fetch_delay_s=0.2",
             "--topic_model=none", "--min_words=5", "--duration=40", "--poll_interval_s=2",
             # The feed publishes while the stream runs: it is read at every tick.
             "--poll_schedule=always", "--window_s=4"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        writes: list = []
        try:
            started = time.monotonic()
            while not site.requests_to("/feeds/city.xml") and process.poll() is None and \
                    time.monotonic() < started + 120:
                time.sleep(0.2)
            writer = threading.Thread(target=_write_files, args=(folder, writes))
            writer.start()
            site.publish("city", "during-city")
            writer.join()
            written_at = time.monotonic()
            out, err = process.communicate(timeout=600)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 0, err[-3000:]
        finished_at = time.monotonic()
        # slow.jsonl grew over more than two polls, and the stream ran on for at least two
        # polls after the last file was in place.
        assert writes[-1][0] - writes[0][0] > 2 * 2
        assert finished_at - written_at > 2 * 2, (finished_at - written_at, out)

    files = ["File slow-0", "File slow-1", "File slow-2", "File slow-3", "File renamed-0",
             "File renamed-1"]
    # Each file's articles stored once: none read half (a half line would be an error row, and
    # the rest, read later, would count as already ingested). before.txt's is the tenth (a
    # plain text without a title).
    titles = _titles(output)
    assert sorted(titles, key=str) == sorted(
        ["Story before-city", "Story during-city", "Story page-one", *files, None], key=str)
    windows = _manifests(output)
    assert all(m["accounting"]["balanced"] for m in windows)
    assert sum(m["accounting"]["errors"] for m in windows) == 0
    assert sum(m["accounting"]["already_ingested"] for m in windows) == 0
    assert " ok: 10 articles, 0 duplicates, 0 errors, 0 already ingested" in out, out
    inputs = pads.dataset(os.path.join(output, "index", "inputs"), format="parquet") \
        .to_table(columns=["source_uri", "inputs"]).to_pylist()
    assert sorted((Path(r["source_uri"]).name, r["inputs"]) for r in inputs) == [
        ("before.txt", 1), ("page.html", 1), ("renamed.jsonl", 2), ("slow.jsonl", 4)]

    # A batch run over the folder afterwards reads nothing again: index/inputs has every file.
    again = subprocess.run(
        [NEWSBEAM, "run", f"--input={folder}", f"--output={output}", "--topic_model=none",
         "--min_words=5", "--quiet"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 articles" in again.stdout, again.stdout
    assert len(_titles(output)) == 10


def test_a_stream_refuses_a_watched_folder_that_is_not_there(tmp_path, capsys):
    status = cli.main(["stream", "--input", str(tmp_path / "nowhere" / "*.jsonl"),
                       "--output", str(tmp_path / "out")])
    assert status == cli.EXIT_REFUSED
    assert "does not exist (a stream watches a folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
