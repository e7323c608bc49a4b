"""Web sources: feeds (--feed, --feeds) and URL lists (--urls), fetched into Documents.

    feeds ──► fetch feeds (conditional GET) ──► entries not seen before ──┐
    URL lists ─────────────────────────────────────────────────────────────┴► fetch pages
                                                                               ──► Documents

Pages of both kinds are fetched together, grouped by host (transforms/fetch.py); a host's
robots.txt read while fetching feeds is handed on, so a run reads it once.
"""

from __future__ import annotations

import datetime as dt
import os

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from newsbeam.schemas.records import Document
from newsbeam.transforms.errors import ERRORS
from newsbeam.transforms.feeds import (ENTRIES_SEEN, ENTRY_DOCUMENTS, FEED_STATES, NOT_MODIFIED, FeedSpec,
                                       InvalidFeedList, ReadFeeds, entry_index_entry, parse_feed_list)
from newsbeam.transforms.fetch import FINISHED, ROBOTS, FetchPages, FetchPolicy, FetchRequest
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


def feed_specs(feeds: list[str], feed_lists: list[str]) -> list[FeedSpec]:
    """The feeds of --feed (URLs or files) and of --feeds files; paths in a feeds file are
    relative to it. Raises InvalidFeedList naming the file at fault."""
    specs = [FeedSpec(_absolute(location)) for location in feeds]
    for list_path in feed_lists:
        with FileSystems.open(_absolute(list_path)) as stream:
            text = stream.read().decode("utf-8")
        try:
            listed = parse_feed_list(text, frozenset(IPTC_TOPICS))
        except InvalidFeedList as error:
            raise InvalidFeedList(f"{list_path}: {error}") from None
        folder = os.path.dirname(_absolute(list_path)) if is_local(list_path) else None
        specs += [FeedSpec(_absolute(s.location, folder), s.publisher, s.topic) for s in listed]
    return specs


def url_request(line: str) -> FetchRequest | None:
    """The request of one line of a URL list; None for blank lines and '#' comments."""
    url = line.strip()
    if not url or url.startswith("#"):
        return None
    return FetchRequest(url=url, source_uri=url,
                        payload=Document(source_uri=url, kind="html", content=b"", url=url))


def states_of_complete_feeds(keyed):
    """(feed, {"state": [FeedIndexEntry], "requested": [...], "finished": [...]}) -> the state,
    when every page requested from the feed's entries finished (fetched, or failed for good).
    Otherwise the validators are not stored, so the next run reads the feed again (it cannot
    answer 304) and retries the entries that failed for now."""
    _, grouped = keyed
    if len(list(grouped["requested"])) == len(list(grouped["finished"])):
        yield from grouped["state"]


# --- Composites ----------------------------------------------------------------------------------


def feed_progress(requests, feed_states, entry_documents, finished, run_id: str):
    """What the index keeps of a read of feeds: (EntryIndexEntries of the entries done: their
    page fetched or failed for good, or taken as they are; the FeedIndexEntries of the feeds
    all of whose requested pages finished). Batch and stream alike (the stream per window)."""
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
         "finished": from_feeds | "FinishedByFeed" >> beam.Map(lambda d: (d.feed_url, None))}
        | "JoinByFeed" >> beam.CoGroupByKey()
        | "CompleteFeeds" >> beam.FlatMap(states_of_complete_feeds))
    return entry_index, complete



class ReadWebSources(beam.PTransform):
    """Feeds and URL lists -> {"documents": Documents, ERRORS: ErrorRows, NOT_MODIFIED: feed
    URLs, ENTRIES_SEEN: entry keys skipped, FEED_STATES and ENTRY_INDEX: index records to
    store}. Feed entries without a link are documents of their own text (at least `min_words`
    words of it)."""

    def __init__(self, specs: list[FeedSpec], url_lists: list[str], policy: FetchPolicy,
                 run_id: str, fetched_at: dt.datetime, feed_states, indexed_entry_keys, *,
                 min_words: int):
        super().__init__()
        self._specs = specs
        self._url_lists = sorted({_absolute(path) for path in url_lists})
        self._policy = policy
        self._run_id = run_id
        self._fetched_at = fetched_at
        self._feed_states = feed_states
        self._indexed_entry_keys = indexed_entry_keys
        self._min_words = min_words

    def expand(self, pipeline):
        feeds = pipeline | "ReadFeeds" >> ReadFeeds(
            self._specs, self._policy, self._run_id, self._fetched_at, self._feed_states,
            self._indexed_entry_keys, min_words=self._min_words)
        listed = (
            pipeline
            | "UrlLists" >> beam.Create(self._url_lists)
            | "ReadUrlLists" >> beam.io.ReadAllFromText()
            | "UrlRequests" >> beam.FlatMap(lambda line: [r for r in [url_request(line)] if r]))
        pages = (
            (feeds["requests"], listed)
            | "AllPageRequests" >> beam.Flatten()
            | "FetchPages" >> FetchPages(self._policy, self._run_id, feeds[ROBOTS]))
        entry_index, feed_states = feed_progress(
            feeds["requests"], feeds[FEED_STATES], feeds[ENTRY_DOCUMENTS], pages[FINISHED],
            self._run_id)
        return {
            "documents": (pages["documents"], feeds[ENTRY_DOCUMENTS])
            | "WebDocuments" >> beam.Flatten(),
            ERRORS: (feeds[ERRORS], pages[ERRORS]) | "WebErrors" >> beam.Flatten(),
            NOT_MODIFIED: feeds[NOT_MODIFIED],
            ENTRIES_SEEN: feeds[ENTRIES_SEEN],
            FEED_STATES: feed_states,
            ENTRY_INDEX: entry_index,
        }
