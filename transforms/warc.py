"""WARC archives (.warc, .warc.gz; e.g. Common Crawl CC-NEWS): HTML response records become
Documents, read record by record so that memory does not grow with the archive.

A response record with HTTP status 200 and an HTML Content-Type becomes a Document whose URL is
the record's WARC-Target-URI and whose date is its WARC-Date (kind "crawled": the page's own
date beats it). Every other record (warcinfo, request, metadata, redirects, images...) is
counted as skipped, by kind.
"""

from __future__ import annotations

import contextlib

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from newsbeam.schemas.records import Document
from newsbeam.transforms import errors

SKIPPED = "skipped"
HTML_TYPES = ("text/html", "application/xhtml+xml")
CRAWLED = "crawled"   # published_at_kind and date_source of a WARC-Date


def is_warc(path: str) -> bool:
    name = path.lower()
    return name.endswith(".warc") or name.endswith(".warc.gz")


# --- Pure functions ------------------------------------------------------------------------------


def skipped_kind(record) -> str | None:
    """Why a record is no article ('request', 'response:image/png', 'response:301'...), or None
    for an HTML page."""
    if record.rec_type != "response":
        return record.rec_type
    if record.http_headers is None:
        return "response:no-http"
    status = record.http_headers.get_statuscode()
    if status != "200":
        return f"response:{status}"
    content_type = (record.http_headers.get_header("Content-Type") or "").split(";")[0]
    content_type = content_type.strip().lower()
    if content_type not in HTML_TYPES:
        return f"response:{content_type or 'no-type'}"
    return None


class _CountingReader:
    """A read-only stream that counts the bytes read and notes when the file ran out: what tells a
    truncated archive (a record cut off at the end of the file) from a corrupt one."""

    def __init__(self, stream):
        self._stream = stream
        self.count = 0
        self.at_end = False

    def read(self, size=-1):
        data = self._stream.read(size)
        self.count += len(data)
        if size is None or size < 0 or len(data) < size:
            self.at_end = True
        return data

    def tell(self):  # warcio asks once; answering keeps it from wrapping the stream again
        return self.count


def _exhausted(counted: _CountingReader, archive, record_done: bool = True) -> bool:
    """True once every byte of the file has been read and handed on: nothing is left in
    warcio's buffer or its decompressor (the next gzip member), nor, after a record, as the
    first line of the next one."""
    reader = archive.reader
    return counted.at_end and (reader is None or reader.rem_length() == 0) and \
        not (record_done and archive.next_line)


def _declared_length(record) -> int | None:
    value = (record.rec_headers.get_header("Content-Length") or "").strip()
    return int(value) if value.isdigit() else None


def _shortfall(archive, record, at_end: bool) -> str | None:
    """Why a finished record is not whole, or None: its block is shorter than its Content-Length
    (or it has none: its header was cut), or, at the end of the file, its gzip member lacks its
    end. Asked after warcio has read the record to its end."""
    declared = _declared_length(record)
    missing = getattr(record.raw_stream, "limit", None)
    if declared is None or missing is None:
        return "its header has no complete Content-Length"
    if missing > 0:
        return f"{declared - missing} of its {declared} declared bytes"
    # warcio keeps the member's zlib decompressor: at the end of a whole member it is at eof. A
    # gzip member holding more than one record is not at eof either, but not at the end of the
    # file: warcio reports that archive as invalid itself.
    decompressor = getattr(archive.reader, "decompressor", None)
    if at_end and decompressor is not None and not decompressor.eof:
        return "its gzip member ends before the gzip trailer"
    return None


