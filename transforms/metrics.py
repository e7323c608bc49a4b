"""Live counters and per-stage cost: what Dataflow's UI shows while a job runs, and what a local
run's progress display (pipelines/progress.py) reads.

Every counter is a Beam Metrics counter in one namespace, NAMESPACE, named `<stage>_<what>`:
    extract_articles                  a stage's outputs
    dedup_dropped_normalised          what a stage drops, by reason
    extract_error_empty_extraction    its error rows, by reason (counted by errors.error_output)
    extract_wall_us, extract_cpu_us   the time spent in its DoFns, summed over workers
The run manifest stays the record of truth (its counts are counted from the data); the counters
are the live view, and the source of the manifest's seconds per stage.

Beam's local runners hand counters to the launching process only when the job is over (a
FnApiRunner bundle reports them when it completes, and a batch stage is often one bundle). So each
process also keeps its own running totals and, when the launcher asks for them by naming a folder
in PROGRESS_DIR_ENV, writes them there, in a file of its own, every WRITE_INTERVAL_S; the launcher
sums the files. Nothing else reads that variable: without it (on Dataflow) no file is written,
and what the graph computes never depends on it.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import socket
import threading
import time

import apache_beam as beam
from apache_beam.metrics import Metrics

__all__ = ["NAMESPACE", "STAGES", "STAGE_READ", "STAGE_FETCH", "STAGE_EXTRACT", "STAGE_DEDUP",
           "STAGE_ENTITIES", "STAGE_TOPICS", "STAGE_STORIES", "STAGE_WRITE", "PROGRESS_DIR_ENV",
           "count", "timed", "timed_fn", "add_time", "CountElements", "CountBy", "read_totals",
           "stage_seconds"]

NAMESPACE = "newsbeam"

# The stages, in the order an input meets them (the progress display's rows).
STAGE_READ = "read"
STAGE_FETCH = "fetch"
STAGE_EXTRACT = "extract"
STAGE_DEDUP = "dedup"
STAGE_ENTITIES = "entities"
STAGE_TOPICS = "topics"
STAGE_STORIES = "stories"
STAGE_WRITE = "write"
STAGES = (STAGE_READ, STAGE_FETCH, STAGE_EXTRACT, STAGE_DEDUP, STAGE_ENTITIES, STAGE_TOPICS,
          STAGE_STORIES, STAGE_WRITE)

WALL_SUFFIX = "_wall_us"
CPU_SUFFIX = "_cpu_us"

PROGRESS_DIR_ENV = "NEWSBEAM_PROGRESS_DIR"
WRITE_INTERVAL_S = 0.5


# --- This process's running totals (the local side channel) --------------------------------------


class _LiveTotals:
    """Every count this process made since the launcher named its folder; a daemon thread
    writes them to <folder>/<host>-<pid>.json (atomically) while they change."""

    def __init__(self):
        self._lock = threading.Lock()
        self._folder: str | None = None
        self._counts: dict[str, int] = {}
        self._version = 0
        self._writer: threading.Thread | None = None

    def add(self, name: str, n: int) -> None:
        folder = os.environ.get(PROGRESS_DIR_ENV)
        if not folder:
            return
        with self._lock:
            if folder != self._folder:  # a new run in this process: its totals start at 0
                self._folder, self._counts = folder, {}
            self._counts[name] = self._counts.get(name, 0) + n
            self._version += 1
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, daemon=True,
                                                name="newsbeam-progress")
                self._writer.start()

    def _write_loop(self) -> None:
        written = (None, -1)
        while True:
            time.sleep(WRITE_INTERVAL_S)
            with self._lock:
                folder, version, counts = self._folder, self._version, dict(self._counts)
            if (folder, version) != written and folder and os.path.isdir(folder):
                try:
                    _write_totals(folder, counts)
                    written = (folder, version)
                except OSError:  # the run is over and its folder gone: nothing to tell
                    pass


def _write_totals(folder: str, counts: dict[str, int]) -> None:
    name = os.path.join(folder, f"{socket.gethostname()}-{os.getpid()}.json")
    temp = f"{name}.tmp"
    with open(temp, "w", encoding="utf-8") as stream:
        json.dump(counts, stream)
    os.replace(temp, name)


_LIVE = _LiveTotals()
_COUNTERS: dict[str, object] = {}


def read_totals(folder: str) -> dict[str, int]:
    """The sum of every process's totals written in `folder` (a file half-replaced or gone is
    read at the next poll)."""
    totals: dict[str, int] = {}
    try:
        names = [n for n in os.listdir(folder) if n.endswith(".json")]
    except OSError:
        return totals
    for name in names:
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as stream:
                counts = json.load(stream)
        except (OSError, ValueError):
            continue
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value
    return totals


# --- Counting ------------------------------------------------------------------------------------


def count(name: str, n: int = 1) -> None:
    """Adds `n` to the counter NAMESPACE/`name`. Counts only from a bundle's own thread (Beam's
    metrics are per thread): a pool thread's work is counted when its outputs are emitted."""
    if not n:
        return
    _counter(name).inc(n)
    _LIVE.add(name, n)


