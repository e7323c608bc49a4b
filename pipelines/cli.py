"""The `newsbeam` command: run the pipeline, inspect a dataset.

    newsbeam run [--config FILE] [--input PATH|DIR|GLOB ...] [--output DIR] [options]
    newsbeam run --every SECONDS [--max_runs N] [options]      (back-to-back incremental runs)
    newsbeam stream --feed URL ... [--output DIR] [--duration S] [--poll_interval_s S] [options]
    newsbeam inspect [--output DIR] [--run_id ID] [--json] [--runs N] [--check]
    newsbeam report [--output DIR] [--run_id ID] [--file report.html]
    newsbeam compact [--output DIR] [--date FROM[:TO]] [--dataset NAME ...] [--target_file_mib N]
    newsbeam repair [--output DIR] [--drop_duplicate_ids]
    newsbeam --version

Each subcommand is a function that adds its parser (`_add_<command>`) and one that runs it
(`_<command>`), listed in COMMANDS. Whatever a command cannot honour (an unknown flag, a runner
Beam cannot create, a path no filesystem can open) is refused before anything runs: exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import signal
import sys
import threading
import time
from importlib import metadata

# Beam is imported inside the functions, once logging is set up: it logs while it imports.

EXIT_FINISHED = 0       # the run finished and every input is accounted for
EXIT_FAILED = 1         # the run failed, or its accounting does not balance
EXIT_REFUSED = 2        # bad flags or config: nothing ran, nothing was written
EXIT_INPUTS_FAILED = 3  # finished and accounted, but --fail_on_errors any|all: inputs failed
EXIT_LEASE_HELD = 75    # another run is writing --output: nothing was written (EX_TEMPFAIL)
EXIT_INTERRUPTED = 130  # run --every stopped by Ctrl-C (128 + SIGINT, as shells report it)

EXIT_STATUS_HELP = f"""\
Exit status (scripts rely on it, and on the summary's last line):
  {EXIT_FINISHED}  the run finished and every input is accounted for (an article, a duplicate,
     an error row, already ingested or unchanged), even when inputs failed
  {EXIT_FAILED}  the run failed, or the accounting does not balance
  {EXIT_REFUSED}  refused before running: an unknown flag or config key, a bad value, a runner
     or path that cannot be used; nothing was written
  {EXIT_INPUTS_FAILED}  finished and accounted, but inputs failed: any of them with
     --fail_on_errors any, every one with --fail_on_errors all
  {EXIT_LEASE_HELD} another run (or a compaction) is writing --output: nothing was written;
     try again later, or wait with --wait_for_lease_s
  {EXIT_INTERRUPTED} run --every stopped by Ctrl-C
"""

RUN_EPILOG = """\
Apache Beam's options are taken too, for example:
  --runner RUNNER                  default {runner} (local, no network needed);
                                   DataflowRunner for Google Cloud Dataflow
  --direct_num_workers N --direct_running_mode multi_processing
                                   N local worker processes
  --project P --region R --temp_location gs://... --setup_file ./setup.py
                                   what DataflowRunner needs (paths then on gs://)
  --dry_run=true                   with DataflowRunner: build and translate the job, submit
                                   nothing
A flag that neither newsbeam nor Beam knows is refused (exit 2), with the nearest known flag.
Output: OUTPUT/articles/date=YYYY-MM-DD/topic=<slug>/, duplicates/, errors/, stories/, index/
(Parquet) and OUTPUT/_runs/<run_id>.json (the run manifest).

""" + EXIT_STATUS_HELP

# The run command's own flags (not the pipeline's): they stay out of NewsOptions.
_RUN_COMMAND_FLAGS = ("config", "quiet", "fail_on_errors", "every", "max_runs")
# What ends `run --every` instead of the next run: flags or config that cannot make a run (the
# next run would be refused too). A failed run (1), inputs failed (3) and a held lease (75) are
# logged and the loop goes on; Ctrl-C ends it (EXIT_INTERRUPTED).
EVERY_STOPS_ON = frozenset({EXIT_REFUSED})
FAIL_ON_ERRORS = ("never", "any", "all")


def version_text() -> str:
    """'newsbeam 0.1.0 (apache-beam 2.77.0, Python 3.11.9)', from the installed packages."""
    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"
    return (f"newsbeam {version('newsbeam')} (apache-beam {version('apache-beam')}, "
            f"Python {platform.python_version()})")


# --- Parsers -------------------------------------------------------------------------------------


def _add_run_command_flags(parser) -> None:
    """`newsbeam run`'s own flags: in its parser, and among the keys a config file may hold."""
    group = parser.add_argument_group("the command")
    group.add_argument(
        "--config", default=None, metavar="FILE",
        help="A YAML file of options: `name: value` for any flag above or Beam's (runner, "
             "direct_num_workers, ...), a list for a repeatable flag, true/false for a flag "
             "without a value. Relative paths in it are relative to the file. Flags on the "
             "command line win over it. See newsbeam.example.yaml.")
    group.add_argument(
        "--fail_on_errors", choices=FAIL_ON_ERRORS, default="never",
        help=f"Exit {EXIT_INPUTS_FAILED} (instead of {EXIT_FINISHED}) when any input, or every "
             "input, became an error row, so that a scheduler can alert. Default: never (a "
             "run where every input failed still warns on stderr).")
    group.add_argument("--quiet", action="store_true",
                       help="Print only the summary's last line (warnings still go to stderr).")
    group.add_argument(
        "--every", type=_positive_float, default=None, metavar="SECONDS",
        help="Run again and again, a run starting every SECONDS (at once when a run took "
             "longer), each a whole incremental run into --output (its own run id, lease, "
             "commit and manifest); feeds and sitemaps are polled on their adaptive schedule "
             "(--poll_schedule). A failed run is logged and the next one starts; refused "
             f"options stop the loop (exit {EXIT_REFUSED}), and so does Ctrl-C between or "
             f"during runs (exit {EXIT_INTERRUPTED}; a run cut short is recovered by the next).")
    group.add_argument(
        "--max_runs", type=_positive_int, default=None, metavar="N",
        help="With --every: stop after N runs, with the last run's exit status. "
             "Default: no limit.")


def run_options_parser() -> argparse.ArgumentParser:
    """Every flag `newsbeam run` takes: Beam's, newsbeam's and the command's own."""
    from newsbeam.pipelines.options import all_options_parser
    return all_options_parser("newsbeam run", _add_run_command_flags)


def _add_run(commands) -> argparse.ArgumentParser:
    from newsbeam.pipelines.options import DEFAULT_RUNNER, NewsOptions
    run = commands.add_parser(
        "run", help="run the batch pipeline", description="Run the batch pipeline once over "
        "the inputs, adding to the dataset in --output; with --every, again and again.",
        epilog=RUN_EPILOG.format(runner=DEFAULT_RUNNER),
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    NewsOptions._add_argparse_args(run)
    _add_run_command_flags(run)
    run.set_defaults(handler=_run)
    return run


STREAM_EPILOG = """\
Every feed and sitemap (--sitemap, --sitemaps_from_robots: an index's sitemaps in turn) is
polled with a conditional GET at the ticks of --poll_interval_s when it is due (adaptive: as
often as it changes, within --min_poll_s and --max_poll_s; --poll_schedule always: every tick); new entries' pages are fetched one at a
time per host (--archive_warc keeps what was fetched as WARC files). Each --input (a folder, a
glob, local or gs://...) is watched: listed at every poll, and a new or changed file is read
once two polls in a row see the same size and modification time (a file still being written is
not read half; a producer that pauses longer than a poll must write a dot-file and rename it
into place). What came in is committed per fixed --window_s window, in the same layout as
`newsbeam run` (one _runs/<stream id>-w<window end>.json per window), so a later run or stream
dedups against it. --duration or Ctrl-C stops it, committing what it has; a kill leaves nothing
half-written (the next run completes or clears it). Runners: {runner} (local) polls live but
commits every window when it stops; on DataflowRunner the job takes the dataset's writer lease
itself, commits each window as it closes, also reads --pubsub_subscription, and runs until
drained (a drain commits the windows in flight and releases the lease); --dry_run=true builds
and translates it without submitting.
Example:
  newsbeam stream --feed https://example.com/rss.xml --output out --duration 3600 \\
      --poll_interval_s 300 --window_s 300
  newsbeam stream --input incoming/ --output out --poll_interval_s 10 --window_s 60

""" + EXIT_STATUS_HELP


def _add_stream(commands) -> argparse.ArgumentParser:
    from newsbeam.pipelines.options import DEFAULT_RUNNER, NewsOptions
    from newsbeam.pipelines.stream import add_stream_flags
    stream = commands.add_parser(
        "stream", help="poll feeds and watch folders; commit what they bring per window",
        description="Run the streaming pipeline: poll the feeds and watch the --input folders "
        "for as long as it runs and add their new articles to the dataset in --output, a window "
        "at a time.",
        epilog=STREAM_EPILOG.format(runner=DEFAULT_RUNNER),
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    NewsOptions._add_argparse_args(stream)
    add_stream_flags(stream)
    stream.set_defaults(handler=_stream)
    return stream


def _add_inspect(commands) -> argparse.ArgumentParser:
    from newsbeam.pipelines.options import DEFAULT_OUTPUT
    inspect = commands.add_parser(
        "inspect", help="summarise a dataset and its runs",
        description="Print what a dataset holds: articles by topic, language, date source, "
                    "publisher, day, wire agency and entity; duplicates; errors by stage and "
                    "reason; stories; and the last runs that wrote it (from OUTPUT/_runs/).",
        allow_abbrev=False)
    inspect.add_argument("--output", default=DEFAULT_OUTPUT, metavar="DIR",
                         help=f"the dataset folder (default: {DEFAULT_OUTPUT})")
    inspect.add_argument("--run_id", default=None,
                         help="show this run's manifest in full (JSON)")
    _add_inspect_breakdown_args(inspect)
    inspect.add_argument("--check", action="store_true",
                         help="check the dataset's contract (each id once, no half-done "
                              "commits or orphan temp files) and note small files and schema "
                              "versions; exit 1 when it is broken, with the repair command")
    inspect.set_defaults(handler=_inspect)
    return inspect


def _add_compact(commands) -> argparse.ArgumentParser:
    from newsbeam.pipelines.options import DEFAULT_OUTPUT
    from newsbeam.transforms.compact import DATASET_CHOICES
    compact = commands.add_parser(
        "compact", help="merge small files into well-sized ones", allow_abbrev=False,
        description="Rewrite each partition's small files into few large ones (sorted by time, "
                    "row groups of at least 16 MiB or the whole file), atomically for readers, "
                    "under the dataset's writer lease. Rows are unchanged, except that stories/ "
                    "keeps only each story's current row.")
    _add_lease_args(compact, DEFAULT_OUTPUT)
    compact.add_argument("--dataset", action="append", choices=DATASET_CHOICES, default=None,
                         help="what to compact; repeatable (default: all; 'index' is every "
                              "index dataset)")
    compact.add_argument("--date", default=None, metavar="FROM[:TO]",
                         help="only date= partitions in this range (YYYY-MM-DD, inclusive); "
                              "index datasets have no dates and are left out")
    compact.add_argument("--target_file_mib", type=float, default=128.0, metavar="MIB",
                         help="size of the files written (default 128)")
    compact.add_argument("--row_group_mib", type=float, default=32.0, metavar="MIB",
                         help="size of their row groups, or the whole file when smaller "
                              "(default 32)")
    compact.set_defaults(handler=_compact)
    return compact


def _add_repair(commands) -> argparse.ArgumentParser:
    from newsbeam.pipelines.options import DEFAULT_OUTPUT
    repair = commands.add_parser(
        "repair", help="complete interrupted commits, remove orphan temp files",
        allow_abbrev=False,
        description="Under the writer lease: roll forward every commit a killed run left "
                    "half-done, clear runs that never committed and their temp files. Every "
                    "run and compaction does this first; this command does only this.")
    _add_lease_args(repair, DEFAULT_OUTPUT)
    repair.add_argument("--drop_duplicate_ids", action="store_true",
                        help="also rewrite files that hold a second row of an id (stored "
                             "twice by runs before the commit protocol), keeping the first")
    repair.set_defaults(handler=_repair)
    return repair


def _add_lease_args(command: argparse.ArgumentParser, default_output: str) -> None:
    command.add_argument("--output", default=default_output, metavar="DIR",
                         help=f"the dataset folder (default: {default_output})")
    command.add_argument("--wait_for_lease_s", type=float, default=0.0, metavar="SECONDS",
                         help="wait this long for a run that is writing the dataset "
                              "(default 0: exit 75 at once)")


def _add_inspect_breakdown_args(inspect: argparse.ArgumentParser) -> None:
    from newsbeam.pipelines.stats import RUNS
    inspect.add_argument("--json", action="store_true",
                         help="print the breakdowns as one JSON object, for scripts")
    inspect.add_argument("--runs", type=_positive_int, default=RUNS, metavar="N",
                         help=f"list the last N runs (default: {RUNS})")


def _add_report(commands) -> argparse.ArgumentParser:
    from newsbeam.pipelines.options import DEFAULT_OUTPUT
    from newsbeam.pipelines.report import DEFAULT_FILE
    report = commands.add_parser(
        "report", help="write an HTML report of a dataset", allow_abbrev=False,
        description="Write one self-contained HTML page (charts inline, no network needed to "
                    "open it) of what a dataset holds: articles per day and topic, languages, "
                    "date sources, duplicates, stories, entities, wire agencies, errors and "
                    "the run history.")
    report.add_argument("--output", default=DEFAULT_OUTPUT, metavar="DIR",
                        help=f"the dataset folder (default: {DEFAULT_OUTPUT})")
    report.add_argument("--run_id", default=None,
                        help="report only what this run wrote (the run history stays whole)")
    report.add_argument("--file", default=DEFAULT_FILE, metavar="PATH",
                        help=f"where to write the page (default: {DEFAULT_FILE})")
    report.set_defaults(handler=_report)
    return report


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {value}")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="newsbeam", allow_abbrev=False,
        description="News ingestion on Apache Beam: articles from files, feeds, URL lists and\n"
                    "web archives into one clean, deduplicated, partitioned Parquet dataset.",
        epilog=EXIT_STATUS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=version_text(),
                        help="print newsbeam's and Beam's versions")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_command in COMMANDS:
        add_command(commands)
    return parser


def _refuse(command: str, problems: list[str]) -> int:
    for problem in problems:
        print(f"newsbeam {command}: {problem}", file=sys.stderr)
    return EXIT_REFUSED


# --- Summary -------------------------------------------------------------------------------------

SUMMARY_PARTITIONS = 5  # newest and largest partitions listed per dataset; the manifest has all


def _partition_date(partition: str) -> str:
    """'2022-02-16' from 'date=2022-02-16/topic=politics' ('' when there is none)."""
    for segment in partition.split("/"):
        if segment.startswith("date="):
            return segment[len("date="):]
    return ""


def summary_partitions(partitions: dict) -> list[str]:
    """The partition lines of one dataset: every partition, newest first, when there are few;
    else the newest and the largest, and how many more the manifest lists."""
    written = [(name, part["rows"]) for name, part in partitions.items() if name != "."]
    newest = sorted(written, key=lambda p: (_partition_date(p[0]), p[1], p[0]), reverse=True)
    if len(written) <= 2 * SUMMARY_PARTITIONS:
        return [f"    {name}: {rows}" for name, rows in newest]
    newest = newest[:SUMMARY_PARTITIONS]
    largest = sorted(written, key=lambda p: (-p[1], p[0]))[:SUMMARY_PARTITIONS]
    unlisted = len(written) - len(set(newest) | set(largest))
    return ["    newest:", *(f"      {name}: {rows}" for name, rows in newest),
            "    largest:", *(f"      {name}: {rows}" for name, rows in largest),
            f"    ... {unlisted} more partitions (all in the run manifest)"]


def topic_totals(partitions: dict) -> dict[str, int]:
    """Articles written per topic, most first, from the articles/ partitions."""
    totals: dict[str, int] = {}
    for name, part in partitions.items():
        for segment in name.split("/"):
            if segment.startswith("topic="):
                topic = segment[len("topic="):]
                totals[topic] = totals.get(topic, 0) + part["rows"]
    return dict(sorted(totals.items(), key=lambda t: (-t[1], t[0])))


def summary_verdict(manifest: dict) -> str:
    """One line that says how the run went: the summary's last line (all `--quiet` prints)."""
    accounting = manifest["accounting"]
    counts = [f"{accounting['articles']} articles", f"{accounting['duplicates']} duplicates",
              f"{accounting['errors']} errors"]
    if accounting["already_ingested"]:
        counts.append(f"{accounting['already_ingested']} already ingested")
    if accounting.get("skipped_unchanged"):
        counts.append(f"{accounting['skipped_unchanged']} unchanged")
    where = f"output in {manifest['options']['output']}"
    if accounting["balanced"]:
        handled = inputs_handled(accounting)
        every_input_failed = handled and accounting["errors"] == handled
        verdict = "every input failed" if every_input_failed else "ok"
        return f"  {verdict}: {', '.join(counts)}; every input accounted for; {where}"
    return (f"  FAILED: {', '.join(counts)} of {accounting['inputs']} inputs; ACCOUNTING "
            "MISMATCH: inputs != articles + duplicates + errors + already ingested + unchanged; "
            f"{where}")


def stage_cost_lines(manifest: dict) -> list[str]:
    """Wall and CPU seconds per stage, as the manifest records them (none for manifests of
    runs before newsbeam recorded them). Summed over workers, so with several workers a stage
    can take more seconds than the run."""
    wall, cpu = manifest.get("stage_seconds") or {}, manifest.get("stage_cpu_seconds") or {}
    if not wall:
        return []
    from newsbeam.transforms.metrics import STAGES
    lines = ["  time per stage       wall s     CPU s   (summed over workers)"]
    for stage in sorted(wall, key=lambda s: (STAGES.index(s) if s in STAGES else len(STAGES), s)):
        lines.append(f"    {stage:<16} {wall[stage]:>8.1f}  {cpu.get(stage, 0.0):>8.1f}")
    rest = manifest["elapsed_s"] - sum(wall.values())
    if rest > 0:
        lines.append(f"    {'outside stages':<16} {rest:>8.1f}             (start-up, loading "
                     "models, shuffles)")
    return lines


def format_summary(manifest: dict) -> str:
    """The end-of-run summary a person reads: counts per stage, errors by reason, the newest
    and largest partitions written, articles per topic, elapsed time, and a verdict."""
    counts, accounting = manifest["counts"], manifest["accounting"]
    lines = [
        f"newsbeam run {manifest['run_id']}: {manifest['elapsed_s']:.1f} s",
        f"  inputs           {counts['inputs']:>8}",
        f"  read             {counts['documents']:>8}   documents",
        f"  extracted        {counts['extracted']:>8}   articles",
        f"  already ingested {counts['already_ingested']:>8}   (stored by an earlier run)",
        *([f"  unchanged        {accounting['skipped_unchanged']:>8}   (feeds not modified, "
           "entries fetched by an earlier run)"] if accounting.get("skipped_unchanged") else []),
        f"  duplicates       {counts['duplicates']:>8}",
        f"  articles written {accounting['articles']:>8}",
        f"  errors           {counts['errors']:>8}" + (
            f"   ({accounting['errors_recorded_before']} recorded by an earlier run)"
            if accounting["errors_recorded_before"] else ""),
    ]
    for stage, reasons in manifest["errors_by_stage"].items():
        listed = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items()))
        lines.append(f"    {stage}: {listed}")
    lines += stage_cost_lines(manifest)
    articles = manifest["datasets"].get("articles")
    if articles:
        per_topic = ", ".join(f"{topic} {n}"
                              for topic, n in topic_totals(articles["partitions"]).items())
        lines.append(f"  articles per topic: {per_topic}")
    for name, dataset in sorted(manifest["datasets"].items()):
        lines.append(f"  {name}/: {dataset['rows']} rows in {dataset['files']} files")
        lines += summary_partitions(dataset["partitions"])
    lines.append(summary_verdict(manifest))
    return "\n".join(lines)


def parse_run(words: list[str]):
    """`newsbeam run WORDS` -> (the pipeline's NewsOptions, the parsed command line). The config
    file's options come first, so the command line's win. Raises InvalidOptions for a flag or
    key that neither newsbeam nor Beam knows, and for a bad config file."""
    from newsbeam.pipelines import ingest
    from newsbeam.pipelines.config import config_words
    from newsbeam.pipelines.options import InvalidOptions, unknown_flag_problems
    args, rest = build_parser().parse_known_args(["run", *words])
    if args.config:
        from_file = config_words(args.config, run_options_parser, words)
        args, rest = build_parser().parse_known_args(["run", *from_file, *words])
    problems = unknown_flag_problems(rest, run_options_parser())
    if problems:
        raise InvalidOptions(problems + ["(newsbeam run --help lists newsbeam's flags)"])
    return ingest.prepare_options(_news_argv(args) + rest), args


def dry_run_line(record: dict, command: str = "run") -> str:
    transforms = f" ({record['transforms']} transforms)" if record.get("transforms") else ""
    return (f"newsbeam {command} {record['run_id']}: dry run: the job was built and translated for "
            f"{record['runner']}{transforms}; nothing was submitted, nothing ran, nothing was "
            "written")


def inputs_handled(accounting: dict) -> int:
    """The inputs this run dealt with: all of them but those an earlier run already stored
    (or recorded as failed) and those that did not change (feeds answering "not modified")."""
    return (accounting["inputs"] - accounting["already_ingested"]
            - accounting.get("skipped_unchanged", 0))


def exit_status(accounting: dict, fail_on_errors: str) -> int:
    if not accounting["balanced"]:
        return EXIT_FAILED
    failed, handled = accounting["errors"], inputs_handled(accounting)
    if (fail_on_errors == "any" and failed) or \
            (fail_on_errors == "all" and handled and failed == handled):
        return EXIT_INPUTS_FAILED
    return EXIT_FINISHED


def failure_warning(accounting: dict) -> str | None:
    """A loud line for a run whose every input failed: it exits 0 ("accounted for"), which a
    scheduler would otherwise take for success."""
    failed, handled = accounting["errors"], inputs_handled(accounting)
    if handled and failed == handled:
        return (f"newsbeam run: WARNING: every input failed ({failed} of {handled}); no article "
                "was added. The errors are listed above and in errors/; --fail_on_errors all "
                f"makes this exit {EXIT_INPUTS_FAILED}.")
    return None


def _shown(text: str) -> str:
    """What is printed shows no credentials in URLs, and names that are not UTF-8 escaped."""
    from newsbeam.transforms.sources import printable_path
    from newsbeam.transforms.urls import redact_url
    return printable_path(redact_url(text))


def every_problems(args: argparse.Namespace, options) -> list[str]:
    """What `run --every` cannot honour: a fixed run id (each run needs its own)."""
    problems = []
    if args.max_runs is not None and args.every is None:
        problems.append("--max_runs: only with --every")
    if args.every is not None and options.run_id is not None:
        problems.append(f"--run_id {options.run_id}: not with --every, whose runs each need "
                        "their own id (they get one from their start time)")
    return problems


def _run(args: argparse.Namespace, rest: list[str], words: list[str]) -> int:
    from newsbeam.pipelines import ingest
    from newsbeam.pipelines.options import InvalidOptions
    shown = _shown
    try:
        options, args = parse_run(words)
        ingest.check_options(options)
        problems = every_problems(args, options)
        if problems:
            raise InvalidOptions(problems)
    except InvalidOptions as refused:
        return _refuse("run", [shown(problem) for problem in refused.problems])
    if not args.quiet:
        sources = options.input + (options.feed or []) + (options.feeds or []) + \
            (options.sitemap or []) + (options.sitemaps_from_robots or []) + (options.urls or [])
        print(shown(f"newsbeam: reading {', '.join(sources)} -> {options.output}"),
              file=sys.stderr)
    if args.every is not None:
        if options.poll_schedule is None:
            options.poll_schedule = "adaptive"
        return run_every(lambda: _run_once(options, args), args.every, args.max_runs)
    return _run_once(options, args)


def _run_once(options, args: argparse.Namespace) -> int:
    """One run of the pipeline: its summary printed, its exit status returned."""
    from newsbeam.pipelines import ingest
    from newsbeam.pipelines.options import InvalidOptions
    shown = _shown
    from newsbeam.transforms.lease import LeaseHeld
    try:
        manifest = ingest.run_pipeline(options)
    except InvalidOptions as invalid:  # the output changed since the check (a run id taken)
        return _refuse("run", [shown(problem) for problem in invalid.problems])
    except LeaseHeld as held:
        print(shown(f"newsbeam run: nothing written: {held}"), file=sys.stderr)
        return EXIT_LEASE_HELD
    if manifest.get("dry_run"):
        print(dry_run_line(manifest))
        return EXIT_FINISHED
    summary = format_summary(manifest)
    print(summary.splitlines()[-1] if args.quiet else summary)
    warning = failure_warning(manifest["accounting"])
    if warning:
        print(warning, file=sys.stderr)
    return exit_status(manifest["accounting"], args.fail_on_errors)


class _Stop:
    """Set by SIGTERM (systemd stopping the service): the loop ends after the current run."""

    def __init__(self):
        self.event = threading.Event()

    def __call__(self, signum, frame):
        print(f"newsbeam run --every: signal {signum}: stopping after this run", file=sys.stderr)
        self.event.set()


# The longest the loop waits in one call: a signal delivered to another of the process's threads
# (the kernel picks any) does not wake the main thread's wait, so its handler (Ctrl-C's
# KeyboardInterrupt) runs only when that call returns.
SIGNAL_CHECK_S = 0.5


def _wait_for(event: threading.Event, seconds: float, clock) -> bool:
    """Waits until `event` is set (True) or `seconds` have passed by `clock` (False), in short
    calls so that Ctrl-C stops the wait at once whichever thread the signal reached."""
    deadline = clock() + seconds
    while True:
        left = deadline - clock()
        if left <= 0:
            return event.is_set()
        if event.wait(min(left, SIGNAL_CHECK_S)):
            return True


def run_every(run_once, every_s: float, max_runs: int | None, *, clock=time.monotonic,
              log=None) -> int:
    """`run_once()` (-> an exit status) every `every_s` seconds: a run starts every_s after the
    previous one started, or at once when that one took longer. A run's exception is logged as
    a failed run (1) and the loop goes on; a status in EVERY_STOPS_ON ends the loop with it;
    Ctrl-C (KeyboardInterrupt), during a run or while waiting, ends it with 130; SIGTERM ends it
    after the current run. With `max_runs`: the last run's status after that many."""
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    stop = _Stop()
    previous_handler = None
    if threading.current_thread() is threading.main_thread():
        previous_handler = signal.signal(signal.SIGTERM, stop)
    status, runs = EXIT_FINISHED, 0
    try:
        while True:
            started = clock()
            runs += 1
            try:
                status = run_once()
            except KeyboardInterrupt:
                log(f"newsbeam run --every: interrupted during run {runs}; the next run "
                    "recovers what it left")
                return EXIT_INTERRUPTED
            except Exception as error:  # noqa: BLE001 - one failed run, not the end of the loop
                logging.getLogger(__name__).exception("run %d failed", runs)
                log(f"newsbeam run --every: run {runs} failed: {type(error).__name__}: {error}")
                status = EXIT_FAILED
            if status in EVERY_STOPS_ON:
                log(f"newsbeam run --every: run {runs} exited {status}: stopping")
                return status
            if max_runs is not None and runs >= max_runs:
                return status
            if stop.event.is_set():
                return status
            wait = max(0.0, every_s - (clock() - started))
            log(f"newsbeam run --every: run {runs} exited {status}; next run in {wait:.0f} s "
                "(Ctrl-C stops)")
            try:
                if _wait_for(stop.event, wait, clock):
                    return status
            except KeyboardInterrupt:
                log(f"newsbeam run --every: stopped after {runs} runs")
                return EXIT_INTERRUPTED
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)


