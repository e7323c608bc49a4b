"""What a dataset holds: breakdowns of articles, duplicates, errors and stories, and the run
history, computed from the dataset's folder. Shared by `newsbeam inspect` and `newsbeam report`.

Files are listed and opened through Beam's FileSystems (local, gs://, any registered store) and
read with pyarrow, a few columns at a time (never `text`), file by file, so memory holds the
counts, not the rows. Partition columns (`date`, `topic`) come from the file's path, as hive
partitioning reads them. Folders and files whose names start with `.` or `_` are not data
(Spark's and pyarrow's rule too): temp files of a run in progress are not counted.

`dataset_stats(output)` returns one JSON-ready dict; `format_stats(stats)` is its text form.
"""

from __future__ import annotations

import collections
import contextlib
import json
import posixpath
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

__all__ = ["DATASETS", "TOP", "RUNS", "dataset_stats", "read_manifests", "format_stats",
           "ranked", "partition_keys"]

DATASETS = ("articles", "duplicates", "errors", "stories")
TOP = 10          # publishers, entities and stories listed by name
RUNS = 10         # runs listed, newest first
NO_VALUE = "(none)"
_BATCH_ROWS = 64 * 1024


# --- Pure functions ------------------------------------------------------------------------------


def partition_keys(root: str, path: str) -> dict[str, str]:
    """{'date': '2022-02-16', 'topic': 'politics'} from root/date=2022-02-16/topic=politics/x."""
    relative = posixpath.relpath(path, root) if "://" not in root else path[len(root):]
    keys = {}
    for segment in relative.strip("/").split("/")[:-1]:
        name, equals, value = segment.partition("=")
        if equals:
            keys[name] = value
    return keys


def is_data_file(root: str, path: str) -> bool:
    """A Parquet file of the dataset, not a hidden or temp one (a segment starting . or _)."""
    relative = posixpath.relpath(path, root) if "://" not in root else path[len(root):]
    segments = relative.strip("/").split("/")
    return path.endswith(".parquet") and not any(s.startswith((".", "_")) for s in segments)


def ranked(counts: dict, top: int | None = None) -> dict:
    """Most first, then by name; the first `top` only when given."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    return dict(ordered[:top] if top else ordered)


def histogram(counter: dict[int, int]) -> list[dict]:
    """[{'size': 1, 'count': 5}, ...] in size order."""
    return [{"size": size, "count": count} for size, count in sorted(counter.items())]


def run_summary(manifest: dict) -> dict:
    """One run, as `inspect` lists it: when, how long, and what came of its inputs."""
    accounting = manifest.get("accounting", {})
    summary = {
        "run_id": manifest["run_id"],
        "started_at": manifest.get("started_at"),
        "finished_at": manifest.get("finished_at"),
        "elapsed_s": manifest.get("elapsed_s"),
        **{name: accounting.get(name, 0) for name in (
            "inputs", "articles", "duplicates", "errors", "already_ingested",
            "skipped_unchanged")},
        "balanced": accounting.get("balanced"),
    }
    # Seconds per stage, for manifests that record them (a {stage: seconds} mapping).
    if isinstance(manifest.get("stage_seconds"), dict):
        summary["stage_seconds"] = manifest["stage_seconds"]
    return summary


# --- Reading -------------------------------------------------------------------------------------


def _root(output: str, name: str) -> str:
    return f"{output.rstrip('/')}/{name}"


def data_files(root: str) -> list[str]:
    matched = FileSystems.match([f"{root}/**"])[0].metadata_list
    return sorted(m.path for m in matched if is_data_file(root, m.path))


def scan(root: str, columns: list[str], run_id: str | None = None) -> Iterator[pa.Table]:
    """The dataset's rows, a batch at a time, with `columns` only (partition columns from the
    path; a column a file lacks, from an older schema, as nulls); only `run_id`'s rows if
    given."""
    for path in data_files(root):
        keys = partition_keys(root, path)
        # A local file is read by pyarrow's own reader (2.6 times faster than through a Python
        # file object); anything else through Beam's FileSystems.
        local = FileSystems.get_scheme(path) is None
        with contextlib.nullcontext(path) if local else FileSystems.open(path) as source:
            parquet = pq.ParquetFile(source)
            present = set(parquet.schema_arrow.names)
            read = [c for c in columns if c in present and c not in keys]
            if run_id is not None and "run_id" not in read:
                read.append("run_id")
            for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=read,
                                              use_threads=False):
                table = pa.Table.from_batches([batch])
                if run_id is not None:
                    table = table.filter(pc.equal(table["run_id"], run_id))
                if table.num_rows == 0:
                    continue
                yield pa.table({name: _column(table, keys, name) for name in columns})


def _column(table: pa.Table, keys: dict, name: str) -> pa.Array:
    if name in keys:
        return pa.array([keys[name]] * table.num_rows, pa.string())
    if name in table.column_names:
        return table[name]
    return pa.nulls(table.num_rows, pa.string())


def read_manifests(output: str) -> list[dict]:
    """Every run manifest of the dataset, oldest run first."""
    matched = FileSystems.match([f"{output.rstrip('/')}/_runs/*.json"])[0].metadata_list
    manifests = []
    for path in sorted(m.path for m in matched):
        with FileSystems.open(path) as stream:
            manifests.append(json.loads(stream.read()))
    return sorted(manifests, key=lambda m: (m.get("started_at") or "", m["run_id"]))


def _count(counter: collections.Counter, table: pa.Table, columns: list[str]) -> None:
    """Adds the table's row counts per distinct value (tuple) of `columns` to `counter`."""
    grouped = table.select(columns).group_by(columns, use_threads=False).aggregate(
        [([], "count_all")])
    values = [grouped[c].to_pylist() for c in columns]
    for *key, count in zip(*values, grouped["count_all"].to_pylist()):
        counter[tuple(NO_VALUE if v is None else v for v in key)] += count


