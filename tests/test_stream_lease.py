"""The writer lease of a stream's job (transforms/dataset.py: StartStream, HoldStreamLease,
CommitWindows), as a stream on Dataflow holds it: taken in the job's first step, renewed from a
processing-time timer, idle or not, and after each commit, released when the watermark reaches
the end; a window's commit after the lease was lost is refused. Each composite on its own, on
BundleBasedDirectRunner --streaming with TestStream, and the whole graph with one window (one
with several windows hangs on this runner); the lease is a real file under tmp_path."""

from __future__ import annotations

import datetime as dt
import json
import os

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms import window
from apache_beam.transforms.window import TimestampedValue

from newsbeam.transforms import dataset, lease
from newsbeam.transforms.dataset import (LEASE_LOST, LEASE_RELEASED, LEASE_RENEWED, LEASE_TAKEN,
                                         CommitWindows, HoldStreamLease, StartStream)
from newsbeam.transforms.sinks import TempFile

STREAMING = ["--runner=BundleBasedDirectRunner", "--streaming"]
STREAM = {"run_id": "leasestream", "started_at": "2026-12-02T07:00:00+00:00"}
# A 10 s lease is renewed every second (lease.heartbeat_interval_s).
EXPIRY_S = 10.0

# What the pipelines saw: the runner pickles the functions it runs, so they write here.
OBSERVED: dict[str, list] = {}


def _observe_as(value, name: str) -> None:
    OBSERVED.setdefault(name, []).append(value)


def _lease_event_and_nonce(event, output: str):
    """The lease event with the lease file's nonce at that moment (a renewal writes a new
    one)."""
    holder = lease.read_holder(output)
    return event[0], (holder or {}).get("holder"), (holder or {}).get("nonce")


def _hold_lease(output: str, manifests: TestStream, on_start=None) -> list:
    """StartStream and HoldStreamLease on `output`, with `manifests` standing in for the
    commits' output; `on_start(output)` runs on StartStream's element. Returns the lease
    events, each with the lease's holder and nonce when it happened."""
    OBSERVED["events"] = []
    with beam.Pipeline(options=PipelineOptions(STREAMING)) as pipeline:
        start = pipeline | "StartStream" >> StartStream(output, STREAM, 0.0, EXPIRY_S)
        if on_start is not None:
            _ = start | "OnStart" >> beam.Map(lambda _, out=output: on_start(out))
        committed = pipeline | "Manifests" >> manifests
        events = (start, committed) | "HoldLease" >> HoldStreamLease(
            output, STREAM["run_id"], EXPIRY_S, clock=lambda: 0.0)
        (events
         | "WithNonce" >> beam.Map(_lease_event_and_nonce, output)
         | "Observe" >> beam.Map(_observe_as, "events"))
    return OBSERVED["events"]


def _idle_then_a_commit_then_idle() -> TestStream:
    events = TestStream().advance_watermark_to(0)
    for _ in range(4):  # idle: no window commits for 4 s of processing time
        events = events.advance_processing_time(1)
    events = events.add_elements([TimestampedValue({"run_id": "leasestream-w1"}, 5)])
    for _ in range(2):
        events = events.advance_processing_time(1)
    return events.advance_watermark_to_infinity()


def test_the_stream_job_takes_renews_and_releases_its_lease(tmp_path):
    output = str(tmp_path / "out")
    OBSERVED["other_run"] = []
    events = _hold_lease(output, _idle_then_a_commit_then_idle(), on_start=lambda out: _observe_as(
        lease.Lease(out, "a-batch-run").try_acquire(), "other_run"))

    names = [name for name, _, _ in events]
    assert names[0] == LEASE_TAKEN and names[-1] == LEASE_RELEASED
    # Renewed while idle (the timer: about a renewal a second over 6 s) and after the commit.
    assert names.count(LEASE_RENEWED) >= 4, names
    renewals = [(holder, nonce) for name, holder, nonce in events if name == LEASE_RENEWED]
    assert all(holder == "leasestream" for holder, _ in renewals)
    assert len({nonce for _, nonce in renewals}) == len(renewals), "a renewal wrote nothing"
    # While the job held it, another run was refused the lease (no wait: --wait_for_lease_s 0).
    assert [held["holder"] for held in OBSERVED["other_run"]] == ["leasestream"]
    # At the end of the stream: released, and the stream's markers cleared.
    assert lease.read_holder(output) is None
    assert not dataset.started_runs(output)
    assert not os.path.exists(os.path.join(output, ".tmp"))


def _take_over(output: str) -> None:
    """Another run takes the lease, as one that found this holder dead would."""
    path = lease.lease_path(output)
    with open(path) as stream:
        held = json.load(stream)
    with open(path, "w") as stream:
        json.dump({**held, "holder": "usurper", "nonce": "theirs"}, stream)


def test_a_lease_taken_over_is_not_renewed_nor_released_by_the_stream(tmp_path):
    output = str(tmp_path / "out")
    events = _hold_lease(output, _idle_then_a_commit_then_idle(), on_start=_take_over)
    names = [name for name, _, _ in events]
    assert names[0] == LEASE_TAKEN
    assert LEASE_LOST in names and LEASE_RELEASED not in names, names
    # The new holder's lease is untouched: not renewed, not deleted.
    assert lease.read_holder(output)["holder"] == "usurper"
    assert lease.read_holder(output)["nonce"] == "theirs"