def parse_stream(words: list[str]):
    """`newsbeam stream WORDS` -> (NewsOptions, StreamSettings, the parsed command line).
    Raises InvalidOptions for a flag neither newsbeam nor Beam knows."""
    from newsbeam.pipelines.options import (DEFAULT_RUNNER, InvalidOptions, NewsOptions,
                                            all_options_parser, unknown_flag_problems)
    from newsbeam.pipelines.stream import add_stream_flags, settings_from
    args, rest = build_parser().parse_known_args(["stream", *words])
    problems = unknown_flag_problems(rest, all_options_parser("newsbeam stream",
                                                              add_stream_flags))
    if problems:
        raise InvalidOptions(problems + ["(newsbeam stream --help lists newsbeam's flags)"])
    stream_flags = [action.dest for action in _stream_flag_actions()]
    options = NewsOptions(_news_argv(args, exclude=stream_flags) + rest)
    from apache_beam.options.pipeline_options import StandardOptions
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = DEFAULT_RUNNER
    return options, settings_from(args), args


def _stream_flag_actions():
    from newsbeam.pipelines.stream import add_stream_flags
    parser = argparse.ArgumentParser(add_help=False)
    add_stream_flags(parser)
    return parser._actions


def _stream(args: argparse.Namespace, rest: list[str], words: list[str]) -> int:
    from newsbeam.pipelines import ingest, stream
    from newsbeam.pipelines.options import InvalidOptions
    from newsbeam.transforms.lease import LeaseHeld
    from newsbeam.transforms.sources import printable_path
    from newsbeam.transforms.urls import redact_url
    shown = lambda text: printable_path(redact_url(text))
    try:
        options, settings, args = parse_stream(words)
        ingest.check_options(options)
        problems = stream.stream_problems(options, settings)
        if problems:
            raise InvalidOptions(problems)
    except InvalidOptions as refused:
        return _refuse("stream", [shown(problem) for problem in refused.problems])
    if not args.quiet:
        sources = [*(options.feed or []), *(options.feeds or []), *(options.sitemap or []),
                   *(options.sitemaps_from_robots or []), *(options.input or [])]
        print(shown(f"newsbeam: streaming {', '.join(sources)}"
                    f" -> {options.output}"), file=sys.stderr)
    try:
        summary = stream.run_stream(options, settings)
    except InvalidOptions as invalid:
        return _refuse("stream", [shown(problem) for problem in invalid.problems])
    except LeaseHeld as held:
        print(shown(f"newsbeam stream: nothing written: {held}"), file=sys.stderr)
        return EXIT_LEASE_HELD
    if summary.get("dry_run"):
        print(dry_run_line(summary, "stream"))
        return EXIT_FINISHED
    if summary.get("submitted"):
        print(submitted_stream_line(summary))
        return EXIT_FINISHED
    print(format_stream_summary(summary, args.quiet))
    return EXIT_FINISHED if summary["balanced"] else EXIT_FAILED


