"""The dataset's memory and its commit protocol: what every graph (batch now, stream next) uses
to read what earlier runs stored (`index/`) and to make its own files visible exactly once.

    OUTPUT/.tmp/<run_id>/...             a run's files while it works (nobody reads them)
    OUTPUT/_commits/<id>.started.json    a run (or compaction) that holds the lease and works
    OUTPUT/_commits/<id>.intent.json     write-ahead commit record: every temp -> final move
                                         (and, for a compaction, every file it replaces) and
                                         the record that marks it done
    OUTPUT/_commits/abandoned/<id>.json  a run that died before its intent (nothing of it shows)
    OUTPUT/_runs/<run_id>.json           the manifest: the run is committed
    OUTPUT/_leases/writer.json           who may commit now (transforms/lease.py)

The protocol, under the writer lease:
1. every data and index file is written into .tmp/<id>/ (WriteDataset);
2. one atomic write of the intent (a single object: complete or absent);
3. the moves, data datasets first, then index/; then a compaction's deletions;
4. the done record (the manifest), then the intent, the started marker and .tmp/<id>/ go.
Recovery (`recover`, at the start of every run, compaction and `newsbeam repair`, under the
lease) rolls every intent forward (a move whose temp file is gone happened already; a
deletion of a missing file too) and deletes every temp folder and started marker of a dead run.
So a kill before the intent leaves nothing visible (and the next run ingests those inputs
again); a kill after it is completed by the next run before that run reads the index.

Index reads are decided when the job runs (`ReadIndex`: the files are listed by a DoFn off an
Impulse, after recovery), so a long-lived graph or a template sees the current index.

Who holds the lease: a local run's launcher (`writing`, around the whole job). A job on a
runner elsewhere takes it itself when it starts (`StartRun`, a DoFn off an Impulse: refuse a
used run id, lease, recovery, started marker) and its commit DoFn releases it, so a job whose
launcher exits after submitting it (a Flex Template, a scheduler) is exactly-once all the same.
A stream's job takes it the same way (`StartStream`), keeps it alive from a timer step and
releases it when the stream ends (`HoldStreamLease`), one commit per window in between.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import posixpath
import signal
import time
from typing import Callable, Optional

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.coders import BooleanCoder
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import PaneInfoTiming

from newsbeam.schemas.records import (DuplicateIndexEntry, EntryIndexEntry, ErrorIndexEntry,
                                      FeedIndexEntry, IndexEntry, InputIndexEntry,
                                      ParagraphIndexEntry, SignatureIndexEntry, StoryIndexEntry)
from newsbeam.transforms import lease as leases
from newsbeam.transforms import metrics, sinks
from newsbeam.transforms.sinks import (TEMP_FOLDER, WrittenFile, build_manifest, delete_folder, make_dirs,
                                       manifest_path, moment_of, part_file_name, partition_value,
                                       write_json_atomically)

_LOG = logging.getLogger(__name__)

COMMITS_FOLDER = "_commits"
ABANDONED_FOLDER = "_commits/abandoned"
COMPACTIONS_FOLDER = "_compactions"
# Data datasets, in the order their files are moved; index/ follows them.
DATA_DATASETS = ("articles", "duplicates", "errors", "stories")

# The fault-injection seam of the kill tests: at the named step of a commit, the process group
# is killed with SIGKILL (nothing runs after it: no finally, no atexit).
KILL_AT_ENV = "NEWSBEAM_KILL_AT"
COMMIT_STEPS = ("before_intent", "between_datasets", "before_index", "after_index",
                "after_manifest", "before_deletes")


@dataclasses.dataclass(frozen=True)
class IndexSpec:
    """One index dataset: where it lives and what its rows are."""
    name: str           # the folder under OUTPUT, e.g. 'index/articles'
    record_type: type

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.record_type))


INDEX_ARTICLES = IndexSpec("index/articles", IndexEntry)
INDEX_ERRORS = IndexSpec("index/errors", ErrorIndexEntry)
INDEX_DUPLICATES = IndexSpec("index/duplicates", DuplicateIndexEntry)
INDEX_SIGNATURES = IndexSpec("index/signatures", SignatureIndexEntry)
INDEX_STORIES = IndexSpec("index/stories", StoryIndexEntry)
INDEX_FEEDS = IndexSpec("index/feeds", FeedIndexEntry)
INDEX_ENTRIES = IndexSpec("index/entries", EntryIndexEntry)
INDEX_INPUTS = IndexSpec("index/inputs", InputIndexEntry)
INDEX_PARAGRAPHS = IndexSpec("index/paragraphs", ParagraphIndexEntry)
# Every index dataset; a new one is one IndexSpec more here.
INDEXES = (INDEX_ARTICLES, INDEX_ERRORS, INDEX_DUPLICATES, INDEX_SIGNATURES, INDEX_STORIES,
           INDEX_FEEDS, INDEX_ENTRIES, INDEX_INPUTS, INDEX_PARAGRAPHS)


# --- Pure functions: paths and plans -------------------------------------------------------------


def _root(output_dir: str) -> str:
    return output_dir.rstrip("/")


def temp_dir(output_dir: str, run_id: str) -> str:
    return posixpath.join(_root(output_dir), TEMP_FOLDER, partition_value(run_id))


def intent_path(output_dir: str, run_id: str) -> str:
    return posixpath.join(_root(output_dir), COMMITS_FOLDER,
                          f"{partition_value(run_id)}.intent.json")


def started_path(output_dir: str, run_id: str) -> str:
    return posixpath.join(_root(output_dir), COMMITS_FOLDER,
                          f"{partition_value(run_id)}.started.json")


def abandoned_path(output_dir: str, run_id: str) -> str:
    return posixpath.join(_root(output_dir), ABANDONED_FOLDER, f"{partition_value(run_id)}.json")


def commit_rank(dataset: str) -> tuple[int, str]:
    """Data datasets move first (in DATA_DATASETS order), index datasets after them."""
    if dataset in DATA_DATASETS:
        return 0, f"{DATA_DATASETS.index(dataset)}"
    return 1, dataset


def plan_moves(output_dir: str, run_id: str, temp_files) -> list[WrittenFile]:
    """The final place of every temp file of a run, in commit order: per dataset and partition,
    part-<run_id>-00000.parquet, -00001, ... (`temp_path` holds where it is now)."""
    by_partition: dict[tuple[str, str], list] = {}
    for temp in temp_files:
        by_partition.setdefault((temp.dataset, temp.partition), []).append(temp)
    planned = []
    for (dataset, partition), temps in sorted(by_partition.items(),
                                              key=lambda kv: (commit_rank(kv[0][0]), kv[0])):
        folder = posixpath.join(_root(output_dir), dataset, partition).rstrip("/")
        for number, temp in enumerate(sorted(temps, key=lambda t: t.path)):
            final = posixpath.join(folder, part_file_name(run_id, number))
            planned.append(WrittenFile(dataset, partition, final, temp.rows, temp.path))
    return planned


def ingest_intent(run: dict, planned: list[WrittenFile], manifest: dict,
                  output_dir: str) -> dict:
    return {
        "kind": "ingest",
        "id": run["run_id"],
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "moves": [[f.dataset, f.temp_path, f.path] for f in planned],
        "deletes": [],
        "done": {"path": manifest_path(output_dir, run["run_id"]), "record": manifest},
    }


def _kill_point(step: str) -> None:
    if os.environ.get(KILL_AT_ENV) == step:
        _LOG.warning("%s=%s: killing the process group", KILL_AT_ENV, step)
        logging.shutdown()
        os.killpg(os.getpgid(0), signal.SIGKILL)


# --- Filesystem helpers --------------------------------------------------------------------------


def _list(pattern: str) -> list:
    """What `pattern` matches. A folder that is not there matches nothing; any other failure (a
    transient object-store error) is raised: taken for an empty index, it would make the run
    store again everything earlier runs stored."""
    try:
        return FileSystems.match([pattern])[0].metadata_list
    except BeamIOError as error:
        details = getattr(error, "exception_details", None) or {}
        if details and all(isinstance(e, FileNotFoundError) for e in details.values()):
            return []
        raise


def read_json(path: str) -> dict:
    with FileSystems.open(path) as stream:
        return json.loads(stream.read())


def _delete_if_there(path: str) -> None:
    if FileSystems.exists(path):
        FileSystems.delete([path])


# --- The commit protocol -------------------------------------------------------------------------


def apply_intent(output_dir: str, intent: dict, recovered_by: str | None = None,
                 kill_points: bool = False) -> None:
    """Makes an intent true; safe to repeat after a kill at any step (every step checks what
    is there before it acts)."""
    by_dataset: dict[str, list] = {}
    for name, temp, final in intent["moves"]:
        by_dataset.setdefault(name, []).append((temp, final))
    previous = None
    for name, moves in by_dataset.items():  # in the intent's order: data first, then index/
        if kill_points and previous is not None:
            crossing = (commit_rank(previous)[0], commit_rank(name)[0]) == (0, 1)
            _kill_point("before_index" if crossing else "between_datasets")
        previous = name
        pending = []
        for temp, final in moves:
            if not FileSystems.exists(temp):
                continue  # moved already
            if FileSystems.exists(final):
                FileSystems.delete([temp])  # a copy-then-delete rename that stopped after the copy
            else:
                pending.append((temp, final))
        for folder in sorted({posixpath.dirname(final) for _, final in pending}):
            make_dirs(folder)
        if pending:
            # One call per dataset: object stores copy and delete in batches.
            FileSystems.rename([temp for temp, _ in pending], [final for _, final in pending])
    if kill_points:
        _kill_point("after_index" if intent["kind"] == "ingest" else "before_deletes")
    still_there = [path for path in intent["deletes"] if FileSystems.exists(path)]
    if still_there:
        FileSystems.delete(still_there)
    done = intent["done"]
    if not FileSystems.exists(done["path"]):
        record = dict(done["record"])
        if recovered_by:
            record["committed_by_recovery"] = {
                "by": recovered_by, "at": dt.datetime.now(dt.timezone.utc).isoformat()}
        write_json_atomically(done["path"], record)
    if kill_points:
        _kill_point("after_manifest")
    _finish(output_dir, intent["id"])


def _finish(output_dir: str, run_id: str) -> None:
    _delete_if_there(intent_path(output_dir, run_id))
    _delete_if_there(started_path(output_dir, run_id))
    delete_folder(temp_dir(output_dir, run_id))
    _remove_empty_temp_root(output_dir)


def _remove_empty_temp_root(output_dir: str) -> None:
    if FileSystems.get_scheme(output_dir) is None:
        try:
            os.rmdir(posixpath.join(_root(output_dir), TEMP_FOLDER))
        except OSError:
            pass  # absent, or another run's files are in it


def commit(output_dir: str, intent: dict, holder: str | None = None) -> None:
    """Steps 2-4 of the protocol for the current lease holder: `holder`, else the intent's own
    id (a stream holds the lease and commits once per window, each under its own id)."""
    _kill_point("before_intent")
    leases.verify_holder(output_dir, holder or intent["id"])
    write_json_atomically(intent_path(output_dir, intent["id"]), intent)
    apply_intent(output_dir, intent, kill_points=True)


@dataclasses.dataclass
class Recovery:
    rolled_forward: list[str] = dataclasses.field(default_factory=list)
    abandoned: list[str] = dataclasses.field(default_factory=list)
    orphan_temp_files: int = 0
    orphan_temp_folders: list[str] = dataclasses.field(default_factory=list)

    def __bool__(self):
        return bool(self.rolled_forward or self.abandoned or self.orphan_temp_folders)

    def describe(self) -> str:
        parts = []
        if self.rolled_forward:
            parts.append(f"completed the commit of {', '.join(self.rolled_forward)}")
        if self.abandoned:
            parts.append(f"cleared {', '.join(self.abandoned)} (stopped before committing)")
        if self.orphan_temp_folders:
            parts.append(f"deleted {self.orphan_temp_files} orphan temp files in "
                         f".tmp/{{{','.join(self.orphan_temp_folders)}}}")
        return "; ".join(parts)


def _marker_ids(output_dir: str, suffix: str) -> list[str]:
    pattern = posixpath.join(_root(output_dir), COMMITS_FOLDER, f"*{suffix}")
    return sorted(posixpath.basename(m.path)[:-len(suffix)] for m in _list(pattern))


def pending_intents(output_dir: str) -> list[str]:
    return _marker_ids(output_dir, ".intent.json")


def started_runs(output_dir: str) -> list[str]:
    return _marker_ids(output_dir, ".started.json")


def temp_folders(output_dir: str) -> dict[str, int]:
    """{folder under .tmp/: number of files in it}."""
    root = posixpath.join(_root(output_dir), TEMP_FOLDER)
    folders: dict[str, int] = {}
    if FileSystems.get_scheme(output_dir) is None and os.path.isdir(root):
        for name in os.listdir(root):
            folders[name] = sum(len(files) for _, _, files in os.walk(os.path.join(root, name)))
        return folders
    for metadata in _list(root + "/**"):
        name = metadata.path[len(root) + 1:].split("/", 1)[0]
        folders[name] = folders.get(name, 0) + 1
    return folders


def recover(output_dir: str, holder: str) -> Recovery:
    """Rolls forward every commit a dead process left half-done and removes what dead runs left
    behind. Only for the lease holder `holder`: every other run is dead or waiting."""
    report = Recovery()
    for run_id in pending_intents(output_dir):
        if run_id == partition_value(holder):
            continue
        apply_intent(output_dir, read_json(intent_path(output_dir, run_id)), recovered_by=holder)
        report.rolled_forward.append(run_id)
    for run_id in started_runs(output_dir):
        if run_id == partition_value(holder):
            continue
        marker = started_path(output_dir, run_id)
        try:
            started = read_json(marker)
        except (OSError, ValueError):
            started = {}
        write_json_atomically(abandoned_path(output_dir, run_id), {
            **started, "abandoned_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "found_by": holder})
        _delete_if_there(marker)
        report.abandoned.append(run_id)
    for name, files in sorted(temp_folders(output_dir).items()):
        if name == partition_value(holder):
            continue
        delete_folder(posixpath.join(_root(output_dir), TEMP_FOLDER, name))
        report.orphan_temp_folders.append(name)
        report.orphan_temp_files += files
    _remove_empty_temp_root(output_dir)
    return report


class RunIdUsed(RuntimeError):
    """The run id was used on this dataset already: the graph was built for an earlier run."""


# The leases this worker process took for jobs (StartRun): their heartbeat threads keep them
# fresh until the commit releases them.
_JOB_LEASES: dict[tuple[str, str], leases.Lease] = {}


def start_in_job(output_dir: str, holder: str, kind: str, wait_for_lease_s: float,
                 lease_expiry_s: float, started: dict | None = None,
                 heartbeat: bool = True) -> Recovery:
    """What `writing` does in the launcher of a local run, done by the job itself on a worker
    when it starts (a runner elsewhere: its launcher may be gone before the job ends, and a
    template or a scheduler launches no newsbeam command at all): refuse a run id the dataset
    has seen, take the writer lease (heartbeat from this worker), recover, mark the run
    started. The commit releases the lease (`finish_in_job`); a job that fails before its
    intent leaves the lease to expire and its started marker to the next recovery.
    heartbeat=False: no thread of this worker refreshes the lease; the job's own step does
    (a stream's HoldStreamLease), so the lease outlives the worker that took it."""
    for seen in (sinks.manifest_path(output_dir, holder), abandoned_path(output_dir, holder),
                 *window_manifest_paths(output_dir, holder)[:1]):
        if FileSystems.exists(seen):
            raise RunIdUsed(
                f"run {holder} already ran on {_root(output_dir)} ({seen}): this job's graph "
                "was built for that run; build it again for a new run (newsbeam run, or the "
                "Flex Template, builds one at each launch)")
    lease = leases.Lease(output_dir, holder, kind, lease_expiry_s, adopt_own=True)
    lease.acquire(wait_for_lease_s, heartbeat=heartbeat)
    if heartbeat:
        _JOB_LEASES[(output_dir, holder)] = lease
    report = recover(output_dir, holder)
    if report:
        _LOG.warning("%s: %s", _root(output_dir), report.describe())
    write_json_atomically(started_path(output_dir, holder), {
        "id": holder, "kind": kind, "started_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "lease_in_job": True, **(started or {})})
    return report


def finish_in_job(output_dir: str, holder: str) -> None:
    """After the commit of a job that took its own lease: the lease goes, from whichever
    worker commits (and this worker's heartbeat stops, if it is the one that took it)."""
    lease = _JOB_LEASES.pop((output_dir, holder), None)
    if lease is not None:
        lease.release()
    else:
        leases.release_held(output_dir, holder)


@contextlib.contextmanager
def writing(output_dir: str, holder: str, kind: str, wait_for_lease_s: float = 0.0,
            lease_expiry_s: float = leases.DEFAULT_EXPIRY_S, started: dict | None = None):
    """Holds the writer lease, recovers the dataset, marks `holder` started; yields the
    Recovery. At the end (or on a failure before the intent, which is raised) the started
    marker and the temp folder are cleared; after an intent, the commit is left for the next
    recovery to complete."""
    lease = leases.Lease(output_dir, holder, kind, lease_expiry_s).acquire(wait_for_lease_s)
    try:
        report = recover(output_dir, holder)
        if report:
            _LOG.warning("%s: %s", _root(output_dir), report.describe())
        with working(output_dir, holder, kind, started):
            yield report
    finally:
        lease.release()


@contextlib.contextmanager
def working(output_dir: str, run_id: str, kind: str, started: dict | None = None):
    """Marks `run_id` started (under a lease held already: writing's, or a batched run's, whose
    batches each work and commit under an id of their own); at the end, or on a failure before
    its intent, clears the marker and its temp folder. After the intent, the commit is the next
    recovery's to complete."""
    write_json_atomically(started_path(output_dir, run_id), {
        "id": run_id, "kind": kind,
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(), **(started or {})})
    try:
        yield
    finally:
        if not FileSystems.exists(intent_path(output_dir, run_id)):
            _finish(output_dir, run_id)


# --- Index reads, decided when the job runs ------------------------------------------------------


def index_files(output_dir: str, spec: IndexSpec) -> list[str]:
    return sorted(m.path for m in _list(posixpath.join(_root(output_dir), spec.name,
                                                       "*.parquet")))


def read_parquet_rows(path: str, columns: tuple[str, ...], batch_rows: int = 10_000,
                      where: tuple[str, Callable] | None = None):
    """The rows of one Parquet file as dicts of `columns`; a column the file does not have
    (written by another schema version) is None. where=(column, test): only the rows whose
    value of that column passes the test, the others never made Python objects (a story
    index row carries 200 terms)."""
    with FileSystems.open(path) as stream:
        parquet = pq.ParquetFile(stream)
        present = [c for c in columns if c in parquet.schema_arrow.names]
        missing = [c for c in columns if c not in present]
        tested = where is not None and where[0] in parquet.schema_arrow.names
        read = present + [where[0]] if tested and where[0] not in present else present
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=read):
            if tested:
                column, test = where
                keep = [test(value) for value in batch.column(column).to_pylist()]
                batch = batch.filter(pa.array(keep, type=pa.bool_())).select(present)
            for row in batch.to_pylist():
                row.update(dict.fromkeys(missing))
                yield row


class _ListIndexFn(beam.DoFn):
    def __init__(self, output_dir: str, spec: IndexSpec):
        self._output_dir, self._spec = output_dir, spec

    def process(self, _):
        yield from index_files(self._output_dir, self._spec)


class _ReadIndexFileFn(beam.DoFn):
    def __init__(self, columns: tuple[str, ...], keep: Optional[Callable],
                 where_column: str | None = None, where_test: Optional[Callable] = None):
        self._columns, self._keep = columns, keep
        self._where_column, self._where_test = where_column, where_test

    def process(self, path: str, where_value=None):
        where = None if self._where_column is None else (
            self._where_column, lambda value: self._where_test(value, where_value))
        for row in read_parquet_rows(path, self._columns, where=where):
            if self._keep is None or self._keep(row):
                yield row


class ReadIndex(beam.PTransform):
    """pipeline -> the rows (dicts of `columns`, default the spec's fields) earlier runs stored
    in one index dataset. The files are listed when the job runs, not when the graph is built:
    off an Impulse, or after each element of a PCollection applied to instead of the pipeline —
    StartRun's one element (once the job holds the lease and has recovered the dataset), or a
    windowed graph's ticks, one per window (the stream): the index is then listed and read again
    for each, and the rows are in that element's window, so the windowed joins of the stages meet
    them (an index read once, in the global window, would never join a fixed window's elements).
    `since=(column, moment)` keeps the rows whose column is not before the moment (age-out).
    `where=(column, pcoll, test)`: only the rows for which test(value of the column, the one
    element of pcoll) is true, tested before the rest of the row is read (what a bounded run
    can meet of a large index)."""

    def __init__(self, output_dir: str, spec: IndexSpec, columns: tuple[str, ...] = (),
                 since: tuple[str, dt.datetime] | None = None, where: tuple | None = None):
        super().__init__()
        self._output_dir, self._spec = output_dir, spec
        self._columns = tuple(columns) or spec.columns
        self._since = since
        self._where = where

    def expand(self, start):
        keep = None
        if self._since is not None:
            column, moment = self._since
            keep = lambda row: row[column] is not None and row[column] >= moment
        if isinstance(start, beam.pvalue.PBegin):
            start = start | "Impulse" >> beam.Impulse()
        files = (start
                 | "ListFiles" >> beam.ParDo(_ListIndexFn(self._output_dir, self._spec))
                 | "Spread" >> beam.Reshuffle())
        if self._where is None:
            return files | "ReadRows" >> beam.ParDo(_ReadIndexFileFn(self._columns, keep))
        where_column, where_pcoll, where_test = self._where
        return files | "ReadRows" >> beam.ParDo(
            _ReadIndexFileFn(self._columns, keep, where_column, where_test),
            where_value=beam.pvalue.AsSingleton(where_pcoll))


class ReadIndexIds(beam.PTransform):
    """pipeline (or a PCollection to start from, as ReadIndex) -> the values of one column of
    an index dataset (article ids, error ids)."""

    def __init__(self, output_dir: str, spec: IndexSpec, column: str):
        super().__init__()
        self._output_dir, self._spec, self._column = output_dir, spec, column

    def expand(self, start):
        column = self._column
        return (start
                | "Rows" >> ReadIndex(self._output_dir, self._spec, (column,))
                | "Ids" >> beam.Map(lambda row: row[column]).with_output_types(str))


# --- The commit step of a graph ------------------------------------------------------------------


class _StartRunFn(beam.DoFn):
    def __init__(self, output_dir: str, run: dict, wait_for_lease_s: float,
                 lease_expiry_s: float):
        self._output_dir, self._run = output_dir, run
        self._wait_for_lease_s, self._lease_expiry_s = wait_for_lease_s, lease_expiry_s

    def process(self, _):
        start_in_job(self._output_dir, self._run["run_id"], "ingest", self._wait_for_lease_s,
                     self._lease_expiry_s, {"started_at": self._run["started_at"]})
        yield self._run["run_id"]


class StartRun(beam.PTransform):
    """pipeline -> one element (the run id) once the job holds the writer lease, has recovered
    the dataset and marked the run started (start_in_job). Index reads applied to it
    (ReadIndex) list the index after that. For a job whose launcher does not hold the lease;
    CommitRun(lease_in_job=True) releases it."""

    def __init__(self, output_dir: str, run: dict, wait_for_lease_s: float = 0.0,
                 lease_expiry_s: float = leases.DEFAULT_EXPIRY_S):
        super().__init__()
        self._fn = _StartRunFn(output_dir, run, wait_for_lease_s, lease_expiry_s)

    def expand(self, pipeline):
        return (pipeline
                | "Impulse" >> beam.Impulse()
                | "TakeLeaseAndRecover" >> beam.ParDo(self._fn))


class _CommitRunFn(beam.DoFn):
    def __init__(self, output_dir: str, run: dict, lease_in_job: bool = False):
        self._output_dir = output_dir
        self._run = run
        self._lease_in_job = lease_in_job

    @metrics.timed(metrics.STAGE_WRITE)
    def process(self, _, counts, error_counts, temp_files):
        planned = plan_moves(self._output_dir, self._run["run_id"], list(temp_files))
        manifest = build_manifest(self._run, dict(counts), list(error_counts), planned,
                                  dt.datetime.now(dt.timezone.utc))
        # A batch of a batched run commits under the lease its run holds (transforms/batches.py).
        commit(self._output_dir, ingest_intent(self._run, planned, manifest, self._output_dir),
               holder=(self._run.get("batch") or {}).get("run_id"))
        if self._lease_in_job:
            finish_in_job(self._output_dir, self._run["run_id"])
        yield manifest


class CommitRun(beam.PTransform):
    """Commits a run once everything is written: the manifest's counts, then the protocol above.

    counts: {name: PCollection} whose sizes are counted; errors: the ErrorRow PCollection;
    temp_files: the TempFile PCollections of every dataset the run wrote (WriteDataset);
    lease_in_job: the job took the lease itself (StartRun), so the commit releases it."""

    def __init__(self, output_dir: str, run: dict, counts: dict, errors, temp_files: list,
                 lease_in_job: bool = False):
        super().__init__()
        self._output_dir = output_dir
        self._run = run
        self._lease_in_job = lease_in_job
        self._counts = counts
        self._errors = errors
        self._temp_files = temp_files

    def expand(self, pipeline):
        counted = [
            pcoll | f"Count_{name}" >> beam.combiners.Count.Globally()
                  | f"Name_{name}" >> beam.Map(lambda n, name=name: (name, n))
            for name, pcoll in sorted(self._counts.items())]
        counts = counted | "AllCounts" >> beam.Flatten()
        error_counts = (
            self._errors
            | "StageReason" >> beam.Map(lambda e: (e.stage, e.reason))
            | "CountErrors" >> beam.combiners.Count.PerElement())
        temp_files = self._temp_files | "AllTempFiles" >> beam.Flatten()
        return (
            pipeline
            | "Once" >> beam.Create([None])
            | "Commit" >> beam.ParDo(
                _CommitRunFn(self._output_dir, self._run, self._lease_in_job),
                counts=beam.pvalue.AsList(counts),
                error_counts=beam.pvalue.AsList(error_counts),
                temp_files=beam.pvalue.AsList(temp_files)))


# --- The commit step of a windowed graph (the stream) --------------------------------------------


def window_manifest_paths(output_dir: str, stream_id: str) -> list[str]:
    """The manifests of the windows a stream committed, oldest first."""
    return sorted(m.path for m in _list(posixpath.join(
        _root(output_dir), sinks.RUNS_FOLDER, f"{partition_value(stream_id)}-w*.json")))


def window_commit_id(stream_id: str, window_end: dt.datetime, pane: int) -> str:
    """The id of one window's commit: the stream's id, the window's end (UTC) and the pane
    ('-p1' for a late pane), so a retried commit step finds its own intent and manifest."""
    late = f"-p{pane}" if pane else ""
    return f"{stream_id}-w{window_end.strftime('%Y%m%dt%H%M%S')}{late}"


WINDOWS_REFUSED = f"{metrics.STAGE_WRITE}_windows_refused_lease_lost"


class _CommitWindowFn(beam.DoFn):
    """(None, [("count", (name, n)) | ("error", ((stage, reason), n)) | ("file", TempFile)])
    of one window pane -> its manifest, once the pane's files are committed under the id
    window_commit_id gives. Idempotent: a retried step completes the pane's intent if there is
    one, and does nothing once its manifest is there."""

    def __init__(self, output_dir: str, stream: dict, count_names: tuple[str, ...]):
        self._output_dir, self._stream, self._count_names = output_dir, stream, count_names

    def process(self, keyed, window=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        stream_id = self._stream["run_id"]
        commit_id = window_commit_id(stream_id, moment_of(window.end), pane.index)
        done = manifest_path(self._output_dir, commit_id)
        if FileSystems.exists(done):
            return
        if FileSystems.exists(intent_path(self._output_dir, commit_id)):
            apply_intent(self._output_dir, read_json(intent_path(self._output_dir, commit_id)))
            yield read_json(done)
            return
        # A count with nothing in this pane is 0 (the manifest needs these, at least).
        counts = dict.fromkeys(("documents", "read_errors", "already_ingested", "errors",
                                "errors_new", *self._count_names), 0)
        error_counts, temp_files = [], []
        for kind, value in keyed[1]:
            if kind == "count":
                counts[value[0]] = counts.get(value[0], 0) + value[1]
            elif kind == "error":
                error_counts.append(value)
            else:
                temp_files.append(value)
        run = {**self._stream, "run_id": commit_id, "stream_id": stream_id,
               "window": {"start": moment_of(window.start).isoformat(),
                          "end": moment_of(window.end).isoformat(),
                          "pane": pane.index,
                          "timing": PaneInfoTiming.to_string(pane.timing).lower()}}
        planned = plan_moves(self._output_dir, commit_id, temp_files)
        manifest = build_manifest(run, counts, error_counts, planned,
                                  dt.datetime.now(dt.timezone.utc))
        try:
            commit(self._output_dir, ingest_intent(run, planned, manifest, self._output_dir),
                   holder=stream_id)
        except leases.LeaseLost as lost:
            # Refused before its intent: nothing of the window shows, its entries are not in
            # index/entries, so the next run fetches them again. Not raised: a streaming
            # runner would retry it for ever, and a drain would never end.
            _LOG.error("window %s is not committed: %s", commit_id, lost)
            metrics.count(WINDOWS_REFUSED, 1)
            return
        yield manifest


class CommitWindows(beam.PTransform):
    """The windowed twin of CommitRun: each window pane's counts, error counts and temp files
    meet in one GroupByKey and are committed by the protocol above as one commit of their own
    (manifest _runs/<stream id>-w<window end>.json), under the stream's lease. A later pane of
    a window (late data) is a commit of its own: it only adds files."""

    def __init__(self, output_dir: str, stream: dict, counts: dict, errors, temp_files: list):
        super().__init__()
        self._output_dir, self._stream = output_dir, stream
        self._counts, self._errors, self._temp_files = counts, errors, temp_files

    def expand(self, pipeline):
        counted = [
            pcoll | f"Tally_{name}" >> beam.Map(lambda _, name=name: (name, 1))
            for name, pcoll in sorted(self._counts.items())]
        counts = (counted | "AllTallies" >> beam.Flatten()
                  | "CountPerWindow" >> beam.CombinePerKey(sum)
                  | "AsCount" >> beam.Map(lambda kv: (None, ("count", kv))))
        error_counts = (
            self._errors
            | "StageReason" >> beam.Map(lambda e: (e.stage, e.reason))
            | "CountErrors" >> beam.combiners.Count.PerElement()
            | "AsError" >> beam.Map(lambda kv: (None, ("error", kv))))
        files = (self._temp_files | "AllTempFiles" >> beam.Flatten()
                 | "AsFile" >> beam.Map(lambda f: (None, ("file", f))))
        return (
            (counts, error_counts, files)
            | "Everything" >> beam.Flatten()
            | "PerWindow" >> beam.GroupByKey()
            | "Commit" >> beam.ParDo(_CommitWindowFn(self._output_dir, self._stream,
                                                     tuple(sorted(self._counts)))))


# --- The writer lease of a stream's job ----------------------------------------------------------
#
# A stream on a runner elsewhere outlives its launcher and any one worker, so neither holds the
# lease: StartStream takes it in the job's first step, before anything polls or reads index/;
# HoldStreamLease renews it from a processing-time timer (whichever worker runs it), after each
# window's commit, and releases it from an event-time timer at the end of the global window,
# which fires once the watermark of the commits' output passes it: when every window is
# committed and the sources are done (--duration passed, or a Dataflow drain, which advances the
# watermark to +infinity).

LEASE_TAKEN, LEASE_RENEWED, LEASE_LOST, LEASE_RELEASED = "taken", "renewed", "lost", "released"


class _StartStreamFn(beam.DoFn):
    def __init__(self, output_dir: str, stream: dict, wait_for_lease_s: float,
                 lease_expiry_s: float):
        self._output_dir, self._stream = output_dir, stream
        self._wait_for_lease_s, self._lease_expiry_s = wait_for_lease_s, lease_expiry_s

    def process(self, _):
        start_in_job(self._output_dir, self._stream["run_id"], "stream", self._wait_for_lease_s,
                     self._lease_expiry_s, {"started_at": self._stream["started_at"]},
                     heartbeat=False)
        yield self._stream["run_id"]


class StartStream(beam.PTransform):
    """pipeline -> one element (the stream id), in the global window, once the job holds the
    writer lease, has recovered the dataset and marked the stream started (start_in_job, with
    no heartbeat thread: HoldStreamLease keeps the lease). Refuses a stream id the dataset has
    seen (a graph run twice). While another run holds the lease it fails after
    --wait_for_lease_s; a streaming runner retries it, so the stream waits for the lease."""

    def __init__(self, output_dir: str, stream: dict, wait_for_lease_s: float = 0.0,
                 lease_expiry_s: float = leases.DEFAULT_EXPIRY_S):
        super().__init__()
        self._fn = _StartStreamFn(output_dir, stream, wait_for_lease_s, lease_expiry_s)

    def expand(self, pipeline):
        return (pipeline
                | "Impulse" >> beam.Impulse()
                | "TakeLeaseAndRecover" >> beam.ParDo(self._fn))


def finish_stream_in_job(output_dir: str, stream_id: str) -> bool:
    """At the end of a stream whose job holds the lease: its started marker and what is left
    in .tmp/<stream id>/ (files of windows not committed) go, then the lease. False, and
    nothing touched, when the stream no longer holds the lease (the new holder's recovery
    clears them)."""
    current = leases.read_holder(output_dir)
    if not current or current.get("holder") != stream_id:
        return False
    _finish(output_dir, stream_id)
    return leases.release_held(output_dir, stream_id)


class _HoldStreamLeaseFn(beam.DoFn):
    """(None, the stream id | a window's manifest) in the global window -> (event, moment)
    lease events. The first element arms both timers; StartStream's says the lease was taken,
    each manifest (a window committed) renews it."""

    RENEW = TimerSpec("renew", TimeDomain.REAL_TIME)
    END = TimerSpec("end", TimeDomain.WATERMARK)
    ARMED = ReadModifyWriteStateSpec("armed", BooleanCoder())
    ENDED = ReadModifyWriteStateSpec("ended", BooleanCoder())

    def __init__(self, output_dir: str, stream_id: str, lease_expiry_s: float,
                 clock: Callable[[], float]):
        self._output_dir, self._stream_id = output_dir, stream_id
        self._interval_s = leases.heartbeat_interval_s(lease_expiry_s)
        self._clock = clock

    def process(self, keyed, armed=beam.DoFn.StateParam(ARMED),
                renew=beam.DoFn.TimerParam(RENEW), end=beam.DoFn.TimerParam(END)):
        _, what = keyed
        if not armed.read():
            armed.write(True)
            end.set(GlobalWindow().max_timestamp())
            renew.set(Timestamp.of(self._clock() + self._interval_s))
        yield (LEASE_TAKEN, self._clock()) if what == self._stream_id else self._renew()

    @on_timer(RENEW)
    def keep_alive(self, fired_at=beam.DoFn.TimestampParam, ended=beam.DoFn.StateParam(ENDED),
                   renew=beam.DoFn.TimerParam(RENEW)):
        if ended.read():
            return
        event = self._renew()
        if event[0] == LEASE_RENEWED:
            renew.set(Timestamp.of(float(fired_at) + self._interval_s))
        yield event

    @on_timer(END)
    def release(self, ended=beam.DoFn.StateParam(ENDED), renew=beam.DoFn.TimerParam(RENEW)):
        ended.write(True)
        renew.clear()
        released = finish_stream_in_job(self._output_dir, self._stream_id)
        if not released:
            _LOG.error("stream %s: at its end it no longer held %s", self._stream_id,
                       leases.lease_path(self._output_dir))
        yield LEASE_RELEASED if released else LEASE_LOST, self._clock()

    def _renew(self) -> tuple[str, float]:
        if leases.renew_held(self._output_dir, self._stream_id):
            return LEASE_RENEWED, self._clock()
        # Taken over (thought dead) or gone: every later window's commit is refused.
        _LOG.error("stream %s lost %s: its windows from now on are not committed",
                   self._stream_id, leases.lease_path(self._output_dir))
        return LEASE_LOST, self._clock()


class HoldStreamLease(beam.PTransform):
    """(StartStream's element, the windows' manifests) -> lease events (event, moment): the
    lease renewed every heartbeat_interval_s(lease_expiry_s) of processing time, idle or not,
    and after each commit; released (with the stream's started marker and temp folder) when
    the watermark of the manifests reaches the end of time, i.e. after the last commit.
    `clock`: seconds since the epoch on the runner's processing-time scale (tests inject the
    TestStream's)."""

    def __init__(self, output_dir: str, stream_id: str,
                 lease_expiry_s: float = leases.DEFAULT_EXPIRY_S,
                 clock: Callable[[], float] = time.time):
        super().__init__()
        self._fn = _HoldStreamLeaseFn(output_dir, stream_id, lease_expiry_s, clock)

    def expand(self, started_and_manifests):
        start, manifests = started_and_manifests
        return (
            (start, manifests | "Unwindowed" >> beam.WindowInto(GlobalWindows()))
            | "Together" >> beam.Flatten()
            | "OneKey" >> beam.Map(lambda what: (None, what))
            | "RenewAndRelease" >> beam.ParDo(self._fn))
