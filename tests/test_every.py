"""`newsbeam run --every`: the loop (which exit codes stop it, Ctrl-C between and during runs),
and end to end against the real 127.0.0.1 news site while it publishes entries: each entry
stored once, each page fetched once, the entry-to-row latency measured; feeds not due skipped
and counted; the defensive full fetch; raw captures in WARC files extracted again."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time

import duckdb
import pytest
from warcio.archiveiterator import ArchiveIterator

from tests.conftest import manifests, read_dataset, run_cli
from tests.newssite import running_site
from newsbeam.pipelines import cli

FAST_FETCH = ["--allow_loopback", "--fetch_delay_s", "0.01", "--max_crawl_delay_s", "0.01",
              "--retry_backoff_s", "0.01", "--read_timeout_s", "2", "--fetch_deadline_s", "5"]


def _loop(statuses, every_s=0.01, max_runs=None):
    """run_every over run_once results (an exit status, or an exception to raise)."""
    calls, logged = [], []

    def run_once():
        calls.append(time.monotonic())
        outcome = statuses[len(calls) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
    status = cli.run_every(run_once, every_s, max_runs, log=logged.append)
    return status, calls, logged


def test_failed_runs_are_logged_and_the_loop_goes_on():
    status, calls, logged = _loop([1, RuntimeError("disk full"), 3, 75, 0], max_runs=5)
    assert (status, len(calls)) == (0, 5)
    assert any("run 2 failed: RuntimeError: disk full" in line for line in logged)
    assert any("run 4 exited 75; next run in" in line for line in logged)


def test_refused_options_stop_the_loop():
    status, calls, logged = _loop([0, cli.EXIT_REFUSED, 0])
    assert (status, len(calls)) == (2, 2) and "stopping" in logged[-1]


def test_max_runs_ends_with_the_last_status_and_runs_start_every_seconds_apart():
    status, calls, _ = _loop([0, 0, 3], every_s=0.3, max_runs=3)
    assert status == 3
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert all(0.28 <= gap < 1.0 for gap in gaps), gaps


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C raises KeyboardInterrupt in the test process even when the suite was started
    with SIGINT ignored (a shell's background job: Python then keeps it ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_a_run_or_while_waiting_ends_the_loop(ctrl_c_raises):
    assert _loop([KeyboardInterrupt()])[:2][0] == cli.EXIT_INTERRUPTED

    def interrupt_soon():
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        return 0
    status, logged = cli.run_every(interrupt_soon, 30.0, None, log=[].append), None
    assert status == cli.EXIT_INTERRUPTED


def test_ctrl_c_that_reaches_another_thread_ends_the_wait_at_once(ctrl_c_raises):
    # The kernel hands a process's SIGINT to any of its threads. Before, the loop's wait (one
    # Event.wait of the whole interval) went on to its end: 60 s here, every_s in use.
    def interrupt_from_another_thread():
        def kill_this_thread():
            time.sleep(0.2)
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        threading.Thread(target=kill_this_thread, daemon=True).start()
        return 0
    started = time.monotonic()
    status = cli.run_every(interrupt_from_another_thread, 60.0, None, log=[].append)
    assert status == cli.EXIT_INTERRUPTED
    assert time.monotonic() - started < 20


def test_sigterm_ends_the_loop_after_the_current_run():
    runs = []

    def run_once():
        runs.append(1)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler runs; the run itself goes on to its end
        return 0
    assert cli.run_every(run_once, 30.0, None, log=[].append) == 0 and len(runs) == 1


def test_every_refuses_a_fixed_run_id_and_max_runs_alone(capsys, tmp_path):
    assert cli.main(["run", "--every", "60", "--run_id", "one", "--output",
                     str(tmp_path / "o")]) == 2
    assert "--run_id one: not with --every" in capsys.readouterr().err
    assert cli.main(["run", "--max_runs", "2", "--output", str(tmp_path / "o")]) == 2
    assert "--max_runs: only with --every" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.fixture
def site():
    with running_site() as running:
        yield running


class Publisher(threading.Thread):
    """Adds an entry to the site's feed every `every_s` seconds until stopped."""

    def __init__(self, site, every_s: float, prefix: str = "live"):
        super().__init__(daemon=True)
        self.site, self.every_s, self.prefix = site, every_s, prefix
        self.stopped = threading.Event()
        self.published = 0

    def run(self):
        while not self.stopped.wait(self.every_s):
            self.published += 1
            slug = f"{self.prefix}{self.published:03d}"
            self.site.add_entry(slug, f"Live story {self.published}", 10 + self.published % 15,
                                path=f"/live/{slug}.html")


