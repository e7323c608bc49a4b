"""How often to look at a feed or sitemap: adaptive poll intervals and defensive full fetches.

Pure functions (no Beam, no clock of their own): the batch graph calls them with the run's
start time (`run --every` skips a feed that is not due yet), and the streaming graph can call
them with its own clock and keep the result in state.

The interval follows how often a feed really changes, as Miniflux's "entry frequency" and Media
Cloud's feed scheduler do: the mean time between new entries seen at the last poll (new entries
over the time since the poll before), moved at most halfway towards it per poll (one quiet or
busy poll does not swing it), and shortened further when no entry of the poll had been seen
before (the feed may have rolled past entries between two polls). A poll with nothing new (a
304, or only entries seen before) lengthens it by half. Always within [min_poll_s, max_poll_s].

Defensive conditional GET: some servers answer 304 or the same ETag although the feed changed,
so after `full_every_polls` - 1 answers of "not modified" in a row, or once `full_after_s` passed
since the last full answer (200), a feed is asked for in full, without its validators.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

__all__ = ["PollSchedule", "next_poll_interval", "is_due", "full_fetch_due", "new_entry_count",
           "SCHEDULES"]

ALWAYS = "always"      # poll every feed every run (a one-off `newsbeam run`)
ADAPTIVE = "adaptive"  # skip the feeds that are not due (the default of `run --every`)
SCHEDULES = (ALWAYS, ADAPTIVE)

GROWTH = 1.5        # a poll with nothing new: the interval grows by half
MAX_STEP = 2.0      # a busy poll: the interval shrinks at most to half (or grows at most x2)


@dataclasses.dataclass(frozen=True)
class PollSchedule:
    """The bounds of the interval and when a full fetch is due (--min_poll_s, --max_poll_s,
    --full_fetch_every, --full_fetch_after_h); `mode` is ALWAYS or ADAPTIVE (--poll_schedule)."""
    min_poll_s: float = 60.0
    max_poll_s: float = 6 * 3600.0
    full_every_polls: int = 10
    full_after_s: float = 24 * 3600.0
    mode: str = ALWAYS


def _clamp(value: float, schedule: PollSchedule) -> float:
    return min(max(value, schedule.min_poll_s), schedule.max_poll_s)


def next_poll_interval(previous_s: float | None, elapsed_s: float | None, entries: int,
                       new_entries: int, schedule: PollSchedule) -> float:
    """Seconds until a feed's next poll. `previous_s`: the interval used so far (None the first
    time: min_poll_s); `elapsed_s`: time since the poll before this one (None the first time);
    `entries`: entries the feed listed now (0 for a 304); `new_entries`: those not seen before."""
    previous = _clamp(previous_s if previous_s and previous_s > 0 else schedule.min_poll_s,
                      schedule)
    if new_entries <= 0:
        return _clamp(previous * GROWTH, schedule)
    if elapsed_s is None or elapsed_s <= 0:
        # The first poll: every entry is new, which says nothing about the rate.
        return previous
    mean_gap = elapsed_s / new_entries
    # Move towards the mean gap geometrically, at most MAX_STEP either way per poll.
    step = min(max(math.sqrt(mean_gap / previous), 1 / MAX_STEP), MAX_STEP)
    interval = previous * step
    if entries > 1 and new_entries >= entries:
        # Nothing of the feed was seen before: entries may have scrolled off unseen.
        interval = min(interval, previous / MAX_STEP)
    return _clamp(interval, schedule)


def new_entry_count(listed_keys, previous_keys, indexed_keys) -> int:
    """How many of the entry keys a poll listed were neither listed by the poll before
    (`previous_keys`) nor stored by an earlier run (`indexed_keys`, index/entries)."""
    return sum(1 for key in set(listed_keys)
               if key not in previous_keys and key not in indexed_keys)


def is_due(next_poll_at: dt.datetime | None, now: dt.datetime, schedule: PollSchedule) -> bool:
    """Whether a feed is polled now: always in ALWAYS mode, and when it has no schedule yet."""
    return schedule.mode == ALWAYS or next_poll_at is None or next_poll_at <= now


def full_fetch_due(polls_since_full: int, full_fetched_at: dt.datetime, now: dt.datetime,
                   schedule: PollSchedule) -> bool:
    """Whether a feed is asked for in full (without If-None-Match / If-Modified-Since) although
    its validators are known. `polls_since_full`: answers of "not modified" since the last 200;
    `full_fetched_at`: when that 200 came. Due when this poll would be the
    full_every_polls-th since, or full_after_s passed."""
    if polls_since_full + 1 >= schedule.full_every_polls:
        return True
    return (now - full_fetched_at).total_seconds() >= schedule.full_after_s


# --- Feed states -----------------------------------------------------------------------------


def polled_state(feed_url: str, run_id: str, now: dt.datetime, schedule: PollSchedule,
                 previous, *, modified: bool, etag: str | None = None,
                 last_modified: str | None = None, entries: int = 0, new_entries: int = 0):
    """The FeedIndexEntry a poll leaves: a 200 (`modified`, with its validators) or a 304 (the
    previous validators kept), the next interval and when the feed is due again."""
    from newsbeam.schemas.records import FeedIndexEntry
    elapsed = (now - previous.fetched_at).total_seconds() if previous else None
    interval = next_poll_interval(previous.poll_interval_s if previous else None, elapsed,
                                  entries, new_entries, schedule)
    if modified:
        polls_since_full, full_fetched_at = 0, now
    else:
        etag, last_modified = previous.etag, previous.last_modified
        polls_since_full = (previous.polls_since_full or 0) + 1
        full_fetched_at = previous.full_fetched_at or previous.fetched_at
    return FeedIndexEntry(
        feed_url=feed_url, run_id=run_id, fetched_at=now, etag=etag, last_modified=last_modified,
        entries=entries, new_entries=new_entries, poll_interval_s=round(interval, 3),
        next_poll_at=now + dt.timedelta(seconds=interval), polls_since_full=polls_since_full,
        full_fetched_at=full_fetched_at)


def conditional_headers(state) -> dict:
    """If-None-Match / If-Modified-Since from a feed's stored validators (none without them)."""
    if state is None:
        return {}
    headers = {}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    return headers


def validators_to_send(previous, now: dt.datetime, schedule: PollSchedule) -> dict:
    """The conditional headers of a poll: none without a previous state or when a full fetch is
    due (states written before polls were counted: their fetch time was a 200's)."""
    if previous is None or full_fetch_due(previous.polls_since_full or 0,
                                          previous.full_fetched_at or previous.fetched_at,
                                          now, schedule):
        return {}
    return conditional_headers(previous)
