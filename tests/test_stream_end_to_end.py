"""`newsbeam stream` end to end: the installed command, as a user runs it, on the local runner
(FnApiRunner), against the real 127.0.0.1 news site while it publishes new entries. The dataset
is read back with pyarrow and DuckDB; a later `newsbeam run` over the same feeds stores nothing
twice. Ctrl-C (a real SIGINT) stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.dataset as pads

from newsbeam.transforms import dataset, lease
from tests.newssite import running_site

NEWSBEAM = str(Path(sys.executable).with_name("newsbeam"))


def _stream_words(site, output, feeds, *extra):
    return [NEWSBEAM, "stream", *(f"--feed={site.base}/feeds/{name}.xml" for name in feeds),
            f"--output={output}", "--allow_loopback", "--fetch_delay_s=0.2",
            "--topic_model=none", *extra]


def _articles(output):
    return pads.dataset(os.path.join(output, "articles"), format="parquet",
                        partitioning="hive").to_table(columns=["article_id", "title", "url"])


def test_stream_stores_each_entry_once_and_a_later_run_stores_nothing_twice(tmp_path):
    output = str(tmp_path / "out")
    feeds = ["city", "sport"]
    with running_site() as site:
        site.robots = "User-agent: *\n"
        site.publish("city", "before-city")
        site.publish("sport", "before-sport")
        publisher = site.publish_steadily(feeds, every_s=1.5, count=6)
        done = subprocess.run(
            _stream_words(site, output, feeds, "--duration=14", "--poll_schedule=always",
                          "--poll_interval_s=2", "--window_s=4"),
            capture_output=True, text=True, timeout=600)
        publisher.join()
        assert done.returncode == 0, done.stderr[-3000:]
        assert " ok: 8 articles, 0 duplicates, 0 errors" in done.stdout, done.stdout

        slugs = ["before-city", "before-sport", *(f"live-{n:05d}" for n in range(6))]
        table = _articles(output)
        assert sorted(table.column("title").to_pylist()) == sorted(f"Story {s}" for s in slugs)
        assert len(set(table.column("article_id").to_pylist())) == table.num_rows
        assert all(site.hits[f"/live/{slug}.html"] == 1 for slug in slugs)
        # Several polls of each feed, the later ones conditional.
        polls = site.requests_to("/feeds/city.xml")
        assert len(polls) >= 3 and all("If-None-Match" in h for _, h in polls[1:])

        duck = duckdb.sql(
            f"SELECT count(*), count(DISTINCT article_id) FROM read_parquet("
            f"'{output}/articles/**/*.parquet', hive_partitioning = true)").fetchall()
        assert duck == [(8, 8)]
        manifests = sorted((tmp_path / "out" / "_runs").glob("*-w*.json"))
        assert len(manifests) >= 2  # more than one window committed
        assert all(json.loads(m.read_text())["accounting"]["balanced"] for m in manifests)
        check = subprocess.run([NEWSBEAM, "inspect", "--output", output, "--check"],
                               capture_output=True, text=True, timeout=300)
        assert check.returncode == 0, check.stdout + check.stderr

        # A batch run over the same feeds afterwards: every entry is known, nothing is stored
        # twice, no page is fetched again.
        again = subprocess.run(
            [NEWSBEAM, "run", *(f"--feed={site.base}/feeds/{name}.xml" for name in feeds),
             f"--output={output}", "--allow_loopback", "--topic_model=none", "--quiet"],
            capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "0 articles" in again.stdout
        assert _articles(output).num_rows == 8
        assert all(site.hits[f"/live/{slug}.html"] == 1 for slug in slugs)


def test_ctrl_c_stops_the_stream_and_leaves_nothing_half_written(tmp_path):
    """A real SIGINT to the process group (what Ctrl-C in a terminal sends) while the stream
    polls: it stops polling, commits what it has (FnApiRunner fires its windows only when the
    clock ends), releases the lease and exits 0, long before its --duration."""
    output = str(tmp_path / "out")
    with running_site() as site:
        site.robots = "User-agent: *\n"
        site.publish("city", "before-city")
        started = time.monotonic()
        process = subprocess.Popen(
            _stream_words(site, output, ["city"], "--duration=600", "--poll_interval_s=1",
                          "--window_s=2"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            # Running: the stream holds the lease and has polled its feed (FnApiRunner polls
            # live).
            while not site.requests_to("/feeds/city.xml") and process.poll() is None and \
                    time.monotonic() < started + 120:
                time.sleep(0.2)
            assert lease.read_holder(output) is not None
            time.sleep(2)  # a few polls more
            os.killpg(process.pid, signal.SIGINT)
            out, err = process.communicate(timeout=300)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        assert process.returncode == 0, err[-3000:]
        assert time.monotonic() - started < 600  # it did not run its --duration out
        assert "stopped early" in out, out
        assert " ok: 1 articles, 0 duplicates, 0 errors" in out, out
        assert site.hits["/live/before-city.html"] == 1
        assert _articles(output).column("title").to_pylist() == ["Story before-city"]
        assert lease.read_holder(output) is None  # released
        assert not dataset.pending_intents(output)
        assert not dataset.started_runs(output)
        assert not os.path.exists(os.path.join(output, ".tmp"))
        check = subprocess.run([NEWSBEAM, "inspect", "--output", output, "--check"],
                               capture_output=True, text=True, timeout=300)
        assert check.returncode == 0, check.stdout + check.stderr
