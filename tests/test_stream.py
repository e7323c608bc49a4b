"""The streaming graph (pipelines/stream.py) and its own stages (transforms/streaming.py) on
BundleBasedDirectRunner --streaming, driven by TestStream: elements, watermarks and processing
time. The feeds and pages come from the real 127.0.0.1 news site (tests/newssite.py); the
dataset is read back with pyarrow."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time

import apache_beam as beam
import pyarrow.dataset as pads
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms import trigger, window
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from newsbeam.pipelines import cli, stream
from newsbeam.pipelines.ingest import new_run, prepare_options, run_pipeline
from newsbeam.pipelines.options import NewsOptions
from newsbeam.schemas.records import Article, Document
from newsbeam.transforms import dataset
from newsbeam.transforms.errors import ERRORS
from newsbeam.transforms.extract import ExtractArticles
from newsbeam.transforms.feeds import ENTRIES, FEED_STATES, NOT_MODIFIED, FeedSpec, ParseFeedFn
from newsbeam.transforms.fetch import FetchPolicy, FetchRequest
from newsbeam.transforms.streaming import (NOT_MODIFIED_STATES, SEEN_IN_STREAM,
                                           DropSeenInStream, FetchPolitely, PollClock, PollFeeds,
                                           next_turn, pubsub_item, remembered, window_start)
from tests.newssite import rss_feed, running_site

STREAMING = ["--runner=BundleBasedDirectRunner", "--streaming"]

# What the test pipelines saw: the runner pickles the functions it runs, so they write here,
# into the module, not into a test's own list.
OBSERVED: dict[str, list] = {}


def _observe_as(value, name: str) -> None:
    """Top level, so the runner pickles it by reference: it appends to this module's dict."""
    OBSERVED.setdefault(name, []).append(value)


def _options(site, output, *feeds, extra=()):
    return NewsOptions([*(f"--feed={site.base}/feeds/{name}.xml" for name in feeds),
                        f"--output={output}", "--allow_loopback", "--fetch_delay_s=0.5",
                        "--topic_model=none", "--run_id=teststream", *STREAMING, *extra])


def _run_graph(options, settings, ticks_stream, publish=lambda tick: None):
    """Runs the stream's graph with `ticks_stream` (a TestStream of tick numbers) as its poll
    clock, `publish(tick)` run before each poll, under the writer lease as run_stream holds
    it; returns the window manifests, oldest first."""
    with dataset.writing(options.output, "teststream", "stream"):
        run = new_run(options, "teststream")
        with beam.Pipeline(options=options) as pipeline:
            ticks = (pipeline | "Ticks" >> ticks_stream
                     | "Publish" >> beam.Map(lambda tick: publish(tick) or tick))
            stream.build(pipeline, options, run, settings, ticks=ticks, clock=lambda: 0.0)
    return stream.window_manifests(options.output, "teststream")


def _articles(output):
    return pads.dataset(os.path.join(output, "articles"), format="parquet",
                        partitioning="hive").to_table().to_pylist()


def _advance_processing(test_stream: TestStream, seconds: int) -> TestStream:
    for _ in range(seconds):
        test_stream = test_stream.advance_processing_time(1)
    return test_stream