def _by(counter: collections.Counter, position: int = 0) -> dict:
    out: collections.Counter = collections.Counter()
    for key, count in counter.items():
        out[key[position]] += count
    return out


# --- The breakdowns ------------------------------------------------------------------------------


def article_stats(output: str, run_id: str | None, top: int) -> dict:
    root = _root(output, "articles")
    files = data_files(root)
    per_day_topic: collections.Counter = collections.Counter()
    languages: collections.Counter = collections.Counter()
    date_sources: collections.Counter = collections.Counter()
    topic_sources: collections.Counter = collections.Counter()
    publishers: collections.Counter = collections.Counter()
    wires: collections.Counter = collections.Counter()
    entities: collections.Counter = collections.Counter()   # (text, label) -> articles
    mentions: collections.Counter = collections.Counter()   # (text, label) -> mentions
    rows = 0
    columns = ["date", "topic", "language", "date_source", "topic_source", "publisher",
               "domain", "wire_sources", "entities"]
    for table in scan(root, columns, run_id):
        rows += table.num_rows
        _count(per_day_topic, table, ["date", "topic"])
        _count(languages, table, ["language"])
        _count(date_sources, table, ["date_source"])
        _count(topic_sources, table, ["topic_source"])
        named = pc.coalesce(table["publisher"], table["domain"])
        _count(publishers, pa.table({"publisher": named}), ["publisher"])
        if pa.types.is_list(table["wire_sources"].type):
            _count(wires, pa.table({"wire": pc.list_flatten(table["wire_sources"])}), ["wire"])
        if pa.types.is_list(table["entities"].type):
            flat = pc.list_flatten(table["entities"])
            if len(flat):
                parts = pa.table({"text": pc.struct_field(flat, "text"),
                                  "label": pc.struct_field(flat, "label"),
                                  "count": pc.struct_field(flat, "count")})
                grouped = parts.group_by(["text", "label"], use_threads=False).aggregate(
                    [([], "count_all"), ("count", "sum")])
                for text, label, articles, said in zip(
                        *(grouped[c].to_pylist() for c in ("text", "label", "count_all",
                                                           "count_sum"))):
                    entities[(text, label)] += articles
                    mentions[(text, label)] += said
    per_day = _by(per_day_topic, 0)
    top_entities = sorted(entities, key=lambda k: (-entities[k], -mentions[k], k))[:top]
    return {
        "rows": rows,
        "files": len(files),
        "first_date": min(per_day) if per_day else None,
        "last_date": max(per_day) if per_day else None,
        "days": len(per_day),
        "topics": ranked(_by(per_day_topic, 1)),
        "languages": ranked(_by(languages)),
        "date_sources": ranked(_by(date_sources)),
        "topic_sources": ranked(_by(topic_sources)),
        "publishers": ranked(_by(publishers), top),
        "publishers_distinct": len(publishers),
        "wire_sources": ranked(_by(wires)),
        "entities": [{"text": text, "label": label, "articles": entities[(text, label)],
                      "mentions": mentions[(text, label)]} for text, label in top_entities],
        "entities_distinct": len(entities),
        "per_day": dict(sorted(per_day.items())),
        "per_day_topic": [{"date": date, "topic": topic, "articles": n}
                          for (date, topic), n in sorted(per_day_topic.items())],
    }


