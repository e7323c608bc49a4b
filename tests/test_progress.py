"""Live counters, seconds per stage and the progress display (transforms/metrics.py,
pipelines/progress.py): counters that agree with the manifest, a live display on a terminal,
log lines elsewhere with no silence longer than the interval."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter

from newsbeam.pipelines import progress
from newsbeam.pipelines.cli import format_summary
from newsbeam.transforms import metrics
from tests.conftest import SEEDS, manifests, read_dataset, run_cli

NEWSBEAM = Path(sys.executable).parent / "newsbeam"


# --- Pure functions ------------------------------------------------------------------------------


class _FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_timed_generator_is_charged_only_for_producing_its_outputs(monkeypatch):
    """Beam runs the fused steps downstream inside each `yield`: their time is not the stage's."""
    clock, charged = _FakeClock(), []
    monkeypatch.setattr(metrics.time, "perf_counter", clock)
    monkeypatch.setattr(metrics.time, "thread_time", clock)
    monkeypatch.setattr(metrics, "add_time", lambda stage, wall, cpu: charged.append(
        (stage, wall, cpu)))

    @metrics.timed(metrics.STAGE_DEDUP)
    def produce(n):
        for i in range(n):
            clock.now += 1.0      # the stage's own work
            yield i

    for _ in produce(3):
        clock.now += 100.0        # what the consumer (downstream) does
    assert charged == [("dedup", 3.0, 3.0)]

    @metrics.timed(metrics.STAGE_TOPICS)
    def compute(x):
        clock.now += 2.5
        return x * 2
    assert compute(4) == 8 and charged[-1] == ("topics", 2.5, 2.5)


def test_a_timed_method_keeps_the_signature_beam_reads():
    import inspect

    class Fn(beam.DoFn):
        @metrics.timed(metrics.STAGE_FETCH)
        def process(self, element, side, timestamp=beam.DoFn.TimestampParam):
            yield element

    assert list(inspect.signature(Fn().process).parameters) == ["element", "side", "timestamp"]


def test_stage_rows_sum_their_counters_and_know_totals_only_where_listed():
    totals = {"read_files_to_read": 8, "read_files_unchanged": 2, "read_files_done": 5,
              "read_error_empty_input": 1, "fetch_requests": 4, "fetch_requests_done": 1,
              "feed_error_empty_feed": 1, "fetch_error_http_status": 2, "extract_articles": 3,
              "extract_error_empty_extraction": 2, "dedup_articles": 2,
              "dedup_dropped_exact": 1, "dedup_dropped_minhash": 1, "write_rows_articles": 2,
              "write_rows_index_articles": 2}
    rows = {row.stage: row for row in progress.stage_progress(totals)}
    assert list(rows) == list(metrics.STAGES)
    assert (rows["read"].done, rows["read"].total, rows["read"].errors) == (7, 10, 1)
    assert (rows["fetch"].done, rows["fetch"].total, rows["fetch"].errors) == (1, 4, 3)
    assert (rows["extract"].done, rows["extract"].total, rows["extract"].errors) == (5, None, 2)
    assert (rows["dedup"].done, rows["entities"].done, rows["write"].done) == (4, 0, 4)
    line = progress.format_line(12.2, list(rows.values()), {"read": 0.5})
    assert line.startswith("12 s: read 7/10 files (1 errors, ETA 6 s), fetch 1/4 requests "
                           "(3 errors), extract 5 documents (2 errors), dedup 4 articles, ")
    assert line.endswith("stories 0 articles, write 4 rows")


def test_local_runners_are_told_from_remote_ones():
    for local in ("FnApiRunner", "fnapi", "DirectRunner", "BundleBasedDirectRunner",
                  "apache_beam.runners.portability.fn_api_runner.FnApiRunner"):
        assert progress.is_local_runner(local), local
    for remote in ("DataflowRunner", "dataflow", "FlinkRunner"):
        assert not progress.is_local_runner(remote), remote


def test_the_summary_lists_time_per_stage_in_stage_order_when_the_manifest_has_it(
        sample_dataset):
    manifest = manifests(sample_dataset)[0]
    assert list(manifest["stage_seconds"])  # recorded by the run
    lines = format_summary(manifest).splitlines()
    start = lines.index("  time per stage       wall s     CPU s   (summed over workers)")
    stages = [line.split()[0] for line in lines[start + 1:start + 1 + len(manifest[
        "stage_seconds"])]]
    assert stages == [s for s in metrics.STAGES if s in manifest["stage_seconds"]]
    older = {k: v for k, v in manifest.items() if not k.startswith("stage_")}
    assert "time per stage" not in format_summary(older)


def test_a_negative_progress_interval_is_refused(capsys):
    with pytest.raises(SystemExit) as exited:
        run_cli(capsys, "run", "--progress_interval_s", "-1")
    assert exited.value.code == 2


# --- A real run: counters against the manifest ---------------------------------------------------


