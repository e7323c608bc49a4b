"""Sinks: Hive-partitioned Parquet datasets that appear only complete, and the run manifest.

Layout (a contract with downstream readers):
    OUTPUT/articles/date=YYYY-MM-DD/topic=<slug>/part-<run_id>-NNNNN.parquet
    OUTPUT/duplicates/date=YYYY-MM-DD/part-...parquet
    OUTPUT/errors/date=YYYY-MM-DD/part-...parquet
    OUTPUT/index/articles/part-...parquet
    OUTPUT/_runs/<run_id>.json
Partition columns live in the path only, not in the files (Spark and BigQuery refuse a column
that is both); readers get them back with hive partitioning.

How a file becomes visible: workers write row groups into OUTPUT/.tmp/<run_id>/ (a bundle that is
retried leaves only orphans there), then one finalising step renames every committed file to its
partition and deletes the temp folder. Partition folders are created before the rename (Beam's
own fileio does not, and hides the failed rename). Renames go through Beam's FileSystems, so this
works on local disks and cloud storage alike.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import posixpath
import re
import shutil
import uuid
from typing import Callable

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from schemas.records import arrow_schema, to_table
from transforms.bundles import in_global_window

TEMP_FOLDER = ".tmp"
RUNS_FOLDER = "_runs"
PARQUET_COMPRESSION = "zstd"

# Text buffered across all partitions of a bundle before the largest buffer is flushed: bounds a
# worker's memory when one bundle touches many partitions.
_MAX_BUFFERED_BYTES = 256 * 2**20


@dataclasses.dataclass(frozen=True)
class WrittenFile:
    dataset: str
    partition: str   # 'date=2022-02-16/topic=politics', '' when not partitioned
    path: str        # final path
    rows: int


# --- Pure functions ------------------------------------------------------------------------------

_SAFE_VALUE = re.compile(r"[^a-z0-9._-]+")


def partition_value(value: str) -> str:
    """A value that is safe as one path segment: lower case [a-z0-9._-], no leading dot, never
    empty, at most 64 characters. 'Politics/../../etc' -> 'politics-..-..-etc' -> kept inside."""
    cleaned = _SAFE_VALUE.sub("-", str(value).casefold()).strip("-.")[:64].strip("-.")
    return cleaned or "unknown"


def date_value(moment: dt.datetime) -> str:
    """The UTC calendar date of a moment as YYYY-MM-DD."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%d")


def partition_path(keys: tuple[tuple[str, str], ...]) -> str:
    """'date=2022-02-16/topic=politics' from (('date', '2022-02-16'), ('topic', 'politics'));
    every value is sanitised."""
    return "/".join(f"{name}={partition_value(value)}" for name, value in keys)


def article_partition(article) -> tuple[tuple[str, str], ...]:
    moment = article.published_at or article.ingested_at
    return (("date", date_value(moment)), ("topic", article.topic))


def duplicate_partition(duplicate) -> tuple[tuple[str, str], ...]:
    return (("date", date_value(duplicate.published_at or duplicate.ingested_at)),)


def error_partition(error) -> tuple[tuple[str, str], ...]:
    return (("date", date_value(error.occurred_at)),)


def no_partition(_record) -> tuple:
    return ()


def part_file_name(run_id: str, number: int) -> str:
    return f"part-{partition_value(run_id)}-{number:05d}.parquet"


# --- Writing -------------------------------------------------------------------------------------


def _text_bytes(record) -> int:
    """About how much memory a record's strings take: what dominates an article's size."""
    return 100 + sum(len(value) for value in vars(record).values() if isinstance(value, str))


def _write_parquet(path: str, table: pa.Table, row_group_rows: int) -> None:
    with FileSystems.create(path) as stream:
        with pq.ParquetWriter(pa.PythonFile(stream, mode="w"), table.schema,
                              compression=PARQUET_COMPRESSION, use_compliant_nested_type=True,
                              write_statistics=True) as writer:
            writer.write_table(table, row_group_size=row_group_rows)


