"""What watching a run costs, and what it shows (transforms/metrics.py, pipelines/progress.py).

1. The price of a live counter and of a stage clock per element: a Beam pipeline on FnApiRunner
   over N integers through a bare DoFn, then through the same DoFn with `metrics.timed` and one
   `metrics.count` per element (what every stage DoFn now pays), alternated, medians of
   --repeats; with the progress side channel on (PROGRESS_DIR_ENV set), as `newsbeam run` has it.
2. A real run over a corpus (default: the html-dev pages), stderr read as it comes: the longest
   silence (no line for that long) between the first line and the summary, and the manifest's
   seconds per stage. With --baseline NEWSBEAM (another install's `newsbeam`, e.g. the main
   checkout's .venv/bin/newsbeam), the same run by it first, side by side.

    python bench/bench_progress.py [--data ../shared/data] [--limit N] [--elements N]
        [--repeats 3] [--baseline PATH] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import apache_beam as beam

from newsbeam.transforms import metrics

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(os.environ.get("NEWSBEAM_SHARED_DATA", ROOT.parent / "shared" / "data"))


class _Bare(beam.DoFn):
    def process(self, element):
        yield element + 1


class _Counted(beam.DoFn):
    @metrics.timed(metrics.STAGE_DEDUP)
    def process(self, element):
        metrics.count("bench_elements")
        yield element + 1


def _pipeline_seconds(fn: beam.DoFn, elements: int) -> float:
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    started = time.perf_counter()
    with beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions([])) as pipeline:
        _ = (pipeline | beam.Create(range(elements)) | beam.ParDo(fn)
             | beam.combiners.Count.Globally())
    return time.perf_counter() - started


def per_element_cost(elements: int, repeats: int) -> dict:
    folder = tempfile.mkdtemp(prefix="bench-progress-")
    os.environ[metrics.PROGRESS_DIR_ENV] = folder
    try:
        bare, counted = [], []
        for _ in range(repeats):
            bare.append(_pipeline_seconds(_Bare(), elements))
            counted.append(_pipeline_seconds(_Counted(), elements))
    finally:
        os.environ.pop(metrics.PROGRESS_DIR_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)
    bare_s, counted_s = statistics.median(bare), statistics.median(counted)
    return {"elements": elements, "bare_s": round(bare_s, 3), "counted_s": round(counted_s, 3),
            "overhead_us_per_element": round((counted_s - bare_s) / elements * 1e6, 2)}


def watched_run(newsbeam: str, inputs: Path, output: Path, workers: int) -> dict:
    """One `newsbeam run`: elapsed, the longest gap between stderr lines, the stage seconds."""
    command = [newsbeam, "run", "--input", str(inputs), "--output", str(output)]
    if workers > 1:
        command += [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
    started = time.monotonic()
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    arrivals: list[float] = []
    reader = threading.Thread(target=lambda: arrivals.extend(time.monotonic() for _ in run.stderr),
                              daemon=True)
    reader.start()
    out = run.stdout.read()  # the summary, at the end; stderr is the reader's alone
    run.wait()
    finished = time.monotonic()
    reader.join(timeout=10)
    if run.returncode != 0:
        raise SystemExit(f"{newsbeam} failed ({run.returncode}):\n{out}")
    marks = [started, *arrivals, finished]  # the summary (stdout) ends the run
    manifest = max((json.loads(p.read_text()) for p in (output / "_runs").glob("*.json")),
                   key=lambda m: m["started_at"])
    return {"newsbeam": newsbeam, "elapsed_s": round(finished - started, 1),
            "stderr_lines": len(arrivals),
            "longest_silence_s": round(max(b - a for a, b in zip(marks, marks[1:])), 1),
            "stage_seconds": manifest.get("stage_seconds"),
            "stage_cpu_seconds": manifest.get("stage_cpu_seconds"),
            "articles": manifest["accounting"]["articles"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=None, help="the first N pages only")
    parser.add_argument("--elements", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=None, metavar="NEWSBEAM")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "progress.json")
    args = parser.parse_args()

    cost = per_element_cost(args.elements, args.repeats)
    print(f"per element, {cost['elements']} elements, medians of {args.repeats}: bare DoFn "
          f"{cost['bare_s']} s, timed + counted {cost['counted_s']} s: "
          f"{cost['overhead_us_per_element']} µs more per element")
    results = {"per_element": cost, "runs": []}
    pages = args.data / "html-dev" / "html"
    if pages.is_dir():
        with tempfile.TemporaryDirectory(prefix="bench-progress-") as scratch:
            inputs = Path(scratch) / "inputs"
            inputs.mkdir()
            for page in sorted(pages.iterdir())[:args.limit]:
                shutil.copy(page, inputs / page.name)
            ours = str(Path(sys.executable).parent / "newsbeam")
            for number, newsbeam in enumerate(filter(None, (args.baseline, ours))):
                results["runs"].append(watched_run(newsbeam, inputs, Path(scratch) / f"out{number}",
                                                   args.workers))
        pages_read = min(args.limit or 10**9, len(list(pages.iterdir())))
        print(f"\n{pages_read} html-dev pages, {args.workers} worker(s):")
        print(f"{'newsbeam':50} {'elapsed s':>9} {'stderr lines':>12} {'longest silence s':>17}")
        for run in results["runs"]:
            print(f"{run['newsbeam']:50} {run['elapsed_s']:>9} {run['stderr_lines']:>12} "
                  f"{run['longest_silence_s']:>17}")
        last = results["runs"][-1]
        if last["stage_seconds"]:
            print("\nseconds per stage (this install's run; wall / CPU, summed over workers):")
            for stage in metrics.STAGES:
                if stage in last["stage_seconds"]:
                    print(f"  {stage:10} {last['stage_seconds'][stage]:>8.1f} "
                          f"{last['stage_cpu_seconds'].get(stage, 0):>8.1f}")
    else:
        print(f"no html-dev pages under {args.data}: the run part is skipped")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
