"""The dead letter: every input a stage cannot use becomes one ErrorRow, and the run goes on.

Stages emit errors on the tagged output ERRORS; the pipeline flattens them into the errors/
dataset. Reason codes are short, stable, snake_case strings that users filter on; the message
says the specifics.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import apache_beam as beam

from newsbeam.schemas.records import ErrorRow
from newsbeam.transforms.text import valid_unicode
from newsbeam.transforms.urls import redact_url

ERRORS = "errors"  # the tag of every stage's dead-letter output

# Stages, in the order a document meets them.
STAGE_READ = "read"
STAGE_EXTRACT = "extract"

# Reason codes.
NO_MATCH = "no_match"
TOO_LARGE = "too_large"
BINARY_CONTENT = "binary_content"
UNDECODABLE = "undecodable"
EMPTY_INPUT = "empty_input"
UNSUPPORTED_TYPE = "unsupported_type"
MALFORMED_JSONL = "malformed_jsonl"
INVALID_RECORD = "invalid_record"
READ_FAILED = "read_failed"
# A WARC archive that ends inside a record (cut off), and a record shorter than its declared
# Content-Length in the middle of one.
TRUNCATED_ARCHIVE = "truncated_archive"
TRUNCATED_RECORD = "truncated_record"
# Entries of an input folder that are no file: a symbolic link that loops on itself, a link back
# to a folder above it, a link to nothing.
SYMLINK_LOOP = "symlink_loop"
DIRECTORY_LOOP = "directory_loop"
BROKEN_LINK = "broken_link"
EMPTY_EXTRACTION = "empty_extraction"
EXTRACTION_TIMEOUT = "extraction_timeout"
EXTRACTION_FAILED = "extraction_failed"
UNPARSEABLE_HTML = "unparseable_html"  # the HTML parser stopped at a resource limit
# Any exception a stage did not foresee while handling one input: that input's error row, never
# the end of the run. The message is the exception's last line (type and text).
INTERNAL_ERROR = "internal_error"

_MAX_MESSAGE_CHARS = 2000


def exception_summary(exc: BaseException) -> str:
    """'ValueError: bad thing' - the last line a traceback would print, with no traceback."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1]}" if text else type(exc).__name__


def make_error_id(stage: str, reason: str, source_uri: str) -> str:
    return hashlib.sha256(f"{stage}\n{reason}\n{source_uri}".encode()).hexdigest()[:24]


def error_row(stage: str, reason: str, message: str, source_uri: str, run_id: str,
              source_id: str | None = None, url: str | None = None) -> ErrorRow:
    """An ErrorRow stamped now; the message is cut to a readable length. Every row is built
    here, so this is where credentials in URLs (user:password@) are taken out of the source, the
    URL and the message, before the id is computed: a row never shows them."""
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[:_MAX_MESSAGE_CHARS] + "…"
    # Messages and ids may quote the input, which may hold lone surrogates (from JSON).
    message, source_uri, source_id, url = (
        None if v is None else redact_url(valid_unicode(v))
        for v in (message, source_uri, source_id, url))
    return ErrorRow(error_id=make_error_id(stage, reason, source_uri), stage=stage,
                    reason=reason, message=message, source_uri=source_uri,
                    occurred_at=dt.datetime.now(dt.timezone.utc), run_id=run_id,
                    source_id=source_id, url=url)


# --- Composite -----------------------------------------------------------------------------------


def _first_unrecorded(keyed):
    """(error_id, {"new": [...], "index": [...]}) -> the error to record, if it is new."""
    _, grouped = keyed
    # Rows of one id share stage, reason and source; the message picks one deterministically.
    new = sorted(grouped["new"], key=lambda e: e.message)
    if new and not any(True for _ in grouped["index"]):
        yield new[0]


class DropRecordedErrors(beam.PTransform):
    """(ErrorRows, error ids in the index) -> the ErrorRows not recorded by an earlier run (or
    earlier in this one). The run still counts every error it met; only the rows are not
    written twice, so a re-run over the same bad input adds no rows."""

    def __init__(self, indexed_ids):
        super().__init__()
        self._indexed_ids = indexed_ids

    def expand(self, error_rows):
        return (
            {"new": error_rows | "KeyById" >> beam.Map(lambda e: (e.error_id, e)),
             "index": self._indexed_ids | "KeyIndex" >> beam.Map(lambda i: (i, None))}
            | "Join" >> beam.CoGroupByKey()
            | "KeepNew" >> beam.FlatMap(_first_unrecorded))