class _WriteTempFilesFn(beam.DoFn):
    """Records -> temp Parquet files, one per partition per flush; emits (partition, temp path,
    rows). Rows are buffered per partition and flushed as one file when a partition holds
    `rows_per_file` rows, when the bundle's buffers together hold too many, and at bundle end."""

    def __init__(self, temp_dir: str, schema: pa.Schema, partition_fn: Callable,
                 rows_per_file: int, row_group_rows: int):
        self._temp_dir = temp_dir
        self._schema = schema
        self._partition_fn = partition_fn
        self._rows_per_file = rows_per_file
        self._row_group_rows = row_group_rows

    def start_bundle(self):
        self._buffers: dict[str, list] = {}
        self._buffer_bytes: dict[str, int] = {}
        self._buffered_bytes = 0

    def process(self, record):
        partition = partition_path(self._partition_fn(record))
        buffer = self._buffers.setdefault(partition, [])
        buffer.append(record)
        size = _text_bytes(record)
        self._buffer_bytes[partition] = self._buffer_bytes.get(partition, 0) + size
        self._buffered_bytes += size
        if len(buffer) >= self._rows_per_file:
            yield self._flush(partition)
        elif self._buffered_bytes >= _MAX_BUFFERED_BYTES:
            yield self._flush(max(self._buffer_bytes, key=self._buffer_bytes.get))

    def finish_bundle(self):
        for partition in list(self._buffers):
            yield in_global_window(self._flush(partition))

    def _flush(self, partition: str):
        records = self._buffers.pop(partition)
        self._buffered_bytes -= self._buffer_bytes.pop(partition)
        path = posixpath.join(self._temp_dir, f"{uuid.uuid4().hex}.parquet")
        _write_parquet(path, to_table(records, self._schema), self._row_group_rows)
        return partition, path, len(records)


class _FinalizeFn(beam.DoFn):
    """All temp files of one dataset -> renamed into their partitions; emits WrittenFiles."""

    def __init__(self, output_dir: str, dataset: str, run_id: str, temp_dir: str):
        self._output_dir = output_dir
        self._dataset = dataset
        self._run_id = run_id
        self._temp_dir = temp_dir

    def process(self, keyed, committed_before=()):
        _, temp_files = keyed
        by_partition: dict[str, list] = {}
        for partition, temp_path, rows in sorted(temp_files):
            by_partition.setdefault(partition, []).append((temp_path, rows))
        for partition, files in sorted(by_partition.items()):
            folder = posixpath.join(self._output_dir, self._dataset, partition).rstrip("/")
            _make_dirs(folder)
            for number, (temp_path, rows) in enumerate(files):
                final = posixpath.join(folder, part_file_name(self._run_id, number))
                # On a retry of this step, files renamed the first time are already in place.
                if FileSystems.exists(temp_path):
                    FileSystems.rename([temp_path], [final])
                elif not FileSystems.exists(final):
                    raise IOError(f"temp file {temp_path} vanished before it reached {final}")
                yield WrittenFile(self._dataset, partition, final, rows)
        # Every committed file is in place; what is left are orphans of retried bundles.
        _delete_folder(self._temp_dir)


def _make_dirs(folder: str) -> None:
    try:
        FileSystems.mkdirs(folder)
    except IOError:
        pass  # it exists already; object stores have no folders at all


class WriteDataset(beam.PTransform):
    """Records -> one Parquet dataset under OUTPUT/<dataset>/, partitioned by `partition_fn`.
    The output is a PCollection of WrittenFile, one per final file."""

    def __init__(self, output_dir: str, dataset: str, record_type, run_id: str,
                 partition_fn: Callable = no_partition, partition_columns: tuple = (),
                 rows_per_file: int = 100_000, row_group_rows: int = 10_000,
                 commit_after: tuple = ()):
        """commit_after: WrittenFile PCollections of datasets whose files must all be in place
        before this one's appear (the index commits last, so it never names an article that
        is not stored)."""
        super().__init__()
        self._commit_after = commit_after
        self._output_dir = output_dir
        self._dataset = dataset
        self._schema = arrow_schema(record_type, drop=partition_columns)
        self._run_id = run_id
        self._partition_fn = partition_fn
        self._rows_per_file = rows_per_file
        self._row_group_rows = row_group_rows

    def expand(self, records):
        temp_dir = posixpath.join(self._output_dir, TEMP_FOLDER, partition_value(self._run_id),
                                  self._dataset.replace("/", "-"))
        return (
            records
            | "WriteTemp" >> beam.ParDo(_WriteTempFilesFn(
                temp_dir, self._schema, self._partition_fn, self._rows_per_file,
                self._row_group_rows))
            | "OneKey" >> beam.Map(lambda written: (None, written))
            | "Gather" >> beam.GroupByKey()
            | "Finalize" >> beam.ParDo(_FinalizeFn(self._output_dir, self._dataset, self._run_id,
                                                   temp_dir),
                                       committed_before=beam.pvalue.AsList(
                                           self._commit_after | "Before" >> beam.Flatten(
                                               pipeline=records.pipeline))))


# --- Run manifest --------------------------------------------------------------------------------


def manifest_path(output_dir: str, run_id: str) -> str:
    return posixpath.join(output_dir, RUNS_FOLDER, f"{partition_value(run_id)}.json")


