"""Skipping unchanged input files: OUTPUT/index/inputs records every file whose documents all
ended as articles, duplicates or permanent errors, by source_uri, size, modification time and
content hash. A later run does not read a file whose size and modification time match (it is
counted as already ingested, as many inputs as it gave then); a file whose size or time differ
is hashed, and skipped too when its bytes are the recorded ones (touched, not changed), its entry
refreshed so that the next run takes the quick path. A file with a document that failed in a way
that may heal (TRANSIENT_REASONS), or whose reading raised, is not recorded: it is read again.

Size and modification time come from the file system's listing (os.stat; an object store's
FileSystems metadata), so a skipped file costs no read. A file rewritten to the same size within
the same modification time (some copy tools keep times: `cp -p`, `rsync -t`) is taken as
unchanged; touch it to have it read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from newsbeam.schemas.records import ErrorRow, InputIndexEntry
from newsbeam.transforms import errors, metrics

UNCHANGED = "unchanged"        # tag: one element per input of a file skipped as unchanged
INPUT_FACTS = "input_facts"    # tag: InputFacts of each file read
REFRESHED = "refreshed"        # tag: InputIndexEntry of a touched file whose bytes are the same

# Errors that may not happen next time: a file that met one is not recorded, so it is read again.
TRANSIENT_REASONS = frozenset({errors.INTERNAL_ERROR, errors.EXTRACTION_TIMEOUT,
                               errors.READ_FAILED, errors.TRUNCATED_ARCHIVE})

_CHUNK = 1 << 20
# The documents of one file: JSONL lines ('#L3') and WARC records ('#offset=1234'); and the
# slice of a file that one batch of a batched run read ('#records=0-5000', sources.slice_uri).
_DOCUMENT_SUFFIX = re.compile(r"#(?:L\d+|offset=\d+|records=\d+-\d*)$")


@dataclasses.dataclass(frozen=True)
class InputFacts:
    """What reading one file gave: its listing, its hash, and how many inputs (documents and
    errors) it yielded."""
    source_uri: str
    size: int
    mtime: float
    content_hash: str | None
    inputs: int


# --- Pure functions ------------------------------------------------------------------------------


def input_of(source_uri: str) -> str:
    """The file a document or error came from: '/in/a.jsonl#L3' -> '/in/a.jsonl'."""
    return _DOCUMENT_SUFFIX.sub("", source_uri)


def latest_entry(entries) -> dict | None:
    """The newest of a file's index rows (a changed file is recorded again), or None."""
    return max(entries, key=lambda e: (e["recorded_at"], e["run_id"]), default=None)


def listing_matches(size: int, mtime: float, entry: dict | None) -> bool:
    return entry is not None and entry["size"] == size and entry["mtime"] == mtime


def outcome_summary(reasons) -> str:
    """'extracted=3,empty_input=1' from the error reasons (None: extracted) of a file's inputs."""
    counts: dict[str, int] = {}
    for reason in reasons:
        counts[reason or "extracted"] = counts.get(reason or "extracted", 0) + 1
    return ",".join(f"{name}={n}" for name, n in sorted(counts.items()))


def entry_if_complete(facts: InputFacts, reasons: list, run_id: str,
                      recorded_at: dt.datetime) -> InputIndexEntry | None:
    """The index entry of a file read this run, when all its inputs reached an end that will not
    change: every one accounted for (extracted, or an error that does not heal)."""
    if len(reasons) != facts.inputs or any(r in TRANSIENT_REASONS for r in reasons):
        return None
    return InputIndexEntry(source_uri=facts.source_uri, size=facts.size, mtime=facts.mtime,
                           inputs=facts.inputs, outcome=outcome_summary(reasons), run_id=run_id,
                           recorded_at=recorded_at, content_hash=facts.content_hash)


# --- Hashing -------------------------------------------------------------------------------------


class HashingReader:
    """A read-only stream that hashes what passes through; `finish()` reads the rest and
    returns the SHA-256 of the whole file (None if that fails)."""

    def __init__(self, stream):
        self._stream = stream
        self._digest = hashlib.sha256()

    def read(self, size=-1):
        data = self._stream.read(size)
        self._digest.update(data)
        return data

    def readline(self, size=-1):
        data = self._stream.readline(size)
        self._digest.update(data)
        return data

    def readable(self):
        return True

    def finish(self) -> str | None:
        try:
            while self.read(_CHUNK):
                pass
        except OSError:
            return None
        return self._digest.hexdigest()