def submitted_stream_line(record: dict) -> str:
    job = record.get("job_id") or "(no job id)"
    return (f"newsbeam stream {record['run_id']}: submitted to {record['runner']} as job {job}; "
            "the job holds the dataset's writer lease and commits a window at a time until it "
            f"is drained (gcloud dataflow jobs drain {job}) or its --duration has passed")


def format_stream_summary(summary: dict, quiet: bool = False) -> str:
    verdict = "ok" if summary["balanced"] else "FAILED: ACCOUNTING MISMATCH"
    stopped = " (stopped early)" if summary["stopped_early"] else ""
    last = (f"  {verdict}: {summary['articles']} articles, {summary['duplicates']} duplicates, "
            f"{summary['errors']} errors, {summary['already_ingested']} already ingested, "
            f"{summary['skipped_unchanged']} unchanged in {summary['windows']} windows"
            f"{stopped}")
    if quiet:
        return last
    return "\n".join([f"newsbeam stream {summary['stream_id']}: {summary['windows']} windows "
                      f"committed, {summary['inputs']} inputs", last])


def _news_argv(args: argparse.Namespace, exclude=()) -> list[str]:
    """The newsbeam flags parsed by argparse, as command-line words for NewsOptions."""
    words = []
    for name, value in vars(args).items():
        if name in ("command", "handler", *_RUN_COMMAND_FLAGS, *exclude) or value is None:
            continue
        if isinstance(value, bool):
            words += [f"--{name}"] if value else []
            continue
        for item in (value if isinstance(value, list) else [value]):
            words.append(f"--{name}={item}")  # one word: a value may start with '-'
    return words


