"""Exactly-once under kills and overlap: real `newsbeam run` processes killed with SIGKILL (of
their process group) at each commit step, then re-run; two runs at once over overlapping inputs;
the lease's take-over rules. Every dataset is read back with pyarrow and DuckDB."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest

from tests.conftest import ROOT, SEEDS, manifests, run_cli
from newsbeam.transforms import dataset, lease

NEWSBEAM = str(Path(sys.executable).parent / "newsbeam")
# Each input's fate: 4 articles (2 seeds, a note, a JSONL record), 1 exact copy, 2 errors.
SMALL_ARTICLES, SMALL_DUPLICATES, SMALL_ERRORS = 4, 1, 2


def write_small_inputs(folder: Path, tag: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(SEEDS / "000_dac305c5b36f0b2f.txt", folder / "reuters.txt")
    shutil.copy(SEEDS / "000_dac305c5b36f0b2f.txt", folder / "reuters-copy.txt")
    shutil.copy(SEEDS / "004_732ed2892add5ac6.txt", folder / "anadolu.txt")
    (folder / f"note{tag}.md").write_text(
        "# Council approves new budget\n\nThe city council approved a new budget on Tuesday "
        "after a long debate about school funding and road repairs, with seven votes in "
        "favour and two against.\n")
    (folder / "records.jsonl").write_text(json.dumps({
        "id": 1, "title": "Port reopens", "published_at": "2022-02-16T09:30:00Z",
        "text": "The port reopened on Monday after a week of repairs to the main quay, the "
                "harbour authority said, and the first ships came in."}) + "\n{broken\n")
    (folder / "empty.txt").write_bytes(b"")
    return folder


def newsbeam_process(*args: str, kill_at: str | None = None) -> subprocess.Popen:
    """`newsbeam ARGS` in a process group of its own (so a kill takes its workers too)."""
    env = {k: v for k, v in os.environ.items() if k != dataset.KILL_AT_ENV}
    if kill_at:
        env[dataset.KILL_AT_ENV] = kill_at
    return subprocess.Popen([NEWSBEAM, *args], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return process.returncode, out + err


def visible_rows(output: Path, name: str) -> list[dict]:
    if not (output / name).exists():
        return []
    return ds.dataset(str(output / name), format="parquet",
                      partitioning="hive").to_table().to_pylist()


def duckdb_count(output: Path, name: str, column: str) -> tuple[int, int]:
    files = list((output / name).rglob("*.parquet")) if (output / name).exists() else []
    if not files:
        return 0, 0
    with duckdb.connect() as db:
        return db.execute(
            f"SELECT count(*), count(DISTINCT {column}) FROM read_parquet("
            f"'{output}/{name}/**/*.parquet', hive_partitioning = true, "
            "union_by_name = true)").fetchone()


def assert_exactly_once(output: Path, articles: int, duplicates: int, errors: int):
    """Every id once in its dataset, pyarrow and DuckDB agreeing; the index names exactly the
    stored articles; each story's current row is defined; nothing half-done remains."""
    for name, column, expected in (("articles", "article_id", articles),
                                   ("duplicates", "article_id", duplicates),
                                   ("errors", "error_id", errors)):
        ids = [row[column] for row in visible_rows(output, name)]
        assert len(ids) == len(set(ids)) == expected, (name, sorted(ids))
        assert duckdb_count(output, name, column) == (expected, expected), name
    stored = {row["article_id"] for row in visible_rows(output, "articles")}
    indexed = [row["article_id"] for row in visible_rows(output, "index/articles")]
    assert sorted(indexed) == sorted(stored)
    story_ids = {row["story_id"] for row in visible_rows(output, "articles")}
    stories = visible_rows(output, "stories")
    versions = [(row["story_id"], row["updated_at"]) for row in stories]
    assert len(versions) == len(set(versions)) and {s for s, _ in versions} == story_ids
    assert not (output / ".tmp").exists()
    assert dataset.pending_intents(str(output)) == [] and dataset.started_runs(str(output)) == []
    assert lease.read_holder(str(output)) is None
    for run in manifests(output):
        assert run["accounting"]["balanced"], run["run_id"]


