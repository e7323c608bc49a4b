"""Adaptive poll intervals in the stream (--poll_schedule adaptive, the stream's default): each
feed's keyed state says whether a tick polls it, the interval follows how many of its entries
are new, within --min_poll_s / --max_poll_s, and the schedule goes through index/feeds to and
from `newsbeam run --every`. BundleBasedDirectRunner --streaming with TestStream ticks; the
feeds come from the real 127.0.0.1 news site (tests/newssite.py), which counts the requests."""

from __future__ import annotations

import datetime as dt
import os
import time

import apache_beam as beam
import pyarrow.dataset as pads
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from newsbeam.pipelines import stream
from newsbeam.pipelines.ingest import new_run, prepare_options, run_pipeline
from newsbeam.pipelines.options import NewsOptions
from newsbeam.schemas.records import FeedIndexEntry
from newsbeam.transforms import dataset
from newsbeam.transforms.feeds import NOT_DUE, FeedSpec
from newsbeam.transforms.fetch import FetchPolicy
from newsbeam.transforms.polling import next_poll_interval
from newsbeam.transforms.streaming import NOT_MODIFIED_STATES, POLL_STATES, PollFeeds
from tests.newssite import running_site

STREAMING = ["--runner=BundleBasedDirectRunner", "--streaming"]

# The runner pickles the functions it runs: they reach the site and report through the module.
OBSERVED: dict[str, list] = {}
SITES: dict = {}


def _observe_as(value, name: str) -> None:
    OBSERVED.setdefault(name, []).append(value)


def _publish_to_busy(tick: int) -> int:
    SITES["site"].publish("busy", f"busy-{tick:03d}")
    return tick


def _publish_to_quiet_at_second_tick(tick: int) -> int:
    if tick == 2:
        SITES["site"].publish("quiet", "quiet-later")
    return tick


def _feed_name(url: str) -> str:
    return url.rsplit("/", 1)[1].removesuffix(".xml")


def _ticks(moments) -> TestStream:
    ticks = TestStream().advance_watermark_to(0)
    for number, moment in enumerate(moments, start=1):
        ticks = (ticks.add_elements([TimestampedValue(number, moment)])
                 .advance_processing_time(1).advance_watermark_to(moment + 1))
    return ticks.advance_watermark_to_infinity()


def test_a_quiet_feed_is_polled_less_often_than_a_busy_one_and_not_when_not_due():
    """30 ticks 2 s apart; "busy" gets an entry before each, "quiet" none after the first.
    busy stays at --min_poll_s (polled at every tick); quiet answers 304 and its interval grows
    by half each time up to --max_poll_s; at the ticks where it is not due it is not requested
    at all (the server's count), and it is polled at the first tick once due."""
    with running_site() as site:
        SITES["site"] = site
        site.robots = "User-agent: *\n"
        site.publish("busy", "busy-start")
        site.publish("quiet", "quiet-start")
        schedule = NewsOptions(["--poll_schedule=adaptive", "--min_poll_s=2", "--max_poll_s=10",
                                "--full_fetch_every=100"]).poll_schedule_of()
        moments = list(range(2, 62, 2))
        OBSERVED.update(states=[], not_due=[])
        with beam.Pipeline(options=PipelineOptions(STREAMING)) as pipeline:
            no_states = pipeline | "NoFeedIndex" >> beam.Create([])
            polled = (pipeline | _ticks(moments) | "Publish" >> beam.Map(_publish_to_busy)
                      | PollFeeds([FeedSpec(f"{site.base}/feeds/busy.xml"),
                                   FeedSpec(f"{site.base}/feeds/quiet.xml")],
                                  FetchPolicy(delay_s=0.05, allow_loopback=True), "adaptive",
                                  no_states, schedule))
            ((polled[POLL_STATES], polled[NOT_MODIFIED_STATES]) | beam.Flatten()
             | "States" >> beam.Map(lambda s: (
                 _feed_name(s.feed_url), s.fetched_at.timestamp(), s.poll_interval_s,
                 s.next_poll_at.timestamp(), s.entries, s.new_entries))
             | "ObserveStates" >> beam.Map(_observe_as, "states"))
            (polled[NOT_DUE]
             | "NotDue" >> beam.Map(lambda url, t=beam.DoFn.TimestampParam: (
                 _feed_name(url), float(t)))
             | "ObserveNotDue" >> beam.Map(_observe_as, "not_due"))

        busy_polls = site.requests_to("/feeds/busy.xml")
        quiet_polls = site.requests_to("/feeds/quiet.xml")
        assert len(busy_polls) == len(moments)
        assert len(quiet_polls) == 8 < len(busy_polls)
        quiet_not_due = sorted(t for name, t in OBSERVED["not_due"] if name == "quiet")
        assert len(quiet_polls) + len(quiet_not_due) == len(moments)
        assert not [t for name, t in OBSERVED["not_due"] if name == "busy"]

        quiet = sorted(s for s in OBSERVED["states"] if s[0] == "quiet")
        assert [s[1] for s in quiet] == [2, 4, 8, 14, 22, 32, 42, 52]
        assert [s[2] for s in quiet] == [2, 3, 4.5, 6.75, 10, 10, 10, 10]  # capped: max
        for before, after in zip(quiet, quiet[1:]):
            # Never polled before it is due, and at the first tick once it is.
            assert before[3] <= after[1] < before[3] + 2
            assert all(t < before[3] for t in quiet_not_due if before[1] < t < after[1])
        busy = sorted(s for s in OBSERVED["states"] if s[0] == "busy")
        assert {s[2] for s in busy} == {2}  # floored: min
        assert [(s[4], s[5]) for s in busy[:3]] == [(2, 2), (3, 1), (4, 1)]


