"""Faults in the file sources, on real files: WARC archives cut short (built by warcio), file names
that are not UTF-8, names with glob characters, symbolic link and directory loops, credentials in
URLs, and a file whose reading raises. Each must become the right rows, and the run goes on."""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import SEEDS, manifests, read_dataset, run_cli
from newsbeam.transforms import sources
from newsbeam.transforms.errors import ERRORS, error_row
from newsbeam.transforms.sources import ReadInputs, expand_input
from newsbeam.transforms.warc import warc_outcomes


def pipeline():
    return test_pipeline.TestPipeline(runner="FnApiRunner")


def _paragraphs() -> list[str]:
    text = "\n\n".join(p.read_text() for p in sorted(SEEDS.glob("*.txt")))
    return [" ".join(p.split()) for p in text.split("\n\n") if len(p.split()) >= 25]


def pages(count: int) -> list[bytes]:
    """`count` distinct HTML pages of real news paragraphs (two each, none shared)."""
    paragraphs = _paragraphs()
    assert len(paragraphs) >= 2 * count
    return [(f"<html><head><title>Page {n}</title></head><body><article>"
             f"<p>{paragraphs[2 * n]}</p><p>{paragraphs[2 * n + 1]}</p></article></body></html>"
             ).encode() for n in range(count)]


def build_warc(bodies: list[bytes], gzipped: bool) -> tuple[bytes, list[tuple[int, int]]]:
    """An archive (warcinfo, then a request and a response per page) written by warcio, and the
    (start, end) byte span of each response record."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter
    stream = io.BytesIO()
    writer = WARCWriter(stream, gzip=gzipped)
    writer.write_record(writer.create_warcinfo_record("test.warc", {"software": "test"}))
    spans = []
    for number, body in enumerate(bodies):
        url = f"https://archive.test/page-{number}.html"
        request = f"GET /page-{number}.html HTTP/1.1\r\nHost: archive.test\r\n\r\n".encode()
        writer.write_record(writer.create_warc_record(url, "request",
                                                      payload=io.BytesIO(request)))
        headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")],
                                   protocol="HTTP/1.1")
        start = stream.tell()
        writer.write_record(writer.create_warc_record(
            url, "response", payload=io.BytesIO(body), http_headers=headers,
            warc_headers_dict={"WARC-Date": "2022-02-16T08:00:00Z"}))
        spans.append((start, stream.tell()))
    return stream.getvalue(), spans


def outcomes(data: bytes):
    return list(warc_outcomes(io.BytesIO(data), "a.warc", 10 * 2**20))


def documents(found) -> list[str]:
    return [o[1].url for o in found if o[0] == "document"]


def errors_of(found) -> list[tuple[str, str]]:
    return [(o[1], o[2]) for o in found if o[0] == "error"]


# --- 1. a truncated archive ----------------------------------------------------------------------

BODIES = pages(4)
URLS = [f"https://archive.test/page-{n}.html" for n in range(4)]


@pytest.mark.parametrize("gzipped", [False, True], ids=["warc", "warc.gz"])
def test_a_whole_archive_has_no_error(gzipped):
    data, _ = build_warc(BODIES, gzipped)
    found = outcomes(data)
    assert documents(found) == URLS and errors_of(found) == []


@pytest.mark.parametrize("gzipped", [False, True], ids=["warc", "warc.gz"])
@pytest.mark.parametrize("where", ["header", "body", "last body"])
def test_a_cut_inside_a_record_is_one_error_at_its_offset(gzipped, where):
    data, spans = build_warc(BODIES, gzipped)
    victim = 3 if where == "last body" else 2
    start, end = spans[victim]
    cut = start + {"header": 60, "body": (end - start) // 2,
                   "last body": end - start - 40}[where]
    found = outcomes(data[:cut])
    # Every record before the cut is read; the cut one is no page.
    assert documents(found) == URLS[:victim]
    assert errors_of(found) == [("truncated_archive", f"a.warc#offset={start}")]
    message = next(o[3] for o in found if o[0] == "error")
    assert f"byte offset {start}" in message


def test_a_record_cut_short_is_never_a_page():
    # The finding: 38 of 447 words stored as a complete article.
    data, spans = build_warc(BODIES[:1], gzipped=False)
    start, end = spans[0]
    found = outcomes(data[:start + (end - start) // 3])
    assert documents(found) == []
    assert [reason for reason, _ in errors_of(found)] == ["truncated_archive"]


@pytest.mark.parametrize("gzipped", [False, True], ids=["warc", "warc.gz"])
def test_a_cut_at_a_record_boundary_leaves_a_shorter_valid_archive(gzipped):
    data, spans = build_warc(BODIES, gzipped)
    found = outcomes(data[:spans[1][1]])
    assert documents(found) == URLS[:2] and errors_of(found) == []


def test_a_cut_in_the_gzip_trailer_is_a_truncation():
    # The record's bytes are all there, the member's end (CRC, length) is not.
    data, spans = build_warc(BODIES, gzipped=True)
    start, end = spans[3]
    found = outcomes(data[:end - 3])
    assert documents(found) == URLS[:3]
    assert errors_of(found) == [("truncated_archive", f"a.warc#offset={start}")]


def test_a_cut_inside_the_next_gzip_member_header():
    data, spans = build_warc(BODIES, gzipped=True)
    # The request record after page 1 starts at page 1's end: cut 5 bytes into its member.
    found = outcomes(data[:spans[1][1] + 5])
    assert documents(found) == URLS[:2]
    assert errors_of(found) == [("truncated_archive", f"a.warc#offset={spans[1][1]}")]


def test_every_cut_point_keeps_the_whole_records_and_reports_one_truncation():
    """Every 7th byte offset of a small .warc.gz: the complete pages before the cut are read, and
    a cut anywhere but a member boundary is exactly one error: truncated_archive, except inside
    the archive's first line, where it is no recognisable archive (read_warc: read_failed)."""
    data, spans = build_warc(BODIES[:2], gzipped=True)
    boundaries = _member_boundaries(data)
    first_member = min(b for b in boundaries if b > 0)
    for cut in range(0, len(data) + 1, 7):
        try:
            found = outcomes(data[:cut])
        except Exception:
            assert cut < first_member, cut
            continue
        whole = [url for url, (_, end) in zip(URLS, spans) if end <= cut]
        assert documents(found) == whole, cut
        expected = [] if cut in boundaries else ["truncated_archive"]
        assert [reason for reason, _ in errors_of(found)] == expected, cut


