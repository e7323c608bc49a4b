"""Fetch concurrency: many hosts, one of them hanging, fetched by the real fetch step.

HOSTS "hosts" (distinct ports on 127.0.0.1, served by a child process) of PAGES pages each, plus
each host's robots.txt. One host hangs: every page of it answers only after the fetch deadline,
so each ends as a `timeout` after --fetch_deadline_s. The requests go through FetchByHost (the
step `newsbeam run` uses for feeds and pages) on FnApiRunner, with the politeness delay between
two requests to one host. Measured, --repeats times each, medians reported:

  all hosts          the whole step, at --fetch_concurrency (default 16) and at 1 (one host
                     after another, what the step did before it fetched hosts concurrently)
  slowest host alone the hanging host's pages only: the floor for the whole step's wall time

and, from the server's log, the shortest gap between two request starts on one host (politeness
holds: never under the delay).

    python bench/bench_fetch_concurrency.py [--hosts 100] [--pages 10] [--repeats 3]

Writes bench/results/fetch_concurrency.json. Never touches any address but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DELAY_S = 0.05
DEADLINE_S = 1.0
HANG_S = 3.0
PAGE = ("<html><head><title>Page</title></head><body><article><p>"
        + "The council met and voted on the budget for the harbour. " * 20
        + "</p></article></body></html>").encode()


# --- The hosts (a child process) -----------------------------------------------------------------


def _handler(log: list, hanging: bool):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            log.append((time.monotonic(), self.path))
            if self.path == "/robots.txt":
                body, kind = b"User-agent: *\nDisallow:\n", "text/plain"
            else:
                if hanging:
                    time.sleep(HANG_S)
                body, kind = PAGE, "text/html; charset=utf-8"
            try:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up (the hanging host)
    return Handler


def serve_hosts(count: int, connection):
    """Serves `count` hosts (the first one hangs); sends their ports, then, when asked, the
    request log of each."""
    logs, servers = [], []
    for number in range(count):
        log: list = []
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(log, hanging=number == 0))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        logs.append(log)
        servers.append(server)
    connection.send([server.server_address[1] for server in servers])
    while True:
        command = connection.recv()
        if command == "logs":
            connection.send([list(log) for log in logs])
        elif command == "clear":
            for log in logs:
                log.clear()
            connection.send("ok")
        else:
            break
    for server in servers:
        server.shutdown()


# --- The fetch step ------------------------------------------------------------------------------


def run_fetch(ports: list[int], pages: int, concurrency: int | None) -> dict:
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from newsbeam.transforms.errors import ERRORS
    from newsbeam.transforms.fetch import FetchByHost, FetchPolicy, FetchRequest

    settings = dict(delay_s=DELAY_S, max_crawl_delay_s=DELAY_S, read_timeout_s=DEADLINE_S,
                    total_timeout_s=DEADLINE_S, retries=0, allow_loopback=True)
    if concurrency is not None:
        settings["concurrency"] = concurrency
    policy = FetchPolicy(**settings)
    requests = [FetchRequest(url=f"http://127.0.0.1:{port}/page/{n}.html", source_uri=str(n))
                for port in ports for n in range(pages)]

    def count(name):
        counter = beam.metrics.Metrics.counter("bench", name)

        def inc(_):
            counter.inc()
        return inc

    start = time.perf_counter()
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        fetched = (pipeline | beam.Create(requests)
                   | FetchByHost(policy, run_id="bench"))
        _ = fetched.responses | "Responses" >> beam.Map(count("responses"))
        _ = fetched[ERRORS] | "Errors" >> beam.Map(count("errors"))
    seconds = time.perf_counter() - start
    counters = {c.key.metric.name: c.committed
                for c in pipeline.result.metrics().query(MetricsFilter())["counters"]}
    return {"seconds": seconds, "responses": counters.get("responses", 0),
            "errors": counters.get("errors", 0)}


def shortest_gap(logs: list[list]) -> float | None:
    gaps = []
    for log in logs:
        times = sorted(t for t, _ in log)
        gaps += [b - a for a, b in zip(times, times[1:])]
    return min(gaps) if gaps else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sequential_repeats", type=int, default=1,
                        help="repeats of the slow one-host-after-another run")
    args = parser.parse_args(argv)
    from newsbeam.transforms.fetch import FetchPolicy
    has_concurrency = "concurrency" in {f.name for f in dataclasses.fields(FetchPolicy)}
    default_concurrency = FetchPolicy().concurrency if has_concurrency else 1

    ours, theirs = multiprocessing.Pipe()
    hosts = multiprocessing.Process(target=serve_hosts, args=(args.hosts, theirs), daemon=True)
    hosts.start()
    ports = ours.recv()
    modes = {"slowest host alone": (ports[:1], None, args.repeats)}
    if has_concurrency:
        modes[f"all hosts, concurrency {default_concurrency}"] = (ports, None, args.repeats)
        modes["all hosts, concurrency 1"] = (ports, 1, args.sequential_repeats)
    else:
        modes["all hosts (this code has no --fetch_concurrency)"] = (
            ports, None, args.sequential_repeats)
    results: dict = {"hosts": args.hosts, "pages_per_host": args.pages, "delay_s": DELAY_S,
                     "deadline_s": DEADLINE_S, "modes": {}}
    try:
        for name, (mode_ports, concurrency, repeats) in modes.items():
            runs, gaps = [], []
            for _ in range(repeats):
                ours.send("clear")
                ours.recv()
                runs.append(run_fetch(mode_ports, args.pages, concurrency))
                ours.send("logs")
                gaps.append(shortest_gap(ours.recv()))
            results["modes"][name] = {
                "median_s": round(statistics.median(r["seconds"] for r in runs), 2),
                "runs_s": [round(r["seconds"], 2) for r in runs],
                "responses": runs[-1]["responses"], "errors": runs[-1]["errors"],
                "shortest_gap_s": round(min(g for g in gaps if g is not None), 4)}
            print(f"{name:<52} median {results['modes'][name]['median_s']:>7.2f} s  "
                  f"{results['modes'][name]}", flush=True)
    finally:
        ours.send("stop")
        hosts.join(timeout=10)
    floor = results["modes"]["slowest host alone"]["median_s"]
    for name, row in results["modes"].items():
        row["vs_slowest_host"] = round(row["median_s"] / floor, 2)
    print(f"\n{args.hosts} hosts x {args.pages} pages, delay {DELAY_S} s, one host hanging "
          f"(deadline {DEADLINE_S} s):")
    print(f"  {'mode':<52} {'median s':>9} {'x slowest host':>15} {'shortest gap s':>15}")
    for name, row in results["modes"].items():
        print(f"  {name:<52} {row['median_s']:>9.2f} {row['vs_slowest_host']:>15.2f} "
              f"{row['shortest_gap_s']:>15.4f}")
    out = ROOT / "bench" / "results" / "fetch_concurrency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
