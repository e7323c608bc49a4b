"""The soak of bench/bench_soak.py at 20 runs (`make bench-soak` makes 200): tiny scheduled runs
into one dataset, re-reading the last run's inputs, then a compaction. Each article once after
every step (pyarrow and DuckDB agree, `inspect --check` clean), fewer files after compaction."""

from __future__ import annotations

import pytest

from bench.bench_soak import assert_exactly_once, compact_figures, soak_runs


@pytest.mark.crash
def test_twenty_tiny_runs_then_compaction_store_each_article_once(tmp_path):
    output = tmp_path / "out"
    soaked = soak_runs(output, tmp_path / "in", runs=20, per_run=2, log=lambda _: None)
    assert_exactly_once(output)

    before, after, _ = compact_figures(output, scans=1)

    assert before["rows"] == after["rows"] == soaked["articles"] == 40
    assert before["files"] >= 20 and after["files"] < before["files"] / 5
    assert after["other_files"]["index"] < before["other_files"]["index"]
