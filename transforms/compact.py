"""Compaction: a partition's small files rewritten into few well-sized ones, committed like a
run (transforms/dataset.py: temp files, one intent, new files in, old files out) under the
writer lease, so it never overlaps an ingest run's commit or its index reads.

Per partition, the files smaller than half the target are merged (files already well-sized are
left alone); rows are sorted by the dataset's time column (published_at for articles), so each
row group's statistics let readers prune by time; files are cut at `target_file_bytes` and row
groups at `row_group_bytes` (BigQuery advises >= 16 MiB) or the whole file when it is smaller.
Rows are unchanged, with one exception: `stories/` (and `index/stories`) keep only the current
row of each story (the latest `updated_at`), which is what readers and later runs use.

Files written by other schema versions are merged under their unified schema (a column one
version lacks is null in its rows); every row keeps its own `schema_version`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import posixpath
import secrets

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from newsbeam.transforms import dataset
from newsbeam.transforms.sinks import PARQUET_COMPRESSION, TempFile, make_dirs

DEFAULT_TARGET_FILE_BYTES = 128 * 2**20
DEFAULT_ROW_GROUP_BYTES = 32 * 2**20
DATASET_CHOICES = ("articles", "stories", "duplicates", "errors", "index")

# Within a partition, rows are ordered by these columns (those the file has), nulls last.
SORT_COLUMNS = {
    "articles": ("published_at", "ingested_at", "article_id"),
    "duplicates": ("published_at", "ingested_at", "article_id"),
    "errors": ("occurred_at", "error_id"),
    "stories": ("lead_published_at", "story_id"),
    "index/articles": ("ingested_at", "article_id"),
    "index/signatures": ("ingested_at", "article_id"),
    "index/stories": ("lead_published_at", "story_id"),
}
# Datasets of which only the latest row per key is current: (key, version column).
CURRENT_ROW = {"stories": ("story_id", "updated_at"),
               "index/stories": ("story_id", "updated_at")}
# (dataset, the columns that identify a row once), and which copy of a row stored twice stays:
# the first stored (earliest of these columns).
UNIQUE_KEYS = (("articles", ("article_id",)), ("duplicates", ("article_id",)),
               ("errors", ("error_id",)), ("stories", ("story_id", "updated_at")))
FIRST_STORED = {"articles": ("ingested_at", "run_id"), "duplicates": ("ingested_at", "run_id"),
                "errors": ("occurred_at", "run_id"), "stories": ("run_id",)}


@dataclasses.dataclass
class PartitionPlan:
    dataset: str
    partition: str             # 'date=2022-02-16/topic=politics', '' when not partitioned
    files: list[tuple[str, int]]  # (path, bytes) of the files to merge


@dataclasses.dataclass
class DatasetTotals:
    partitions: int = 0
    files_before: int = 0
    files_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    rows_before: int = 0
    rows_after: int = 0


# --- Pure functions ------------------------------------------------------------------------------


def parse_date_range(text: str | None) -> tuple[str, str] | None:
    """'2024-01-01' or '2024-01-01:2024-01-31' -> (from, to), inclusive, validated."""
    if not text:
        return None
    start, _, end = text.partition(":")
    end = end or start
    for value in (start, end):
        dt.date.fromisoformat(value)  # ValueError for anything else
    if end < start:
        raise ValueError(f"{text}: the range ends before it starts")
    return start, end


def partition_date(partition: str) -> str | None:
    for segment in partition.split("/"):
        if segment.startswith("date="):
            return segment[len("date="):]
    return None


def dataset_names(choices: list[str] | None) -> list[str]:
    """The datasets named on the command line ('index' is every index dataset)."""
    names = []
    for choice in choices or DATASET_CHOICES:
        names += [spec.name for spec in dataset.INDEXES] if choice == "index" else [choice]
    return sorted(set(names), key=dataset.commit_rank)


def plan_partitions(listing: dict[str, list[tuple[str, int]]], dataset_name: str,
                    target_file_bytes: int, dates: tuple[str, str] | None) -> list[PartitionPlan]:
    """listing: {partition: [(path, bytes)]} -> the partitions worth rewriting: two or more
    files under half the target size (in the date range, when one is given)."""
    plans = []
    for partition, files in sorted(listing.items()):
        if dates is not None:
            day = partition_date(partition)
            if day is None or not dates[0] <= day <= dates[1]:
                continue
        small = sorted((path, size) for path, size in files if size < target_file_bytes // 2)
        if len(small) >= 2:
            plans.append(PartitionPlan(dataset_name, partition, small))
    return plans


def current_rows(table: pa.Table, key: str, version: str) -> pa.Table:
    """The latest row (by `version`) of each `key`; ties keep the last one read."""
    if key not in table.column_names or version not in table.column_names:
        return table
    order = pc.sort_indices(table, sort_keys=[(key, "ascending"), (version, "ascending")])
    keys = table.column(key).take(order).to_pylist()
    last = [int(order[i].as_py()) for i in range(len(keys))
            if i + 1 == len(keys) or keys[i + 1] != keys[i]]
    return table.take(sorted(last))


def sorted_rows(table: pa.Table, columns: tuple[str, ...]) -> pa.Table:
    keys = [(c, "ascending", "at_end") for c in columns if c in table.column_names]
    if not keys:
        return table
    return table.take(pc.sort_indices(table, sort_keys=keys))


def cut_sizes(rows: int, source_bytes: int, target_file_bytes: int,
              row_group_bytes: int) -> tuple[int, int]:
    """(rows per file, rows per row group) from the bytes a row takes in the source files (an
    overestimate: small files carry a footer each)."""
    per_row = max(1.0, source_bytes / max(rows, 1))
    rows_per_file = max(1, int(target_file_bytes / per_row))
    return rows_per_file, max(1, min(rows_per_file, int(row_group_bytes / per_row)))


# --- Reading, writing ----------------------------------------------------------------------------


def list_partitions(output_dir: str, dataset_name: str) -> dict[str, list[tuple[str, int]]]:
    """{partition: [(path, bytes)]} of one dataset's committed Parquet files."""
    root = posixpath.join(output_dir.rstrip("/"), dataset_name)
    listing: dict[str, list[tuple[str, int]]] = {}
    try:
        matched = FileSystems.match([root + "/**.parquet"])[0].metadata_list
    except Exception:
        matched = []
    for metadata in matched:
        relative = metadata.path[len(root) + 1:]
        partition = posixpath.dirname(relative)
        listing.setdefault(partition, []).append((metadata.path, metadata.size_in_bytes))
    return listing