def _inspect_check(args: argparse.Namespace) -> int:
    from newsbeam.transforms.check import check, format_findings
    findings = check(args.output)
    print(format_findings(args.output, findings))
    return 1 if any(f.broken for f in findings) else 0


def _compact(args: argparse.Namespace, rest: list[str], words: list[str]) -> int:
    if rest:
        return _refuse_unknown("compact", rest, _add_compact)
    from newsbeam.transforms import compact
    from newsbeam.transforms.lease import LeaseHeld, LeaseUnsupported
    try:
        dates = compact.parse_date_range(args.date)
    except ValueError as bad:
        print(f"newsbeam compact: --date {bad}", file=sys.stderr)
        return EXIT_REFUSED
    if args.target_file_mib <= 0 or args.row_group_mib <= 0:
        print("newsbeam compact: --target_file_mib and --row_group_mib must be above 0",
              file=sys.stderr)
        return EXIT_REFUSED
    try:
        record = compact.compact(args.output, args.dataset, dates,
                                 int(args.target_file_mib * 2**20),
                                 int(args.row_group_mib * 2**20), args.wait_for_lease_s)
    except LeaseUnsupported as unsupported:
        print(f"newsbeam compact: {unsupported}", file=sys.stderr)
        return EXIT_REFUSED
    except LeaseHeld as held:
        print(f"newsbeam compact: nothing changed: {held}", file=sys.stderr)
        return EXIT_LEASE_HELD
    if record["recovered"]:
        print(f"recovered first: {record['recovered']}")
    if not record["datasets"]:
        print(f"{args.output}: nothing to compact (no partition has two or more small files)")
    for name, totals in record["datasets"].items():
        print(f"{name}/: {totals['partitions']} partitions, {totals['files_before']} files "
              f"({totals['bytes_before'] / 2**20:.1f} MiB) -> {totals['files_after']} files "
              f"({totals['bytes_after'] / 2**20:.1f} MiB), {totals['rows_before']} rows -> "
              f"{totals['rows_after']}")
    return 0


