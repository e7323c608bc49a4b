"""Watched folders: a stream's --input (a folder, a glob, local or gs://...) listed at every
tick of its poll clock, each new or changed file read once it has settled, by the batch read
step (sources.ReadFiles: the same kinds, HTML, text, Markdown, JSONL, WARC, gzipped or not).

    ticks ─► list every pattern (sources.MatchInputsFn) ─► per file (keyed state): settled,
    not read yet, not in index/inputs? ─► read (sources.ReadFiles) ─► Documents ...

A file is read when two polls in a row list it with the same size and modification time, so a
file still being written (whose size or time move between polls) is not read half. A producer
that may pause for longer than --poll_interval_s while writing a file must write it under a
name the watch skips (a dot-file, or another folder) and rename it into place when complete:
a rename is atomic, and the renamed file settles at the next poll.

What a file gave is recorded in OUTPUT/index/inputs when its window is committed, as a batch
run records it (transforms/input_index.py), so a later run or stream does not read it again;
a file that index/inputs had when the stream started, with the same size and modification
time, is counted once as already ingested and not read. A file that changes after it was read
is read again once it settles (its articles that were stored already are counted as already
ingested). Keyed state holds one small record per file name the stream listed (Beam state
lasts one job; the index is the truth across jobs).

Beam's fileio.MatchContinuously does the listing part, but on PeriodicImpulse, which
FnApiRunner runs in a busy loop (transforms/streaming.PollClock); the watch hangs off the
stream's own poll clock instead.
"""

from __future__ import annotations

import datetime as dt
import os
import posixpath

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.io.filesystem import FileMetadata
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from newsbeam.schemas.records import ErrorRow
from newsbeam.transforms import metrics
from newsbeam.transforms.errors import ERRORS
from newsbeam.transforms.input_index import (INPUT_FACTS, READ_FILES_UNCHANGED, REFRESHED,
                                             UNCHANGED, latest_entry, listing_matches)
from newsbeam.transforms.sources import (MatchInputsFn, ReadFiles, expand_input, folder_of,
                                         has_wildcard, is_local, path_key)
from newsbeam.transforms.warc import SKIPPED

__all__ = ["WatchFiles", "listing_of", "watch_patterns", "watch_problems"]

# Live counters (transforms/metrics.py) of what the watch saw.
READ_FILES_SETTLED = f"{metrics.STAGE_READ}_files_settled"        # passed on to be read
READ_FILES_UNSETTLED = f"{metrics.STAGE_READ}_files_unsettled"    # new or changing: next poll


# --- Pure functions ------------------------------------------------------------------------------


def listing_of(item) -> tuple:
    """What a poll saw of a file: its size and modification time; of an entry that cannot be
    read (an ErrorRow: a broken link, a loop), its error id."""
    if isinstance(item, ErrorRow):
        return ("error", item.error_id)
    return (item.size_in_bytes, item.last_updated_in_seconds)


def watch_patterns(inputs: list[str]) -> list[str]:
    """The globs a stream lists at each poll (a folder is everything below it)."""
    return sorted({expand_input(path) for path in inputs})


def watched_folder(path: str) -> str:
    """The folder a watched --input lists below: the folder itself, a glob's literal part, a
    file's folder."""
    pattern = expand_input(path)
    if pattern.endswith("/**") and not has_wildcard(pattern[:-3]):
        return pattern[:-3]
    return folder_of(pattern) if has_wildcard(pattern) else posixpath.dirname(pattern)


def watch_problems(inputs: list[str]) -> list[str]:
    """What a stream refuses of its --input: a local folder that does not exist would be
    watched, empty, for ever (a typo's likeliest outcome)."""
    return [f"--input {path}: the folder {watched_folder(path)} does not exist (a stream "
            "watches a folder that is there when it starts)"
            for path in inputs if is_local(path) and not os.path.isdir(watched_folder(path))]


# --- DoFns ---------------------------------------------------------------------------------------