def _index_feeds(output: str) -> list[dict]:
    rows = pads.dataset(os.path.join(output, "index", "feeds"), format="parquet",
                        partitioning="hive").to_table().to_pylist()
    return sorted(rows, key=lambda row: row["fetched_at"])


def _batch_run(site, output: str):
    return run_pipeline(prepare_options([
        f"--feed={site.base}/feeds/quiet.xml", f"--output={output}", "--allow_loopback",
        "--topic_model=none", "--poll_schedule=adaptive", "--min_poll_s=600"]))


def test_the_schedule_goes_through_index_feeds_between_the_stream_and_run_every(tmp_path):
    """A stream polls a feed at a tick (its first 200: the next poll in --min_poll_s, 600 s)
    and 700 s later, when one of its two entries is new: the interval moves towards 700 s a
    new entry (not reset to --min_poll_s as the batch's recomputation would, without the
    poll's previous state); that is the row its window commits. A `run --every` run then
    finds the feed not due and does not request it; and a stream seeded with that row does
    not request it at a tick before its next_poll_at."""
    output = str(tmp_path / "out")
    with running_site() as site:
        SITES["site"] = site
        site.robots = "User-agent: *\n"
        site.publish("quiet", "quiet-start")
        start = float(int(time.time()))  # TestStream: whole milliseconds
        first, due = start + 1, start + 701
        ticks = (TestStream().advance_watermark_to(start)
                 .add_elements([TimestampedValue(1, first)]))
        for _ in range(3):
            ticks = ticks.advance_processing_time(1)
        ticks = ticks.advance_watermark_to(first + 10).add_elements([TimestampedValue(2, due)])
        for _ in range(3):
            ticks = ticks.advance_processing_time(1)
        ticks = ticks.advance_watermark_to_infinity()
        options = NewsOptions([f"--feed={site.base}/feeds/quiet.xml", f"--output={output}",
                               "--allow_loopback", "--fetch_delay_s=0.2", "--topic_model=none",
                               "--run_id=adaptivestream", "--min_poll_s=600", *STREAMING])
        with dataset.writing(output, "adaptivestream", "stream"):
            run = new_run(options, "adaptivestream")
            with beam.Pipeline(options=options) as pipeline:
                polls = (pipeline | "Ticks" >> ticks
                         | "Publish" >> beam.Map(_publish_to_quiet_at_second_tick))
                stream.build(pipeline, options, run, stream.StreamSettings(window_s=5.0),
                             ticks=polls, clock=lambda: 0.0)
        manifests = stream.window_manifests(output, "adaptivestream")
        assert [m["accounting"]["articles"] for m in manifests] == [1, 1]
        assert all(m["accounting"]["balanced"] for m in manifests)

        rows = _index_feeds(output)
        assert [row["fetched_at"].timestamp() for row in rows] == [first, due]
        assert [(row["entries"], row["new_entries"]) for row in rows] == [(1, 1), (2, 1)]
        schedule = options.poll_schedule_of(every=True)
        expected = round(next_poll_interval(600, 700, 2, 1, schedule), 3)
        assert [row["poll_interval_s"] for row in rows] == [600, expected]
        assert 600 < expected < 700
        assert abs(rows[-1]["next_poll_at"].timestamp() - (due + expected)) < 1e-3

        later = _batch_run(site, output)
        assert later["accounting"]["skipped_unchanged"] == 1  # not due: not polled
        assert later["counts"]["feeds_not_due"] == 1
        assert len(site.requests_to("/feeds/quiet.xml")) == 2

        # The other way: a stream seeded with the row does not poll before next_poll_at.
        row = {name: value for name, value in rows[-1].items()
               if name in FeedIndexEntry.__dataclass_fields__}
        OBSERVED.update(seeded_not_due=[])
        with beam.Pipeline(options=PipelineOptions(STREAMING)) as pipeline:
            seeded = pipeline | "FeedIndex" >> beam.Create([(row["feed_url"],
                                                              FeedIndexEntry(**row))])
            polled = (pipeline | _ticks([due + 600]) | PollFeeds(
                [FeedSpec(f"{site.base}/feeds/quiet.xml")],
                FetchPolicy(delay_s=0.05, allow_loopback=True), "seeded", seeded, schedule))
            polled[NOT_DUE] | beam.Map(_observe_as, "seeded_not_due")
        assert OBSERVED["seeded_not_due"] == [f"{site.base}/feeds/quiet.xml"]
        assert len(site.requests_to("/feeds/quiet.xml")) == 2
