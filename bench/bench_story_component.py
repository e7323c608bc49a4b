"""Story clustering inside one large component: time per article as the component grows.

A long-running event's coverage can chain into one component of many thousands of articles,
and one worker clusters it (transforms/stories.cluster_component). This times that function
alone on one synthetic component: an article every 10 minutes, each a TF-IDF vector of 30 terms
drawn from 3,000, so most articles lead their own story and the number of stories grows with
the component. An article should cost about the same however long the component is, because it
is compared only with the story leads within the window (72 h: about 430 articles on each
side). Reported: the median of --rounds wall times per size, ms per article, and the ratio to
the smallest size.

    python bench/bench_story_component.py [--sizes 2000 5000 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
RESULTS = HERE / "results"
START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
MINUTES_APART = 10
VOCABULARY = [f"term{i}" for i in range(3000)]
TERMS_PER_ARTICLE = 30


def component(size: int, seed: int = 1) -> list:
    from newsbeam.transforms.stories import StoryDoc, StoryVector, tfidf_vector
    rng = random.Random(seed)
    members = []
    for i in range(size):
        counts = {term: rng.randint(1, 3) for term in rng.sample(VOCABULARY, TERMS_PER_ARTICLE)}
        doc = StoryDoc(f"a{i:07d}", START + dt.timedelta(minutes=MINUTES_APART * i),
                       tuple(sorted(counts.items())))
        members.append(StoryVector(doc, tuple(sorted(tfidf_vector(counts, {}, 10).items())), ()))
    return members


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    from newsbeam.transforms.stories import StoryParams, cluster_component
    params = StoryParams()
    rows = []
    for size in args.sizes:
        members = component(size)
        times, stories = [], 0
        for _ in range(args.rounds):
            started = time.perf_counter()
            stories = len(cluster_component(members, params))
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        rows.append({"articles": size, "stories": stories, "median_s": round(median, 3),
                     "ms_per_article": round(1000 * median / size, 3)})
    smallest = rows[0]["ms_per_article"]
    print(f"{'articles':>9} {'stories':>8} {'median s':>9} {'ms/article':>11} {'vs first':>9}")
    for row in rows:
        row["vs_first"] = round(row["ms_per_article"] / smallest, 2)
        print(f"{row['articles']:>9} {row['stories']:>8} {row['median_s']:>9.2f} "
              f"{row['ms_per_article']:>11.3f} {row['vs_first']:>9.2f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "story_component.json").write_text(json.dumps(
        {"rounds": args.rounds, "minutes_apart": MINUTES_APART, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
