"""Unit tests for transforms/timelimit.py: a function called in a killable child process.

The child is spawned (a fresh interpreter), so the function it runs must be importable by name:
the helpers live in tests/helpers_timelimit.py. Each worker costs a spawn, so the tests share
one dispatching helper and keep every sleep short.
"""

import os
import time

import pytest

from tests import helpers_timelimit as helpers
from transforms.timelimit import ChildFailed, TimeLimitedWorker, TimeLimitExceeded

LIMIT_S = 1.0


@pytest.fixture
def worker():
    # helpers.dispatch("name", *args) runs helpers.name(*args) in the child.
    with TimeLimitedWorker(helpers.dispatch, LIMIT_S) as w:
        yield w


def child_pid(worker: TimeLimitedWorker) -> int:
    return worker.call("pid")


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_returns_results_of_a_plain_function():
    with TimeLimitedWorker(helpers.add, LIMIT_S) as worker:
        assert worker.call(2, 3) == 5
        assert worker.call("news", "beam") == "newsbeam"
        assert worker.restarts == 0


def test_returns_results(worker):
    assert worker.call("sleep_then_return", 0.05, {"title": "x", "n": [1, 2]}) == \
        {"title": "x", "n": [1, 2]}
    assert worker.call("add", 2, 3) == 5
    assert worker.restarts == 0


def test_one_child_serves_many_calls(worker):
    first = child_pid(worker)
    assert first != os.getpid()
    assert all(child_pid(worker) == first for _ in range(5))


def test_overrun_raises_fast_and_next_call_gets_fresh_child(worker):
    before = child_pid(worker)
    start = time.monotonic()
    with pytest.raises(TimeLimitExceeded):
        worker.call("sleep_then_return", 30, "never")
    elapsed = time.monotonic() - start
    assert LIMIT_S * 0.9 <= elapsed < LIMIT_S + 3   # the limit, not the 30 s sleep
    assert worker.restarts == 1
    assert not is_running(before)                  # the stuck child was killed
    # The next call works, in a new child.
    assert worker.call("add", 1, 1) == 2
    assert child_pid(worker) != before


def test_exception_reraised_in_parent_and_child_survives(worker):
    before = child_pid(worker)
    with pytest.raises(helpers.HelperError, match="bad page"):
        worker.call("fail", "bad page")
    assert worker.call("add", 40, 2) == 42
    assert child_pid(worker) == before
    assert worker.restarts == 0


def test_child_death_raises_child_failed_then_recovers(worker):
    before = child_pid(worker)
    start = time.monotonic()
    with pytest.raises(ChildFailed):
        worker.call("die", 3)
    assert time.monotonic() - start < LIMIT_S   # noticed at once, not after the limit
    assert worker.restarts == 1
    assert worker.call("add", 1, 2) == 3
    assert child_pid(worker) != before


def test_close_stops_the_child():
    worker = TimeLimitedWorker(helpers.dispatch, LIMIT_S)
    pid = child_pid(worker)
    worker.close()
    assert not is_running(pid)
    worker.close()   # a second close is harmless
