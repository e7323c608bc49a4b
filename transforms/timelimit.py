"""Run a function with a wall-clock limit, in a child process that can be killed.

Python cannot stop a thread that is stuck in C code (lxml on pathological HTML), and signals only
reach the main thread, which a Beam worker does not give us. So the work goes to one long-lived
child process per caller; a call that overruns its limit kills the child, and the next call
starts a fresh one.

The child is a fresh interpreter (never a fork: the parent is a Beam worker with gRPC threads,
which a fork would copy in a broken state) that imports only the function's own module. It is
started as a plain subprocess rather than by multiprocessing's 'spawn', which would also re-run
the parent's main module (the Beam SDK worker, a notebook, a script) in the child.

The child runs isolated (`python -I`): `python -c` alone would put the current directory first
on its `sys.path`, so a stray `htmldate.py` or `concurrent.py` where the user runs newsbeam
would be imported instead of the real module. `-I` also ignores PYTHON* variables and the user
site, so the child is given the parent's own `sys.path` explicitly (the folders the parent
imports from, never the implicit current directory) and the folder that holds the `newsbeam.*`
packages, registered as the `newsbeam` namespace before anything imports it: an editable install
maps that namespace onto the repository's folders through an import hook that `-I` may skip (it
lives in the user site when installed there).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import Any, Callable

# Runs under -I, so nothing here may come from the current directory: only the standard library
# until sys.path is the parent's.
_CHILD_MAIN = ("import sys, json, types; paths = json.loads(sys.argv[3]); "
               "sys.path[:] = paths['sys_path']; "
               "namespace = types.ModuleType('newsbeam'); namespace.__path__ = paths['newsbeam']; "
               "sys.modules['newsbeam'] = namespace; "
               "from newsbeam.transforms.timelimit import serve; serve(sys.argv[1], int(sys.argv[2]))")


class TimeLimitExceeded(Exception):
    """The call ran longer than its limit; the child that ran it was killed."""


class ChildFailed(Exception):
    """The child process died (crash, out of memory) before it answered."""


def serve(func_name: str, fd: int) -> None:
    """The child's loop: import 'module:function', say it is ready, then call it on each
    argument tuple received over the socket `fd` and send back the outcome and the CPU seconds
    it took."""
    # Ctrl-C at a terminal signals the whole process group: the parent decides what stops
    # (a stream commits what it has first), and the child ends when the parent closes its end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    module, _, name = func_name.partition(":")
    func = getattr(importlib.import_module(module), name)
    connection = Connection(fd)
    connection.send(("ready", None))
    while True:
        try:
            args = connection.recv()
        except EOFError:
            return
        started = time.process_time()
        try:
            outcome = ("ok", func(*args))
        except Exception as error:  # the parent re-raises it; the child lives on
            outcome = ("error", error)
        connection.send((*outcome, time.process_time() - started))


def child_import_paths() -> dict[str, list[str]]:
    """Where a child imports from: `sys_path`, the parent's `sys.path` without its empty entry
    (the current directory, as `-c` and the REPL add it); `newsbeam`, the folder holding the
    `pipelines`, `transforms` and `schemas` packages (site-packages/newsbeam when installed,
    the repository when installed editable)."""
    packages_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return {"sys_path": list(dict.fromkeys(p for p in sys.path if p)),
            "newsbeam": [packages_root]}


class TimeLimitedWorker:
    """Calls a module-level `func` in a child process, `timeout_s` at most a call. Arguments
    and results cross the process boundary pickled."""

    def __init__(self, func: Callable, timeout_s: float, startup_timeout_s: float = 120.0):
        self._func_name = f"{func.__module__}:{func.__qualname__}"
        self._timeout_s = timeout_s
        self._startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen | None = None
        self._connection: Connection | None = None
        self._deadline: float | None = None  # of the call under way
        self.restarts = 0
        self.last_cpu_s = 0.0  # the CPU time the child spent on the last call collected

    def _start(self) -> None:
        parent_end, child_end = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-c", _CHILD_MAIN, self._func_name, str(child_end.fileno()),
             json.dumps(child_import_paths())],
            pass_fds=[child_end.fileno()], stdin=subprocess.DEVNULL)
        child_end.close()
        self._connection = Connection(parent_end.detach())
        # The child's start-up (a fresh interpreter importing `func`'s module) is not charged
        # to the first call's time limit.
        try:
            ready = self._connection.poll(self._startup_timeout_s) and self._connection.recv()
        except (EOFError, OSError):
            ready = None
        if not ready or ready[0] != "ready":
            try:  # a child that closed its end is exiting: say how
                exit_code = self._process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                exit_code = None
            self._kill()
            if exit_code is not None:
                raise ChildFailed(f"worker process exited with code {exit_code} before it was "
                                  f"ready (importing {self._func_name})")
            raise ChildFailed(f"worker process did not start within {self._startup_timeout_s:g} s")

    def _alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def submit(self, *args) -> None:
        """Starts `func(*args)` in the child and returns at once; `collect` gets the outcome.
        One call at a time: the previous one must have been collected."""
        if self._deadline is not None:
            raise RuntimeError("the previous call was not collected")
        if not self._alive():
            self._kill()
            self._start()
        try:
            self._connection.send(args)
        except OSError:  # the child died between calls: one more try with a new one
            self._kill()
            self._start()
            self._connection.send(args)
        self._deadline = time.monotonic() + self._timeout_s

    def collect(self) -> Any:
        """The submitted call's result, waiting until its time limit (counted from `submit`)."""
        remaining = self._deadline - time.monotonic()
        self._deadline, self.last_cpu_s = None, 0.0
        if not self._connection.poll(max(0.0, remaining)):
            self._kill()
            self.restarts += 1
            raise TimeLimitExceeded(f"no result after {self._timeout_s:g} s")
        try:
            status, value, self.last_cpu_s = self._connection.recv()
        except (EOFError, OSError) as error:
            self._kill()
            self.restarts += 1
            raise ChildFailed(f"worker process died: {error!r}") from None
        if status == "error":
            raise value
        return value

    def call(self, *args) -> Any:
        self.submit(*args)
        return self.collect()

    def _kill(self) -> None:
        self._deadline = None
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
        if self._connection is not None:
            self._connection.close()
        self._process = self._connection = None

    def close(self) -> None:
        """Stops the child (politely: closing the socket ends its loop)."""
        if self._connection is not None:
            self._connection.close()
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = self._connection = None
        self._deadline = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