def _repair(args: argparse.Namespace, rest: list[str], words: list[str]) -> int:
    if rest:
        return _refuse_unknown("repair", rest, _add_repair)
    from newsbeam.transforms import compact
    from newsbeam.transforms.lease import LeaseHeld, LeaseUnsupported
    try:
        recovered, dropped = compact.repair(args.output, args.drop_duplicate_ids,
                                            args.wait_for_lease_s)
    except LeaseUnsupported as unsupported:
        print(f"newsbeam repair: {unsupported}", file=sys.stderr)
        return EXIT_REFUSED
    except LeaseHeld as held:
        print(f"newsbeam repair: nothing changed: {held}", file=sys.stderr)
        return EXIT_LEASE_HELD
    print(f"{args.output}: {recovered.describe() or 'nothing to recover'}")
    for name, rows in sorted(dropped.items()):
        print(f"{name}/: dropped {rows} rows of ids stored twice (kept the first stored)")
    return 0


def _refuse_unknown(command: str, rest: list[str], add_parser) -> int:
    from newsbeam.pipelines.options import unknown_flag_problems
    parser = add_parser(argparse.ArgumentParser().add_subparsers())
    return _refuse(command, unknown_flag_problems(rest, parser))


def _inspect(args: argparse.Namespace, rest: list[str], words: list[str]) -> int:
    if rest:
        return _refuse_unknown("inspect", rest, _add_inspect)
    if args.check:
        return _inspect_check(args)
    from apache_beam.io.filesystems import FileSystems

    from newsbeam.pipelines.ingest import read_manifest
    runs_glob = f"{args.output.rstrip('/')}/_runs/*.json"
    manifests = sorted(m.path for m in FileSystems.match([runs_glob])[0].metadata_list)
    if not manifests:
        print(f"newsbeam inspect: no runs under {args.output}", file=sys.stderr)
        return 1
    if args.run_id:
        print(json.dumps(read_manifest(args.output, args.run_id), indent=2, sort_keys=True))
        return 0
    from newsbeam.pipelines.stats import dataset_stats, format_stats
    stats = dataset_stats(args.output, runs=args.runs)
    print(json.dumps(stats, indent=2, default=str) if args.json else format_stats(stats))
    return 0