def _counter(name: str):
    counter = _COUNTERS.get(name)
    if counter is None:
        counter = _COUNTERS.setdefault(name, Metrics.counter(NAMESPACE, name))
    return counter


def add_time(stage: str, wall_s: float, cpu_s: float) -> None:
    """Charges seconds of wall and CPU time to `stage` (counted in microseconds). Only Beam's
    counters: the progress display shows counts, not time, and this runs on every call."""
    wall_us, cpu_us = int(wall_s * 1e6), int(cpu_s * 1e6)
    if wall_us:
        _counter(stage + WALL_SUFFIX).inc(wall_us)
    if cpu_us:
        _counter(stage + CPU_SUFFIX).inc(cpu_us)


def _timed_outputs(stage: str, outputs, wall: float, cpu: float):
    """Yields `outputs`, charging to `stage` only the time spent producing them (plus `wall`,
    `cpu` already spent): Beam runs the fused steps downstream inside each `yield`."""
    try:
        while True:
            start_wall, start_cpu = time.perf_counter(), time.thread_time()
            try:
                output = next(outputs)
            except StopIteration:
                return
            finally:
                wall += time.perf_counter() - start_wall
                cpu += time.thread_time() - start_cpu
            yield output
    finally:
        add_time(stage, wall, cpu)


def _timed_call(stage: str, function, args, kwargs):
    start_wall, start_cpu = time.perf_counter(), time.thread_time()
    try:
        result = function(*args, **kwargs)
    except BaseException:
        add_time(stage, time.perf_counter() - start_wall, time.thread_time() - start_cpu)
        raise
    wall, cpu = time.perf_counter() - start_wall, time.thread_time() - start_cpu
    if inspect.isgenerator(result):
        return _timed_outputs(stage, result, wall, cpu)
    add_time(stage, wall, cpu)
    return result


def timed(stage: str):
    """Decorator of a DoFn method (process, finish_bundle) or of a function given to Map or
    FlatMap: the wall and CPU time it takes (a generator's: while it produces each output) count
    to `stage`. The signature Beam reads (side inputs, DoFn params) stays the method's own."""
    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            return _timed_call(stage, function, args, kwargs)
        return wrapper
    return decorate


def timed_fn(stage: str, function):
    """`function` (a lambda given to Map or FlatMap, say), its time charged to `stage`."""
    return timed(stage)(function)


def stage_seconds(counters: dict[str, int], suffix: str = WALL_SUFFIX) -> dict[str, float]:
    """{stage: seconds} from counter values ({'extract_wall_us': 5200000, ...}), in stage
    order; `suffix` CPU_SUFFIX for CPU seconds."""
    return {stage: round(counters[stage + suffix] / 1e6, 3)
            for stage in STAGES if counters.get(stage + suffix)}


# --- Composites ----------------------------------------------------------------------------------


class _CountFn(beam.DoFn):
    def __init__(self, name_of):
        self._name_of = name_of

    def process(self, element):
        count(self._name_of(element))
        return ()


class CountBy(beam.PTransform):
    """Counts each element under the counter `name_of(element)`; outputs nothing. Fused with the
    step that produces the elements, so the count moves while that step runs."""

    def __init__(self, name_of):
        super().__init__()
        self._name_of = name_of

    def expand(self, pcoll):
        return pcoll | "Count" >> beam.ParDo(_CountFn(self._name_of))


class CountElements(CountBy):
    """Counts each element under the counter `name`; outputs nothing."""

    def __init__(self, name: str):
        super().__init__(lambda _, name=name: name)
