"""NewsOptions: every newsbeam flag, with its default, its help and its validation.

Beam's own flags (--runner, --direct_num_workers, --project, --temp_location, ...) are parsed by
Beam; newsbeam's live here so that `newsbeam run --help`, Dataflow templates and the pipeline
read one definition.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import sys
from pathlib import Path

from apache_beam.options.pipeline_options import PipelineOptions

DEFAULT_OUTPUT = "./output"
# The local runner that needs no network. Beam's DirectRunner first tries to download the Prism
# runner binary, which an offline machine waits on before falling back.
DEFAULT_RUNNER = "FnApiRunner"


RUN_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class InvalidOptions(ValueError):
    """The flags cannot make a run; `problems` says why, a sentence each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def bundled_seeds() -> str:
    """The seeds/ folder shipped with newsbeam: beside the source tree, or installed under
    <prefix>/share/newsbeam/seeds by a non-editable install."""
    beside_source = Path(__file__).resolve().parent.parent / "seeds"
    if beside_source.is_dir():
        return str(beside_source)
    return str(Path(sys.prefix) / "share" / "newsbeam" / "seeds")


def new_run_id(now: dt.datetime) -> str:
    """'20260214-103000-1a2b3c': sortable by start time, unique across concurrent runs."""
    return f"{now.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"{value} is not a positive whole number")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError(f"{value} is not a positive number")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{value} is negative")
    return value


class NewsOptions(PipelineOptions):
    """newsbeam's flags (argparse, through Beam's PipelineOptions)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("newsbeam")
        group.add_argument(
            "--input", action="append", default=None, metavar="PATH|DIR|GLOB",
            help="What to ingest; repeatable. A file, a folder (read recursively, dot-files "
                 "skipped) or a glob, local or on cloud storage (gs://...). By extension: "
                 ".txt/.md plain text, .html/.htm pages, .jsonl one article per line; any of "
                 "them optionally .gz. Default: the bundled seeds/.")
        group.add_argument(
            "--output", default=DEFAULT_OUTPUT, metavar="DIR",
            help="The dataset folder, local or gs://...; later runs add to it. "
                 f"Default: {DEFAULT_OUTPUT}.")
        group.add_argument(
            "--run_id", default=None,
            help="Name of this run in the manifest and file names. Default: start time (UTC) "
                 "and a random suffix.")
        group.add_argument(
            "--max_document_bytes", type=_positive_int, default=10 * 2**20, metavar="BYTES",
            help="Largest document read (a file, decompressed, or one JSONL line); a larger one "
                 "is an errors/ row (too_large). Default: 10 MiB.")
        group.add_argument(
            "--extraction_timeout_s", type=_positive_float, default=30.0, metavar="SECONDS",
            help="Longest time extraction may spend on one page before it becomes an errors/ row "
                 "(extraction_timeout). Default: 30.")
        group.add_argument(
            "--min_words", type=_non_negative_int, default=10,
            help="Fewest words of main text an article needs; fewer is an errors/ row "
                 "(empty_extraction). Default: 10.")
        group.add_argument(
            "--rows_per_file", type=_positive_int, default=100_000,
            help="Most rows in one Parquet file. Default: 100000.")
        group.add_argument(
            "--row_group_rows", type=_positive_int, default=10_000,
            help="Most rows in one Parquet row group. Default: 10000.")
        group.add_argument(
            "--story_window_hours", type=_positive_float, default=72.0, metavar="HOURS",
            help="Articles published further apart than this are never one story. Default: 72.")
        group.add_argument(
            "--story_link_threshold", type=_positive_float, default=0.22, metavar="COSINE",
            help="TF-IDF cosine an article needs with a story's lead to join the story. "
                 "Default: 0.22 (tuned on bench/bench_stories.py).")
        group.add_argument(
            "--index_max_age_days", type=_positive_float, default=30.0, metavar="DAYS",
            help="Signatures and story leads stored longer ago than this are not compared with "
                 "new articles (exact re-runs are still recognised). Default: 30.")
        group.add_argument(
            "--progress_interval_s", type=float, default=15.0, metavar="SECONDS",
            help="How often each worker logs its progress; 0 turns it off. Default: 15.")

    def news_values(self) -> dict:
        """Every newsbeam flag with its value, defaults included."""
        import argparse
        parser = argparse.ArgumentParser(add_help=False)
        self._add_argparse_args(parser)
        return {name: getattr(self, name) for name in vars(parser.parse_args([]))}

    def validate_news(self) -> list[str]:
        """Problems with the newsbeam flags, as sentences; empty when all is well."""
        from apache_beam.io.filesystems import FileSystems

        from transforms.sinks import manifest_path
        from transforms.sources import has_wildcard, is_local
        problems = []
        if self.run_id is not None:
            if not RUN_ID.fullmatch(self.run_id):
                problems.append(f"--run_id {self.run_id}: use 1-64 of a-z 0-9 . _ - "
                                "(starting with a letter or digit)")
            elif FileSystems.exists(manifest_path(self.output, self.run_id)):
                problems.append(f"--run_id {self.run_id}: a run of that name already wrote to "
                                f"{self.output}; run ids name files, so each run needs its own")
        for path in self.input or []:
            if is_local(path) and not has_wildcard(path) and \
                    not os.path.exists(os.path.expanduser(path)):
                problems.append(f"--input {path}: no such file or folder")
        if is_local(self.output) and os.path.isfile(os.path.expanduser(self.output)):
            problems.append(f"--output {self.output}: is a file, not a folder")
        return problems
