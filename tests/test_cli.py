"""The `newsbeam` command line: what it refuses before running (exit 2, nothing written), config
files, exit codes, --version and --help.

Refusals go through `cli.main` in this process (they stop before Beam builds anything); the
runs that must finish are real pipeline runs over real files, read back from the manifest."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from newsbeam.pipelines.cli import (EXIT_FAILED, EXIT_FINISHED, EXIT_INPUTS_FAILED, EXIT_REFUSED,
                                    build_parser, exit_status, main, parse_run, run_options_parser)
from newsbeam.pipelines.ingest import check_options
from newsbeam.pipelines.options import InvalidOptions, flag_names, runner_problems, unknown_flag_problems
from tests.conftest import ROOT, SEEDS, manifests, read_dataset

NEWSBEAM = Path(sys.executable).parent / "newsbeam"
FNAPI_PATH = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"


def _tree(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def refused(capsys, tmp_path: Path, *args: str, command: str = "run") -> str:
    """`newsbeam COMMAND ARGS` must exit 2 and leave tmp_path as it was (no output folder, no
    manifest); returns what it printed on stderr."""
    before = _tree(tmp_path)
    status = main([command, *args])
    printed = capsys.readouterr()
    assert status == EXIT_REFUSED, printed
    assert _tree(tmp_path) == before, "a refused run wrote files"
    assert "Traceback" not in printed.err
    return printed.err


def write_config(folder: Path, text: str, name: str = "newsbeam.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


# --- Unknown flags -------------------------------------------------------------------------------


def test_a_misspelt_flag_is_refused_with_the_nearest_flag(capsys, tmp_path):
    out = str(tmp_path / "out")
    # Before: "Discarding unparseable args", then a run over the bundled seeds into --output.
    err = refused(capsys, tmp_path, "--inputs", str(SEEDS), "--output", out)
    assert "--inputs: no such flag; did you mean --input?" in err
    err = refused(capsys, tmp_path, "--max-document-bytes", "5", "--output", out)
    assert "did you mean --max_document_bytes?" in err
    err = refused(capsys, tmp_path, "--direct_num_worker=2", "--output", out)
    assert "did you mean --direct_num_workers?" in err
    err = refused(capsys, tmp_path, str(SEEDS), "--output", out)
    assert f"{SEEDS}: unexpected argument" in err
    err = refused(capsys, tmp_path, "--ouput", out, command="inspect")
    assert "did you mean --output?" in err


def test_beam_flags_pass_the_check_gcp_ones_too():
    """Every options class Beam parses is consulted, newsbeam's and Dataflow's included (they
    are defined whether or not apache-beam[gcp] is installed)."""
    parser = run_options_parser()
    words = ["--runner", "DataflowRunner", "--project", "p", "--region", "europe-west1",
             "--temp_location=gs://b/tmp", "--setup_file", "./setup.py", "--no_use_public_ips",
             "--experiments=a,b", "--dataflow_service_options", "x", "--direct_num_workers=2",
             "--direct_running_mode", "multi_processing", "--s3_region_name", "eu",
             "--input", "x", "--fail_on_errors", "any", "--quiet"]
    assert unknown_flag_problems(words, parser) == []
    assert {"--sdk_container_image", "--max_num_workers", "--min_words"} <= set(
        flag_names(parser))


# --- Runners -------------------------------------------------------------------------------------


def test_a_misspelt_runner_is_one_line_before_anything_runs(capsys, tmp_path):
    # Before: a 20-line traceback from Pipeline(), exit 1.
    err = refused(capsys, tmp_path, "--runner", "FnApiRuner", "--output", str(tmp_path / "o"))
    assert len(err.strip().splitlines()) == 1
    assert "--runner FnApiRuner: no such runner; did you mean FnApiRunner?" in err
    err = refused(capsys, tmp_path, "--runner", "no_such_module.Runner")
    assert "--runner no_such_module.Runner: cannot be loaded" in err
    err = refused(capsys, tmp_path, "--runner", "os.path")
    assert "not a Beam PipelineRunner class" in err


def test_runner_names_beam_accepts_pass():
    for name in (None, "FnApiRunner", "fnapirunner", "FnApi", FNAPI_PATH,
                 "BundleBasedDirectRunner", "DirectRunner"):
        assert runner_problems(name) == [], name


# --- Feeds and paths -----------------------------------------------------------------------------


def test_feed_locations_are_checked_before_running(capsys, tmp_path):
    out = str(tmp_path / "out")
    # Before: a 130-line traceback from inside the pipeline, exit 1.
    err = refused(capsys, tmp_path, "--feed", "htp://example.com/rss.xml", "--output", out)
    assert "--feed htp://example.com/rss.xml: htp:// is not a scheme newsbeam can read" in err
    assert "did you mean http://?" in err
    err = refused(capsys, tmp_path, "--feed", "example.com/rss.xml", "--output", out)
    assert "no such file; if it is a URL, give its scheme: https://example.com/rss.xml" in err
    err = refused(capsys, tmp_path, "--feed", "saved-feed.xml", "--output", out)
    assert "--feed saved-feed.xml: no such file" in err and "URL" not in err
    err = refused(capsys, tmp_path, "--feed", "https:///rss.xml", "--output", out)
    assert "no host in the URL" in err
    feeds = write_config(tmp_path / "lists", "feeds:\n  - htp://example.com/a.xml\n",
                         "feeds.yaml")
    err = refused(capsys, tmp_path, "--feeds", str(feeds), "--output", out)
    assert f"--feeds {feeds}: feed htp://example.com/a.xml: no filesystem for htp://" in err
    err = refused(capsys, tmp_path, "--input", "https://example.com/a.html", "--output", out)
    assert "pages on the web are fetched with --feed URL, --feeds FILE or --urls FILE" in err
    err = refused(capsys, tmp_path, "--output", "gz://bucket/news")
    assert "--output gz://bucket/news: no filesystem for gz://" in err


def test_lines_of_a_urls_file_stay_data(tmp_path):
    """A bad line of a --urls file becomes an error row of the run, not a refusal."""
    urls = tmp_path / "urls.txt"
    urls.write_text("htp://example.com/a.html\nexample.com/b.html\n")
    options, _ = parse_run(["--urls", str(urls), "--output", str(tmp_path / "out")])
    check_options(options)  # raises InvalidOptions on a refusal


# --- --version and --help ------------------------------------------------------------------------


def test_version_names_newsbeam_and_beam():
    done = subprocess.run([str(NEWSBEAM), "--version"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"newsbeam 0\.1\.0 \(apache-beam 2\.77\.0, Python 3\.\d+\.\d+\)\n",
                        done.stdout)


def test_help_documents_every_flag_and_the_exit_codes():
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    readme = (ROOT / "README.md").read_text()
    for action in run._actions:
        assert action.help, f"{action.option_strings} has no help"
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert re.search(re.escape(flag) + r"(?![a-z_])", readme), \
                    f"README does not mention {flag}"
    text = run.format_help()
    for code in (EXIT_FINISHED, EXIT_FAILED, EXIT_REFUSED, EXIT_INPUTS_FAILED):
        assert re.search(rf"^  {code}  ", text, re.MULTILINE), f"exit status {code} not in --help"
    assert "--fail_on_errors" in text and "--config" in text


# --- Exit codes ----------------------------------------------------------------------------------


def _accounting(inputs, errors, balanced=True, already_ingested=0):
    return {"inputs": inputs, "errors": errors, "balanced": balanced,
            "already_ingested": already_ingested, "skipped_unchanged": 0}


def test_exit_status_by_fail_on_errors():
    assert exit_status(_accounting(3, 3), "never") == EXIT_FINISHED
    assert exit_status(_accounting(3, 3), "all") == EXIT_INPUTS_FAILED
    assert exit_status(_accounting(3, 1), "all") == EXIT_FINISHED
    assert exit_status(_accounting(3, 1), "any") == EXIT_INPUTS_FAILED
    assert exit_status(_accounting(3, 0), "any") == EXIT_FINISHED
    assert exit_status(_accounting(0, 0), "all") == EXIT_FINISHED  # nothing to fail
    assert exit_status(_accounting(3, 3, balanced=False), "never") == EXIT_FAILED
    # Inputs stored (or recorded as failed) by an earlier run are not this run's to fail.
    assert exit_status(_accounting(3, 1, already_ingested=2), "all") == EXIT_INPUTS_FAILED
    assert exit_status(_accounting(3, 0, already_ingested=3), "all") == EXIT_FINISHED


def test_a_run_where_every_input_failed_warns_and_can_fail(capsys, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_bytes(b"")
    (bad / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    output = tmp_path / "out"
    status = main(["run", "--input", str(bad), "--output", str(output), "--quiet"])
    printed = capsys.readouterr()
    assert status == EXIT_FINISHED  # finished, and every input is accounted for
    assert printed.out.splitlines()[-1].startswith(
        "  every input failed: 0 articles, 0 duplicates, 2 errors; every input accounted for")
    assert "WARNING: every input failed (2 of 2); no article was added" in printed.err
    # Two more bad files beside the two already recorded (unchanged, so not read again): every
    # input this run handled failed, and a scheduler asks for a non-zero exit.
    (bad / "empty-too.txt").write_bytes(b"  \n")
    (bad / "image-too.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(32))
    status = main(["run", "--input", str(bad), "--output", str(output), "--quiet",
                   "--fail_on_errors", "all"])
    assert status == EXIT_INPUTS_FAILED, capsys.readouterr()
    assert "WARNING: every input failed (2 of 2)" in capsys.readouterr().err
    assert [m["accounting"]["errors"] for m in manifests(output)] == [2, 2]


# --- Config files --------------------------------------------------------------------------------


def test_a_config_file_runs_and_the_command_line_wins(capsys, tmp_path):
    """Relative paths from the file's folder, a list for a repeatable flag, Beam's options (the
    runner by its class path, a job name), and the command line over the file."""
    conf = tmp_path / "conf"
    (conf / "in").mkdir(parents=True)
    (conf / "in" / "reuters.txt").write_bytes((SEEDS / "000_dac305c5b36f0b2f.txt").read_bytes())
    (conf / "in" / "empty.txt").write_bytes(b"")
    config = write_config(conf, f"""