def file_hash(path: str) -> str:
    """The SHA-256 of a file's bytes, read through FileSystems in chunks."""
    digest = hashlib.sha256()
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- What a run records in index/inputs ---------------------------------------------------------


def input_outcomes(articles, error_rows):
    """(source_uri, None) for every extracted article and (source_uri, reason) for every error
    of the run: an extracted article always ends stored, as a duplicate or as already ingested,
    since the index is committed after the data."""
    return (
        articles | "ArticleOutcomes" >> beam.Map(lambda a: (a.source_uri, None)),
        error_rows | "ErrorOutcomes" >> beam.Map(lambda e: (e.source_uri, e.reason)),
    ) | "AllOutcomes" >> beam.Flatten()


# --- DoFns and composites ------------------------------------------------------------------------


# Live counters (transforms/metrics.py) of the files matched: to read, or skipped as unchanged.
READ_FILES_TO_READ = f"{metrics.STAGE_READ}_files_to_read"
READ_FILES_UNCHANGED = f"{metrics.STAGE_READ}_files_unchanged"


class _SkipUnchangedFn(beam.DoFn):
    """(source_uri, {"found": items, "index": rows}) -> (item, its latest index row or None) for
    each file to read (or ErrorRow to pass on); one UNCHANGED element per recorded input of a
    file whose size and modification time are those recorded."""

    @metrics.timed(metrics.STAGE_READ)
    def process(self, keyed):
        source_uri, grouped = keyed
        items, entry = list(grouped["found"]), latest_entry(grouped["index"])
        if not items:
            return
        # Two patterns may name one file: identical items. Distinct files whose names print
        # alike (printable_path) are all read, and none is checked against the index.
        distinct = {(type(i).__name__, getattr(i, "path", None) or i.error_id): i for i in items}
        files = [i for i in distinct.values() if not isinstance(i, ErrorRow)]
        if len(files) != 1:
            entry = None
        for item in distinct.values():
            if isinstance(item, ErrorRow):
                metrics.count(READ_FILES_TO_READ)
                yield item, None
            elif listing_matches(item.size_in_bytes, item.last_updated_in_seconds, entry):
                metrics.count(READ_FILES_UNCHANGED)
                for _ in range(entry["inputs"]):
                    yield beam.pvalue.TaggedOutput(UNCHANGED, source_uri)
            else:
                metrics.count(READ_FILES_TO_READ)
                yield item, entry


class SkipUnchanged(beam.PTransform):
    """(source_uri, FileMetadata or ErrorRow) and index/inputs rows -> {"to_read": (item, index
    row or None), UNCHANGED: one element per input of each file skipped}."""

    def __init__(self, index_rows):
        super().__init__()
        self._index_rows = index_rows

    def expand(self, found):
        return (
            {"found": found,
             "index": self._index_rows | "KeyIndex" >> beam.Map(lambda r: (r["source_uri"], r))}
            | "Join" >> beam.CoGroupByKey()
            | "Decide" >> beam.ParDo(_SkipUnchangedFn()).with_outputs(UNCHANGED, main="to_read"))


def _complete_entries(keyed, run_id: str, recorded_at: dt.datetime):
    _, grouped = keyed
    reasons = [reason for _, reason in grouped["outcomes"]]
    for facts in grouped["facts"]:
        entry = entry_if_complete(facts, reasons, run_id, recorded_at)
        if entry is not None:
            yield entry


class RecordInputs(beam.PTransform):
    """(InputFacts of the files read, outcomes (source_uri, reason or None) of every document and
    error, InputIndexEntries refreshed) -> the InputIndexEntries to write to index/inputs."""

    def __init__(self, outcomes, refreshed, run_id: str, recorded_at: dt.datetime):
        super().__init__()
        self._outcomes = outcomes
        self._refreshed = refreshed
        self._run_id = run_id
        self._recorded_at = recorded_at

    def expand(self, facts):
        complete = (
            # By file: a slice's facts (a batched run's) meet the outcomes of its documents.
            {"facts": facts | "KeyFacts" >> beam.Map(lambda f: (input_of(f.source_uri), f)),
             "outcomes": self._outcomes | "KeyOutcomes" >> beam.Map(
                 lambda o: (input_of(o[0]), o))}
            | "Join" >> beam.CoGroupByKey()
            | "Complete" >> beam.FlatMap(_complete_entries, self._run_id, self._recorded_at))
        return (complete, self._refreshed) | "AllEntries" >> beam.Flatten()
