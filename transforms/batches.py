"""Batched runs: one `newsbeam run` over a large input, on a local runner, as a sequence of
bounded runs, so that memory does not grow with the input (the local runner holds every stage's
data for the whole run).

The input's files are listed and their records counted (sources.record_count: JSONL lines, WARC
records, 1 for any other file), then cut into batches of at most `batch_records` records, in
file order; a file with more records than a batch holds is read in slices (a 100k-line JSONL
file or a 100k-record archive is one file). Each batch is a run of its own, with its own run id
(`<run id>-b0001`, ...), that commits through the dataset's exactly-once protocol
(transforms/dataset.py) before the next one starts: a later batch reads what earlier batches
stored (index/), so it drops their copies and joins their stories as a later run would. A kill
between (or inside) batches leaves every committed batch whole and nothing of the others; a
re-run skips the slices index/inputs records as done (each slice is recorded as
'<file>#records=<first>-<stop>') and finds the rest already ingested.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from newsbeam.schemas.records import ErrorRow
from newsbeam.transforms.sources import (WHOLE_FILE, MatchInputsFn, expand_input,
                                         record_count, slice_uri)

# The default on a local runner: batches of this many records (about 1 GiB of the runner's
# buffers on top of ~1 GiB of models and start-up, bench/bench_e2e.py).
AUTO_BATCH_RECORDS = 5_000


@dataclasses.dataclass(frozen=True)
class InputBatch:
    """What one batch of a batched run reads: `files` {path: (first, stop) records, WHOLE_FILE
    for all of it}; the first batch also reports what matching found wrong (`match_errors`: a
    pattern that matched nothing, a broken link) and fetches the web sources (feeds, URLs)."""
    number: int                 # from 1
    of: int                     # how many batches the run has
    files: dict
    first: bool = False

    @property
    def match_errors(self) -> bool:
        return self.first

    @property
    def web_sources(self) -> bool:
        return self.first

    def keep(self, keyed):
        """(key, FileMetadata or ErrorRow) of the matched inputs -> those of this batch, a
        slice keyed by its slice_uri (as index/inputs records it)."""
        key, item = keyed
        if isinstance(item, ErrorRow):
            if self.match_errors:
                yield keyed
            return
        records = self.files.get(item.path)
        if records is not None:
            yield slice_uri(key, records), item


# --- Pure functions ------------------------------------------------------------------------------


def plan_batches(counts: list[tuple[str, int]], batch_records: int) -> list[InputBatch]:
    """Batches of at most `batch_records` records from (path, records) in order; a file that
    does not fit is cut into slices (its last slice reads to the end of the file, whatever it
    holds by then). Always at least one batch (the first reports the match errors)."""
    batches: list[dict] = [{}]
    room = batch_records
    for path, count in counts:
        first = 0
        while first < count:
            if room == 0:
                batches.append({})
                room = batch_records
            take = min(room, count - first)
            stop = first + take
            batches[-1][path] = WHOLE_FILE if take == count else (
                first, None if stop == count else stop)
            first, room = stop, room - take
    return [InputBatch(number=i + 1, of=len(batches), files=files, first=i == 0)
            for i, files in enumerate(batches)]


def batch_run_id(run_id: str, number: int) -> str:
    return f"{run_id}-b{number:04d}"


# --- Planning a run ------------------------------------------------------------------------------


def input_files(inputs: list[str], run_id: str) -> list[str]:
    """The files the inputs name, as the graph's match step finds them (sources.MatchInputsFn),
    in name order, each once."""
    match = MatchInputsFn(run_id)
    found = set()
    for pattern in sorted({expand_input(path) for path in inputs}):
        try:
            for _, item in match.found(pattern):
                if not isinstance(item, ErrorRow):
                    found.add(item.path)
        except Exception:  # a listing that fails: the batch that matches it reports it
            continue
    return sorted(found)


def plan_run(inputs: list[str], run_id: str, batch_records: int, max_bytes: int):
    """(batches, records counted) of a run over `inputs`; one batch when they all fit in one
    (or `batch_records` is 0: no batching)."""
    counts = [(path, record_count(path, max_bytes)) for path in input_files(inputs, run_id)] \
        if batch_records else []
    total = sum(n for _, n in counts)
    if not batch_records or total <= batch_records:
        return [], total
    return plan_batches(counts, batch_records), total


# --- The run's record: its batches' manifests, added up ------------------------------------------


def _add_numbers(total: dict, more: dict) -> dict:
    """{key: number or nested dict} added key by key (booleans: all of them)."""
    merged = dict(total)
    for key, value in more.items():
        if isinstance(value, bool):
            merged[key] = merged.get(key, True) and value
        elif isinstance(value, (int, float)):
            merged[key] = merged.get(key, 0) + value
        elif isinstance(value, dict):
            merged[key] = _add_numbers(merged.get(key, {}), value)
    return merged


def combined_manifest(run_id: str, manifests: list[dict]) -> dict:
    """What `newsbeam run` reports of a batched run: its batches' counts, accounting, errors,
    files and seconds per stage added up (each batch's own manifest, _runs/<run id>-bNNNN.json,
    is the record of what it committed). Balanced when every batch is."""
    first, last = manifests[0], manifests[-1]
    combined = {**{key: first[key] for key in ("options", "versions", "schema_version")
                   if key in first},
                "run_id": run_id, "started_at": first["started_at"],
                "finished_at": last.get("finished_at"),
                "batches": [m["run_id"] for m in manifests]}
    for key in ("counts", "accounting", "errors_by_stage", "datasets", "stage_seconds",
                "stage_cpu_seconds"):
        total: dict = {}
        for manifest in manifests:
            total = _add_numbers(total, manifest.get(key) or {})
        combined[key] = total
    started = dt.datetime.fromisoformat(first["started_at"])
    finished = dt.datetime.fromisoformat(last["finished_at"])
    combined["elapsed_s"] = round((finished - started).total_seconds(), 3)
    combined["accounting"]["balanced"] = all(m["accounting"]["balanced"] for m in manifests)
    return combined