def test_a_second_poll_of_an_unchanged_feed_answers_304():
    """Two ticks of the poll clock, in two windows: the first poll stores the feed's ETag in
    keyed state, the second sends it (If-None-Match) and the feed answers 304."""
    with running_site() as site:
        site.robots = "User-agent: *\n"
        site.publish("city", "harbour-ferry")
        ticks = (TestStream().advance_watermark_to(0).add_elements([TimestampedValue(1, 1)])
                 .advance_processing_time(1).advance_watermark_to(6)
                 .add_elements([TimestampedValue(2, 6)]).advance_processing_time(1)
                 .advance_watermark_to_infinity())
        OBSERVED.update(bodies=[], not_modified=[])
        with beam.Pipeline(options=PipelineOptions(STREAMING)) as pipeline:
            no_states = pipeline | "NoFeedIndex" >> beam.Create([])
            polled = pipeline | ticks | PollFeeds(
                [FeedSpec(f"{site.base}/feeds/city.xml")],
                FetchPolicy(delay_s=0.1, allow_loopback=True), "polls", no_states)
            (polled.bodies | "Validators" >> beam.Map(lambda body: body[3])
             | "ObserveBodies" >> beam.Map(_observe_as, "bodies"))
            polled[NOT_MODIFIED] | "ObserveNotModified" >> beam.Map(_observe_as, "not_modified")
        assert OBSERVED["bodies"] == [('"city-v1"', None)]
        assert OBSERVED["not_modified"] == [f"{site.base}/feeds/city.xml"]
        polls = site.requests_to("/feeds/city.xml")
        assert "If-None-Match" not in polls[0][1] and polls[1][1]["If-None-Match"] == '"city-v1"'


def test_the_stream_fetches_a_feed_in_full_every_full_fetch_every_polls_at_each_polls_time():
    """--full_fetch_every 2: the first poll is a plain GET (200, ETag kept), the second a
    conditional one (304), the third, due for a defensive full fetch, a plain GET again. The
    state each 304 leaves, for index/feeds, carries that poll's own time (the tick's), not
    the stream's start."""
    with running_site() as site:
        site.robots = "User-agent: *\n"
        site.publish("city", "harbour-ferry")
        ticks = TestStream().advance_watermark_to(0)
        for tick, moment in enumerate((1, 6, 11), start=1):
            ticks = (ticks.add_elements([TimestampedValue(tick, moment)])
                     .advance_processing_time(1).advance_watermark_to(moment + 4))
        ticks = ticks.advance_watermark_to_infinity()
        OBSERVED.update(unchanged=[])
        schedule = NewsOptions(["--full_fetch_every", "2"]).poll_schedule_of()
        with beam.Pipeline(options=PipelineOptions(STREAMING)) as pipeline:
            no_states = pipeline | "NoFeedIndex" >> beam.Create([])
            polled = pipeline | ticks | PollFeeds(
                [FeedSpec(f"{site.base}/feeds/city.xml")],
                FetchPolicy(delay_s=0.1, allow_loopback=True), "polls", no_states, schedule)
            (polled[NOT_MODIFIED_STATES]
             | beam.Map(lambda s: (s.fetched_at, s.polls_since_full, s.full_fetched_at))
             | beam.Map(_observe_as, "unchanged"))
        polls = site.requests_to("/feeds/city.xml")
        assert ["If-None-Match" in headers for _, headers in polls] == [False, True, False]
        at = lambda s: dt.datetime.fromtimestamp(s, dt.timezone.utc)
        assert OBSERVED["unchanged"] == [(at(6), 1, at(1))]


def test_feed_states_and_articles_of_a_stream_carry_their_polls_time_not_its_start():
    """In a stream (no run-wide time given) a feed's state and an article take the time of
    their element: when the feed was polled. Before, both had the stream's start time."""
    polled_at = dt.datetime(2026, 12, 2, 7, 45, tzinfo=dt.timezone.utc)
    body = rss_feed([{"title": "Ferry", "link": "http://x.test/ferry", "guid": "f1",
                      "date": "Wed, 02 Dec 2026 07:00:00 GMT"}]).encode()
    document = Document(source_uri="http://x.test/ferry", kind="text", url="http://x.test/ferry",
                        content="The harbour ferry runs an hour later from March on.")
    OBSERVED.update(state_times=[], article_times=[])
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as pipeline:
        fetched = (pipeline
                   | "Feed" >> beam.Create([(FeedSpec("http://x.test/rss"), body,
                                             "http://x.test/rss", ('"e1"', None))])
                   | "AtPoll" >> beam.Map(lambda f: TimestampedValue(f, polled_at.timestamp())))
        parsed = fetched | beam.ParDo(ParseFeedFn("s", None, 1)).with_outputs(
            ERRORS, FEED_STATES, main=ENTRIES)
        parsed[FEED_STATES] | beam.Map(lambda s: _observe_as(s.fetched_at, "state_times"))
        articles = (pipeline
                    | "Page" >> beam.Create([document])
                    | "PageAtPoll" >> beam.Map(
                        lambda d: TimestampedValue(d, polled_at.timestamp()))
                    | ExtractArticles("s", None, 30.0, 1))
        articles.articles | beam.Map(lambda a: _observe_as(a.ingested_at, "article_times"))
    assert OBSERVED["state_times"] == [polled_at]
    assert OBSERVED["article_times"] == [polled_at]