def _report(args: argparse.Namespace, rest: list[str], words: list[str]) -> int:
    from newsbeam.pipelines.options import unknown_flag_problems
    if rest:
        report_parser = _add_report(argparse.ArgumentParser().add_subparsers())
        return _refuse("report", unknown_flag_problems(rest, report_parser))
    from newsbeam.pipelines import report
    problems = report.check_arguments(args.output, args.run_id, args.file)
    for problem in problems:
        print(f"newsbeam report: {problem}", file=sys.stderr)
    if problems:
        return EXIT_REFUSED
    written = report.write_report(args.output, args.file, args.run_id)
    print(f"newsbeam report: {written['articles']} articles, {written['runs']} runs -> "
          f"{args.file} ({written['bytes'] / 2**20:.1f} MiB)")
    return 0


class _DropImportNoise(logging.Filter):
    """Beam warns at import that the optional GCP client libraries are absent; a local run
    does not need them, and the README says how to install them for Dataflow."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


def configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s",
                        force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropImportNoise())
    # newsbeam's progress lines (its modules log as newsbeam.*), not Beam's chatter.
    logging.getLogger("newsbeam").setLevel(logging.INFO)


COMMANDS = (_add_run, _add_stream, _add_inspect, _add_report, _add_compact, _add_repair)


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, rest = build_parser().parse_known_args(argv)
    # The top-level parser takes no flag with a value, so the first word naming the command is
    # the command; the words after it are its own.
    words = argv[argv.index(args.command) + 1:]
    return args.handler(args, rest, words)


if __name__ == "__main__":
    sys.exit(main())