# --- SIGKILL at every commit step, then a re-run ------------------------------------------------

INGEST_KILL_POINTS = ["before_intent", "between_datasets", "before_index", "after_index",
                      "after_manifest"]


def _new_note(folder: Path, name: str) -> None:
    (folder / f"{name}.txt").write_text(
        f"Dispatch {name}: the harbour master said the {name} ferry would sail again on Monday "
        "after engineers replaced a worn propeller shaft and inspected the hull.")


@pytest.mark.crash
def test_runs_killed_at_every_commit_step_store_each_article_once(capsys, tmp_path):
    """A chain of real runs, each SIGKILLed (its process group) at the next commit step; each
    also recovers the one before it. Then one completed run: every id once, readers agree."""
    inputs, output = write_small_inputs(tmp_path / "in"), tmp_path / "out"
    for number, step in enumerate(INGEST_KILL_POINTS, 1):
        run_id = f"k{number}-{step.replace('_', '-')}"
        _new_note(inputs, run_id)
        status, printed = finish(newsbeam_process(
            "run", "--input", str(inputs), "--output", str(output), "--run_id", run_id,
            kill_at=step))
        assert status == -signal.SIGKILL, (step, printed)
        assert run_id in dataset.started_runs(str(output))
        if step == "before_intent":
            # Nothing visible: the data waits in .tmp/ and there is no intent.
            assert visible_rows(output, "articles") == []
            assert (output / ".tmp" / run_id).is_dir()
            assert dataset.pending_intents(str(output)) == []
        else:
            assert dataset.pending_intents(str(output)) == [run_id]
        if step in ("between_datasets", "before_index"):
            # A plain reader sees part of the run until it is rolled forward (strict readers
            # filter by the committed runs of _runs/, see README).
            assert not (output / "_runs" / f"{run_id}.json").exists()

    status, printed = run_cli(capsys, "run", "--input", str(inputs), "--output", str(output))
    assert status == 0, printed

    notes = len(INGEST_KILL_POINTS)
    assert_exactly_once(output, SMALL_ARTICLES + notes, SMALL_DUPLICATES, SMALL_ERRORS)
    runs = {run["run_id"]: run for run in manifests(output)}
    final = manifests(output)[-1]
    # The run killed before its intent left nothing but a record of it; the next stored its
    # inputs; every later killed run was completed by the run after it.
    first = "k1-before-intent"
    assert first not in runs
    assert json.loads((output / "_commits" / "abandoned" / f"{first}.json").read_text())[
        "found_by"] == "k2-between-datasets"
    assert runs["k2-between-datasets"]["accounting"]["articles"] == SMALL_ARTICLES + 2
    for killed, by in (("k2-between-datasets", "k3-before-index"),
                       ("k3-before-index", "k4-after-index"),
                       ("k4-after-index", "k5-after-manifest")):
        assert runs[killed]["committed_by_recovery"]["by"] == by
        assert runs[by]["accounting"]["already_ingested"] >= SMALL_ARTICLES
    assert "committed_by_recovery" not in runs["k5-after-manifest"]  # it wrote its own
    assert final["accounting"]["articles"] == 0
    # Every input file is unchanged since the runs that stored it (index/inputs, committed with
    # the rest): none is read again, the failed ones included, and all count as already ingested.
    assert final["accounting"]["already_ingested"] == \
        SMALL_ARTICLES + notes + SMALL_DUPLICATES + SMALL_ERRORS
    assert final["counts"]["inputs_unchanged"] == final["accounting"]["inputs"]
    assert final["accounting"]["errors"] == 0