def test_a_page_fetched_after_its_window_closed_is_left_for_the_next_run(tmp_path):
    """The late-data policy. Two pages of one host, 2 s apart: the first is fetched at once,
    then the watermark passes the window's end before the second's turn (this runner does not
    hold the watermark for a timer). The window commits the first; the second is dropped with
    all that came of it, so the index does not have its entry, and the next run stores it."""
    with running_site() as site:
        site.robots = "User-agent: *\n"
        site.publish("city", "harbour-ferry")
        site.publish("city", "museum-river")
        options = _options(site, str(tmp_path / "out"), "city", extra=["--fetch_delay_s=2"])
        ticks = (TestStream().advance_watermark_to(0).add_elements([TimestampedValue(1, 1)])
                 .advance_watermark_to(7))
        ticks = _advance_processing(ticks, 4).advance_watermark_to_infinity()
        manifests = _run_graph(options, stream.StreamSettings(window_s=5.0), ticks)

        assert [m["run_id"] for m in manifests] == ["teststream-w19700101t000005"]
        assert manifests[0]["window"]["timing"] == "on_time"
        assert manifests[0]["accounting"]["articles"] == 1
        assert manifests[0]["accounting"]["balanced"]
        # Turns go in URL order: harbour-ferry first, museum-river late, and dropped.
        assert [a["title"] for a in _articles(options.output)] == ["Story harbour-ferry"]
        assert site.hits["/live/museum-river.html"] == 1

        batch = run_pipeline(prepare_options([f"--feed={site.base}/feeds/city.xml",
                                              f"--output={options.output}", "--allow_loopback",
                                              "--topic_model=none"]))
        assert batch["accounting"]["articles"] == 1
        assert batch["accounting"]["skipped_unchanged"] == 1  # the entry the window committed
        assert sorted(a["title"] for a in _articles(options.output)) == [
            "Story harbour-ferry", "Story museum-river"]


def test_host_requests_are_spaced_by_timers_on_the_injected_clock():
    """Three pages of one host at once, --fetch_delay_s 2: a turn each 2 s of processing time
    (the TestStream's clock, which the DoFn is given). After 3 s only two were fetched, so the
    window that closes then holds two; the third is fetched at 4 s, in a late pane."""
    with running_site() as site:
        site.robots = "User-agent: *\n"
        policy = FetchPolicy(delay_s=2.0, allow_loopback=True, retries=0)
        requests = [FetchRequest(url=f"{site.base}/news/{slug}.html", source_uri=slug)
                    for slug in ("c-third", "a-first", "b-second")]
        ticks = TestStream().advance_watermark_to(0).add_elements(
            [TimestampedValue(r, 1) for r in requests])
        ticks = _advance_processing(ticks, 3).advance_watermark_to(20)
        ticks = _advance_processing(ticks, 10).advance_watermark_to_infinity()
        OBSERVED["panes"] = []
        with beam.Pipeline(options=PipelineOptions(STREAMING)) as pipeline:
            fetched = (pipeline | ticks
                       | FetchPolitely(policy, "spacing", clock=lambda: 0.0))
            (fetched.responses
             | beam.Map(lambda pair: pair[0].source_uri)
             | beam.WindowInto(window.FixedWindows(10),
                               trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                               allowed_lateness=30,
                               accumulation_mode=trigger.AccumulationMode.DISCARDING)
             | beam.Map(lambda uri: (None, uri)) | beam.GroupByKey()
             | beam.Map(lambda kv, pane=beam.DoFn.PaneInfoParam: (pane.index, sorted(kv[1])))
             | beam.Map(_observe_as, "panes"))
        assert sorted(OBSERVED["panes"]) == [(0, ["a-first", "b-second"]), (1, ["c-third"])]
        assert [path for _, path, _ in site.log if path.startswith("/news/")] == [
            "/news/a-first.html", "/news/b-second.html", "/news/c-third.html"]


