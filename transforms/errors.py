"""The dead letter: every input a stage cannot use becomes one ErrorRow, and the run goes on.

Stages emit errors on the tagged output ERRORS through `error_output` (or `counted` for a row
built earlier), which also counts each row under the live counter `<stage>_error_<reason>`
(transforms/metrics.py); the pipeline flattens them into the errors/ dataset. Stage names are
the STAGE_* constants below, spelled as the errors/ data has always spelled them. Reason codes
are short, stable, snake_case strings that users filter on; the message says the specifics.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import apache_beam as beam

from newsbeam.schemas.records import ErrorRow
from newsbeam.transforms import metrics
from newsbeam.transforms.metrics import STAGE_EXTRACT, STAGE_FETCH, STAGE_READ
from newsbeam.transforms.text import valid_unicode
from newsbeam.transforms.urls import redact_url

ERRORS = "errors"  # the tag of every stage's dead-letter output

# The `stage` of error rows, in the order a document meets them: read (files, feed files, URL
# lists), fetch (HTTP), feed (parsing a feed; the fetch stage's, in counts of time and progress),
# extract.
STAGE_FEED = "feed"
STAGE_PUBSUB = "pubsub"  # a stream's Pub/Sub message that is neither a URL nor an article
ERROR_STAGES = (STAGE_READ, STAGE_FETCH, STAGE_FEED, STAGE_PUBSUB, STAGE_EXTRACT)

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


def error_counter(stage: str, reason: str) -> str:
    """The live counter of a stage's errors of one reason: 'extract_error_empty_extraction'."""
    return f"{stage}_error_{reason}"


def count_error(row: ErrorRow) -> None:
    """Counts a row under `<stage>_error_<reason>`; on the bundle's thread, once per row."""
    metrics.count(error_counter(row.stage, row.reason))


def counted(row: ErrorRow) -> beam.pvalue.TaggedOutput:
    """A row built earlier (by a step that passed it on) as the error output, counted now."""
    count_error(row)
    return beam.pvalue.TaggedOutput(ERRORS, row)


def error_output(stage: str, reason: str, message: str, source_uri: str, run_id: str,
                 source_id: str | None = None, url: str | None = None) -> beam.pvalue.TaggedOutput:
    """What a DoFn yields (or returns) for an input it cannot use: its ErrorRow on ERRORS,
    counted under `<stage>_error_<reason>`. `stage` is one of ERROR_STAGES."""
    return counted(error_row(stage, reason, message, source_uri, run_id, source_id, url))


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