def build_manifest(run: dict, counts: dict, error_counts: list, written: list,
                   finished_at: dt.datetime) -> dict:
    """The run manifest: what ran (run: id, options, versions, start time), what came of every
    input (counts, errors by stage and reason) and which files it wrote, by dataset and
    partition. `accounting.balanced` is the check that nothing was lost: every input is an
    article, a duplicate, an error, already ingested or skipped unchanged (a feed that answered
    "not modified", an entry fetched by an earlier run), and every error met for the first time
    is a row of errors/ (one met by an earlier run already has its row)."""
    # Feeds answering "not modified" and entries fetched by an earlier run are inputs too:
    # skipped because nothing changed.
    skipped_unchanged = counts.get("feeds_not_modified", 0) + counts.get("entries_seen_before", 0)
    # Inputs of files not read because index/inputs says they are unchanged: already ingested.
    unchanged_files = counts.get("inputs_unchanged", 0)
    counts = {**counts, "inputs": counts["documents"] + counts["read_errors"]
              + counts.get("fetch_errors", 0) + skipped_unchanged + unchanged_files,
              "already_ingested": counts["already_ingested"] + unchanged_files}
    errors_by_stage: dict[str, dict[str, int]] = {}
    for (stage, reason), count in sorted(error_counts):
        errors_by_stage.setdefault(stage, {})[reason] = count
    datasets: dict[str, dict] = {}
    for file in sorted(written, key=lambda f: f.path):
        entry = datasets.setdefault(file.dataset, {"rows": 0, "files": 0, "partitions": {}})
        entry["rows"] += file.rows
        entry["files"] += 1
        part = entry["partitions"].setdefault(file.partition or ".", {"rows": 0, "files": 0})
        part["rows"] += file.rows
        part["files"] += 1
    rows = lambda name: datasets.get(name, {}).get("rows", 0)
    accounted = (rows("articles") + rows("duplicates") + counts["errors"]
                 + counts["already_ingested"] + skipped_unchanged)
    started_at = dt.datetime.fromisoformat(run["started_at"])
    return {
        **run,
        "finished_at": finished_at.isoformat(),
        "elapsed_s": round((finished_at - started_at).total_seconds(), 3),
        "counts": counts,
        "errors_by_stage": errors_by_stage,
        "accounting": {
            "inputs": counts["inputs"],
            "articles": rows("articles"),
            "duplicates": rows("duplicates"),
            "errors": counts["errors"],
            "errors_recorded_before": counts["errors"] - counts["errors_new"],
            "already_ingested": counts["already_ingested"],
            "skipped_unchanged": skipped_unchanged,
            "balanced": accounted == counts["inputs"] and rows("errors") == counts["errors_new"],
        },
        "datasets": datasets,
    }


def write_json_atomically(path: str, value: dict) -> None:
    temp = f"{path}.{uuid.uuid4().hex}.tmp"
    _make_dirs(posixpath.dirname(path))
    with FileSystems.create(temp) as stream:
        stream.write(json.dumps(value, indent=2, sort_keys=True, default=str).encode())
    FileSystems.rename([temp], [path])


class _WriteManifestFn(beam.DoFn):
    def __init__(self, output_dir: str, run: dict):
        self._output_dir = output_dir
        self._run = run

    def process(self, _, counts, error_counts, written):
        manifest = build_manifest(self._run, dict(counts), list(error_counts), list(written),
                                  dt.datetime.now(dt.timezone.utc))
        write_json_atomically(manifest_path(self._output_dir, self._run["run_id"]), manifest)
        _remove_temp_folder(self._output_dir, self._run["run_id"])
        yield manifest


def _remove_temp_folder(output_dir: str, run_id: str) -> None:
    """Deletes this run's temp folder, and the shared .tmp folder once no other run uses it."""
    temp_root = posixpath.join(output_dir, TEMP_FOLDER)
    _delete_folder(posixpath.join(temp_root, partition_value(run_id)))
    if FileSystems.get_scheme(output_dir) is None:
        try:
            os.rmdir(temp_root)
        except OSError:
            pass  # absent, or another run's files are in it


def _delete_folder(folder: str) -> None:
    """Deletes a folder and everything below it, locally or on an object store."""
    if FileSystems.get_scheme(folder) is None:
        shutil.rmtree(folder, ignore_errors=True)
        return
    leftovers = [m.path for m in FileSystems.match([folder + "/**"])[0].metadata_list]
    if leftovers:
        FileSystems.delete(leftovers)


class WriteManifest(beam.PTransform):
    """Writes OUTPUT/_runs/<run_id>.json once everything else is written.

    counts: {name: PCollection} whose sizes are counted; errors: the ErrorRow PCollection;
    written: the WrittenFile PCollections of every dataset."""

    def __init__(self, output_dir: str, run: dict, counts: dict, errors, written: list):
        super().__init__()
        self._output_dir = output_dir
        self._run = run
        self._counts = counts
        self._errors = errors
        self._written = written

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
        written = self._written | "AllWritten" >> beam.Flatten()
        return (
            pipeline
            | "Once" >> beam.Create([None])
            | "Manifest" >> beam.ParDo(
                _WriteManifestFn(self._output_dir, self._run),
                counts=beam.pvalue.AsList(counts),
                error_counts=beam.pvalue.AsList(error_counts),
                written=beam.pvalue.AsList(written)))