def duplicate_stats(output: str, run_id: str | None, articles: int) -> dict:
    """Duplicates by method, and how many copies each kept article has (articles with none
    included): copies are counted from duplicates/, which also holds the copies later runs
    found of earlier articles."""
    root = _root(output, "duplicates")
    methods: collections.Counter = collections.Counter()
    copies_of: collections.Counter = collections.Counter()
    rows = 0
    for table in scan(root, ["method", "duplicate_of"], run_id):
        rows += table.num_rows
        _count(methods, table, ["method"])
        _count(copies_of, table, ["duplicate_of"])
    # Only the kept articles in scope (the whole dataset, or this run's) count.
    kept_with_copies: collections.Counter = collections.Counter()
    if copies_of:
        ids = pa.array([key[0] for key in copies_of])
        for table in scan(_root(output, "articles"), ["article_id"], run_id):
            found = table.filter(pc.is_in(table["article_id"], value_set=ids))
            for article_id in found["article_id"].to_pylist():
                kept_with_copies[copies_of[(article_id,)]] += 1
    per_article = collections.Counter(kept_with_copies)
    per_article[0] = articles - sum(kept_with_copies.values())
    return {"rows": rows, "files": len(data_files(root)), "methods": ranked(_by(methods)),
            "copies_per_article": histogram({k: v for k, v in per_article.items() if v})}


def error_stats(output: str, run_id: str | None) -> dict:
    root = _root(output, "errors")
    reasons: collections.Counter = collections.Counter()
    rows = 0
    for table in scan(root, ["stage", "reason"], run_id):
        rows += table.num_rows
        _count(reasons, table, ["stage", "reason"])
    by_stage: dict[str, dict[str, int]] = {}
    for (stage, reason), count in sorted(reasons.items()):
        by_stage.setdefault(stage, {})[reason] = count
    return {"rows": rows, "files": len(data_files(root)),
            "by_stage": {stage: ranked(r) for stage, r in sorted(by_stage.items())}}


def story_stats(output: str, run_id: str | None, top: int) -> dict:
    """Stories, each as its current row (a later run that grows a story appends a row with a
    later `updated_at`); for one run, the rows that run wrote."""
    root = _root(output, "stories")
    current: dict[str, tuple] = {}
    rows = 0
    columns = ["story_id", "updated_at", "member_count", "title", "publishers",
               "first_published", "last_published"]
    for table in scan(root, columns, run_id):
        rows += table.num_rows
        for story in table.to_pylist():
            held = current.get(story["story_id"])
            if held is None or story["updated_at"] > held["updated_at"]:
                current[story["story_id"]] = story
    sizes = collections.Counter(s["member_count"] for s in current.values())
    largest = sorted(current.values(), key=lambda s: (-s["member_count"], s["story_id"]))[:top]
    return {
        "rows": rows,
        "files": len(data_files(root)),
        "stories": len(current),
        "with_several_articles": sum(n for size, n in sizes.items() if size > 1),
        "sizes": histogram(sizes),
        "largest": [{"story_id": s["story_id"], "title": s["title"],
                     "articles": s["member_count"], "publishers": list(s["publishers"] or []),
                     "first_published": _iso(s["first_published"]),
                     "last_published": _iso(s["last_published"])} for s in largest],
    }