class KeepSettledFilesFn(beam.DoFn):
    """(file name, FileMetadata or ErrorRow) at each poll -> (item, its index/inputs row or
    None) once per version of the file: when the poll before listed it the same (settled), and
    neither this stream nor index/inputs (`indexed`: the latest row by name, a side input) has
    that version. A version index/inputs has -> one UNCHANGED per input it gave, once.
    State: what the last poll saw (with the poll's timestamp: a file two patterns name is
    listed twice in one poll, which is no second poll) and the version last passed on."""

    LAST_SEEN = ReadModifyWriteStateSpec("last_seen", PickleCoder())
    TAKEN = ReadModifyWriteStateSpec("taken", PickleCoder())

    def process(self, keyed, indexed, timestamp=beam.DoFn.TimestampParam,
                last_seen=beam.DoFn.StateParam(LAST_SEEN), taken=beam.DoFn.StateParam(TAKEN)):
        name, item = keyed
        poll, listing = float(timestamp), listing_of(item)
        seen = last_seen.read()
        if seen is not None and seen[0] == poll:
            return
        last_seen.write((poll, listing))
        if taken.read() == listing:
            return
        entry = indexed.get(name) if isinstance(item, FileMetadata) else None
        if entry is not None and listing_matches(*listing, entry):
            taken.write(listing)
            metrics.count(READ_FILES_UNCHANGED)
            for _ in range(entry["inputs"]):
                yield beam.pvalue.TaggedOutput(UNCHANGED, name)
            return
        if seen is None or seen[1] != listing:
            metrics.count(READ_FILES_UNSETTLED)
            return
        taken.write(listing)
        metrics.count(READ_FILES_SETTLED)
        yield item, entry


# --- Composite -----------------------------------------------------------------------------------


class WatchFiles(beam.PTransform):
    """Poll ticks -> what sources.ReadInputs gives ({"documents", ERRORS, SKIPPED, UNCHANGED,
    INPUT_FACTS, REFRESHED}) for the files under `inputs` that appear or change while the
    stream runs, each read once it has settled. `input_index`: the rows of index/inputs, read
    when the stream starts. Outputs keep the timestamp of the poll that passed the file on."""

    def __init__(self, inputs: list[str], input_index, run_id: str, max_document_bytes: int,
                 recorded_at: dt.datetime):
        super().__init__()
        self._patterns = [path_key(pattern) for pattern in watch_patterns(inputs)]
        self._input_index = input_index
        self._run_id, self._max_bytes, self._recorded_at = \
            run_id, max_document_bytes, recorded_at

    def expand(self, ticks):
        latest = (
            self._input_index
            | "ByName" >> beam.Map(lambda row: (row["source_uri"], row))
            # A GroupByKey, not CombinePerKey: BundleBasedDirectRunner --streaming cannot run a
            # CombinePerKey in the global window (see ingest.read_feed_states).
            | "Group" >> beam.GroupByKey()
            | "Latest" >> beam.MapTuple(lambda name, rows: (name, latest_entry(rows))))
        settled = (
            ticks
            | "EveryPattern" >> beam.FlatMap(lambda _tick, patterns: patterns, self._patterns)
            | "List" >> beam.ParDo(MatchInputsFn(self._run_id, watching=True))
            | "Settled" >> beam.ParDo(KeepSettledFilesFn(), beam.pvalue.AsDict(latest))
            .with_outputs(UNCHANGED, main="to_read"))
        read = settled.to_read | "Read" >> ReadFiles(self._run_id, self._max_bytes,
                                                     self._recorded_at)
        unchanged = (settled[UNCHANGED], read[UNCHANGED]) | "Unchanged" >> beam.Flatten()
        return {"documents": read["documents"], ERRORS: read[ERRORS], SKIPPED: read[SKIPPED],
                UNCHANGED: unchanged, INPUT_FACTS: read[INPUT_FACTS], REFRESHED: read[REFRESHED]}