def _article(article_id: str, text: str = "text") -> Article:
    return Article(article_id=article_id, source_uri=f"http://x.test/{article_id}", text=text,
                   word_count=1, content_hash=article_id, date_source="none", run_id="s",
                   ingested_at=dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc))


def test_a_copy_arriving_in_a_later_window_is_dropped_against_state():
    events = (TestStream().advance_watermark_to(0)
              .add_elements([TimestampedValue(_article("a1"), 1),
                             TimestampedValue(_article("a1"), 2),  # same window: passes on
                             TimestampedValue(_article("b2"), 3)])
              .advance_watermark_to(12)
              .add_elements([TimestampedValue(_article("a1"), 13)])  # a later window
              .advance_watermark_to_infinity())
    OBSERVED.update(kept=[], seen=[])
    with beam.Pipeline(options=PipelineOptions(STREAMING)) as pipeline:
        result = pipeline | events | DropSeenInStream(window_s=10.0, ttl_s=3600.0)
        for label, pcoll in (("kept", result.articles), ("seen", result[SEEN_IN_STREAM])):
            (pcoll | f"Id_{label}" >> beam.Map(
                lambda a, t=beam.DoFn.TimestampParam: (a.article_id, float(t)))
             | f"Observe_{label}" >> beam.Map(_observe_as, label))
    assert sorted(OBSERVED["kept"]) == [("a1", 1.0), ("a1", 2.0), ("b2", 3.0)]
    assert OBSERVED["seen"] == [("a1", 13.0)]


def test_pure_helpers():
    assert window_start(1764650423.0, 300.0) == 1764650400.0
    assert next_turn(None, 2.0, 10.0) == 10.0
    assert next_turn(9.0, 2.0, 10.0) == 11.0 and next_turn(5.0, 2.0, 10.0) == 10.0
    assert remembered(100.0, 150.0, 60.0) and not remembered(100.0, 161.0, 60.0)
    assert not remembered(None, 1.0, 60.0)
    assert dataset.window_commit_id("s1", dt.datetime(2026, 12, 2, 3, 5,
                                                      tzinfo=dt.timezone.utc), 0) == \
        "s1-w20261202t030500"


def test_pubsub_messages_are_urls_or_article_json():
    request = pubsub_item(b"https://example.test/news/a.html\n")
    assert isinstance(request, FetchRequest) and request.url == "https://example.test/news/a.html"
    document = pubsub_item(json.dumps({"url": "https://example.test/b", "title": "B",
                                       "text": "Some words."}).encode(), "m1")
    assert isinstance(document, Document) and document.kind == "text"
    assert (document.source_uri, document.title) == ("https://example.test/b", "B")
    assert pubsub_item(b'{"html": "<p>x</p>"}', "m2").source_uri == "pubsub:m2"
    for bad in (b"not a url", b"[1, 2]", b'{"title": "no text"}'):
        with pytest.raises(ValueError):
            pubsub_item(bad)


