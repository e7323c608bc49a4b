"""The Dataflow Flex Template: its metadata.json, generated from the run options, and its launcher.

    python -m newsbeam.pipelines.flex_template --metadata deploy/flex-template/metadata.json
        writes the template's parameters: every flag of `newsbeam run` (its help text, its
        choices), but those that only make sense to a person at a terminal (TERMINAL_ONLY)
    deploy/flex-template/main.py -> launch(sys.argv[1:])
        what the template launcher runs at each launch: `newsbeam run` with the parameters

The launcher builds the graph at each launch, so each job has its own run id and ingestion time;
the job takes the dataset's writer lease and recovers it on its workers (transforms/dataset.py,
StartRun), since the launcher is gone long before the job ends.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# `newsbeam run` flags that are no template parameter, and why.
TERMINAL_ONLY = {
    "config": "a YAML file on the launcher's disk; a template takes its parameters instead",
    "fail_on_errors": "sets the exit status of the launcher, which no one reads; the job's "
                      "manifest and errors/ say what failed",
    "quiet": "what the launcher prints; its log is the job's launch log",
    "every": "repeats runs from one long-lived process; on Dataflow the scheduler (Cloud "
             "Scheduler, Airflow) launches each run",
    "max_runs": "bounds --every's loop",
    "batch_records": "a local runner's batches; a job on Dataflow reads its input in one job",
}
# Parameters a run on Dataflow cannot do without (the local defaults are refused there).
REQUIRED = ("output",)

TEMPLATE_NAME = "newsbeam ingest"
TEMPLATE_DESCRIPTION = (
    "One incremental batch run of newsbeam: inputs on Cloud Storage, feeds and URL lists into "
    "one deduplicated, partitioned Parquet dataset on Cloud Storage. Each launch is a new run "
    "(its own run id); runs into one --output never overlap (writer lease), and what earlier "
    "runs stored is not stored again.")


def run_flag_actions() -> list[argparse.Action]:
    """The actions of `newsbeam run`'s parser: what `newsbeam run --help` lists."""
    from newsbeam.pipelines.cli import build_parser
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    run = subparsers.choices["run"]
    return [action for action in run._actions
            if action.option_strings and action.dest != "help"]


def _help_text(action: argparse.Action) -> str:
    text = (action.help or "") % {"default": action.default, "dest": action.dest}
    if isinstance(action, argparse._AppendAction):
        text += " A template takes one value here (a folder or a glob covers many files)."
    return " ".join(text.split())


def parameter(action: argparse.Action) -> dict:
    """One template parameter from one flag."""
    name = action.dest
    entry = {"name": name, "label": name.replace("_", " ").capitalize(),
             "helpText": _help_text(action), "isOptional": name not in REQUIRED}
    if isinstance(action, argparse._StoreTrueAction):
        entry.update(paramType="BOOLEAN", regexes=["^(true|false)$"])
    elif action.choices:
        entry.update(paramType="ENUM", regexes=[f"^({'|'.join(action.choices)})$"],
                     enumOptions=[{"value": choice} for choice in action.choices])
    else:
        entry["paramType"] = "TEXT"
    if action.default not in (None, False) and not isinstance(action.default, list) \
            and name not in REQUIRED:
        entry["defaultValue"] = str(action.default)
    return entry


def metadata() -> dict:
    return {"name": TEMPLATE_NAME, "description": TEMPLATE_DESCRIPTION, "streaming": False,
            "parameters": [parameter(action) for action in run_flag_actions()
                           if action.dest not in TERMINAL_ONLY]}


def command_words(argv: list[str]) -> list[str]:
    """The template launcher's arguments as `newsbeam run` words. The launcher passes every
    parameter as --name=value; a flag without a value (--allow_loopback) comes as
    --name=true or --name=false."""
    switches = {action.dest for action in run_flag_actions()
                if isinstance(action, argparse._StoreTrueAction)}
    words = []
    for word in argv:
        name, has_value, value = word.partition("=")
        if has_value and name.startswith("--") and name[2:] in switches:
            if value.strip().lower() not in ("true", "false"):
                raise SystemExit(f"newsbeam template: {name}={value}: use true or false")
            words += [name] if value.strip().lower() == "true" else []
        else:
            words.append(word)
    return words


def launch(argv: list[str]) -> int:
    """What the template launcher runs: `newsbeam run` over the parameters, checked the same
    way (exit 2 and one line a problem), but it returns once the job is submitted: the launcher
    does not outlive the launch, and the job takes the lease and commits on its own."""
    from newsbeam.pipelines import cli, ingest
    from newsbeam.pipelines.options import InvalidOptions
    cli.configure_logging()
    try:
        options, _ = cli.parse_run(command_words(argv))
        ingest.check_options(options)
    except InvalidOptions as refused:
        for problem in refused.problems:
            print(f"newsbeam template: {problem}", file=sys.stderr)
        return cli.EXIT_REFUSED
    record = ingest.run_pipeline(options, wait=False)
    if record.get("dry_run"):
        print(cli.dry_run_line(record))
    elif record.get("submitted"):
        job = f" as job {record['job_id']}" if record.get("job_id") else ""
        print(f"newsbeam run {record['run_id']}: submitted to {record['runner']}{job}; the job "
              "takes the writer lease and commits the run itself")
    else:  # a local runner: the run is done
        print(cli.format_summary(record))
    return cli.EXIT_FINISHED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m newsbeam.pipelines.flex_template",
        description="Write the Flex Template's metadata.json from newsbeam run's options.")
    parser.add_argument("--metadata", required=True, metavar="PATH",
                        help="where to write it (deploy/flex-template/metadata.json)")
    args = parser.parse_args(argv)
    Path(args.metadata).write_text(json.dumps(metadata(), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