def read_table(path: str) -> pa.Table:
    with FileSystems.open(path) as stream:
        return pq.read_table(stream)


def write_table(path: str, table: pa.Table, row_group_rows: int) -> None:
    with FileSystems.create(path) as stream:
        with pq.ParquetWriter(pa.PythonFile(stream, mode="w"), table.schema,
                              compression=PARQUET_COMPRESSION, use_compliant_nested_type=True,
                              write_statistics=True) as writer:
            writer.write_table(table, row_group_size=row_group_rows)


def rewrite_partition(plan: PartitionPlan, temp_root: str, target_file_bytes: int,
                      row_group_bytes: int) -> tuple[list[TempFile], int]:
    """Writes the merged files of one partition under `temp_root`; returns them and the number
    of rows read."""
    tables = [read_table(path) for path, _ in plan.files]
    merged = pa.concat_tables(tables, promote_options="default")
    rows_read = merged.num_rows
    if plan.dataset in CURRENT_ROW:
        merged = current_rows(merged, *CURRENT_ROW[plan.dataset])
    merged = sorted_rows(merged, SORT_COLUMNS.get(plan.dataset, ()))
    rows_per_file, row_group_rows = cut_sizes(
        rows_read, sum(size for _, size in plan.files), target_file_bytes, row_group_bytes)
    folder = posixpath.join(temp_root, plan.dataset, plan.partition).rstrip("/")
    written = []
    for number, start in enumerate(range(0, merged.num_rows, rows_per_file)):
        chunk = merged.slice(start, rows_per_file)
        path = posixpath.join(folder, f"{number:05d}.parquet")
        write_table(path, chunk, row_group_rows)
        written.append(TempFile(plan.dataset, plan.partition, path, chunk.num_rows))
    return written, rows_read


# --- The command ---------------------------------------------------------------------------------


def new_compaction_id(now: dt.datetime) -> str:
    return f"compact-{now.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def compact(output_dir: str, choices: list[str] | None = None, dates: tuple[str, str] | None = None,
            target_file_bytes: int = DEFAULT_TARGET_FILE_BYTES,
            row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES, wait_for_lease_s: float = 0.0,
            lease_expiry_s: float = dataset.leases.DEFAULT_EXPIRY_S) -> dict:
    """Compacts the chosen datasets of OUTPUT under the writer lease; returns the record written
    to OUTPUT/_compactions/<id>.json (the datasets' files and bytes before and after)."""
    started_at = dt.datetime.now(dt.timezone.utc)
    compaction_id = new_compaction_id(started_at)
    with dataset.writing(output_dir, compaction_id, "compact", wait_for_lease_s,
                         lease_expiry_s) as recovered:
        temp_root = dataset.temp_dir(output_dir, compaction_id)
        totals: dict[str, DatasetTotals] = {}
        moves, deletes = [], []
        for name in dataset_names(choices):
            listing = list_partitions(output_dir, name)
            total = totals.setdefault(name, DatasetTotals())
            for plan in plan_partitions(listing, name, target_file_bytes, dates):
                written, rows_read = rewrite_partition(plan, temp_root, target_file_bytes,
                                                       row_group_bytes)
                planned = dataset.plan_moves(output_dir, compaction_id, written)
                total.partitions += 1
                total.files_before += len(plan.files)
                total.bytes_before += sum(size for _, size in plan.files)
                total.rows_before += rows_read
                total.files_after += len(planned)
                total.bytes_after += sum(FileSystems.match([f.temp_path])[0]
                                         .metadata_list[0].size_in_bytes for f in planned)
                total.rows_after += sum(f.rows for f in planned)
                for file in planned:
                    if FileSystems.exists(file.path):
                        raise FileExistsError(f"{file.path} exists already")
                    moves.append([file.dataset, file.temp_path, file.path])
                deletes += [path for path, _ in plan.files]
        record = {
            "compaction_id": compaction_id, "started_at": started_at.isoformat(),
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "options": {"datasets": choices or list(DATASET_CHOICES),
                        "date": list(dates) if dates else None,
                        "target_file_bytes": target_file_bytes,
                        "row_group_bytes": row_group_bytes},
            "recovered": recovered.describe() or None,
            "datasets": {name: dataclasses.asdict(t) for name, t in totals.items()
                         if t.partitions},
        }
        if moves:
            make_dirs(posixpath.join(output_dir.rstrip("/"), dataset.COMPACTIONS_FOLDER))
            dataset.commit(output_dir, {
                "kind": "compact", "id": compaction_id,
                "created_at": record["finished_at"], "moves": moves, "deletes": deletes,
                "done": {"path": compaction_record_path(output_dir, compaction_id),
                         "record": record}})
    return record


