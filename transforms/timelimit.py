"""Run a function with a wall-clock limit, in a child process that can be killed.

Python cannot stop a thread that is stuck in C code (lxml on pathological HTML), and signals only
reach the main thread, which a Beam worker does not give us. So the work goes to one long-lived
child process per caller; a call that overruns its limit kills the child, and the next call
starts a fresh one. The child is started with 'spawn' (never 'fork'): the parent is a Beam worker
with gRPC threads, which a fork would copy in a broken state.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
from typing import Any, Callable


class TimeLimitExceeded(Exception):
    """The call ran longer than its limit; the child that ran it was killed."""


class ChildFailed(Exception):
    """The child process died (crash, out of memory) before it answered."""


def _serve(func: Callable, connection: multiprocessing.connection.Connection) -> None:
    """The child's loop: say it is ready (its imports are done), then call `func` on each
    argument tuple received and send back the outcome."""
    connection.send(("ready", None))
    while True:
        try:
            args = connection.recv()
        except EOFError:
            return
        try:
            connection.send(("ok", func(*args)))
        except Exception as error:  # the parent re-raises it; the child lives on
            connection.send(("error", error))


class TimeLimitedWorker:
    """Calls a picklable, module-level `func` in a child process, `timeout_s` at most a call."""

    def __init__(self, func: Callable, timeout_s: float, startup_timeout_s: float = 120.0):
        self._func = func
        self._timeout_s = timeout_s
        self._startup_timeout_s = startup_timeout_s
        self._context = multiprocessing.get_context("spawn")
        self._process = None
        self._connection = None
        self.restarts = 0

    def _start(self) -> None:
        parent_end, child_end = self._context.Pipe()
        self._process = self._context.Process(target=_serve, args=(self._func, child_end),
                                              daemon=True, name="newsbeam-time-limited")
        self._process.start()
        child_end.close()
        self._connection = parent_end
        # The child's start-up (a fresh interpreter importing `func`'s module) is not charged
        # to the first call's time limit.
        try:
            ready = parent_end.poll(self._startup_timeout_s) and parent_end.recv()
        except (EOFError, OSError):
            ready = None
        if not ready or ready[0] != "ready":
            self._kill()
            raise ChildFailed(f"worker process did not start within {self._startup_timeout_s:g} s")

    def call(self, *args) -> Any:
        if self._process is None or not self._process.is_alive():
            self._start()
        self._connection.send(args)
        if not self._connection.poll(self._timeout_s):
            self._kill()
            self.restarts += 1
            raise TimeLimitExceeded(f"no result after {self._timeout_s:g} s")
        try:
            status, value = self._connection.recv()
        except (EOFError, OSError) as error:
            self._kill()
            self.restarts += 1
            raise ChildFailed(f"worker process died: {error!r}") from None
        if status == "error":
            raise value
        return value

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(timeout=5)
        if self._connection is not None:
            self._connection.close()
        self._process = self._connection = None

    def close(self) -> None:
        """Stop the child (politely: closing the pipe ends its loop)."""
        if self._connection is not None:
            self._connection.close()
        if self._process is not None:
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(timeout=5)
        self._process = self._connection = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
