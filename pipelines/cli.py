"""The `newsbeam` command: run the pipeline, inspect a dataset.

    newsbeam run [--input PATH|DIR|GLOB ...] [--output DIR] [newsbeam and Beam options]
    newsbeam inspect [--output DIR] [--run_id ID] [--check]
    newsbeam compact [--output DIR] [--date FROM[:TO]] [--dataset NAME ...] [--target_file_mib N]
    newsbeam repair [--output DIR] [--drop_duplicate_ids]
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
input is accounted for, 1 when it failed, 2 for bad flags, 75 when another run is writing
--output (nothing written; see --wait_for_lease_s).
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
        description="Print what a dataset holds: rows per dataset and partition, and the runs "
                    "that wrote it (from OUTPUT/_runs/).")
    inspect.add_argument("--output", default=DEFAULT_OUTPUT, metavar="DIR",
                         help=f"the dataset folder (default: {DEFAULT_OUTPUT})")
    inspect.add_argument("--run_id", default=None,
                         help="show this run's manifest in full (JSON)")
    inspect.add_argument("--check", action="store_true",
                         help="check the dataset's contract (each id once, no half-done "
                              "commits or orphan temp files) and note small files and schema "
                              "versions; exit 1 when it is broken, with the repair command")
    _add_dataset_commands(commands, DEFAULT_OUTPUT)
    return parser


def _add_dataset_commands(commands, default_output: str) -> None:
    """`compact` and `repair`: the dataset maintenance commands (transforms/compact.py)."""
    from transforms.compact import DATASET_CHOICES
    compact = commands.add_parser(
        "compact", help="merge small files into well-sized ones",
        description="Rewrite each partition's small files into few large ones (sorted by time, "
                    "row groups of at least 16 MiB or the whole file), atomically for readers, "
                    "under the dataset's writer lease. Rows are unchanged, except that stories/ "
                    "keeps only each story's current row.")
    repair = commands.add_parser(
        "repair", help="complete interrupted commits, remove orphan temp files",
        description="Under the writer lease: roll forward every commit a killed run left "
                    "half-done, clear runs that never committed and their temp files. Every "
                    "run and compaction does this first; this command does only this.")
    for command in (compact, repair):
        command.add_argument("--output", default=default_output, metavar="DIR",
                             help=f"the dataset folder (default: {default_output})")
        command.add_argument("--wait_for_lease_s", type=float, default=0.0, metavar="SECONDS",
                             help="wait this long for a run that is writing the dataset "
                                  "(default 0: exit 75 at once)")
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
    repair.add_argument("--drop_duplicate_ids", action="store_true",
                        help="also rewrite files that hold a second row of an id (stored "
                             "twice by runs before the commit protocol), keeping the first")


# --- Summary -------------------------------------------------------------------------------------

SUMMARY_PARTITIONS = 12  # partitions listed per dataset; the manifest has them all


def format_summary(manifest: dict) -> str:
    """The end-of-run summary a person reads: counts per stage, errors by reason, partitions
    written, elapsed time, where the output is."""
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
    for name, dataset in sorted(manifest["datasets"].items()):
        lines.append(f"  {name}/: {dataset['rows']} rows in {dataset['files']} files")
        partitions = sorted(p for p in dataset["partitions"].items() if p[0] != ".")
        for partition, part in partitions[:SUMMARY_PARTITIONS]:
            lines.append(f"    {partition}: {part['rows']}")
        if len(partitions) > SUMMARY_PARTITIONS:
            lines.append(f"    ... {len(partitions) - SUMMARY_PARTITIONS} more partitions "
                         "(all in the run manifest)")
    verdict = "every input accounted for" if accounting["balanced"] else \
        "ACCOUNTING MISMATCH: inputs != articles + duplicates + errors + already ingested " \
        "+ unchanged"
    lines.append(f"  {verdict}; output in {manifest['options']['output']}")
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
    from transforms.lease import EXIT_LEASE_HELD, LeaseHeld
    try:
        manifest = ingest.run_pipeline(options)
    except InvalidOptions as invalid:
        for problem in invalid.problems:
            print(f"newsbeam run: {problem}", file=sys.stderr)
        return 2
    except LeaseHeld as held:
        print(f"newsbeam run: nothing written: {held}", file=sys.stderr)
        return EXIT_LEASE_HELD
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


def _inspect_check(args: argparse.Namespace) -> int:
    from transforms.check import check, format_findings
    findings = check(args.output)
    print(format_findings(args.output, findings))
    return 1 if any(f.broken for f in findings) else 0


def _compact(args: argparse.Namespace) -> int:
    from transforms import compact
    from transforms.lease import EXIT_LEASE_HELD, LeaseHeld, LeaseUnsupported
    try:
        dates = compact.parse_date_range(args.date)
    except ValueError as bad:
        print(f"newsbeam compact: --date {bad}", file=sys.stderr)
        return 2
    if args.target_file_mib <= 0 or args.row_group_mib <= 0:
        print("newsbeam compact: --target_file_mib and --row_group_mib must be above 0",
              file=sys.stderr)
        return 2
    try:
        record = compact.compact(args.output, args.dataset, dates,
                                 int(args.target_file_mib * 2**20),
                                 int(args.row_group_mib * 2**20), args.wait_for_lease_s)
    except LeaseUnsupported as unsupported:
        print(f"newsbeam compact: {unsupported}", file=sys.stderr)
        return 2
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


def _repair(args: argparse.Namespace) -> int:
    from transforms import compact
    from transforms.lease import EXIT_LEASE_HELD, LeaseHeld, LeaseUnsupported
    try:
        recovered, dropped = compact.repair(args.output, args.drop_duplicate_ids,
                                            args.wait_for_lease_s)
    except LeaseUnsupported as unsupported:
        print(f"newsbeam repair: {unsupported}", file=sys.stderr)
        return 2
    except LeaseHeld as held:
        print(f"newsbeam repair: nothing changed: {held}", file=sys.stderr)
        return EXIT_LEASE_HELD
    print(f"{args.output}: {recovered.describe() or 'nothing to recover'}")
    for name, rows in sorted(dropped.items()):
        print(f"{name}/: dropped {rows} rows of ids stored twice (kept the first stored)")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    if args.check:
        return _inspect_check(args)
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
    import pyarrow.dataset as ds
    print(f"{args.output}: {len(manifests)} runs")
    for path in manifests:
        with FileSystems.open(path) as stream:
            manifest = json.loads(stream.read())
        accounting = manifest["accounting"]
        print(f"  {manifest['run_id']}: {accounting['inputs']} inputs, "
              f"{accounting['articles']} articles, {accounting['duplicates']} duplicates, "
              f"{accounting['errors']} errors, {accounting['already_ingested']} already "
              f"ingested")
    for name in ("articles", "duplicates", "errors"):
        root = f"{args.output.rstrip('/')}/{name}"
        if not FileSystems.exists(root):
            continue
        dataset = ds.dataset(root, format="parquet", partitioning="hive")
        print(f"{name}: {dataset.count_rows()} rows in {len(dataset.files)} files")
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
    if args.command in ("compact", "repair"):
        return {"compact": _compact, "repair": _repair}[args.command](args)
    return _inspect(args)


if __name__ == "__main__":
    sys.exit(main())