input: [in/reuters.txt, in/empty.txt]
output: from-config
min_words: 5
fail_on_errors: any
quiet: true
runner: {FNAPI_PATH}
job_name: nightly-news
""")
    output = tmp_path / "out"
    status = main(["run", "--config", str(config), "--output", str(output)])
    printed = capsys.readouterr()
    assert status == EXIT_INPUTS_FAILED, printed  # fail_on_errors any, and empty.txt failed
    assert printed.out.strip().splitlines() == [
        f"ok: 1 articles, 0 duplicates, 1 errors; every input accounted for; output in {output}"]
    assert not (conf / "from-config").exists()
    recorded = manifests(output)[0]["options"]
    assert recorded["input"] == [str(conf / "in" / "reuters.txt"), str(conf / "in" / "empty.txt")]
    assert recorded["min_words"] == 5 and recorded["job_name"] == "nightly-news"
    assert recorded["runner"] == FNAPI_PATH
    assert read_dataset(output / "articles").num_rows == 1


def test_precedence_lists_and_booleans(tmp_path):
    config = write_config(tmp_path / "conf", """
input: [a, b]
feed: [https://example.com/rss.xml, saved.xml]
min_words: 50
allow_loopback: true
ner_recase: off
topic_model: shipped
experiments: [x, y]
use_public_ips: false
""")
    conf = tmp_path / "conf"
    options, args = parse_run(["--config", str(config)])
    assert options.input == [str(conf / "a"), str(conf / "b")]
    assert options.feed == ["https://example.com/rss.xml", str(conf / "saved.xml")]
    assert options.min_words == 50 and options.allow_loopback is True
    assert options.ner_recase == "off" and options.topic_model == "shipped"
    everything = options.get_all_options()
    assert everything["experiments"] == ["x", "y"] and everything["use_public_ips"] is False
    assert args.fail_on_errors == "never"
    # The command line wins; its repeatable flag replaces the file's list; its paths stay as
    # the user typed them (relative to the working directory).
    options, _ = parse_run(["--config", str(config), "--min_words", "7", "--input", "c",
                            "--experiments=z"])
    assert options.min_words == 7 and options.input == ["c"]
    assert options.get_all_options()["experiments"] == ["z"]
    assert options.allow_loopback is True


@pytest.mark.parametrize("text, message", [
    ("inputs: [a]\n", "inputs: no such option; did you mean input?"),
    ("direct-num-workers: 2\n", "direct-num-workers: no such option; did you mean "
                                "direct_num_workers?"),
    ("config: other.yaml\n", "config: no such option"),
    ("min_words: many\n", "min_words: 'many' is not valid"),
    ("min_words: -3\n", "min_words: '-3' is not valid (-3 is negative)"),
    ("min_words: 2.5\n", "min_words: '2.5' is not valid"),
    ("output: [a, b]\n", "output: takes one value, not a list"),
    ("output: {dir: a}\n", "output: takes one value, not a dict"),
    ("output:\n", "output: has no value"),
    ("numeric_entities: some\n", "numeric_entities: 'some' is not one of drop, keep"),
    ("allow_loopback: maybe\n", "allow_loopback: takes true or false, not 'maybe'"),
    ("quiet: 1\n", "quiet: takes true or false, not 1"),
    ("min_words: true\n", "min_words: takes a value, not true/false"),
    ("direct_num_workers: two\n", "direct_num_workers: 'two' is not valid"),
    ("- input\n", "holds a list; a config file is a mapping of option names to values"),
    ("input: [a\n", "not valid YAML"),
])
def test_a_bad_config_file_is_refused(capsys, tmp_path, text, message):
    config = write_config(tmp_path / "conf", text)
    err = refused(capsys, tmp_path, "--config", str(config))
    assert message in err
    assert str(config) in err


def test_a_missing_config_file_is_refused(capsys, tmp_path):
    err = refused(capsys, tmp_path, "--config", str(tmp_path / "nope.yaml"))
    assert f"--config {tmp_path / 'nope.yaml'}: No such file or directory" in err


def test_a_config_file_with_an_unknown_key_is_refused_even_when_the_flag_is_given(capsys, tmp_path):
    config = write_config(tmp_path / "conf", "output: out\nmin_word: 3\n")
    err = refused(capsys, tmp_path, "--config", str(config), "--min_words", "3")
    assert "min_word: no such option; did you mean min_words?" in err


def test_the_example_config_file_is_valid():
    options, args = parse_run(["--config", str(ROOT / "newsbeam.example.yaml")])
    check_options(options)
    assert options.input == [str(SEEDS)] and options.output == str(ROOT / "output")
    assert args.fail_on_errors == "all" and options.ner_recase == "on"


def test_invalid_options_name_every_problem(tmp_path):
    with pytest.raises(InvalidOptions) as refusal:
        parse_run(["--inputs", "x", "--runer", "y"])
    assert [p.split(":")[0] for p in refusal.value.problems[:2]] == ["--inputs", "--runer"]


def test_ingest_run_refuses_unknown_words_too(tmp_path):
    """The Python entry point (`newsbeam.pipelines.ingest.run(argv)`) checks its words as the command
    does, before anything is written."""
    from newsbeam.pipelines import ingest
    with pytest.raises(InvalidOptions) as refusal:
        ingest.run(["--inputs", str(SEEDS), "--output", str(tmp_path / "out")])
    assert refusal.value.problems == ["--inputs: no such flag; did you mean --input?"]
    assert not (tmp_path / "out").exists()
