"""Web sources: feeds and sitemaps (--feed, --sitemap, --sitemaps_from_robots, --feeds) and URL
lists (--urls), fetched into Documents.

    feeds ──► fetch feeds (conditional GET) ──► entries not seen before ──┐
    URL lists ─────────────────────────────────────────────────────────────┴► fetch pages
                                                                               ──► Documents

Pages of both kinds are fetched together, grouped by host (transforms/fetch.py); a host's
robots.txt read while fetching feeds is handed on, so a run reads it once. Each feed read
leaves its poll state in index/feeds (transforms/polling.py): the validators of a 200, a 304
counted, the next interval and when the feed is due.
"""

from __future__ import annotations

import datetime as dt
import os

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from newsbeam.schemas.records import Document
from newsbeam.transforms.errors import ERRORS
from newsbeam.transforms.archive import ArchiveResponses, WarcArchive
from newsbeam.transforms.feeds import (ENTRIES_SEEN, ENTRY_DOCUMENTS, FEED_STATES, MAX_SITEMAPS,
                                       NOT_DUE, NOT_MODIFIED, RESPONSES, ROBOTS_TXT, SITEMAP,
                                       SITEMAP_DEPTH, FeedSpec, InvalidFeedList, ReadFeeds,
                                       entry_index_entry, parse_feed_list)
from newsbeam.transforms.fetch import (FINISHED, ROBOTS, FetchPages, FetchPolicy, FetchRequest,
                                       origin_of)
from newsbeam.transforms.polling import PollSchedule, polled_state
from newsbeam.transforms.sources import is_local
from newsbeam.transforms.topics import IPTC_TOPICS

ENTRY_INDEX = "entry_index"


# --- Pure functions ------------------------------------------------------------------------------


def _absolute(location: str, folder: str | None = None) -> str:
    """A URL as it is; a local path made absolute (against `folder` when relative)."""
    if FeedSpec(location).is_url or not is_local(location):
        return location
    path = os.path.expanduser(location)
    if folder and not os.path.isabs(path):
        path = os.path.join(folder, path)
    return os.path.abspath(path)


def robots_url(site: str) -> str:
    """The robots.txt of a site given by any URL on it (its origin's /robots.txt)."""
    if site.rstrip("/").lower().endswith("/robots.txt"):
        return site
    return f"{origin_of(site) or site.rstrip('/')}/robots.txt"


def feed_specs(feeds: list[str], feed_lists: list[str], sitemaps: list[str] = (),
               robots_sites: list[str] = ()) -> list[FeedSpec]:
    """The feeds of --feed (URLs or files), the sitemaps of --sitemap and the robots.txt of
    --sitemaps_from_robots sites, and those of --feeds files; paths in a feeds file are
    relative to it. Raises InvalidFeedList naming the file at fault."""
    specs = [FeedSpec(_absolute(location)) for location in feeds]
    specs += [FeedSpec(_absolute(location), kind=SITEMAP) for location in sitemaps]
    specs += [FeedSpec(robots_url(site), kind=ROBOTS_TXT) for site in robots_sites]
    for list_path in feed_lists:
        with FileSystems.open(_absolute(list_path)) as stream:
            text = stream.read().decode("utf-8")
        try:
            listed = parse_feed_list(text, frozenset(IPTC_TOPICS))
        except InvalidFeedList as error:
            raise InvalidFeedList(f"{list_path}: {error}") from None
        folder = os.path.dirname(_absolute(list_path)) if is_local(list_path) else None
        specs += [FeedSpec(robots_url(s.location) if s.kind == ROBOTS_TXT
                           else _absolute(s.location, folder), s.publisher, s.topic, s.kind)
                  for s in listed]
    return specs


def url_request(line: str) -> FetchRequest | None:
    """The request of one line of a URL list; None for blank lines and '#' comments."""
    url = line.strip()
    if not url or url.startswith("#"):
        return None
    return FetchRequest(url=url, source_uri=url,
                        payload=Document(source_uri=url, kind="html", content=b"", url=url))


def states_of_complete_feeds(keyed, previous: dict, schedule: PollSchedule):
    """(feed, {"state": [FeedIndexEntry], "requested": [...], "finished": [...], "documents":
    [...], and in a stream "scheduled": [FeedIndexEntry]}) -> the state with its poll schedule,
    when every page requested from the feed's entries finished (fetched, or failed for good).
    Otherwise the validators are not stored, so the next run reads the feed again (it cannot
    answer 304) and retries the entries that failed for now. A stream's poll decided the
    schedule itself (from its keyed state: "scheduled", by poll time): that one is kept."""
    feed, grouped = keyed
    requested = len(list(grouped["requested"]))
    if requested != len(list(grouped["finished"])):
        return
    new_entries = requested + len(list(grouped["documents"]))
    scheduled = {state.fetched_at: state for state in grouped.get("scheduled", ())}
    for state in grouped["state"]:
        if state.fetched_at in scheduled:
            yield scheduled[state.fetched_at]
            continue
        # At the poll's own time: the run's start in a batch, each poll's in a stream.
        yield polled_state(feed, state.run_id, state.fetched_at, schedule, previous.get(feed),
                           modified=True, etag=state.etag, last_modified=state.last_modified,
                           entries=state.entries or 0, new_entries=new_entries)


def not_modified_state(feed: str, previous: dict, run_id: str, now: dt.datetime,
                       schedule: PollSchedule):
    """The state a 304 leaves: the validators kept, the interval lengthened."""
    if feed in previous:
        yield polled_state(feed, run_id, now, schedule, previous[feed], modified=False)


