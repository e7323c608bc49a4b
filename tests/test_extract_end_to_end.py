"""The extraction stage's guard, end to end: an exception while extracting one input is that
input's error row (`internal_error`, or `extraction_failed` when no extraction child could be
started), the other inputs still become articles, and the accounting balances."""

from __future__ import annotations

import shutil

from tests.conftest import FIXTURES, SEEDS, manifests, read_dataset, run_cli
from newsbeam.transforms import extract
from newsbeam.transforms.timelimit import ChildFailed, TimeLimitedWorker


def test_an_exception_extracting_one_input_is_its_error_row(capsys, tmp_path, monkeypatch):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(SEEDS / "000_dac305c5b36f0b2f.txt", inputs / "reuters.txt")
    shutil.copy(FIXTURES / "sport-article.html", inputs / "sport.html")
    (inputs / "cursed.txt").write_text(
        "A text that newsbeam's own code fails on, for this test: the council approved the "
        "library budget on Monday after a long debate about opening hours.")
    (inputs / "cursed.html").write_bytes(
        (FIXTURES / "sport-article.html").read_bytes().replace(b"<body>", b"<body><!--cursed-->"))
    (inputs / "unstartable.html").write_text(
        "<html><body><!--unstartable--><p>A page no child could be started for.</p>"
        "</body></html>")
    real_build_article, real_submit = extract.build_article, TimeLimitedWorker.submit

    def build_article(document, *args):
        if document.source_uri.endswith(("cursed.txt", "cursed.html")):
            raise ValueError(f"unexpected state\nwhile building {document.source_uri}")
        return real_build_article(document, *args)

    def submit(worker, html, url):
        if b"<!--unstartable-->" in (html if isinstance(html, bytes) else html.encode()):
            raise ChildFailed("worker process exited with code 1 before it was ready")
        return real_submit(worker, html, url)

    monkeypatch.setattr(extract, "build_article", build_article)
    monkeypatch.setattr(TimeLimitedWorker, "submit", submit)
    output = tmp_path / "out"

    status, printed = run_cli(capsys, "run", "--input", str(inputs), "--output", str(output))

    assert status == 0, printed
    names = sorted(r["source_uri"].rsplit("/", 1)[1]
                   for r in read_dataset(output / "articles").to_pylist())
    assert names == ["reuters.txt", "sport.html"]
    errors = {r["source_uri"].rsplit("/", 1)[1]: (r["stage"], r["reason"], r["message"])
              for r in read_dataset(output / "errors").to_pylist()}
    assert errors == {
        "cursed.txt": ("extract", "internal_error",
                       f"ValueError: while building {inputs}/cursed.txt"),
        "cursed.html": ("extract", "internal_error",
                        f"ValueError: while building {inputs}/cursed.html"),
        "unstartable.html": ("extract", "extraction_failed",
                             "worker process exited with code 1 before it was ready")}
    manifest = manifests(output)[-1]
    assert manifest["errors_by_stage"] == {
        "extract": {"internal_error": 2, "extraction_failed": 1}}
    assert (manifest["accounting"]["inputs"], manifest["accounting"]["balanced"]) == (5, True)