def compaction_record_path(output_dir: str, compaction_id: str) -> str:
    return posixpath.join(output_dir.rstrip("/"), dataset.COMPACTIONS_FOLDER,
                          f"{compaction_id}.json")


# --- Repair: rows stored twice (by runs before the commit protocol) ------------------------------


def rows_to_drop(rows: list[tuple]) -> dict[str, set[int]]:
    """rows: (key, order, path, row number) -> {path: row numbers to drop}: every row whose key
    an earlier row (smallest order, then path and row number) already has."""
    drop: dict[str, set[int]] = {}
    seen = set()
    for key, _, path, number in sorted(rows, key=lambda r: (r[0], r[1], r[2], r[3])):
        if key in seen:
            drop.setdefault(path, set()).add(number)
        seen.add(key)
    return drop


def drop_duplicate_ids(output_dir: str, wait_for_lease_s: float = 0.0,
                       lease_expiry_s: float = dataset.leases.DEFAULT_EXPIRY_S) -> dict:
    """Rewrites the files holding a second copy of an id (UNIQUE_KEYS) without it, keeping the
    first stored; committed like a compaction. Returns {dataset: rows dropped}."""
    repair_id = new_compaction_id(dt.datetime.now(dt.timezone.utc)).replace("compact", "dedup")
    dropped: dict[str, int] = {}
    with dataset.writing(output_dir, repair_id, "repair", wait_for_lease_s, lease_expiry_s):
        temp_root = dataset.temp_dir(output_dir, repair_id)
        moves, deletes = [], []
        for name, key in UNIQUE_KEYS:
            rows = []
            for partition, files in list_partitions(output_dir, name).items():
                for path, _ in files:
                    with FileSystems.open(path) as stream:
                        parquet = pq.ParquetFile(stream)
                        wanted = [c for c in key + FIRST_STORED[name]
                                  if c in parquet.schema_arrow.names]
                        table = parquet.read(columns=wanted).to_pylist()
                    for number, row in enumerate(table):
                        rows.append((tuple(row.get(c) for c in key),
                                     tuple(str(row.get(c)) for c in FIRST_STORED[name]),
                                     path, number))
            for path, numbers in sorted(rows_to_drop(rows).items()):
                table = read_table(path)
                keep = [i for i in range(table.num_rows) if i not in numbers]
                partition = posixpath.dirname(path[len(output_dir.rstrip("/")) + len(name) + 2:])
                deletes.append(path)
                dropped[name] = dropped.get(name, 0) + len(numbers)
                if not keep:
                    continue
                temp = posixpath.join(temp_root, name, partition, f"{len(moves):05d}.parquet")
                write_table(temp, table.take(keep), max(1, len(keep)))
                for file in dataset.plan_moves(output_dir, f"{repair_id}-{len(moves)}", [
                        TempFile(name, partition, temp, len(keep))]):
                    moves.append([file.dataset, file.temp_path, file.path])
        if deletes:
            dataset.commit(output_dir, {
                "kind": "repair", "id": repair_id,
                "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "moves": moves, "deletes": deletes,
                "done": {"path": compaction_record_path(output_dir, repair_id),
                         "record": {"repair_id": repair_id, "dropped": dropped}}})
    return dropped


def repair(output_dir: str, duplicate_ids: bool = False, wait_for_lease_s: float = 0.0):
    """`newsbeam repair`: recovery alone (dataset.recover under the lease), then optionally
    drop_duplicate_ids. Returns (Recovery, {dataset: rows dropped})."""
    repair_id = new_compaction_id(dt.datetime.now(dt.timezone.utc)).replace("compact", "repair")
    with dataset.writing(output_dir, repair_id, "repair", wait_for_lease_s) as recovered:
        pass
    dropped = drop_duplicate_ids(output_dir, wait_for_lease_s) if duplicate_ids else {}
    return recovered, dropped
