"""Real saved pages from ../shared/data/html-dev through the whole pipeline: every page is
accounted for, and newsbeam's cleaning keeps what trafilatura alone finds. Skips without the
data."""

from __future__ import annotations

import gzip
import json
import unicodedata
from pathlib import Path

import pytest
import trafilatura

from tests.conftest import SHARED_DATA, manifests, read_dataset, run_cli

HTML_DEV = SHARED_DATA / "html-dev"
SAMPLE_SIZE = 60

pytestmark = pytest.mark.skipif(not (HTML_DEV / "evaldata.json").is_file(),
                                reason=f"no development data at {HTML_DEV}")


def _plain(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def _snippet_scores(text: str, expected: dict) -> tuple[int, int, int, int]:
    """(wanted snippets found, wanted, unwanted snippets found, unwanted)."""
    plain = _plain(text)
    wanted = [_plain(s) for s in expected.get("with", [])]
    unwanted = [_plain(s) for s in expected.get("without", [])]
    return (sum(s in plain for s in wanted), len(wanted),
            sum(s in plain for s in unwanted), len(unwanted))


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict]:
    """Every 16th page of the evaluation set (a stable spread of sites), linked into a folder."""
    evaldata = json.loads((HTML_DEV / "evaldata.json").read_text())
    folder = tmp_path_factory.mktemp("html-dev")
    chosen = {}
    for key in sorted(evaldata)[::16][:SAMPLE_SIZE]:
        source = HTML_DEV / "html" / f"{evaldata[key]['file']}.gz"
        if source.is_file():
            (folder / source.name).symlink_to(source)
            chosen[source.name] = evaldata[key]
    return folder, chosen


def test_real_pages_are_accounted_for_and_keep_trafilaturas_text(capsys, sample, tmp_path):
    folder, expected = sample
    output = tmp_path / "out"
    status, printed = run_cli(capsys, "run", "--input", str(folder), "--output", str(output),
                              "--min_words", "1")
    assert status == 0, printed
    accounting = manifests(output)[-1]["accounting"]
    assert accounting["inputs"] == len(expected) and accounting["balanced"]

    texts = {}
    for row in read_dataset(output / "articles").to_pylist():
        texts[Path(row["source_uri"]).name] = row["text"]
    for row in read_dataset(output / "duplicates").to_pylist() if (output / "duplicates").exists() \
            else []:
        texts.setdefault(Path(row["source_uri"]).name, "")

    ours, bare = [0, 0, 0, 0], [0, 0, 0, 0]
    for name, gold in expected.items():
        html = gzip.decompress((folder / name).read_bytes())
        bare_text = trafilatura.extract(html, include_comments=False, include_tables=False) or ""
        for total, scores in ((ours, _snippet_scores(texts.get(name, ""), gold)),
                              (bare, _snippet_scores(bare_text, gold))):
            for i, value in enumerate(scores):
                total[i] += value
    recall, bare_recall = ours[0] / ours[1], bare[0] / bare[1]
    noise, bare_noise = ours[2] / ours[3], bare[2] / bare[3]
    print(f"snippets kept: newsbeam {recall:.3f}, trafilatura {bare_recall:.3f}; "
          f"unwanted: newsbeam {noise:.3f}, trafilatura {bare_noise:.3f}")
    # Cleaning may drop a boilerplate line trafilatura kept, never a real share of the text.
    assert recall >= bare_recall - 0.02
    assert noise <= bare_noise + 0.02
    assert recall >= 0.8