def test_run_every_while_the_site_publishes(capsys, tmp_path, site):
    site.add_entry("seed", "The first story", 3)
    output = tmp_path / "out"
    publisher = Publisher(site, every_s=4.0)
    publisher.start()
    try:
        status, printed = run_cli(capsys, "run", "--every", "1", "--max_runs", "4",
                                  "--feed", f"{site.base}/feed.xml", "--output", str(output),
                                  "--min_poll_s", "1", "--quiet", *FAST_FETCH)
    finally:
        publisher.stopped.set()
        publisher.join()
    assert status == 0, printed
    runs = manifests(output)
    assert len(runs) == 4 and all(m["accounting"]["balanced"] for m in runs)
    rows = duckdb.sql(f"""SELECT url, count(*) FROM read_parquet(
        '{output}/articles/**/*.parquet', hive_partitioning = true) GROUP BY url""").fetchall()
    assert all(n == 1 for _, n in rows)  # each entry stored once
    pages = {p: n for p, n in site.hits.items() if p.startswith(("/news/", "/live/"))}
    assert set(pages.values()) == {1}  # each page fetched once
    last_start = dt.datetime.fromisoformat(runs[-1]["started_at"]).timestamp()
    stored = {url for url, _ in rows}
    published_before = [e for e in site.feed_entries if e["added_at"] < last_start - 1]
    assert {e["link"] for e in published_before} <= stored
    assert len(stored) >= 3  # the seed and the entries published while the loop ran
    # Entry-to-row latency: from the entry's appearance to the commit of the run storing it.
    finished = {}
    for manifest in runs:
        for row in duckdb.sql(f"""SELECT url FROM read_parquet('{output}/articles/**/*.parquet',
                hive_partitioning = true) WHERE run_id = '{manifest["run_id"]}'""").fetchall():
            finished[row[0]] = dt.datetime.fromisoformat(manifest["finished_at"]).timestamp()
    latencies = [finished[e["link"]] - e["added_at"] for e in site.feed_entries
                 if e["link"] in finished]
    assert latencies and all(latency > 0 for latency in latencies)
    print(f"entry-to-row latency: {sorted(latencies)}")


def test_feeds_not_due_are_skipped_and_counted(capsys, tmp_path, site):
    site.add_entry("alpha", "Alpha wins", 14)
    output = tmp_path / "out"
    status, printed = run_cli(capsys, "run", "--every", "0.1", "--max_runs", "2", "--feed",
                              f"{site.base}/feed.xml", "--output", str(output), *FAST_FETCH)
    assert status == 0, printed
    first, second = manifests(output)
    assert first["counts"]["feeds_not_due"] == 0 and first["accounting"]["articles"] == 1
    assert second["counts"]["feeds_not_due"] == 1
    assert (second["accounting"]["inputs"], second["accounting"]["skipped_unchanged"],
            second["accounting"]["balanced"]) == (1, 1, True)
    assert len(site.requests_to("/feed.xml")) == 1
    [state] = read_dataset(output / "index" / "feeds").to_pylist()
    assert (state["entries"], state["new_entries"], state["poll_interval_s"],
            state["polls_since_full"]) == (1, 1, 60.0, 0)
    assert (state["next_poll_at"] - state["fetched_at"]).total_seconds() == 60


