"""Saved pages from ../shared/data/html-dev (German-heavy, many sites) through the pipeline:
every article lands in one of the 18 topic partitions; entities are for the languages with a
model installed (English, French); the classifier reads every language.
Skips without the data."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SHARED_DATA, manifests, read_dataset, run_cli
from newsbeam.transforms.topics import DEFAULT_TOPIC_THRESHOLD, TOPIC_SLUGS

HTML_DEV = SHARED_DATA / "html-dev"
SAMPLE_SIZE = 40

pytestmark = pytest.mark.skipif(not (HTML_DEV / "evaldata.json").is_file(),
                                reason=f"no development data at {HTML_DEV}")


def test_every_article_has_a_topic_partition_and_entities_only_with_a_model(capsys, tmp_path):
    evaldata = json.loads((HTML_DEV / "evaldata.json").read_text())
    folder = tmp_path / "pages"
    folder.mkdir()
    for key in sorted(evaldata)[7::23][:SAMPLE_SIZE]:
        source = HTML_DEV / "html" / f"{evaldata[key]['file']}.gz"
        if source.is_file():
            (folder / source.name).symlink_to(source)
    output = tmp_path / "out"
    status, printed = run_cli(capsys, "run", "--input", str(folder), "--output", str(output))
    assert status == 0, printed
    assert manifests(output)[-1]["accounting"]["balanced"]

    articles = read_dataset(output / "articles").to_pylist()
    assert len(articles) >= SAMPLE_SIZE // 2
    folders = {p.parent.name for p in (output / "articles").rglob("*.parquet")}
    assert folders <= {f"topic={slug}" for slug in TOPIC_SLUGS}
    sources = set()
    other_languages_classified = 0
    for row in articles:
        assert row["topic"] in TOPIC_SLUGS
        sources.add(row["topic_source"])
        if row["topic_source"] == "section":
            assert row["topic_confidence"] == 1.0
        elif row["topic_source"] == "classifier":
            assert len(row["topic_scores"]) == 3 and row["topic_confidence"] >= DEFAULT_TOPIC_THRESHOLD
        else:
            assert row["topic"] == "unclassified"
            assert row["topic_scores"] == [] or row["topic_confidence"] < DEFAULT_TOPIC_THRESHOLD
        if row["language"] not in (None, "en", "fr"):
            # NER knows English and French only; the classifier's multilingual head reads the
            # other languages.
            assert row["entities"] == []
            other_languages_classified += row["topic_source"] == "classifier"
    english = [row for row in articles if row["language"] == "en"]
    assert english and sum(bool(row["entities"]) for row in english) >= 0.8 * len(english)
    assert "classifier" in sources
    assert other_languages_classified >= 5