@pytest.mark.crash
def test_a_run_killed_while_it_works_leaves_nothing_and_its_temp_files_are_removed(
        capsys, tmp_path):
    """A SIGKILL from outside, mid-run (not at a seam): the next run deletes the orphan temp
    folder and stores everything once."""
    inputs, output = write_small_inputs(tmp_path / "in"), tmp_path / "out"
    process = newsbeam_process("run", "--input", str(inputs), "--output", str(output),
                               "--run_id", "midway")
    deadline = time.monotonic() + 240
    while not (output / ".tmp" / "midway").exists() and process.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    finish(process)
    # Planted like a retried bundle's leftover, and a second dead run's folder.
    (output / ".tmp" / "older-dead-run" / "articles").mkdir(parents=True, exist_ok=True)
    (output / ".tmp" / "older-dead-run" / "articles" / "x.parquet").write_bytes(b"PAR1")

    status, printed = run_cli(capsys, "run", "--input", str(inputs), "--output", str(output))
    assert status == 0, printed
    assert_exactly_once(output, SMALL_ARTICLES, SMALL_DUPLICATES, SMALL_ERRORS)


# --- Two runs at once ----------------------------------------------------------------------------


@pytest.mark.crash
def test_two_runs_at_once_over_overlapping_inputs_store_each_article_once(tmp_path):
    """Both start together. The default: the second refuses at once (exit 75) and writes
    nothing; with --wait_for_lease_s it waits, then finds the overlap already ingested."""
    first_in = write_small_inputs(tmp_path / "a", tag="-a")
    second_in = write_small_inputs(tmp_path / "b", tag="-b")
    (second_in / "note-b.md").write_text(
        "# Bridge closes for repairs\n\nThe old river bridge closed on Wednesday for three "
        "months of repairs to its steel frame, and buses will take a longer route.\n")
    output = tmp_path / "out"
    waiting = [newsbeam_process("run", "--input", str(folder), "--output", str(output),
                                "--wait_for_lease_s", "300", "--quiet")
               for folder in (first_in, second_in)]
    results = [finish(process) for process in waiting]
    assert [status for status, _ in results] == [0, 0], results
    # 3 shared articles + each folder's note; the copy once; errors are per input file.
    assert_exactly_once(output, SMALL_ARTICLES + 1, SMALL_DUPLICATES, 2 * SMALL_ERRORS)
    runs = manifests(output)
    assert sorted(r["accounting"]["articles"] for r in runs) == [1, SMALL_ARTICLES]

    # Without waiting: one of two simultaneous runs refuses, and nothing of it is written.
    third_in = write_small_inputs(tmp_path / "c", tag="-c")
    _new_note(third_in, "third")
    racing = [newsbeam_process("run", "--input", str(third_in), "--output", str(output),
                               "--quiet") for _ in range(2)]
    results = sorted(finish(process) for process in racing)
    statuses = [status for status, _ in results]
    assert statuses == [0, lease.EXIT_LEASE_HELD], results
    assert "nothing written" in results[1][1] and "--wait_for_lease_s" in results[1][1]
    assert len(manifests(output)) == 3
    assert_exactly_once(output, SMALL_ARTICLES + 2, SMALL_DUPLICATES, 3 * SMALL_ERRORS)


# --- The lease's rules ---------------------------------------------------------------------------