def test_a_second_stream_is_refused_while_another_run_holds_the_lease(tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    with lease.Lease(str(output), "someone-else").acquire():
        with pytest.raises(Exception, match="held by ingest someone-else"):
            with beam.Pipeline(options=PipelineOptions(STREAMING)) as pipeline:
                _ = pipeline | StartStream(str(output), STREAM, 0.0, EXPIRY_S)
        assert lease.read_holder(str(output))["holder"] == "someone-else"
    assert not dataset.started_runs(str(output))


def test_a_stream_id_that_committed_windows_is_refused_in_the_job(tmp_path):
    runs = tmp_path / "out" / "_runs"
    runs.mkdir(parents=True)
    (runs / "leasestream-w20261202t070500.json").write_text("{}")
    with pytest.raises(Exception, match="already ran on"):
        with beam.Pipeline(options=PipelineOptions(STREAMING)) as pipeline:
            _ = pipeline | StartStream(str(tmp_path / "out"), STREAM, 0.0, EXPIRY_S)
    assert lease.read_holder(str(tmp_path / "out")) is None


# --- A window's commit, with the lease and after losing it ---------------------------------------


def _commit_one_window(output: str) -> list:
    """One window [0, 5) with one temp file of articles, committed by CommitWindows for the
    stream; returns the manifests emitted."""
    temp = os.path.join(output, ".tmp", "leasestream", "articles", "one.parquet")
    os.makedirs(os.path.dirname(temp))
    with open(temp, "wb") as stream:
        stream.write(b"rows")
    file = TempFile("articles", "date=2026-12-02/topic=world", temp, 1)
    elements = (TestStream().advance_watermark_to(0)
                .add_elements([TimestampedValue(file, 1)]).advance_watermark_to_infinity())
    OBSERVED["manifests"] = []
    with beam.Pipeline(options=PipelineOptions(STREAMING)) as pipeline:
        files = (pipeline | "Files" >> elements
                 | "Windows" >> beam.WindowInto(window.FixedWindows(5)))
        errors = (pipeline | "NoErrors" >> beam.Create([])
                  | "ErrorWindows" >> beam.WindowInto(window.FixedWindows(5)))
        counts = {"documents": files, "articles": files}
        manifests = pipeline | CommitWindows(output, STREAM, counts, errors, [files])
        _ = manifests | beam.Map(lambda m: _observe_as(m["run_id"], "manifests"))
    return OBSERVED["manifests"]


def test_a_window_is_committed_while_the_stream_holds_the_lease(tmp_path):
    output = str(tmp_path / "out")
    with lease.Lease(output, "leasestream").acquire():
        assert _commit_one_window(output) == ["leasestream-w19700101t000005"]
    assert os.path.exists(os.path.join(
        output, "articles", "date=2026-12-02", "topic=world",
        "part-leasestream-w19700101t000005-00000.parquet"))


def test_a_window_commit_after_the_lease_was_lost_is_refused_and_nothing_shows(tmp_path):
    output = str(tmp_path / "out")
    with lease.Lease(output, "usurper").acquire():
        assert _commit_one_window(output) == []
        assert lease.read_holder(output)["holder"] == "usurper"
    assert not os.path.exists(os.path.join(output, "articles"))
    assert not os.path.exists(os.path.join(output, "_runs"))
    assert dataset.pending_intents(output) == []
    # The window's file waits in .tmp/ for the holder's recovery to clear it.
    assert os.path.exists(os.path.join(output, ".tmp", "leasestream", "articles", "one.parquet"))


def test_renew_held_refreshes_only_the_holders_lease(tmp_path):
    output = str(tmp_path / "out")
    moment = dt.datetime(2026, 12, 2, 8, tzinfo=dt.timezone.utc)
    assert not lease.renew_held(output, "nobody")
    lease.Lease(output, "s1").acquire(heartbeat=False)
    assert lease.renew_held(output, "s1", clock=lambda: moment)
    assert lease.read_holder(output)["heartbeat_at"] == moment.isoformat()
    assert not lease.renew_held(output, "s2")
    assert lease.read_holder(output)["holder"] == "s1"


def test_the_whole_stream_graph_with_its_lease_in_the_job_commits_and_releases(tmp_path):
    """The streaming graph as a Dataflow job builds it (lease_in_job), one window on
    BundleBasedDirectRunner: no launcher holds the lease, the job takes it, commits its window
    under it and releases it when the watermark reaches the end."""
    from newsbeam.pipelines import stream
    from newsbeam.pipelines.ingest import new_run
    from tests.newssite import running_site
    from tests.test_stream import _articles, _options
    output = str(tmp_path / "out")
    with running_site() as site:
        site.robots = "User-agent: *\n"
        site.publish("city", "harbour-ferry")
        options = _options(site, output, "city")
        ticks = (TestStream().advance_watermark_to(0).add_elements([TimestampedValue(1, 1)])
                 .advance_processing_time(1).advance_processing_time(1)
                 .advance_watermark_to_infinity())
        OBSERVED["whole"] = []
        with beam.Pipeline(options=options) as pipeline:
            built = stream.build(pipeline, options, new_run(options, "teststream"),
                                 stream.StreamSettings(window_s=5.0),
                                 ticks=pipeline | "Ticks" >> ticks, clock=lambda: 0.0,
                                 lease_in_job=True)
            built["lease"] | beam.Map(lambda event: _observe_as(event[0], "whole"))
        manifests = stream.window_manifests(output, "teststream")
        assert [m["run_id"] for m in manifests] == ["teststream-w19700101t000005"]
        assert manifests[0]["accounting"]["balanced"]
        assert [a["title"] for a in _articles(output)] == ["Story harbour-ferry"]
    events = OBSERVED["whole"]
    assert events[0] == LEASE_TAKEN and events[-1] == LEASE_RELEASED, events
    assert LEASE_RENEWED in events  # after the window's commit at least
    assert lease.read_holder(output) is None
    assert not dataset.started_runs(output)
    assert not os.path.exists(os.path.join(output, ".tmp"))