def warc_outcomes(stream, path: str, max_bytes: int,
                  records: tuple[int, int | None] = (0, None)):
    """('document', Document), ('skipped', kind) or ('error', reason, source_uri, message) for
    each record of a WARC stream, in order. A record's body is read only when it is a page, and
    never past max_bytes + 1 (decoded: warcio undoes chunking and gzip as it streams).
    `records` = (first, stop): only the records numbered first <= n < stop (from 0, in file
    order; stop None: to the end) give outcomes, the others are passed over unread (a batched
    run reads one archive in slices, transforms/batches.py).

    A record cut short (its block shorter than its Content-Length) is never a page. When the file
    ends inside a record (a truncated download or copy) that record is one TRUNCATED_ARCHIVE
    error, at its byte offset, and the outcomes end; every whole record before it is read. A cut
    exactly between two records (between gzip members; for a plain .warc, in the blank lines after
    a record) leaves a shorter but valid archive, which nothing can tell from a whole one. In the
    middle of a .warc.gz, a member shorter than its record's Content-Length is a TRUNCATED_RECORD
    error and the next member is read."""
    from warcio.archiveiterator import ArchiveIterator
    counted = _CountingReader(stream)
    archive = ArchiveIterator(counted)
    first, stop = records
    iterator, parsed = iter(archive), 0
    while True:
        if stop is not None and parsed >= stop:
            return
        start = archive.offset  # where the next record begins (compressed offset for .warc.gz)
        try:
            record = next(iterator)
        except StopIteration:
            break
        except Exception as error:  # warcio's ArchiveLoadFailed, and worse, on a cut header
            not_an_archive = parsed == 0 and "Unknown archive format" in str(error)
            if not _exhausted(counted, archive, record_done=False) or not_an_archive:
                raise
            yield ("error", errors.TRUNCATED_ARCHIVE, f"{path}#offset={start}",
                   f"the archive ends inside the header of the record at byte offset {start}: "
                   f"records from there on are lost ({type(error).__name__})")
            return
        parsed += 1
        if parsed <= first:
            continue  # before this slice: warcio skips its body
        kind = skipped_kind(record)
        body = record.content_stream().read(max_bytes + 1) if kind is None else None
        # Asked after the body is read: warcio finishes the record to know where it began.
        source_uri = f"{path}#offset={archive.get_record_offset()}"
        at_end = _exhausted(counted, archive)
        shortfall = _shortfall(archive, record, at_end)
        if shortfall is not None and at_end:
            yield ("error", errors.TRUNCATED_ARCHIVE, source_uri,
                   f"the archive ends inside the record at byte offset "
                   f"{archive.get_record_offset()} ({shortfall}): records from there on are "
                   "lost")
            return
        if shortfall is not None:
            yield "error", errors.TRUNCATED_RECORD, source_uri, f"the record is cut short " \
                f"({shortfall}); the archive goes on after it"
        elif kind is not None:
            yield "skipped", kind
        elif len(body) > max_bytes:
            yield ("error", errors.TOO_LARGE, source_uri, f"a {len(body)}+ byte page; the limit "
                   f"is {max_bytes} (--max_document_bytes)")
        else:
            headers = record.rec_headers
            yield "document", Document(
                source_uri=source_uri, kind="html", content=body,
                source_id=headers.get_header("WARC-Record-ID"),
                url=headers.get_header("WARC-Target-URI"),
                published_at=headers.get_header("WARC-Date"), published_at_kind=CRAWLED)
    if counted.count > archive.offset:
        # Bytes after the last whole record that warcio could not read as a record at all: the
        # start of a gzip member cut before its first decompressed byte, or of a header.
        yield ("error", errors.TRUNCATED_ARCHIVE, f"{path}#offset={archive.offset}",
               f"the archive ends inside the record at byte offset {archive.offset} "
               f"({counted.count - archive.offset} bytes of it): records from there on are lost")


# --- Reading (used by transforms/sources.py for .warc inputs) ------------------------------------


def read_warc(path: str, max_bytes: int, run_id: str, source_uri: str | None = None,
              stream=None, records: tuple[int, int | None] = (0, None)):
    """Documents, SKIPPED kinds and ERRORS of one WARC file, for a DoFn to yield. `source_uri`
    is the archive as the output names it (by default its path); `stream`, the file opened
    already (by default it is opened here); `records`, the slice of its records to read
    (warc_outcomes)."""
    source_uri = source_uri or path
    inputs = 0  # pages, and records that are errors
    try:
        with (contextlib.nullcontext(stream) if stream is not None else FileSystems.open(
                path, compression_type=CompressionTypes.UNCOMPRESSED)) as stream:
            for outcome in warc_outcomes(stream, source_uri, max_bytes, records):
                if outcome[0] == "document":
                    inputs += 1
                    yield outcome[1]
                elif outcome[0] == "skipped":
                    yield beam.pvalue.TaggedOutput(SKIPPED, f"warc:{outcome[1]}")
                else:
                    inputs += 1
                    _, reason, source_uri, message = outcome
                    yield errors.error_output(errors.STAGE_READ, reason, message, source_uri,
                                              run_id)
    except Exception as error:  # warcio raises its own ArchiveLoadFailed, and zlib/OS errors
        yield errors.error_output(
            errors.STAGE_READ, errors.READ_FAILED,
            f"{type(error).__name__} after {inputs} records: {error}", source_uri, run_id)
        return
    if inputs == 0 and records == (0, None):
        yield errors.error_output(
            errors.STAGE_READ, errors.EMPTY_INPUT, "the archive holds no HTML response record",
            source_uri, run_id)