def test_a_runs_counters_agree_with_its_manifest(mixed_inputs, output_dir):
    """result.metrics() of a real run: every counter in the newsbeam namespace, a count per
    stage output, per drop reason and per error reason, equal to what the manifest counted from
    the data; the seconds per stage the manifest records come from them."""
    from newsbeam.pipelines import ingest
    from newsbeam.transforms import dataset
    options = ingest.prepare_options(["--input", str(mixed_inputs), "--output", str(output_dir),
                                      "--progress_interval_s", "0"])
    ingest.check_options(options)
    run_id = "counted"
    with dataset.writing(options.output, run_id, "ingest", 0, 300):
        pipeline = beam.Pipeline(options=options)
        ingest.build(pipeline, options, ingest.new_run(options, run_id))
        result = pipeline.run()
        result.wait_until_finish()
        counters = progress.counters_of(result)
        manifest = ingest.record_costs(options.output, run_id, progress.stage_costs(counters))

    everyone = result.metrics().query(MetricsFilter())["counters"]
    assert {c.key.metric.namespace for c in everyone} == {metrics.NAMESPACE}
    counts, accounting = manifest["counts"], manifest["accounting"]
    c = lambda name: counters.get(name, 0)
    starting = lambda prefix: sum(v for k, v in counters.items() if k.startswith(prefix))
    assert c("read_documents") + c("fetch_documents") == counts["documents"] > 0
    assert c("extract_articles") == counts["extracted"] > 0
    assert c("dedup_dropped_already_ingested") == counts["already_ingested"]
    assert starting("dedup_dropped_") - c("dedup_dropped_already_ingested") \
        == counts["duplicates"] == accounting["duplicates"] == 1
    assert c("dedup_articles") == c("entities_articles") == c("topics_articles") \
        == c("stories_articles") == accounting["articles"] == c("write_rows_articles")
    assert c("stories_stories") == c("write_rows_stories") == manifest["datasets"]["stories"][
        "rows"]
    assert c("write_rows_duplicates") == manifest["datasets"]["duplicates"]["rows"]
    assert c("write_rows_errors") == manifest["datasets"]["errors"]["rows"]
    by_reason = {f"{stage}_error_{reason}": n for stage, reasons in
                 manifest["errors_by_stage"].items() for reason, n in reasons.items()}
    assert {k: v for k, v in counters.items() if "_error_" in k} == by_reason
    assert sum(by_reason.values()) == counts["errors"] >= 8
    assert c("read_files_done") == c("read_files_to_read") == c("read_files_matched") == 12
    assert c("entities_tagged") + c("entities_skipped_language") == c("entities_articles")
    # Time per stage, from the stages' own DoFns.
    assert manifest["stage_seconds"] == metrics.stage_seconds(counters)
    assert manifest["stage_cpu_seconds"] == metrics.stage_seconds(counters, metrics.CPU_SUFFIX)
    for stage in ("read", "extract", "dedup", "entities", "topics", "stories", "write"):
        assert manifest["stage_seconds"][stage] > 0, stage
    assert manifest["stage_cpu_seconds"]["extract"] > 0  # the extraction child's CPU counts
    assert read_dataset(output_dir / "articles").num_rows == accounting["articles"]


# --- A real run: what it shows -------------------------------------------------------------------


def _inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    for seed in SEEDS.iterdir():
        shutil.copy(seed, folder / seed.name)
    (folder / "empty.txt").write_bytes(b"")
    return folder


def _cli_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != metrics.PROGRESS_DIR_ENV}
    return {**env, "COLUMNS": "120", "TERM": "xterm-256color"}


def test_a_run_on_a_terminal_shows_a_live_display_of_every_stage(tmp_path):
    """Under a pseudo-terminal: rich's display, redrawn while the run goes, a row per stage
    with the file total, then the summary."""
    main, child = pty.openpty()
    run = subprocess.Popen(
        [str(NEWSBEAM), "run", "--input", str(_inputs(tmp_path)), "--output",
         str(tmp_path / "out"), "--progress_interval_s", "1"],
        stdin=child, stdout=child, stderr=child, env=_cli_env(), close_fds=True)
    os.close(child)
    shown = b""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 1.0)
        if ready:
            try:
                data = os.read(main, 65536)
            except OSError:  # the run closed the terminal
                break
            if not data:
                break
            shown += data
        elif run.poll() is not None:
            break
    os.close(main)
    assert run.wait(timeout=60) == 0
    text = shown.decode("utf-8", "replace")
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    for stage in metrics.STAGES:
        assert re.search(rf"(^|\n|\r){stage} +[━╸╺ ]+", plain), stage
    assert "3/3 files" in plain and "1 errors" in plain
    assert text.count("\x1b[1A") > 8 * 3  # redrawn in place, again and again: live
    assert plain.rstrip().splitlines()[-1].strip().startswith("ok: 2 articles")


def test_a_run_off_a_terminal_logs_progress_no_further_apart_than_the_interval(tmp_path):
    """stderr to a pipe (cron, a scheduler): a plain line naming every stage at least every
    --progress_interval_s, read as it arrives, with two worker processes (their totals reach
    the launcher through the side channel)."""
    interval = 1.0
    run = subprocess.Popen(
        [str(NEWSBEAM), "run", "--input", str(_inputs(tmp_path)), "--output",
         str(tmp_path / "out"), "--progress_interval_s", str(interval),
         "--direct_num_workers=2", "--direct_running_mode=multi_processing"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_cli_env(), text=True)
    arrivals: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: arrivals.extend(
        (time.monotonic(), line) for line in run.stderr), daemon=True)
    reader.start()
    out = run.stdout.read()  # the summary, at the end; stderr is the reader's alone
    run.wait(timeout=600)
    reader.join(timeout=10)
    assert run.returncode == 0, out
    lines = [(at, line) for at, line in arrivals if "newsbeam.pipelines.progress: progress" in line]
    assert len(lines) >= 3, arrivals
    for _, line in lines:
        assert all(f" {stage} " in line for stage in metrics.STAGES), line
    gaps = [later - earlier for (earlier, _), (later, _) in zip(lines, lines[1:])]
    assert max(gaps) < interval + 4.0, gaps  # generous: a loaded 2-core machine
    assert any("read 3/3 files (1 errors)" in line for _, line in lines)
    assert any(re.search(r"extract [1-9]", line) for _, line in lines)  # before the end
    assert out.rstrip().splitlines()[-1].strip().startswith("ok: 2 articles")
