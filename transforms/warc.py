"""WARC archives (.warc, .warc.gz; e.g. Common Crawl CC-NEWS): HTML response records become
Documents, read record by record so that memory does not grow with the archive.

A response record with HTTP status 200 and an HTML Content-Type becomes a Document whose URL is
the record's WARC-Target-URI and whose date is its WARC-Date (kind "crawled": the page's own
date beats it). Every other record (warcinfo, request, metadata, redirects, images...) is
counted as skipped, by kind.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas.records import Document
from transforms import errors
from transforms.errors import ERRORS, error_row

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


def warc_outcomes(stream, path: str, max_bytes: int):
    """('document', Document), ('skipped', kind) or ('too_large', source_uri, size) for each
    record of a WARC stream, in order. A record's body is read only when it is a page, and
    never past max_bytes + 1 (decoded: warcio undoes chunking and gzip as it streams)."""
    from warcio.archiveiterator import ArchiveIterator
    archive = ArchiveIterator(stream)
    for record in archive:
        kind = skipped_kind(record)
        if kind is not None:
            yield "skipped", kind
            continue
        body = record.content_stream().read(max_bytes + 1)
        # Asked after the body is read: warcio finishes the record to know where it began.
        source_uri = f"{path}#offset={archive.get_record_offset()}"
        if len(body) > max_bytes:
            yield "too_large", source_uri, len(body)
            continue
        headers = record.rec_headers
        yield "document", Document(
            source_uri=source_uri, kind="html", content=body,
            source_id=headers.get_header("WARC-Record-ID"),
            url=headers.get_header("WARC-Target-URI"),
            published_at=headers.get_header("WARC-Date"), published_at_kind=CRAWLED)


# --- Reading (used by transforms/sources.py for .warc inputs) ------------------------------------


def read_warc(path: str, max_bytes: int, run_id: str):
    """Documents, SKIPPED kinds and ERRORS of one WARC file, for a DoFn to yield."""
    pages = 0
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
            for outcome in warc_outcomes(stream, path, max_bytes):
                if outcome[0] == "document":
                    pages += 1
                    yield outcome[1]
                elif outcome[0] == "skipped":
                    yield beam.pvalue.TaggedOutput(SKIPPED, f"warc:{outcome[1]}")
                else:
                    pages += 1
                    yield beam.pvalue.TaggedOutput(ERRORS, error_row(
                        errors.STAGE_READ, errors.TOO_LARGE, f"a {outcome[2]}+ byte page; the "
                        f"limit is {max_bytes} (--max_document_bytes)", outcome[1], run_id))
    except Exception as error:  # warcio raises its own ArchiveLoadFailed, and zlib/OS errors
        yield beam.pvalue.TaggedOutput(ERRORS, error_row(
            errors.STAGE_READ, errors.READ_FAILED,
            f"{type(error).__name__} after {pages} pages: {error}", path, run_id))
        return
    if pages == 0:
        yield beam.pvalue.TaggedOutput(ERRORS, error_row(
            errors.STAGE_READ, errors.EMPTY_INPUT, "the archive holds no HTML response record",
            path, run_id))
