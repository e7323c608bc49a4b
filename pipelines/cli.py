"""The `newsbeam` command: run the pipeline, inspect a dataset.

    newsbeam run [--input PATH|DIR|GLOB ...] [--output DIR] [newsbeam and Beam options]
    newsbeam inspect [--output DIR] [--run_id ID] [--json] [--runs N]
    newsbeam report [--output DIR] [--run_id ID] [--file report.html]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

# Beam is imported inside the functions, once logging is set up: it logs while it imports.

RUN_EPILOG = """\
Any other flag is passed to Apache Beam, for example:
  --runner RUNNER                  default {runner} (local, no network needed);
                                   DataflowRunner for Google Cloud Dataflow
  --direct_num_workers N --direct_running_mode multi_processing
                                   N local worker processes
  --project P --region R --temp_location gs://... --setup_file ./setup.py
                                   what DataflowRunner needs
Output: OUTPUT/articles/date=YYYY-MM-DD/topic=<slug>/, duplicates/, errors/, index/ (Parquet)
and OUTPUT/_runs/<run_id>.json (the run manifest). Exit status: 0 when the run finished and every
input is accounted for, 1 when it failed, 2 for bad flags.
"""


def _parser() -> argparse.ArgumentParser:
    from pipelines.options import DEFAULT_OUTPUT, DEFAULT_RUNNER, NewsOptions
    parser = argparse.ArgumentParser(
        prog="newsbeam",
        description="News ingestion on Apache Beam: articles from text, HTML and JSONL files "
                    "into one clean, deduplicated, partitioned Parquet dataset.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run", help="run the batch pipeline", description="Run the batch pipeline once over "
        "the inputs, adding to the dataset in --output.",
        epilog=RUN_EPILOG.format(runner=DEFAULT_RUNNER),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    NewsOptions._add_argparse_args(run)
    run.add_argument("--quiet", action="store_true", help="print only the summary's last line")
    inspect = commands.add_parser(
        "inspect", help="summarise a dataset and its runs",
        description="Print what a dataset holds: articles by topic, language, date source, "
                    "publisher, day, wire agency and entity; duplicates; errors by stage and "
                    "reason; stories; and the last runs that wrote it (from OUTPUT/_runs/).")
    inspect.add_argument("--output", default=DEFAULT_OUTPUT, metavar="DIR",
                         help=f"the dataset folder (default: {DEFAULT_OUTPUT})")
    inspect.add_argument("--run_id", default=None,
                         help="show this run's manifest in full (JSON)")
    _add_inspect_breakdown_args(inspect)
    _add_report_parser(commands, DEFAULT_OUTPUT)
    return parser


def _add_inspect_breakdown_args(inspect: argparse.ArgumentParser) -> None:
    from pipelines.stats import RUNS
    inspect.add_argument("--json", action="store_true",
                         help="print the breakdowns as one JSON object, for scripts")
    inspect.add_argument("--runs", type=_positive_int, default=RUNS, metavar="N",
                         help=f"list the last N runs (default: {RUNS})")


def _add_report_parser(commands, default_output: str) -> None:
    from pipelines.report import DEFAULT_FILE
    report = commands.add_parser(
        "report", help="write an HTML report of a dataset",
        description="Write one self-contained HTML page (charts inline, no network needed to "
                    "open it) of what a dataset holds: articles per day and topic, languages, "
                    "date sources, duplicates, stories, entities, wire agencies, errors and "
                    "the run history.")
    report.add_argument("--output", default=default_output, metavar="DIR",
                        help=f"the dataset folder (default: {default_output})")
    report.add_argument("--run_id", default=None,
                        help="report only what this run wrote (the run history stays whole)")
    report.add_argument("--file", default=DEFAULT_FILE, metavar="PATH",
                        help=f"where to write the page (default: {DEFAULT_FILE})")


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return number


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
        return f"  ok: {', '.join(counts)}; every input accounted for; {where}"
    return (f"  FAILED: {', '.join(counts)} of {accounting['inputs']} inputs; ACCOUNTING "
            "MISMATCH: inputs != articles + duplicates + errors + already ingested + unchanged; "
            f"{where}")


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


def _run(args: argparse.Namespace, beam_argv: list[str]) -> int:
    from pipelines import ingest
    from pipelines.options import InvalidOptions
    options = ingest.prepare_options(_news_argv(args) + beam_argv)
    if not args.quiet:
        sources = options.input + (options.feed or []) + (options.feeds or []) + \
            (options.urls or [])
        print(f"newsbeam: reading {', '.join(sources)} -> {options.output}",
              file=sys.stderr)
    try:
        manifest = ingest.run_pipeline(options)
    except InvalidOptions as invalid:
        for problem in invalid.problems:
            print(f"newsbeam run: {problem}", file=sys.stderr)
        return 2
    summary = format_summary(manifest)
    print(summary.splitlines()[-1] if args.quiet else summary)
    return 0 if manifest["accounting"]["balanced"] else 1


def _news_argv(args: argparse.Namespace) -> list[str]:
    """The newsbeam flags parsed by argparse, as command-line words for NewsOptions."""
    words = []
    for name, value in vars(args).items():
        if name in ("command", "quiet") or value is None:
            continue
        if isinstance(value, bool):
            words += [f"--{name}"] if value else []
            continue
        for item in (value if isinstance(value, list) else [value]):
            words += [f"--{name}", str(item)]
    return words


def _inspect(args: argparse.Namespace) -> int:
    from apache_beam.io.filesystems import FileSystems

    from pipelines.ingest import read_manifest
    runs_glob = f"{args.output.rstrip('/')}/_runs/*.json"
    manifests = sorted(m.path for m in FileSystems.match([runs_glob])[0].metadata_list)
    if not manifests:
        print(f"newsbeam inspect: no runs under {args.output}", file=sys.stderr)
        return 1
    if args.run_id:
        print(json.dumps(read_manifest(args.output, args.run_id), indent=2, sort_keys=True))
        return 0
    from pipelines.stats import dataset_stats, format_stats
    stats = dataset_stats(args.output, runs=args.runs)
    print(json.dumps(stats, indent=2, default=str) if args.json else format_stats(stats))
    return 0


def _report(args: argparse.Namespace) -> int:
    from pipelines import report
    problems = report.check_arguments(args.output, args.run_id, args.file)
    for problem in problems:
        print(f"newsbeam report: {problem}", file=sys.stderr)
    if problems:
        return 2
    written = report.write_report(args.output, args.file, args.run_id)
    print(f"newsbeam report: {written['articles']} articles, {written['runs']} runs -> "
          f"{args.file} ({written['bytes'] / 2**20:.1f} MiB)")
    return 0


class _DropImportNoise(logging.Filter):
    """Beam warns at import that the optional GCP client libraries are absent; a local run
    does not need them, and the README says how to install them for Dataflow."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


def _configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s",
                        force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropImportNoise())
    for ours in ("pipelines", "transforms"):  # newsbeam's progress lines, not Beam's chatter
        logging.getLogger(ours).setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    _configure_logging()
    args, rest = _parser().parse_known_args(argv)
    if args.command == "run":
        return _run(args, rest)
    if rest:
        _parser().error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "report":
        return _report(args)
    return _inspect(args)


if __name__ == "__main__":
    sys.exit(main())
