"""The poll schedule's pure functions (transforms/polling.py): how the interval follows a
feed's real rate of change, its bounds, when a feed is due, and the defensive full fetch."""

from __future__ import annotations

import datetime as dt

from newsbeam.schemas.records import FeedIndexEntry
from newsbeam.transforms.polling import (ADAPTIVE, ALWAYS, PollSchedule, full_fetch_due, is_due,
                                         next_poll_interval, polled_state, validators_to_send)

SCHEDULE = PollSchedule(min_poll_s=60, max_poll_s=3600, full_every_polls=4,
                        full_after_s=6 * 3600, mode=ADAPTIVE)
T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


def test_a_quiet_feed_is_polled_less_and_less_up_to_the_bound():
    interval, seen = None, []
    for _ in range(12):
        interval = next_poll_interval(interval, interval or 60, entries=20, new_entries=0,
                                      schedule=SCHEDULE)
        seen.append(interval)
    assert seen[:3] == [90.0, 135.0, 202.5]
    assert seen == sorted(seen) and seen[-1] == 3600


def test_a_busy_feed_converges_on_its_gap_between_entries():
    # One new entry every 120 s, polled at the interval chosen: the interval settles near 120.
    interval = 600.0
    for _ in range(10):
        new = max(1, round(interval / 120))
        interval = next_poll_interval(interval, interval, entries=50, new_entries=new,
                                      schedule=SCHEDULE)
    assert 100 <= interval <= 160  # whole entries per poll: 150 s sees one, as 120 s does


def test_one_poll_moves_the_interval_at_most_by_half_or_double():
    assert next_poll_interval(600, 600, entries=100, new_entries=60, schedule=SCHEDULE) == 300
    assert next_poll_interval(100, 10_000, entries=100, new_entries=1, schedule=SCHEDULE) == 200


def test_a_feed_whose_every_entry_is_new_may_have_scrolled_past_some():
    # 2 new of 2 listed: entries may have been lost between polls; the interval halves,
    # although the mean gap (300 s) alone would only move it to sqrt(600 * 300).
    assert next_poll_interval(600, 600, entries=2, new_entries=2, schedule=SCHEDULE) == 300
    assert round(next_poll_interval(600, 600, entries=11, new_entries=2,
                                    schedule=SCHEDULE)) == 424


def test_the_first_poll_keeps_the_shortest_interval_and_bounds_hold():
    assert next_poll_interval(None, None, entries=30, new_entries=30, schedule=SCHEDULE) == 60
    assert next_poll_interval(5, 5, entries=30, new_entries=30, schedule=SCHEDULE) == 60
    assert next_poll_interval(10**6, 10**6, entries=3, new_entries=0, schedule=SCHEDULE) == 3600


def test_due_only_when_its_time_came_and_always_in_always_mode():
    later = T0 + dt.timedelta(minutes=5)
    assert not is_due(later, T0, SCHEDULE)
    assert is_due(later, later, SCHEDULE) and is_due(None, T0, SCHEDULE)
    assert is_due(later, T0, PollSchedule(mode=ALWAYS))


def test_full_fetch_after_k_not_modified_or_t_hours():
    assert not full_fetch_due(0, T0, T0, SCHEDULE)
    assert not full_fetch_due(2, T0, T0, SCHEDULE)
    assert full_fetch_due(3, T0, T0, SCHEDULE)  # this poll is the 4th since the last 200
    assert full_fetch_due(0, T0, T0 + dt.timedelta(hours=6), SCHEDULE)


def test_states_carry_the_schedule_from_poll_to_poll():
    first = polled_state("https://a.test/rss", "r1", T0, SCHEDULE, None, modified=True,
                         etag='"v1"', entries=20, new_entries=20)
    assert (first.poll_interval_s, first.next_poll_at, first.polls_since_full,
            first.full_fetched_at) == (60, T0 + dt.timedelta(seconds=60), 0, T0)
    assert validators_to_send(first, T0, SCHEDULE) == {"If-None-Match": '"v1"'}
    state, now = first, T0
    for poll in range(1, 4):
        now += dt.timedelta(seconds=state.poll_interval_s)
        state = polled_state(state.feed_url, f"r{poll + 1}", now, SCHEDULE, state,
                             modified=False)
        assert (state.etag, state.polls_since_full, state.full_fetched_at) == ('"v1"', poll, T0)
    assert state.poll_interval_s == 202.5
    # Three 304s in a row: the 4th poll asks in full, whatever the server's validators say.
    assert validators_to_send(state, now, SCHEDULE) == {}


def test_a_state_written_before_poll_schedules_is_trusted_as_a_200():
    old = FeedIndexEntry(feed_url="https://a.test/rss", run_id="r0", fetched_at=T0,
                         last_modified="Wed, 16 Feb 2022 12:00:00 GMT")
    assert validators_to_send(old, T0 + dt.timedelta(hours=1), SCHEDULE) == {
        "If-Modified-Since": "Wed, 16 Feb 2022 12:00:00 GMT"}
    assert validators_to_send(old, T0 + dt.timedelta(hours=7), SCHEDULE) == {}
    assert is_due(old.next_poll_at, T0, SCHEDULE)
