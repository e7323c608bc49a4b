"""`newsbeam run --every` against the local news site while it publishes: N feeds on 127.0.0.1
(tests/newssite.py), a new entry every --publish_every_s seconds (round robin over the feeds),
and one `newsbeam run --every 60` process writing one dataset. Measured:

- entry-to-row latency: from the moment an entry appears on its feed to the commit of the run
  that stores its row (the run manifest's finished_at), p50 and p95;
- throughput: articles stored per minute of the loop, and each run's elapsed time;
- memory: the resident set of the whole process tree (newsbeam and any worker it starts),
  sampled every second; its peak per run, and the last run's peak against the first's (it must
  not grow with the number of runs).

Short by default (3 minutes, 3 runs); --minutes 10 for the issue's 10-minute figure. With
--compare_cron, the same is measured again for the way it was done before `--every`: a fresh
`newsbeam run` process started every --every_s seconds (cron, a systemd timer), side by side.

    python bench/bench_every.py [--minutes 3] [--feeds 5] [--publish_every_s 6] [--every_s 60]
                                [--compare_cron]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import tree_memory  # noqa: E402
from tests.newssite import running_site  # noqa: E402


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def stored_urls_by_run(output: Path) -> dict[str, str]:
    import duckdb
    rows = duckdb.sql(f"""SELECT url, run_id FROM read_parquet('{output}/articles/**/*.parquet',
                          hive_partitioning = true)""").fetchall()
    return dict(rows)


def run_processes(command: list[str], cron: bool, runs: int, every_s: float,
                  samples: list) -> tuple[int, str]:
    """`newsbeam run --every` as one process, or (cron) a fresh `newsbeam run` every every_s
    seconds, `runs` times; the process tree's memory sampled every second."""
    status, err = 0, ""
    for number in range(1 if not cron else runs):
        started = time.time()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        while process.poll() is None:
            samples.append((time.time(), tree_memory(process.pid)[0]))
            time.sleep(1.0)
        _, err = process.communicate()
        status = status or process.returncode
        if cron and number + 1 < runs:
            time.sleep(max(0.0, started + every_s - time.time()))
    return status, err