def _iso(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


def dataset_stats(output: str, run_id: str | None = None, top: int = TOP,
                  runs: int = RUNS) -> dict:
    """Everything `inspect --json` prints: the dataset (or one run's part of it) by topic,
    language, date source, publisher, day, wire agency, entity; duplicates; errors by stage and
    reason; stories; and the last `runs` runs, newest first."""
    manifests = read_manifests(output)
    articles = article_stats(output, run_id, top)
    history = [run_summary(m) for m in manifests]
    return {
        "output": output,
        "run_id": run_id,
        "articles": articles,
        "duplicates": duplicate_stats(output, run_id, articles["rows"]),
        "errors": error_stats(output, run_id),
        "stories": story_stats(output, run_id, top),
        "runs": {"total": len(history), "last": history[::-1][:runs]},
    }


# --- Text ----------------------------------------------------------------------------------------


def _listing(counts: dict, more: int = 0) -> str:
    text = ", ".join(f"{name} {count}" for name, count in counts.items()) or "-"
    return text + (f" (and {more} more)" if more > 0 else "")


def _n(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def _when(moment: str | None) -> str:
    return (moment or "?")[:19].replace("T", " ")


def format_stats(stats: dict) -> str:
    """The text `newsbeam inspect` prints."""
    a, d, e, s = (stats[name] for name in DATASETS)
    scope = f" (run {stats['run_id']})" if stats["run_id"] else ""
    lines = [f"{stats['output']}{scope}: {_n(stats['runs']['total'], 'run')}, "
             f"{_n(a['rows'], 'article')}, {_n(d['rows'], 'duplicate')}, "
             f"{_n(e['rows'], 'error')}, {_n(s['stories'], 'story', 'stories')}"]
    span = f", {a['first_date']} .. {a['last_date']} ({_n(a['days'], 'day')})" \
        if a["days"] else ""
    lines.append(f"articles: {a['rows']} rows in {a['files']} files{span}")
    if a["rows"]:
        entities = {f"{x['text']} ({x['label']})": x["articles"] for x in a["entities"]}
        lines += [
            f"  by topic: {_listing(a['topics'])}",
            f"  by language: {_listing(a['languages'])}",
            f"  by date source: {_listing(a['date_sources'])}",
            f"  by topic source: {_listing(a['topic_sources'])}",
            f"  by publisher: {_listing(a['publishers'], a['publishers_distinct'] - TOP)}",
            f"  wire agencies: {_listing(a['wire_sources'])}",
            f"  top entities (articles): "
            f"{_listing(entities, a['entities_distinct'] - len(entities))}",
            f"  newest days: {_listing(dict(list(a['per_day'].items())[::-1][:7]))}",
        ]
    lines.append(f"duplicates: {d['rows']} rows in {d['files']} files")
    if d["rows"]:
        copies = {_n(h["size"], "copy", "copies"): h["count"] for h in d["copies_per_article"]}
        lines += [f"  by method: {_listing(d['methods'])}",
                  f"  kept articles with: {_listing(copies)}"]
    lines.append(f"errors: {e['rows']} rows in {e['files']} files")
    lines += [f"  {stage}: {_listing(reasons)}" for stage, reasons in e["by_stage"].items()]
    lines.append(f"stories: {s['stories']} ({s['with_several_articles']} with more than one "
                 f"article; {s['rows']} rows in {s['files']} files)")
    for story in s["largest"]:
        if story["articles"] > 1:
            lines.append(f"  {story['articles']} articles: {story['title'] or story['story_id']}")
    runs = stats["runs"]
    lines.append(f"runs: the last {len(runs['last'])} of {runs['total']}, newest first")
    for run in runs["last"]:
        elapsed = f"{run['elapsed_s']:.1f} s" if run["elapsed_s"] is not None else "? s"
        lines.append(
            f"  {run['run_id']}: {_when(run['started_at'])} UTC, {elapsed}: {run['inputs']} "
            f"inputs, {run['articles']} articles, {run['duplicates']} duplicates, "
            f"{run['errors']} errors, {run['already_ingested']} already ingested"
            + ("" if run["balanced"] is not False else ", NOT BALANCED"))
    return "\n".join(lines)