def _member_boundaries(data: bytes) -> set[int]:
    import zlib
    boundaries, offset = {0}, 0
    while offset < len(data):
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        decompressor.decompress(data[offset:])
        offset = len(data) - len(decompressor.unused_data)
        boundaries.add(offset)
    return boundaries


def test_a_short_member_inside_an_archive_is_an_error_and_reading_goes_on():
    data, spans = build_warc(BODIES[:2], gzipped=True)
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + BODIES[2][:200])
    short = gzip.compress(
        b"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: https://archive.test/short\r\n"
        b"WARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-000000000001>\r\n"
        b"Content-Length: %d\r\n\r\n" % (len(head) + 500) + head + b"\r\n\r\n")
    first_end = spans[0][1]
    found = outcomes(data[:first_end] + short + data[first_end:])
    assert documents(found) == URLS[:2]
    assert errors_of(found) == [("truncated_record", f"a.warc#offset={first_end}")]


def test_a_truncated_archive_end_to_end(capsys, tmp_path):
    """Through `newsbeam run` to Parquet: the whole pages are articles, the cut is one row."""
    data, spans = build_warc(BODIES, gzipped=True)
    start, end = spans[2]
    archive = tmp_path / "in" / "crawl.warc.gz"
    archive.parent.mkdir()
    archive.write_bytes(data[:(start + end) // 2])
    output = tmp_path / "out"

    status, printed = run_cli(capsys, "run", "--input", str(archive), "--output", str(output))

    assert status == 0, printed
    articles = read_dataset(output / "articles").to_pylist()
    assert sorted(a["url"] for a in articles) == URLS[:2]
    errors = read_dataset(output / "errors").to_pylist()
    assert [(e["stage"], e["reason"], e["source_uri"]) for e in errors] == [
        ("read", "truncated_archive", f"{archive}#offset={start}")]
    assert f"byte offset {start}" in errors[0]["message"]
    assert manifests(output)[-1]["accounting"]["balanced"]


# --- 3. file names that are not UTF-8 ------------------------------------------------------------

UNDECODABLE = b"\xff\xfe.txt"


def test_printable_path_escapes_only_undecodable_bytes():
    name = os.fsdecode(b"/data/caf\xc3\xa9 \xff\xfe 100%.txt")
    assert sources.printable_path(name) == "/data/café %FF%FE 100%.txt"
    assert sources.printable_path("/plain/name.txt") == "/plain/name.txt"


def _story_text() -> bytes:
    return (SEEDS / "000_dac305c5b36f0b2f.txt").read_bytes()


def test_a_file_name_that_is_not_utf8_is_read(tmp_path):
    folder = os.fsencode(tmp_path / "in")
    os.makedirs(folder + b"/\xe9t\xe9")
    with open(folder + b"/" + UNDECODABLE, "wb") as handle:
        handle.write(_story_text())
    with open(folder + b"/\xe9t\xe9/jsonl-\xff.jsonl", "wb") as handle:
        handle.write(b'{"text": "one"}\n{"text": ""}\n')

    with pipeline() as p:
        read = p | ReadInputs([str(tmp_path / "in")], run_id="run", max_document_bytes=10**6)
        assert_that(read["documents"] | beam.Map(lambda d: d.source_uri), equal_to([
            f"{tmp_path}/in/%FF%FE.txt", f"{tmp_path}/in/%E9t%E9/jsonl-%FF.jsonl#L1"]),
            label="documents")
        assert_that(read[ERRORS] | beam.Map(lambda e: (e.source_uri, e.reason)), equal_to([
            (f"{tmp_path}/in/%E9t%E9/jsonl-%FF.jsonl#L2", "invalid_record")]), label="errors")


def test_a_file_name_that_is_not_utf8_end_to_end(capsys, tmp_path):
    folder = os.fsencode(tmp_path / "in")
    os.mkdir(folder)
    with open(folder + b"/" + UNDECODABLE, "wb") as handle:
        handle.write(_story_text())
    output = tmp_path / "out"
    # Named by its folder, and by its own (undecodable) name, as a shell passes it.
    status, printed = run_cli(capsys, "run", "--input", str(tmp_path / "in"),
                              "--input", os.fsdecode(folder + b"/" + UNDECODABLE),
                              "--output", str(output))

    assert status == 0, printed
    articles = read_dataset(output / "articles").to_pylist()
    assert [a["source_uri"] for a in articles] == [f"{tmp_path}/in/%FF%FE.txt"]
    assert "Antony Blinken" in articles[0]["text"]
    accounting = manifests(output)[-1]["accounting"]
    assert (accounting["inputs"], accounting["articles"], accounting["balanced"]) == (1, 1, True)


# --- 9b. a name with glob characters -------------------------------------------------------------


def test_an_existing_name_with_brackets_is_taken_literally(tmp_path):
    (tmp_path / "report[1].txt").write_bytes(_story_text())
    (tmp_path / "report1.txt").write_text("The glob would pick this file instead of the other.")
    (tmp_path / "folder[2]").mkdir()
    (tmp_path / "folder[2]" / "inner.txt").write_text("Inside a folder named with brackets.")
    (tmp_path / "a*b.txt").write_text("A star in the name.")
    inputs = [str(tmp_path / "report[1].txt"), str(tmp_path / "folder[2]"),
              str(tmp_path / "a*b.txt"), str(tmp_path / "report[0-9].txt")]

    with pipeline() as p:
        read = p | ReadInputs(inputs, run_id="run", max_document_bytes=10**6)
        assert_that(read["documents"] | beam.Map(lambda d: Path(d.source_uri).name), equal_to([
            "report[1].txt", "inner.txt", "a*b.txt",
            "report1.txt"]),                # the last input is a glob: no file has its name
            label="documents")
        assert_that(read[ERRORS], equal_to([]), label="errors")


def test_glob_helpers():
    assert sources.escape_wildcards("gs://b/x[1]*?.txt") == "gs://b/x[[]1][*][?].txt"
    assert sources._folder_of("/a/b[[]1]/c*/d") == "/a/b[1]"
    assert sources._folder_of("/a/b*/c") == "/a"


def test_expand_input_takes_an_existing_folder_with_brackets_as_a_folder(tmp_path):
    folder = tmp_path / "in[1]"
    folder.mkdir()
    assert expand_input(str(folder)) == f"{folder}/**"


# --- 11. links, loops and accounting -------------------------------------------------------------


def test_links_and_loops_are_one_error_row_each(tmp_path):
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (real / "story.txt").write_bytes(_story_text())
    (real / "sub" / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    os.symlink(real, real / "sub" / "up")             # a directory loop
    os.symlink("self", real / "self")                 # a link to itself
    os.symlink(real / "ping", real / "pong")          # two links to each other
    os.symlink(real / "pong", real / "ping")
    os.symlink(real / "gone.txt", real / "dangling.txt")
    os.symlink(real / "sub", real / "sub-again")      # the same folder twice: read once
    os.mkfifo(real / "pipe.txt")
    link = tmp_path / "link-to-real"
    os.symlink(real, link)
    # The folder, and the same folder through a link: every file and bad entry once.
    inputs = [str(real), str(link)]

    with pipeline() as p:
        read = p | ReadInputs(inputs, run_id="run", max_document_bytes=10**6)
        assert_that(read["documents"] | beam.Map(lambda d: d.source_uri),
                    equal_to([f"{real}/story.txt"]), label="documents")
        assert_that(read[ERRORS] | beam.Map(lambda e: (e.source_uri, e.reason)), equal_to([
            (f"{real}/sub/image.txt", "binary_content"),
            (f"{real}/sub/up", "directory_loop"),
            (f"{real}/self", "symlink_loop"),
            (f"{real}/ping", "symlink_loop"),
            (f"{real}/pong", "symlink_loop"),
            (f"{real}/dangling.txt", "broken_link"),
            (f"{real}/pipe.txt", "unsupported_type"),
        ]), label="errors")


def test_a_glob_reports_bad_entries_it_matches_and_reads_through_links(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("One story in the folder.")
    os.symlink(tmp_path / "nowhere.txt", tmp_path / "a" / "dangling.txt")
    os.symlink(tmp_path / "nowhere", tmp_path / "a" / "dangling.md")
    os.symlink(tmp_path / "a", tmp_path / "linked")
    inputs = [str(tmp_path / "*" / "*.txt")]

    with pipeline() as p:
        read = p | ReadInputs(inputs, run_id="run", max_document_bytes=10**6)
        assert_that(read["documents"] | beam.Map(lambda d: d.source_uri),
                    equal_to([f"{tmp_path}/a/one.txt"]), label="documents")
        assert_that(read[ERRORS] | beam.Map(lambda e: (e.source_uri, e.reason)),
                    equal_to([(f"{tmp_path}/a/dangling.txt", "broken_link")]), label="errors")


def test_the_same_bad_file_through_a_linked_folder_is_one_error_row(capsys, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "empty.txt").write_bytes(b"")
    os.symlink(real, tmp_path / "alias")
    output = tmp_path / "out"

    for folder in (real, tmp_path / "alias"):
        status, printed = run_cli(capsys, "run", "--input", str(folder), "--output", str(output))
        assert status == 0, printed

    errors = read_dataset(output / "errors").to_pylist()
    assert [(e["source_uri"], e["reason"]) for e in errors] == [
        (f"{real}/empty.txt", "empty_input")]
    # Through the link it is the same file (its resolved path): known, so not read again.
    accounting = manifests(output)[-1]["accounting"]
    assert (accounting["already_ingested"], accounting["balanced"]) == (1, True)


# --- credentials in URLs -------------------------------------------------------------------------


def test_error_rows_never_show_credentials():
    row = error_row("fetch", "connect", "connecting to https://ann:hunter2@news.test/x failed",
                    "https://ann:hunter2@news.test/x", "run", url="http://bob:pw1@news.test/y")
    assert "hunter2" not in str(row) and "pw1" not in str(row)
    assert row.source_uri == "https://***@news.test/x"
    assert row.url == "http://***@news.test/y"
    # The id is that of the redacted source: one resource, whatever credentials reached it.
    assert row.error_id == error_row("fetch", "connect", "m", "https://***@news.test/x",
                                     "run").error_id


def test_credentials_reach_no_row_manifest_or_log(capsys, caplog, tmp_path):
    urls = tmp_path / "urls.txt"
    urls.write_text("http://ann:hunter2@127.0.0.1:9/news/a.html\n")
    output = tmp_path / "out"
    with caplog.at_level("INFO"):
        status, printed = run_cli(
            capsys, "run", "--urls", str(urls), "--feed", "http://bob:pw-feed@127.0.0.1:9/f.xml",
            "--input", str(SEEDS), "--allow_loopback", "--fetch_retries", "0",
            "--output", str(output))

    assert status == 0, printed
    errors = read_dataset(output / "errors").to_pylist()
    assert len(errors) == 2
    written = [str(errors), (output / "_runs").glob("*.json").__next__().read_text(),
               caplog.text, printed]
    for text in written:
        assert "hunter2" not in text and "pw-feed" not in text
    assert "bob:" not in str(manifests(output)[-1]["options"])
    assert "http://***@127.0.0.1:9/f.xml" in str(manifests(output)[-1]["options"])


# --- item 2: nothing one input raises ends the run -----------------------------------------------


def test_an_exception_while_reading_one_file_is_its_internal_error_row(tmp_path, monkeypatch):
    (tmp_path / "good.txt").write_bytes(_story_text())
    (tmp_path / "bad.txt").write_text("This one makes the reader raise.")
    real_looks_binary = sources.looks_binary

    def looks_binary(data):
        if data.startswith(b"This one"):
            raise ValueError("first line\nthe reader broke")
        return real_looks_binary(data)

    monkeypatch.setattr(sources, "looks_binary", looks_binary)
    with pipeline() as p:
        read = p | ReadInputs([str(tmp_path)], run_id="run", max_document_bytes=10**6)
        assert_that(read["documents"] | beam.Map(lambda d: Path(d.source_uri).name),
                    equal_to(["good.txt"]), label="documents")
        assert_that(read[ERRORS] | beam.Map(lambda e: (Path(e.source_uri).name, e.reason,
                                                       e.message)),
                    equal_to([("bad.txt", "internal_error", "ValueError: the reader broke")]),
                    label="errors")


@pytest.mark.parametrize("kind", ["jsonl", "warc"])
def test_the_records_of_one_file_are_spread_over_the_workers(tmp_path, kind):
    """One file of many records (JSONL lines, WARC records) is read by one worker; its documents
    go on to extraction on every worker, not on that one alone."""
    from apache_beam.options.pipeline_options import PipelineOptions
    folder = tmp_path / "in"
    folder.mkdir()
    if kind == "jsonl":
        (folder / "many.jsonl").write_text("".join(
            json.dumps({"id": str(n), "text": f"Record {n} of a file of many."}) + "\n"
            for n in range(40)))
    else:
        (folder / "many.warc.gz").write_bytes(build_warc(pages(6), gzipped=True)[0])
    options = PipelineOptions(["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    with test_pipeline.TestPipeline(runner="FnApiRunner", options=options) as p:
        read = p | ReadInputs([str(folder)], run_id="run", max_document_bytes=10**6)
        workers = (read["documents"] | beam.Map(lambda _: os.getpid())
                   | beam.Distinct() | beam.combiners.Count.Globally())
        assert_that(workers, equal_to([2]))