def test_a_full_fetch_now_and_then_whatever_the_validators(capsys, tmp_path, site):
    site.add_entry("alpha", "Alpha wins", 14)
    output = tmp_path / "out"
    run = lambda: run_cli(capsys, "run", "--feed", f"{site.base}/feed.xml", "--output",
                          str(output), "--full_fetch_every", "3", *FAST_FETCH)
    for _ in range(4):
        status, printed = run()
        assert status == 0, printed
    asked = [headers.get("If-None-Match") for _, headers in site.requests_to("/feed.xml")]
    etag = f'"v{site.feed_version}"'
    assert asked == [None, etag, etag, None]  # the 3rd poll since the 200 is in full
    states = sorted(read_dataset(output / "index" / "feeds").to_pylist(),
                    key=lambda s: s["fetched_at"])
    assert [s["polls_since_full"] for s in states] == [0, 1, 2, 0]
    assert manifests(output)[-1]["counts"]["entries_seen_before"] == 1
    assert site.hits["/news/alpha.html"] == 1


def test_archive_warc_round_trip(capsys, tmp_path, site):
    site.add_entry("alpha", "Alpha wins the cup", 14)
    site.add_entry("beta", "Beta loses the final", 15)
    output, archive = tmp_path / "out", tmp_path / "warc"
    status, printed = run_cli(capsys, "run", "--feed", f"{site.base}/feed.xml", "--output",
                              str(output), "--archive_warc", str(archive), *FAST_FETCH)
    assert status == 0, printed
    files = sorted(archive.iterdir())
    assert files and all(f.name.startswith("newsbeam-") and f.name.endswith(".warc.gz")
                         for f in files)  # no temporary file left
    records = []
    for path in files:
        with open(path, "rb") as stream:
            records += [(r.rec_type, r.rec_headers.get_header("WARC-Target-URI"),
                         r.http_headers.get_header("Content-Type") if r.http_headers else None)
                        for r in ArchiveIterator(stream)]
    kinds = [kind for kind, _, _ in records]
    assert kinds.count("warcinfo") == len(files)
    assert kinds.count("response") == kinds.count("metadata") == 3  # the feed and two pages
    assert {uri for kind, uri, _ in records if kind == "response"} == {
        f"{site.base}/feed.xml", f"{site.base}/news/alpha.html", f"{site.base}/news/beta.html"}

    again = tmp_path / "again"
    status, printed = run_cli(capsys, "run", "--input", str(archive / "*.warc.gz"),
                              "--output", str(again))
    assert status == 0, printed
    # The pages' own text, again; the feed's metadata (its titles) is in the metadata records,
    # which re-extraction does not read.
    query = "SELECT url, text FROM read_parquet('{}/articles/**/*.parquet') ORDER BY url"
    assert duckdb.sql(query.format(again)).fetchall() == duckdb.sql(
        query.format(output)).fetchall()
    # The feed's response is kept, and counted as a skipped record when re-extracted.
    assert manifests(again)[-1]["counts"]["warc_records_skipped"] >= 1 + len(files) + 3


def test_every_and_sitemaps_from_a_config_file(tmp_path):
    (tmp_path / "sitemap.xml").write_text("https://news.test/a.html\n")
    config = tmp_path / "news.yaml"
    config.write_text("every: 300\nmax_runs: 2\nsitemap: [sitemap.xml]\n"
                      "archive_warc: captures\noutput: out\n")
    options, args = cli.parse_run(["--config", str(config)])
    assert (args.every, args.max_runs) == (300.0, 2)
    assert options.sitemap == [str(tmp_path / "sitemap.xml")]
    assert options.archive_warc == str(tmp_path / "captures")
    assert options.input == []  # a sitemap is a source: the seeds are not read
