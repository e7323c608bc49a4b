"""`newsbeam stream` on the local news site (tests/newssite.py): N feeds publishing at a steady
rate for a while; entry-to-row latency p50/p95 (an entry appears on its feed -> its row is in
a committed window: the window manifest's finished_at), throughput, and the peak memory of the
whole process tree over time (sampled every second from /proc).

    nice -n 10 .venv/bin/python bench/bench_stream.py                 # 3 minutes
    nice -n 10 .venv/bin/python bench/bench_stream.py --minutes 10    # the issue's 10 minutes

Writes bench/results/bench_stream.json. `run_stream_bench` is the stream half of
`make bench-stream` (bench/bench_every.py has the `run --every` half).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pyarrow.dataset as pads  # noqa: E402

from bench.common import tree_memory  # noqa: E402
from tests.newssite import running_site  # noqa: E402

NEWSBEAM = str(Path(sys.executable).with_name("newsbeam"))
RESULTS = ROOT / "bench" / "results"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def run_stream_bench(feeds: int = 4, minutes: float = 3.0, every_s: float = 2.0,
                     poll_interval_s: float = 20.0, window_s: float = 30.0,
                     runner: str = "FnApiRunner") -> dict:
    """Streams N feeds that publish an entry every `every_s` seconds (round-robin) for
    `minutes`; returns the figures."""
    duration = minutes * 60
    count = int(duration * 0.8 / every_s)  # the last entries get a poll and a window too
    with tempfile.TemporaryDirectory() as folder, running_site() as site:
        output = os.path.join(folder, "out")
        site.robots = "User-agent: *\n"
        names = [f"feed{n}" for n in range(feeds)]
        for name in names:
            site.publish(name, f"{name}-start")
        words = [NEWSBEAM, "stream", *(f"--feed={site.base}/feeds/{n}.xml" for n in names),
                 f"--output={output}", "--allow_loopback", "--fetch_delay_s=0.05",
                 f"--duration={duration}", f"--poll_interval_s={poll_interval_s}",
                 # The stream's default adaptive schedule, its shortest interval the tick.
                 f"--min_poll_s={poll_interval_s}",
                 f"--window_s={window_s}", f"--runner={runner}", "--quiet"]
        started = time.time()
        process = subprocess.Popen(words, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        publisher = site.publish_steadily(names, every_s, count)
        samples: list[tuple[float, int, int]] = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                samples.append((time.time() - started, *tree_memory(process.pid)))
                stop.wait(1.0)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, err = process.communicate()
        elapsed = time.time() - started
        stop.set()
        sampler.join()
        publisher.join()
        if process.returncode != 0:
            raise RuntimeError(f"newsbeam stream exited {process.returncode}: {err[-2000:]}")

        # When each row became readable: the finished_at of the window manifest that has it.
        committed_at = {}
        for manifest_path in Path(output, "_runs").glob("*-w*.json"):
            manifest = json.loads(manifest_path.read_text())
            committed_at[manifest["run_id"]] = dt.datetime.fromisoformat(
                manifest["finished_at"]).timestamp()
        files = list(Path(output, "articles").rglob("*.parquet"))
        latencies, rows = [], 0
        for file in files:
            commit_id = file.name[len("part-"):].rsplit("-", 1)[0]
            table = pads.dataset(str(file), format="parquet").to_table(columns=["url"])
            for url in table.column("url").to_pylist():
                rows += 1
                slug = url.rsplit("/", 1)[1][:-len(".html")]
                if slug in site.published_at and commit_id in committed_at:
                    latencies.append(committed_at[commit_id] - site.published_at[slug])
        published = count + feeds
        thirds = [max((rss for t, rss, _ in samples if lo <= t < hi), default=0)
                  for lo, hi in ((0, elapsed / 3), (elapsed / 3, 2 * elapsed / 3),
                                 (2 * elapsed / 3, elapsed + 1))]
        pages = sum(n for path, n in site.hits.items() if path.startswith("/live/"))
        return {
            "runner": runner, "feeds": feeds, "minutes": minutes, "publish_every_s": every_s,
            "poll_interval_s": poll_interval_s, "window_s": window_s,
            "entries_published": published, "rows": rows, "pages_fetched": pages,
            "windows_committed": len(committed_at), "elapsed_s": round(elapsed, 1),
            "latency_p50_s": round(statistics.median(latencies), 1) if latencies else None,
            "latency_p95_s": round(percentile(latencies, 0.95), 1) if latencies else None,
            "throughput_rows_per_min": round(rows / (elapsed / 60), 1),
            "peak_rss_mib": round(max(rss for _, rss, _ in samples) / 2**20, 1),
            "processes_first_last": [samples[0][2], samples[-1][2]] if samples else None,
            "peak_processes": max((n for _, _, n in samples), default=0),
            "peak_rss_mib_by_third": [round(r / 2**20, 1) for r in thirds],
            "summary": out.strip().splitlines()[-1] if out.strip() else "",
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--feeds", type=int, default=4)
    parser.add_argument("--every_s", type=float, default=2.0)
    parser.add_argument("--poll_interval_s", type=float, default=20.0)
    parser.add_argument("--window_s", type=float, default=30.0)
    args = parser.parse_args()
    figures = run_stream_bench(args.feeds, args.minutes, args.every_s, args.poll_interval_s,
                               args.window_s)
    print(json.dumps(figures, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_stream.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
