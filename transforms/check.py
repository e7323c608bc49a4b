"""`newsbeam inspect --check`: does a dataset keep its contract, and what repairs it.

Broken (exit 1): an id twice in its dataset (articles, duplicates, errors; a story with two
rows of one `updated_at`, so no current row); index/articles and articles/ disagreeing; temp
files, started markers or commit intents that no live run owns. Noted (exit 0): partitions of
many small files, schema versions present. Files are read through Beam's FileSystems (only the
columns a check needs), so local and cloud outputs are checked alike.
"""

from __future__ import annotations

import collections
import dataclasses

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from newsbeam.schemas.records import SCHEMA_CHANGES, SCHEMA_VERSION
from newsbeam.transforms import dataset, lease
from newsbeam.transforms.compact import UNIQUE_KEYS, list_partitions

# A partition with more files than this, of which most are small, is worth compacting.
SMALL_FILES_PER_PARTITION = 8
SMALL_FILE_BYTES = 16 * 2**20
VERSIONED = ("articles", "duplicates", "errors", "stories")


@dataclasses.dataclass
class Finding:
    broken: bool
    what: str
    repair: str | None = None


def _columns(path: str, wanted: tuple[str, ...]) -> dict[str, list]:
    with FileSystems.open(path) as stream:
        parquet = pq.ParquetFile(stream)
        present = [c for c in wanted if c in parquet.schema_arrow.names]
        table = parquet.read(columns=present)
    return {c: table.column(c).to_pylist() if c in present else [None] * table.num_rows
            for c in wanted}


def _files(output_dir: str, name: str) -> list[tuple[str, int]]:
    return [file for files in list_partitions(output_dir, name).values() for file in files]


def check(output_dir: str) -> list[Finding]:
    out = output_dir.rstrip("/")
    findings: list[Finding] = []
    holder = (lease.read_holder(out) or {}).get("holder")
    live = {dataset.partition_value(holder)} if holder else set()

    # Half-done work no live run owns.
    for run_id in dataset.pending_intents(out):
        if run_id not in live:
            findings.append(Finding(True, f"commit of {run_id} was interrupted (its intent is in "
                                          f"_commits/): part of it may be visible",
                                    f"newsbeam repair --output {out}"))
    for run_id in dataset.started_runs(out):
        if run_id not in live and run_id not in dataset.pending_intents(out):
            findings.append(Finding(True, f"run {run_id} started and never committed",
                                    f"newsbeam repair --output {out}"))
    for name, files in sorted(dataset.temp_folders(out).items()):
        if name not in live:
            findings.append(Finding(True, f"{files} orphan temp files in .tmp/{name}/",
                                    f"newsbeam repair --output {out}"))

    # Each id once.
    ids_by_dataset: dict[str, set] = {}
    for name, key in UNIQUE_KEYS:
        counts: collections.Counter = collections.Counter()
        for path, _ in _files(out, name):
            columns = _columns(path, key)
            counts.update(zip(*(columns[c] for c in key)))
        ids_by_dataset[name] = {k[0] for k in counts}
        twice = {k: n for k, n in counts.items() if n > 1}
        if twice:
            sample = ", ".join("/".join(map(str, k)) for k in sorted(twice, key=str)[:3])
            findings.append(Finding(
                True, f"{name}/: {len(twice)} ids stored more than once ({sum(twice.values())} "
                      f"rows; e.g. {sample})",
                f"newsbeam repair --output {out} --drop_duplicate_ids"))
    indexed = set()
    for path, _ in _files(out, dataset.INDEX_ARTICLES.name):
        indexed.update(_columns(path, ("article_id",))["article_id"])
    stored = ids_by_dataset["articles"]
    if indexed - stored:
        findings.append(Finding(True, f"index/articles names {len(indexed - stored)} articles "
                                      "that articles/ does not hold",
                                f"newsbeam repair --output {out}"))
    if stored - indexed:
        findings.append(Finding(True, f"{len(stored - indexed)} articles are missing from "
                                      "index/articles (a later run would store them again)",
                                f"newsbeam repair --output {out}"))

    # Noted: small files and schema versions.
    names = [*dict(UNIQUE_KEYS), *(spec.name for spec in dataset.INDEXES)]
    for name in names:
        crowded = [partition for partition, files in list_partitions(out, name).items()
                   if len(files) > SMALL_FILES_PER_PARTITION
                   and sum(size < SMALL_FILE_BYTES for _, size in files) * 2 > len(files)]
        if crowded:
            findings.append(Finding(False, f"{name}/: {len(crowded)} partitions of more than "
                                           f"{SMALL_FILES_PER_PARTITION} files, mostly small",
                                    f"newsbeam compact --output {out} --dataset "
                                    f"{'index' if name.startswith('index/') else name}"))
    for name in VERSIONED:
        versions: collections.Counter = collections.Counter()
        for path, _ in _files(out, name):
            versions.update(_columns(path, ("schema_version",))["schema_version"])
        if versions:
            listed = ", ".join(f"v{v}: {n} rows" for v, n in sorted(versions.items(), key=str))
            newer = [v for v in versions if v is not None and v not in SCHEMA_CHANGES]
            findings.append(Finding(False, f"{name}/: schema versions {listed}" + (
                f" (v{', v'.join(map(str, newer))} unknown to this newsbeam, which writes "
                f"v{SCHEMA_VERSION}: upgrade it)"
                if newer else "")))
    return findings


def format_findings(output_dir: str, findings: list[Finding]) -> str:
    broken = [f for f in findings if f.broken]
    lines = [f"{output_dir}: " + (f"{len(broken)} problems" if broken
                                  else "keeps its contract")]
    for finding in sorted(findings, key=lambda f: not f.broken):
        lines.append(f"  {'BROKEN' if finding.broken else 'note  '}  {finding.what}")
        if finding.repair:
            lines.append(f"          repair: {finding.repair}")
    return "\n".join(lines)

