"""End-to-end throughput and peak memory of `newsbeam run` on the html-dev pages, beside the bare
library's own loop (trafilatura over the same pages) measured in the same run.

Each variant runs in its own process, in rotation, --repeats times; the table gives medians and
the ratio to the bare loop. Peak memory is the largest resident set of the whole process tree
(newsbeam's extraction child included), sampled every 20 ms from /proc.

    python bench/bench_extract.py [--data ../shared/data] [--repeats 3] [--limit N]
"""

from __future__ import annotations

import argparse
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
DEFAULT_DATA = Path(os.environ.get("NEWSBEAM_SHARED_DATA", ROOT.parent / "shared" / "data"))

# The bare loop: read, decompress and extract every page, as a user of trafilatura alone would,
# with the settings newsbeam uses.
BARE_LOOP = """
import gzip, sys, trafilatura
from pathlib import Path
kept = 0
for path in sorted(Path(sys.argv[1]).glob("*.html.gz")):
    text = trafilatura.extract(gzip.decompress(path.read_bytes()), with_metadata=True,
                               include_comments=False, include_tables=False)
    kept += text is not None
print(kept)
"""


def _tree_rss_kib(root_pid: int) -> int:
    """Resident memory of a process and all its descendants, in KiB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/status") as status:
                rss[int(entry)] = next((int(line.split()[1]) for line in status
                                        if line.startswith("VmRSS:")), 0)
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def measure(command: list[str]) -> dict:
    """Wall time and peak tree RSS of a command; its stdout."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=ROOT)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_kib(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed ({process.returncode}):\n{stderr[-3000:]}")
    return {"seconds": elapsed, "peak_rss_mib": peak / 1024, "stdout": stdout}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N pages")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "extract.json")
    args = parser.parse_args()

    pages_dir = args.data / "html-dev" / "html"
    if not pages_dir.is_dir():
        print(f"skipped: no pages at {pages_dir} (set --data or NEWSBEAM_SHARED_DATA)")
        return 0
    with tempfile.TemporaryDirectory(prefix="newsbeam-bench-") as work:
        pages = sorted(pages_dir.glob("*.html.gz"))[: args.limit or None]
        inputs = Path(work) / "pages"
        inputs.mkdir()
        for page in pages:
            (inputs / page.name).symlink_to(page.resolve())
        newsbeam = str(Path(sys.executable).parent / "newsbeam")
        variants = {
            "trafilatura loop (bare)": lambda run: [sys.executable, "-c", BARE_LOOP, str(inputs)],
            "newsbeam run, 1 process": lambda run: [
                newsbeam, "run", "--input", str(inputs), "--output", f"{work}/out-1-{run}",
                "--progress_interval_s", "0", "--quiet"],
            "newsbeam run, 2 processes": lambda run: [
                newsbeam, "run", "--input", str(inputs), "--output", f"{work}/out-2-{run}",
                "--progress_interval_s", "0", "--quiet", "--direct_num_workers=2",
                "--direct_running_mode=multi_processing"],
        }
        results: dict[str, list[dict]] = {name: [] for name in variants}
        for run in range(args.repeats):
            for name, command in variants.items():
                results[name].append(measure(command(run)))
                print(f"  run {run + 1}/{args.repeats} {name}: "
                      f"{results[name][-1]['seconds']:.1f} s", file=sys.stderr)
        manifest = json.loads(next((Path(work) / "out-1-0" / "_runs").glob("*.json")).read_text())

    bare_seconds = statistics.median(r["seconds"] for r in results["trafilatura loop (bare)"])
    summary = {"pages": len(pages), "repeats": args.repeats,
               "articles": manifest["accounting"]["articles"],
               "errors_by_stage": manifest["errors_by_stage"], "variants": {}}
    print(f"\n{len(pages)} pages from {pages_dir}; medians of {args.repeats} runs each, "
          "run in rotation\n")
    print(f"{'variant':30} {'seconds':>8} {'pages/s':>8} {'x bare':>7} {'peak RSS MiB':>13}")
    for name, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        peak = statistics.median(r["peak_rss_mib"] for r in runs)
        summary["variants"][name] = {"median_seconds": round(seconds, 2),
                                     "pages_per_s": round(len(pages) / seconds, 1),
                                     "throughput_vs_bare": round(bare_seconds / seconds, 3),
                                     "median_peak_rss_mib": round(peak, 1),
                                     "all_seconds": [round(r["seconds"], 2) for r in runs]}
        print(f"{name:30} {seconds:8.1f} {len(pages) / seconds:8.1f} "
              f"{bare_seconds / seconds:7.2f} {peak:13.0f}")
    print(f"\nnewsbeam kept {summary['articles']} articles; errors: "
          f"{summary['errors_by_stage']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
