"""Shared fixtures: input folders built from real files, and readers of the written datasets."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = Path(os.environ.get("NEWSBEAM_SHARED_DATA", ROOT.parent / "shared" / "data"))

# A folder of mixed inputs, and what each should become. Every name here is one input, except
# records.jsonl whose lines are inputs of their own.
MIXED_EXPECTED_ERRORS = {
    "image.txt": ("read", "binary_content"),
    "empty.txt": ("read", "empty_input"),
    "big.txt": ("read", "too_large"),
    "bomb.html.gz": ("read", "too_large"),
    "noise.txt": ("extract", "undecodable"),
    "photo.png": ("read", "unsupported_type"),
    "records.jsonl#L3": ("read", "malformed_jsonl"),
    "records.jsonl#L5": ("read", "invalid_record"),
}


@pytest.fixture
def mixed_inputs(tmp_path: Path) -> Path:
    """Seed text, a Markdown note, an HTML page and its gzipped copy, JSONL with good and bad
    lines, a binary file, an empty file, a 50 MB file, a gzip bomb, undecodable bytes, an
    unsupported type and a hidden file."""
    folder = tmp_path / "inputs"
    (folder / "nested").mkdir(parents=True)
    shutil.copy(SEEDS / "000_dac305c5b36f0b2f.txt", folder / "reuters.txt")
    shutil.copy(SEEDS / "004_732ed2892add5ac6.txt", folder / "nested" / "anadolu.txt")
    page = (FIXTURES / "sport-article.html").read_bytes()
    (folder / "sport.html").write_bytes(page)
    (folder / "nested" / "sport-copy.html.gz").write_bytes(gzip.compress(page))
    (folder / "note.md").write_text(
        "# Council approves new budget\n\nThe city council approved a new budget on Tuesday "
        "after a long debate about\nschool funding and road repairs, with seven votes in "
        "favour and two against.\n\nClick here to subscribe to our newsletter.\n")
    records = [
        {"id": 17, "url": "https://news.example.test/business/2022/02/16/markets?utm_medium=x",
         "title": "Markets slide", "published_at": "2022-02-16T09:30:00Z",
         "categories": ["Business"], "publisher": "Example News", "unknown_key": [1, 2],
         "text": "Stocks fell sharply on Wednesday as investors weighed rising tensions in "
                 "eastern Europe and the prospect of faster interest rate rises. Energy shares "
                 "were the only sector to gain as oil prices climbed to a seven-year high."},
        {"id": "h-2", "url": "https://news.example.test/world/ship-rescue",
         "html": "<html><body><article><p>" + "Coast guards rescued twelve sailors from a "
                 "cargo ship that ran aground in a storm off the northern coast on Monday "
                 "night. " * 3 + "</p></article></body></html>"},
    ]
    lines = [json.dumps(records[0]), "", "{not json", json.dumps(records[1]),
             json.dumps({"id": "x3", "title": "a record without a body"})]
    (folder / "records.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    (folder / "empty.txt").write_bytes(b"")
    with open(folder / "big.txt", "wb") as big:  # sparse: 50 MB on paper, nothing on disk
        big.truncate(50 * 2**20)
    (folder / "bomb.html.gz").write_bytes(gzip.compress(b"<p>" + b"a" * (40 * 2**20)))
    (folder / "noise.txt").write_bytes(bytes(range(0x80, 0x100)) * 20)
    (folder / ".hidden.txt").write_text("an editor's swap file, not an input")
    return folder


# 11 files besides records.jsonl (the hidden file is not an input), and the 4 non-blank lines of
# records.jsonl.
MIXED_INPUTS = 11 + 4
MIXED_ARTICLES = 6    # 2 seeds, the page, the Markdown note, 2 good JSONL records
MIXED_DUPLICATES = 1  # the gzipped copy of the page


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    return tmp_path / "output"


def read_dataset(path: Path):
    """A written dataset as an Arrow table, partition columns included."""
    import pyarrow.dataset as ds
    return ds.dataset(str(path), format="parquet", partitioning="hive").to_table()


def run_cli(capsys, *args: str) -> tuple[int, str]:
    """`newsbeam ARGS` in this process; returns (exit status, what it printed)."""
    from newsbeam.pipelines.cli import main
    status = main(list(args))
    return status, capsys.readouterr().out


def manifests(output: Path) -> list[dict]:
    """The run manifests of a dataset, oldest run first."""
    found = [json.loads(p.read_text()) for p in (output / "_runs").glob("*.json")]
    return sorted(found, key=lambda m: m["started_at"])


def all_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory) -> Path:
    """A dataset of two real runs (tests/dataset.py says what they hold), built once per
    session: the inspect, report and query-recipe tests read it and must not change it."""
    import contextlib
    import io

    from newsbeam.pipelines.cli import main
    from tests import dataset
    folder = tmp_path_factory.mktemp("sample")
    first, second = dataset.write_inputs(folder / "inputs", SEEDS)
    output = folder / "output"
    for inputs, run_id in ((first, dataset.FIRST_RUN), (second, dataset.SECOND_RUN)):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            status = main(["run", "--input", str(inputs), "--output", str(output),
                           "--run_id", run_id, "--quiet", "--progress_interval_s", "0"])
        assert status == 0, f"the sample dataset's run {run_id} failed"
        (folder / f"printed-{run_id}.txt").write_text(printed.getvalue())  # for test_summary
    return output
