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
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEFAULT_DATA, ROOT, measure  # noqa: E402

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