# --- Composites ----------------------------------------------------------------------------------


def feed_progress(requests, feed_states, entry_documents, finished, run_id: str,
                  schedule: PollSchedule = PollSchedule(), previous=None, poll_states=None):
    """What the index keeps of a read of feeds: (EntryIndexEntries of the entries done: their
    page fetched or failed for good, or taken as they are; the FeedIndexEntries, with their poll
    schedule, of the feeds all of whose requested pages finished). `previous`: (feed, latest
    FeedIndexEntry) of earlier runs, or None. `poll_states`: the FeedIndexEntries whose schedule
    the poll decided (a stream's PollFeedFn), kept as they are. Batch and stream alike (the
    stream per window)."""
    from_feeds = finished | "FromFeeds" >> beam.Filter(lambda d: d.feed_url is not None)
    # Entries without a link are done once they are documents: indexed as fetched.
    entry_index = (
        (from_feeds, entry_documents)
        | "DoneEntries" >> beam.Flatten()
        | "EntryIndex" >> beam.Map(lambda d: entry_index_entry(d, run_id)))
    complete = (
        {"state": feed_states | "StateByFeed" >> beam.Map(lambda s: (s.feed_url, s)),
         "requested": requests | "RequestedByFeed" >> beam.Map(
             lambda r: (r.payload.feed_url, None)),
         "finished": from_feeds | "FinishedByFeed" >> beam.Map(lambda d: (d.feed_url, None)),
         "documents": entry_documents | "DocumentsByFeed" >> beam.Map(
             lambda d: (d.feed_url, None)),
         **({} if poll_states is None else {"scheduled": poll_states | "ScheduledByFeed" >>
                                            beam.Map(lambda s: (s.feed_url, s))})}
        | "JoinByFeed" >> beam.CoGroupByKey()
        | "CompleteFeeds" >> beam.FlatMap(
            states_of_complete_feeds,
            previous={} if previous is None else beam.pvalue.AsDict(previous),
            schedule=schedule))
    return entry_index, complete


class ReadWebSources(beam.PTransform):
    """Feeds and URL lists -> {"documents": Documents, ERRORS: ErrorRows, NOT_MODIFIED: feed
    URLs, ENTRIES_SEEN: entry keys skipped, FEED_STATES and ENTRY_INDEX: index records to
    store}. Feed entries without a link are documents of their own text (at least `min_words`
    words of it)."""

    def __init__(self, specs: list[FeedSpec], url_lists: list[str], policy: FetchPolicy,
                 run_id: str, fetched_at: dt.datetime, feed_states, indexed_entry_keys, *,
                 min_words: int, schedule: PollSchedule = PollSchedule(),
                 sitemap_depth: int = SITEMAP_DEPTH, max_sitemaps: int = MAX_SITEMAPS,
                 archive: WarcArchive | None = None):
        super().__init__()
        self._specs = specs
        self._url_lists = sorted({_absolute(path) for path in url_lists})
        self._policy = policy
        self._run_id = run_id
        self._fetched_at = fetched_at
        self._feed_states = feed_states
        self._indexed_entry_keys = indexed_entry_keys
        self._min_words = min_words
        self._schedule = schedule
        self._sitemap_depth = sitemap_depth
        self._max_sitemaps = max_sitemaps
        self._archive = archive

    def expand(self, pipeline):
        feeds = pipeline | "ReadFeeds" >> ReadFeeds(
            self._specs, self._policy, self._run_id, self._fetched_at, self._feed_states,
            self._indexed_entry_keys, min_words=self._min_words, schedule=self._schedule,
            sitemap_depth=self._sitemap_depth, max_sitemaps=self._max_sitemaps)
        listed = (
            pipeline
            | "UrlLists" >> beam.Create(self._url_lists)
            | "ReadUrlLists" >> beam.io.ReadAllFromText()
            | "UrlRequests" >> beam.FlatMap(lambda line: [r for r in [url_request(line)] if r]))
        pages = (
            (feeds["requests"], listed)
            | "AllPageRequests" >> beam.Flatten()
            | "FetchPages" >> FetchPages(self._policy, self._run_id, feeds[ROBOTS]))
        if self._archive is not None:
            _ = ((feeds[RESPONSES], pages["responses"])
                 | "FetchedResponses" >> beam.Flatten()
                 | "ArchiveWarc" >> ArchiveResponses(self._archive))
        entry_index, feed_states = feed_progress(
            feeds["requests"], feeds[FEED_STATES], feeds[ENTRY_DOCUMENTS], pages[FINISHED],
            self._run_id, self._schedule, previous=self._feed_states)
        unmodified_states = feeds[NOT_MODIFIED] | "NotModifiedStates" >> beam.FlatMap(
            not_modified_state, previous=beam.pvalue.AsDict(self._feed_states),
            run_id=self._run_id, now=self._fetched_at, schedule=self._schedule)
        return {
            "documents": (pages["documents"], feeds[ENTRY_DOCUMENTS])
            | "WebDocuments" >> beam.Flatten(),
            ERRORS: (feeds[ERRORS], pages[ERRORS]) | "WebErrors" >> beam.Flatten(),
            NOT_MODIFIED: feeds[NOT_MODIFIED],
            NOT_DUE: feeds[NOT_DUE],
            ENTRIES_SEEN: feeds[ENTRIES_SEEN],
            FEED_STATES: (feed_states, unmodified_states) | "PollStates" >> beam.Flatten(),
            ENTRY_INDEX: entry_index,
        }
