"""Sinks: Hive-partitioned Parquet datasets written for a commit, and the run manifest.

Layout (a contract with downstream readers):
    OUTPUT/articles/date=YYYY-MM-DD/topic=<slug>/part-<run_id>-NNNNN.parquet
    OUTPUT/duplicates/date=YYYY-MM-DD/part-...parquet
    OUTPUT/errors/date=YYYY-MM-DD/part-...parquet
    OUTPUT/index/articles/part-...parquet
    OUTPUT/_runs/<run_id>.json
Partition columns live in the path only, not in the files (Spark and BigQuery refuse a column
that is both); readers get them back with hive partitioning.

WriteDataset writes a run's rows into OUTPUT/.tmp/<run_id>/: one writer per partition, so a run
adds one file per partition it touches (more only past --rows_per_file, and then one writer per
file's worth of rows, so no writer holds a whole large partition). Nothing there is
visible; transforms/dataset.py commits the files (moves them into their partitions) once every
dataset is written. Paths go through Beam's FileSystems: local disks and cloud storage alike.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import posixpath
import random
import re
import shutil
import uuid
from typing import Callable

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from newsbeam.schemas.records import arrow_schema, to_table
from newsbeam.transforms import metrics

TEMP_FOLDER = ".tmp"
RUNS_FOLDER = "_runs"
PARQUET_COMPRESSION = "zstd"

# Text buffered across all partitions of a bundle before the largest buffer is flushed: bounds a
# worker's memory when one bundle touches many partitions.
_MAX_BUFFERED_BYTES = 256 * 2**20


@dataclasses.dataclass(frozen=True)
class TempFile:
    """A finished file of one dataset partition, not yet committed."""
    dataset: str
    partition: str   # 'date=2022-02-16/topic=politics', '' when not partitioned
    path: str        # under OUTPUT/.tmp/<run_id>/
    rows: int


@dataclasses.dataclass(frozen=True)
class WrittenFile:
    dataset: str
    partition: str   # 'date=2022-02-16/topic=politics', '' when not partitioned
    path: str        # final path
    rows: int
    temp_path: str | None = None  # where it waits until the commit moves it


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


def moment_of(timestamp) -> dt.datetime:
    """An element's Beam timestamp as a UTC datetime (in a stream, its event time: when its
    feed was polled or its message published)."""
    return dt.datetime.fromtimestamp(float(timestamp), dt.timezone.utc)


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


def shard_count(rows: int, rows_per_file: int) -> int:
    """How many writers a partition of `rows` rows gets: one per `rows_per_file` rows, so that
    no writer's input grows with the partition (one date and topic of a large corpus)."""
    return max(1, -(-rows // rows_per_file))


def part_file_name(run_id: str, number: int) -> str:
    return f"part-{partition_value(run_id)}-{number:05d}.parquet"


# --- Writing -------------------------------------------------------------------------------------


def _text_bytes(record) -> int:
    """About how much memory a record's strings take: what dominates an article's size."""
    return 100 + sum(len(value) for value in vars(record).values() if isinstance(value, str))


class _WritePartitionFn(beam.DoFn):
    """(partition, records) -> temp Parquet files of that partition, each of at most
    `rows_per_file` rows in row groups of at most `row_group_rows`; emits TempFiles. Rows are
    written a row group at a time, so a partition never needs to fit in memory."""

    def __init__(self, temp_dir: str, dataset: str, schema: pa.Schema, rows_per_file: int,
                 row_group_rows: int):
        self._temp_dir = temp_dir
        self._dataset = dataset
        self._schema = schema
        self._rows_per_file = rows_per_file
        self._row_group_rows = row_group_rows

    @metrics.timed(metrics.STAGE_WRITE)
    def process(self, keyed):
        partition, records = keyed
        written = f"{metrics.STAGE_WRITE}_rows_{self._dataset.replace('/', '_')}"
        batch, batch_bytes, file = [], 0, None
        for record in records:
            batch.append(record)
            batch_bytes += _text_bytes(record)
            room = self._rows_per_file - (file.rows if file else 0)
            if len(batch) >= min(self._row_group_rows, room) or \
                    batch_bytes >= _MAX_BUFFERED_BYTES:
                file = file or _TempParquet(self._temp_dir, self._schema)
                file.write(batch)
                metrics.count(written, len(batch))
                batch, batch_bytes = [], 0
                if file.rows >= self._rows_per_file:
                    yield file.close(self._dataset, partition)
                    file = None
        if batch:
            file = file or _TempParquet(self._temp_dir, self._schema)
            file.write(batch)
            metrics.count(written, len(batch))
        if file is not None:
            yield file.close(self._dataset, partition)


class _TempParquet:
    """One temp Parquet file being written, a row group per `write`."""

    def __init__(self, temp_dir: str, schema: pa.Schema):
        self.path = posixpath.join(temp_dir, f"{uuid.uuid4().hex}.parquet")
        self.rows = 0
        self._schema = schema
        self._stream = FileSystems.create(self.path)
        self._writer = pq.ParquetWriter(pa.PythonFile(self._stream, mode="w"), schema,
                                        compression=PARQUET_COMPRESSION,
                                        use_compliant_nested_type=True, write_statistics=True)

    def write(self, records: list) -> None:
        if records:
            self._writer.write_table(to_table(records, self._schema),
                                     row_group_size=len(records))
            self.rows += len(records)

    def close(self, dataset: str, partition: str) -> TempFile:
        self._writer.close()
        self._stream.close()
        return TempFile(dataset, partition, self.path, self.rows)


def make_dirs(folder: str) -> None:
    try:
        FileSystems.mkdirs(folder)
    except IOError:
        pass  # it exists already; object stores have no folders at all


class WriteDataset(beam.PTransform):
    """Records -> one dataset's rows in temp Parquet files, partitioned by `partition_fn`: a
    PCollection of TempFile for the commit (transforms/dataset.py) to move into
    OUTPUT/<dataset>/<partition>/."""

    def __init__(self, output_dir: str, dataset: str, record_type, run_id: str,
                 partition_fn: Callable = no_partition, partition_columns: tuple = (),
                 rows_per_file: int = 100_000, row_group_rows: int = 10_000):
        super().__init__()
        self._output_dir = output_dir
        self._dataset = dataset
        self._schema = arrow_schema(record_type, drop=partition_columns)
        self._run_id = run_id
        self._partition_fn = partition_fn
        self._rows_per_file = rows_per_file
        self._row_group_rows = row_group_rows

    def expand(self, records):
        temp_dir = posixpath.join(self._output_dir.rstrip("/"), TEMP_FOLDER,
                                  partition_value(self._run_id), self._dataset.replace("/", "-"))
        partition_fn, rows_per_file = self._partition_fn, self._rows_per_file
        keyed = records | "ByPartition" >> beam.Map(lambda r: (partition_path(partition_fn(r)), r))
        if isinstance(records.windowing.windowfn, beam.window.GlobalWindows):
            # A partition of more than rows_per_file rows is spread over that many writers, at
            # random: each writer's share is a file's worth. (The stream's windows stay one
            # writer per partition: a window's partitions are small.)
            sizes = keyed | "PartitionSizes" >> beam.combiners.Count.PerKey()
            keyed = (
                keyed
                | "Shard" >> beam.Map(
                    lambda kv, sizes: ((kv[0], random.randrange(
                        shard_count(sizes.get(kv[0], 1), rows_per_file))), kv[1]),
                    sizes=beam.pvalue.AsDict(sizes))
                | "WriterPerShard" >> beam.GroupByKey()
                | "Partition" >> beam.MapTuple(lambda shard, rows: (shard[0], rows)))
        else:
            keyed = keyed | "OneWriterPerPartition" >> beam.GroupByKey()
        return (
            keyed
            | "WriteTemp" >> beam.ParDo(_WritePartitionFn(
                temp_dir, self._dataset, self._schema, self._rows_per_file,
                self._row_group_rows)))


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
    skipped_unchanged = counts.get("feeds_not_modified", 0) + counts.get("entries_seen_before", 0) \
        + counts.get("feeds_not_due", 0)  # not polled: their poll schedule says not yet
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
    make_dirs(posixpath.dirname(path))
    with FileSystems.create(temp) as stream:
        stream.write(json.dumps(value, indent=2, sort_keys=True, default=str).encode())
    FileSystems.rename([temp], [path])


def delete_folder(folder: str) -> None:
    """Deletes a folder and everything below it, locally or on an object store."""
    if FileSystems.get_scheme(folder) is None:
        shutil.rmtree(folder, ignore_errors=True)
        return
    leftovers = [m.path for m in FileSystems.match([folder + "/**"])[0].metadata_list]
    if leftovers:
        FileSystems.delete(leftovers)