@pytest.mark.parametrize("words, problem", [
    (["--pubsub_subscription", "projects/p/subscriptions/s"], "only DataflowRunner"),
    (["--window_s", "0"], "--window_s 0: give a positive number"),
    (["--urls", "{tmp}/urls.txt"], "--urls: a stream polls feeds"),
    (["--poll_interval_s", "120"], "--poll_interval_s 120 is above --min_poll_s 60"),
    (["--window", "5"], "--window: no such flag"),
])
def test_stream_refuses_what_it_cannot_honour(tmp_path, capsys, words, problem):
    (tmp_path / "urls.txt").write_text("http://127.0.0.1:9/page.html\n")
    status = cli.main(["stream", "--feed", "http://127.0.0.1:9/feed.xml",
                       "--output", str(tmp_path / "out"),
                       *(word.format(tmp=tmp_path) for word in words)])
    assert status == cli.EXIT_REFUSED
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_dataflow_streams_and_pubsub_are_allowed_now_that_the_job_holds_its_lease():
    # Before: "--runner DataflowRunner: `newsbeam stream` runs on a local runner only for now".
    options = NewsOptions(["--runner=DataflowRunner", "--feed", "https://example.test/f.xml",
                           "--output", "gs://bucket/news", "--run_id", "s1"])
    settings = stream.StreamSettings(pubsub_subscription="projects/p/subscriptions/s")
    assert stream.stream_problems(options, settings) == []
    pubsub_only = NewsOptions(["--runner=DataflowRunner", "--output", "gs://bucket/news"])
    assert stream.stream_problems(pubsub_only, settings) == []
    flink = NewsOptions(["--runner=FlinkRunner", "--output", "gs://bucket/news"])
    assert any("only DataflowRunner reads Pub/Sub" in problem
               for problem in stream.stream_problems(flink, settings))


def test_a_stream_id_that_already_committed_windows_is_refused(tmp_path, capsys):
    runs = tmp_path / "out" / "_runs"
    runs.mkdir(parents=True)
    (runs / "mystream-w20261202t000500.json").write_text("{}")
    status = cli.main(["stream", "--feed", "http://127.0.0.1:9/feed.xml", "--run_id",
                       "mystream", "--output", str(tmp_path / "out")])
    assert status == cli.EXIT_REFUSED
    assert "--run_id mystream: a stream of that id already committed" in capsys.readouterr().err
    assert sorted(p.name for p in runs.iterdir()) == ["mystream-w20261202t000500.json"]


def test_a_feed_file_or_no_feed_is_refused(tmp_path, capsys):
    feed = tmp_path / "feed.xml"
    feed.write_text("<rss/>")
    assert cli.main(["stream", "--feed", str(feed), "--output", str(tmp_path / "o")]) == 2
    assert "a stream polls feed URLs" in capsys.readouterr().err
    assert cli.main(["stream", "--output", str(tmp_path / "o")]) == 2
    assert "nothing to stream" in capsys.readouterr().err
    options = NewsOptions(["--feed", "http://127.0.0.1:9/f.xml"])
    assert options.view_as(StandardOptions).streaming is False  # only the stream sets it


# --- The poll clock on FnApiRunner ---------------------------------------------------------------


def _run_clock(clock) -> tuple[list, int]:
    """Runs `clock` on FnApiRunner (streaming); (the ticks it emitted, PollTicksFn's calls)."""
    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner", "--streaming"]))
    _ = pipeline | clock | beam.Map(_observe_as, "clock_ticks")
    result = pipeline.run()
    result.wait_until_finish()
    calls = result.metrics().query(beam.metrics.MetricsFilter().with_name("poll_clock_calls"))["counters"]
    return OBSERVED.pop("clock_ticks", []), sum(c.committed for c in calls)


def test_the_poll_clock_makes_one_call_a_tick_on_fnapirunner_not_a_busy_loop():
    # PeriodicImpulse here is called hundreds of times a second (FnApiRunner runs a deferred
    # rest again at once, ignoring its resume time) and memory grows with every call.
    ticks, calls = _run_clock(PollClock(Timestamp.of(time.time() + 3), 1.0, wait_s=1.0))
    assert len(ticks) == 3
    assert calls <= len(ticks) + 2


def test_the_poll_clock_stops_when_its_stop_file_appears(tmp_path):
    stop_file = tmp_path / "stop"
    threading.Timer(2.5, stop_file.touch).start()
    ticks, _ = _run_clock(PollClock(MAX_TIMESTAMP, 1.0, wait_s=1.0, stop_file=str(stop_file)))
    assert 1 <= len(ticks) <= 4  # ticks until it was asked to stop, then none: it ended
