"""Builds transforms/data/story_background.json.gz: document frequencies of content terms over
general English news, the background the story stage adds to a run's own IDF statistics (so a
small run does not weigh every shared word alike).

Sources (../shared/data/topics-train, see its README): the 10,000 HuffPost headlines with short
descriptions (commonly cited as CC BY 4.0; Misra 2022, "News Category Dataset") and the 472
English MasakhaNEWS dev articles (AFL-3.0). Only per-term document counts of terms that occur in
at least two documents are shipped: no text.

    python bench/make_story_background.py [--data DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from newsbeam.transforms.stories import BACKGROUND_PATH, story_term_counts  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "NEWSBEAM_SHARED_DATA", HERE.parent.parent / "shared" / "data")))
    args = parser.parse_args(argv)
    folder = args.data / "topics-train"
    df, documents = Counter(), 0
    with open(folder / "huffpost-headlines-sample.jsonl") as stream:
        for line in stream:
            row = json.loads(line)
            df.update(set(story_term_counts(row["headline"], row["short_description"])))
            documents += 1
    with open(folder / "bbc-masakhane-train.jsonl") as stream:
        for line in stream:
            row = json.loads(line)
            if row["id"].startswith("masakhane"):  # the BBC part is non-commercial only
                df.update(set(story_term_counts(row["title"], row["text"])))
                documents += 1
    table = {"documents": documents,
             "sources": ["HuffPost News Category Dataset sample (CC BY 4.0)",
                         "MasakhaNEWS English dev split (AFL-3.0)"],
             "df": {term: count for term, count in sorted(df.items()) if count >= 2}}
    with gzip.open(BACKGROUND_PATH, "wt", encoding="utf-8") as stream:
        json.dump(table, stream, separators=(",", ":"))
    print(f"{BACKGROUND_PATH}: {documents} documents, {len(table['df'])} terms")


if __name__ == "__main__":
    main()
