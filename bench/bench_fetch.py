"""Web-source benchmarks: memory of WARC reading against archive size, and the cost of the
safe HTTP client against a bare http.client loop.

1. WARC: archives of N and 10*N HTML response records (bodies: the html-dev pages, cycled, each
   under its own URL), read record by record by newsbeam's reader (transforms/warc.py, what
   `newsbeam run --input x.warc.gz` uses), each in a fresh process. Reported: peak RSS, the
   growth over the process's RSS after imports, and time. Memory that does not grow with the
   archive shows as a growth ratio near 1 for 10x the records.
   The same two archives (at --pipeline_records) also go through `newsbeam run` end to end, to
   show what the whole local run (FnApiRunner) holds: peak RSS of its largest process.
2. Fetch: the same pages served by a local server on 127.0.0.1, fetched by newsbeam's HttpClient
   (address check, pinned connection, capped reading, and decoding to text with charset
   detection where the declared charset is wrong) and by a bare http.client loop (bytes only),
   in rotation, --repeats times; medians and the ratio.

    python bench/bench_fetch.py [--data ../shared/data] [--records 300] [--pipeline_records 100]
                                [--repeats 3]

Writes bench/results/fetch.json. Never touches any address but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(os.environ.get("NEWSBEAM_SHARED_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT))

READ_WARC = """
import resource, sys, time
from newsbeam.transforms.warc import warc_outcomes
def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmRSS:"))
after_imports = rss_kib()
start = time.perf_counter()
pages = 0
with open(sys.argv[1], "rb") as stream:
    for outcome in warc_outcomes(stream, sys.argv[1], 10 * 2**20):
        pages += outcome[0] == "document"
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(pages, after_imports, peak, elapsed)
"""


def load_pages(data: Path) -> list[bytes]:
    return [gzip.decompress(p.read_bytes())
            for p in sorted((data / "html-dev" / "html").glob("*.html.gz"))]


def write_warc(path: Path, pages: list[bytes], records: int) -> int:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter
    with open(path, "wb") as stream:
        writer = WARCWriter(stream, gzip=True)
        for number in range(records):
            body = pages[number % len(pages)]
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")],
                                       protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(
                f"https://bench.test/page/{number}", "response", payload=io.BytesIO(body),
                length=len(body), http_headers=headers))
    return path.stat().st_size


def bench_warc(pages: list[bytes], records: int, folder: Path) -> list[dict]:
    rows = []
    for factor in (1, 10):
        path = folder / f"bench-{factor}x.warc.gz"
        size = write_warc(path, pages, records * factor)
        out = subprocess.run([sys.executable, "-c", READ_WARC, str(path)], check=True,
                             capture_output=True, text=True, cwd=ROOT).stdout.split()
        read, after_imports, peak, elapsed = int(out[0]), int(out[1]), int(out[2]), float(out[3])
        rows.append({"records": records * factor, "pages_read": read,
                     "archive_mib": round(size / 2**20, 1), "peak_rss_mib": round(peak / 1024, 1),
                     "growth_mib": round((peak - after_imports) / 1024, 1),
                     "seconds": round(elapsed, 2)})
        path.unlink()
    return rows


def bench_pipeline(pages: list[bytes], records: int, folder: Path) -> list[dict]:
    """`newsbeam run` over WARCs of `records` and 10x as many pages: time and the peak RSS of
    its largest process (the extraction child included, as a waited-for descendant)."""
    import resource
    rows = []
    for factor in (1, 10):
        path = folder / f"run-{factor}x.warc.gz"
        write_warc(path, pages, records * factor)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "newsbeam"), "run", "--quiet",
                        "--input", str(path), "--output", str(folder / f"out-{factor}x")],
                       check=True, capture_output=True, cwd=ROOT)
        elapsed = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        rows.append({"records": records * factor, "seconds": round(elapsed, 1),
                     "peak_rss_mib": round(peak / 1024, 1) if peak > before else None})
    return rows


def serve(pages: list[bytes]):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            body = pages[int(self.path.rsplit("/", 1)[1]) % len(pages)]
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def bare_loop(port: int, count: int) -> int:
    import http.client
    total = 0
    for number in range(count):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", f"/page/{number}")
        total += len(connection.getresponse().read())
        connection.close()
    return total


def newsbeam_loop(port: int, count: int) -> int:
    from newsbeam.transforms.fetch import FetchPolicy, HttpClient, decode_html
    client = HttpClient(FetchPolicy(allow_loopback=True))
    total = 0
    for number in range(count):
        response = client.get(f"http://127.0.0.1:{port}/page/{number}", html_only=True)
        total += len(decode_html(response.body, response.headers.get("content-type", "")))
    return total


def bench_client(pages: list[bytes], count: int, repeats: int) -> dict:
    import newsbeam.transforms.fetch  # noqa: F401 - imported before the clock starts
    server = serve(pages)
    port = server.server_address[1]
    times: dict[str, list[float]] = {"bare http.client": [], "newsbeam HttpClient": []}
    try:
        for _ in range(repeats):
            for name, loop in (("bare http.client", bare_loop),
                               ("newsbeam HttpClient", newsbeam_loop)):
                start = time.perf_counter()
                loop(port, count)
                times[name].append(time.perf_counter() - start)
    finally:
        server.shutdown()
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {"pages": count, "repeats": repeats,
            "median_s": {k: round(v, 3) for k, v in medians.items()},
            "pages_per_s": {k: round(count / v, 1) for k, v in medians.items()},
            "time_vs_bare": round(medians["newsbeam HttpClient"] / medians["bare http.client"],
                                  2)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--pipeline_records", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if not (args.data / "html-dev").is_dir():
        sys.exit(f"no html-dev pages under {args.data} (--data or NEWSBEAM_SHARED_DATA)")
    pages = load_pages(args.data)
    with tempfile.TemporaryDirectory() as folder:
        warc = bench_warc(pages, args.records, Path(folder))
        pipeline = bench_pipeline(pages, args.pipeline_records, Path(folder))
    client = bench_client(pages, min(len(pages), 990), args.repeats)
    results = {"warc": warc, "pipeline": pipeline, "client": client,
               "warc_growth_ratio_10x": round(warc[1]["growth_mib"] / max(warc[0]["growth_mib"],
                                                                            0.1), 2)}
    print("WARC reading (fresh process each):")
    print(f"  {'records':>8} {'archive MiB':>12} {'peak RSS MiB':>13} {'growth MiB':>11} "
          f"{'s':>6}")
    for row in warc:
        print(f"  {row['records']:>8} {row['archive_mib']:>12} {row['peak_rss_mib']:>13} "
              f"{row['growth_mib']:>11} {row['seconds']:>6}")
    print("newsbeam run over a WARC (largest process; None: no new peak over the 1x run):")
    for row in pipeline:
        print(f"  {row['records']:>8} records {row['seconds']:>7} s  peak RSS "
              f"{row['peak_rss_mib']} MiB")
    print(f"HTTP client over {client['pages']} local pages, median of {client['repeats']}:")
    for name, seconds in client["median_s"].items():
        print(f"  {name:<22} {seconds:>7.2f} s  {client['pages_per_s'][name]:>7} pages/s")
    print(f"  time vs bare: {client['time_vs_bare']}")
    out = ROOT / "bench" / "results" / "fetch.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