def measure(args, cron: bool) -> dict:
    runs = max(1, int(args.minutes * 60 // args.every_s))
    work = Path(tempfile.mkdtemp(prefix="newsbeam-bench-every-"))
    output = work / "output"
    samples: list[tuple[float, int]] = []
    with running_site() as site:
        names = [f"f{k}" for k in range(args.feeds)]
        for name in names:  # every feed has an entry before the first run
            site.publish(name, f"{name}-000", f"First story of {name}")
        stop = threading.Event()

        def publish():
            number = 0
            while not stop.wait(args.publish_every_s):
                number += 1
                name = names[number % len(names)]
                site.publish(name, f"{name}-{number:04d}", f"Story {number} of {name}")
        publisher = threading.Thread(target=publish, daemon=True)
        loop = [] if cron else ["--every", str(args.every_s), "--max_runs", str(runs)]
        command = [str(Path(sys.executable).parent / "newsbeam"), "run", *loop,
                   "--poll_schedule", "adaptive", "--output", str(output),
                   "--allow_loopback", "--fetch_delay_s", "0.05", "--max_crawl_delay_s", "0.05",
                   "--min_poll_s", str(args.every_s / 2), "--progress_interval_s", "0",
                   "--quiet", *[arg for name in names
                                for arg in ("--feed", f"{site.base}/feeds/{name}.xml")]]
        started = time.time()
        publisher.start()
        returncode, err = run_processes(command, cron, runs, args.every_s, samples)
        stop.set()
        publisher.join()
        ended = time.time()
        entries = [entry for feed in site.feeds.values() for entry in feed]
        page_hits = [n for path, n in site.hits.items() if path.startswith("/live/")]
    manifests = sorted((json.loads(p.read_text()) for p in (output / "_runs").glob("*.json")),
                       key=lambda m: m["started_at"])
    finished = {m["run_id"]: dt.datetime.fromisoformat(m["finished_at"]).timestamp()
                for m in manifests}
    run_of = stored_urls_by_run(output)
    last_start = dt.datetime.fromisoformat(manifests[-1]["started_at"]).timestamp()
    latencies = [finished[run_of[e["link"]]] - e["added_at"] for e in entries
                 if e["link"] in run_of]
    missing = [e["link"] for e in entries if e["link"] not in run_of and
               e["added_at"] < last_start - 1]
    per_run = []
    for manifest in manifests:
        start = dt.datetime.fromisoformat(manifest["started_at"]).timestamp()
        end = finished[manifest["run_id"]]
        peak = max((rss for at, rss in samples if start - 1 <= at <= end + 1), default=0)
        per_run.append({"run_id": manifest["run_id"], "elapsed_s": manifest["elapsed_s"],
                        "articles": manifest["accounting"]["articles"],
                        "feeds_not_due": manifest["counts"].get("feeds_not_due", 0),
                        "feeds_not_modified": manifest["counts"].get("feeds_not_modified", 0),
                        "peak_rss_mib": round(peak / 2**20, 1)})
    minutes = (ended - started) / 60
    summary = {
        "mode": "cron: a process per run" if cron else f"run --every {args.every_s:g}",
        "feeds": args.feeds, "publish_every_s": args.publish_every_s, "every_s": args.every_s,
        "minutes": round(minutes, 2), "runs": len(manifests), "exit_status": returncode,
        "entries_published": len(entries), "articles_stored": len(run_of),
        "missing_published_before_last_run": len(missing),
        "pages_fetched_more_than_once": sum(1 for n in page_hits if n > 1),
        "latency_s": {"p50": round(statistics.median(latencies), 1),
                      "p95": round(percentile(latencies, 0.95), 1),
                      "max": round(max(latencies), 1)} if latencies else None,
        "articles_per_minute": round(len(run_of) / minutes, 2),
        "peak_rss_mib": round(max(rss for _, rss in samples) / 2**20, 1) if samples else None,
        "peak_rss_last_over_first_run": round(per_run[-1]["peak_rss_mib"] /
                                              per_run[0]["peak_rss_mib"], 3)
        if len(per_run) > 1 and per_run[0]["peak_rss_mib"] else None,
        "per_run": per_run,
        "rss_samples_mib": [[round(at - started, 1), round(rss / 2**20, 1)]
                            for at, rss in samples[::5]],
    }
    print(f"\n{summary['mode']}: {args.feeds} feeds, an entry every "
          f"{args.publish_every_s:g} s, {minutes:.1f} min, {len(manifests)} runs "
          f"(exit {returncode})")
    print(f"  entries published {len(entries)}, stored {len(run_of)}, missing "
          f"{len(missing)}, pages fetched twice {summary['pages_fetched_more_than_once']}")
    if latencies:
        print(f"  entry-to-row latency  p50 {summary['latency_s']['p50']} s  p95 "
              f"{summary['latency_s']['p95']} s  max {summary['latency_s']['max']} s")
    print(f"  throughput {summary['articles_per_minute']} articles/min")
    print(f"  {'run':24} {'elapsed s':>9} {'articles':>8} {'not due':>7} {'304':>4} "
          f"{'peak RSS MiB':>12}")
    for run in per_run:
        print(f"  {run['run_id']:24} {run['elapsed_s']:9.1f} {run['articles']:8} "
              f"{run['feeds_not_due']:7} {run['feeds_not_modified']:4} {run['peak_rss_mib']:12}")
    print(f"  peak RSS, last run over first: {summary['peak_rss_last_over_first_run']}")
    if returncode:
        print(err[-3000:], file=sys.stderr)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--feeds", type=int, default=5)
    parser.add_argument("--publish_every_s", type=float, default=6.0)
    parser.add_argument("--every_s", type=float, default=60.0)
    parser.add_argument("--compare_cron", action="store_true",
                        help="also measure a fresh process per run, side by side")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "every.json")
    args = parser.parse_args()
    results = [measure(args, cron=False)]
    if args.compare_cron:
        results.append(measure(args, cron=True))
        every, cron = results
        print(f"\n{'':34} {'--every':>10} {'cron':>10}")
        for name, pick in (("latency p50 s", lambda r: r["latency_s"]["p50"]),
                           ("latency p95 s", lambda r: r["latency_s"]["p95"]),
                           ("articles/min", lambda r: r["articles_per_minute"]),
                           ("mean run elapsed s", lambda r: round(statistics.mean(
                               run["elapsed_s"] for run in r["per_run"]), 1)),
                           ("peak RSS MiB", lambda r: r["peak_rss_mib"])):
            print(f"  {name:32} {pick(every):>10} {pick(cron):>10}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results if args.compare_cron else results[0], indent=2))


if __name__ == "__main__":
    main()