def _stale_lease(output: Path, **fields) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    content = {"holder": "old-run", "kind": "ingest", "host": socket.gethostname(),
               "pid": os.getpid(), "started_at": now.isoformat(),
               "heartbeat_at": now.isoformat(), "expiry_s": 300, **fields}
    path = Path(lease.lease_path(str(output)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


def test_lease_is_refused_while_its_holder_lives_and_taken_from_a_dead_one(tmp_path):
    output = tmp_path / "out"
    _stale_lease(output)  # this very process: alive
    with pytest.raises(lease.LeaseHeld) as held:
        lease.Lease(str(output), "new-run").acquire()
    assert "old-run" in str(held.value)

    dead = subprocess.Popen(["true"])
    dead.wait()
    _stale_lease(output, pid=dead.pid)  # same host, process gone
    taken = lease.Lease(str(output), "new-run").acquire()
    assert taken.taken_over["holder"] == "old-run"
    assert lease.read_holder(str(output))["holder"] == "new-run"
    lease.verify_holder(str(output), "new-run")
    with pytest.raises(lease.LeaseLost):
        lease.verify_holder(str(output), "old-run")
    taken.release()
    assert lease.read_holder(str(output)) is None

    # Another host: alive as long as its heartbeat is fresh.
    _stale_lease(output, host="elsewhere", pid=1)
    with pytest.raises(lease.LeaseHeld):
        lease.Lease(str(output), "new-run").acquire()
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=301)).isoformat()
    _stale_lease(output, host="elsewhere", pid=1, heartbeat_at=old)
    lease.Lease(str(output), "new-run").acquire().release()

    # A reused pid (another process now) is no holder either.
    _stale_lease(output, pid=os.getpid(), pid_started="1")
    lease.Lease(str(output), "new-run").acquire().release()


def test_a_run_that_lost_its_lease_does_not_commit(tmp_path):
    output = tmp_path / "out"
    held = lease.Lease(str(output), "slow-run").acquire()
    try:
        _stale_lease(output, holder="taker")  # another process took it over
        assert held.heartbeat() is False and held.lost
        intent = {"kind": "ingest", "id": "slow-run", "moves": [], "deletes": [],
                  "done": {"path": str(output / "_runs" / "slow-run.json"), "record": {}}}
        with pytest.raises(lease.LeaseLost):
            dataset.commit(str(output), intent)
        assert not (output / "_runs" / "slow-run.json").exists()
        assert dataset.pending_intents(str(output)) == []
    finally:
        held.release()
    assert lease.read_holder(str(output))["holder"] == "taker"  # not released by the loser


def test_waiting_for_a_lease_gets_it_when_the_holder_finishes(tmp_path):
    output = tmp_path / "out"
    first = lease.Lease(str(output), "first").acquire()
    releaser = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    started = time.monotonic()
    threading.Thread(target=lambda: (releaser.wait(), first.release())).start()
    second = lease.Lease(str(output), "second").acquire(wait_s=60)
    assert 1.0 < time.monotonic() - started < 30
    second.release()


def test_an_output_without_atomic_create_is_refused_before_anything_runs(capsys, tmp_path):
    from newsbeam.pipelines.cli import main
    assert main(["run", "--output", "s3://bucket/news"]) == 2
    assert "offers no atomic create-if-absent" in capsys.readouterr().err


# --- Listing the index ---------------------------------------------------------------------------


def test_a_failed_index_listing_is_raised_not_taken_for_an_empty_index(monkeypatch, tmp_path):
    """A transient object-store error while listing index/articles must fail the run: read as
    "no index", the run would store again everything earlier runs stored. A folder that is not
    there still lists as empty."""
    from apache_beam.io.filesystem import BeamIOError
    from apache_beam.io.filesystems import FileSystems

    def failing_match(patterns, **_):
        raise BeamIOError("match failed", {patterns[0]: ConnectionError("connection reset")})

    assert dataset.index_files(str(tmp_path / "none"), dataset.INDEX_ARTICLES) == []
    monkeypatch.setattr(FileSystems, "match", failing_match)
    with pytest.raises(BeamIOError):
        dataset.index_files(str(tmp_path), dataset.INDEX_ARTICLES)

    def missing_match(patterns, **_):
        raise BeamIOError("match failed", {patterns[0]: FileNotFoundError(patterns[0])})

    monkeypatch.setattr(FileSystems, "match", missing_match)
    assert dataset.index_files(str(tmp_path), dataset.INDEX_ARTICLES) == []
