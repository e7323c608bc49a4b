"""What a re-run costs when the inputs have not changed (index/inputs, transforms/input_index.py):
`newsbeam run` over the html-dev pages (copied to a temp folder), then again over the same
files, then again after touching 5 % of them (new modification time, same bytes: hashed, not
read). Start-up is a run over an empty folder: Beam, the graph, the models; the figure that
matters is the re-run's time beyond start-up against the first run's.

Each round uses its own output folder: start-up, first run, re-run, touched re-run. Medians of
--repeats rounds.

    python bench/bench_rerun.py [--data ../shared/data] [--repeats 3] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import DEFAULT_DATA, ROOT, measure  # noqa: E402

STEPS = ("start-up (empty folder)", "first run", "re-run, unchanged", "re-run, 5 % touched")


def newsbeam(inputs: Path, output: Path) -> list[str]:
    return [str(Path(sys.executable).parent / "newsbeam"), "run", "--input", str(inputs),
            "--output", str(output), "--progress_interval_s", "0", "--quiet"]


def touch(files: list[Path], share: float) -> int:
    """A new modification time (one minute later) on every 1/share-th file; the bytes stay."""
    step = round(1 / share)
    touched = files[::step]
    for path in touched:
        info = path.stat()
        os.utime(path, (info.st_atime, info.st_mtime + 60))
    return len(touched)


def manifest_of(output: Path) -> dict:
    runs = [json.loads(p.read_text()) for p in (output / "_runs").glob("*.json")]
    return max(runs, key=lambda m: m["started_at"])


def report(seconds: dict, accounting: dict, pages: int, touched: int, rounds: int,
           pages_dir: Path, json_path: Path, quiet: bool = False) -> None:
    """Medians of the rounds so far, printed (unless quiet) and written to json_path."""
    median = {step: statistics.median(values) for step, values in seconds.items()}
    start_up, first = median[STEPS[0]], median[STEPS[1]]
    beyond = lambda step: (median[step] - start_up) / (first - start_up)
    summary = {"pages": pages, "touched": touched, "rounds": rounds, "runs": {}}
    lines = [f"\n{pages} pages from {pages_dir} ({touched} touched); medians of {rounds} "
             "rounds\n",
             f"{'run':26} {'seconds':>8} {'documents read':>15} {'beyond start-up vs first':>25}"]
    for step in STEPS:
        ratio = None if step == STEPS[0] else round(beyond(step), 3)
        summary["runs"][step] = {"median_seconds": round(median[step], 2),
                                 "all_seconds": [round(s, 2) for s in seconds[step]],
                                 "beyond_start_up_vs_first": ratio,
                                 "accounting": accounting[step]}
        lines.append(f"{step:26} {median[step]:8.1f} {accounting[step]['documents_read']:>15} "
                     f"{'' if ratio is None else f'{ratio:.3f}':>25}")
    if not quiet:
        print("\n".join(lines))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(summary, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N pages")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "rerun.json")
    args = parser.parse_args()

    pages_dir = args.data / "html-dev" / "html"
    if not pages_dir.is_dir():
        print(f"skipped: no pages at {pages_dir} (set --data or NEWSBEAM_SHARED_DATA)")
        return 0
    seconds: dict[str, list[float]] = {step: [] for step in STEPS}
    accounting: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="newsbeam-bench-rerun-") as work:
        work = Path(work)
        pages = sorted(pages_dir.glob("*.html.gz"))[: args.limit or None]
        (work / "empty").mkdir()
        for round_ in range(args.repeats):
            inputs = work / f"pages-{round_}"   # copies: touching them leaves the data alone
            inputs.mkdir()
            for page in pages:
                shutil.copy2(page, inputs / page.name)
            output = work / f"out-{round_}"
            runs = [(STEPS[0], work / "empty", work / f"out-empty-{round_}"),
                    (STEPS[1], inputs, output), (STEPS[2], inputs, output),
                    (STEPS[3], inputs, output)]
            for step, folder, out in runs:
                if step == STEPS[3]:
                    touched = touch(sorted(inputs.iterdir()), 0.05)
                seconds[step].append(measure(newsbeam(folder, out))["seconds"])
                accounting[step] = manifest_of(out)["accounting"] | {
                    "documents_read": manifest_of(out)["counts"]["documents"]}
                print(f"  round {round_ + 1}/{args.repeats} {step}: {seconds[step][-1]:.1f} s",
                      file=sys.stderr)
            shutil.rmtree(inputs)
            # Written after every round, so a bench that is stopped keeps what it measured.
            report(seconds, accounting, len(pages), touched, round_ + 1, pages_dir, args.json,
                   quiet=True)

    report(seconds, accounting, len(pages), touched, args.repeats, pages_dir, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
