"""What a run shows while it works, and what it records of its cost per stage.

    read      ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━  990/990 files     0:00:00
    extract   ━━━━━━━━━━━━━━━━━━━╸━━━━━━━━━━━━━━  512 documents, 3 errors
    ...

On a terminal, a live display (rich) with a row for every stage (transforms/metrics.py STAGES):
a bar, the count and an ETA where the total is known (the files matched, the requests listed
from feeds and URL lists), a count where it is not. Elsewhere (Dataflow's launcher log, cron) a
plain log line with every stage's count every --progress_interval_s, so a run is never silent
longer than that.

Where the counts come from: Beam's local runners hand a job's metrics to the launching process
only when the job is over (FnApiRunner returns its result once every stage has run; in-process
and multi-process workers alike report a bundle's counters when the bundle completes, and a
batch stage is often one bundle). So for a local runner the launcher names a folder of its own
in metrics.PROGRESS_DIR_ENV (worker processes inherit it), every process writes its running
totals there, and the display sums them. On Dataflow, the same counters show live in the job's
page (namespace `newsbeam`); the launcher only waits.

After the run, `stage_costs(result)` reads the job's counters (summed over all workers by the
runner): the seconds per stage and every counter, which the run manifest records.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import threading
import time

from newsbeam.transforms import metrics
from newsbeam.transforms.metrics import STAGES

__all__ = ["StageProgress", "stage_progress", "format_line", "stage_costs", "Watch", "watching",
           "is_local_runner"]

_LOG = logging.getLogger(__name__)

# The runners whose workers run on this machine (and so can write the totals the display reads),
# named as Beam matches them: any case, "Runner" optional.
_LOCAL_RUNNERS = ("fnapi", "direct", "bundlebaseddirect", "switchingdirect", "prism")
_TERMINAL_REFRESH_S = 0.5

# Of each stage: the counters whose sum is its count, those of its total (None: not known
# ahead), its unit, and the error stages (errors.ERROR_STAGES) whose rows it emits.
_ROWS = {
    "read": (("read_files_done", "read_files_unchanged"),
             ("read_files_to_read", "read_files_unchanged"), "files", ("read",)),
    "fetch": (("fetch_requests_done",), ("fetch_requests",), "requests", ("fetch", "feed")),
    "extract": (("extract_articles", "extract_error_"), None, "documents", ("extract",)),
    "dedup": (("dedup_articles", "dedup_dropped_"), None, "articles", ()),
    "entities": (("entities_articles",), None, "articles", ()),
    "topics": (("topics_articles",), None, "articles", ()),
    "stories": (("stories_articles",), None, "articles", ()),
    "write": (("write_rows_",), None, "rows", ()),
}


class StageProgress:
    """One stage's row: `done` of `total` (None when not known) `unit`, and its error rows."""

    def __init__(self, stage: str, done: int, total: int | None, unit: str, errors: int):
        self.stage, self.done, self.total, self.unit, self.errors = \
            stage, done, total, unit, errors

    def __repr__(self):
        return f"StageProgress({self.stage}, {self.done}/{self.total} {self.unit}, {self.errors})"


def _sum(totals: dict[str, int], names) -> int:
    """The sum of the counters named, a name ending in '_' standing for every name it begins."""
    return sum(value for key, value in totals.items()
               if any(key == n or (n.endswith("_") and key.startswith(n)) for n in names))


def stage_progress(totals: dict[str, int]) -> list[StageProgress]:
    """Every stage's row, in stage order, from counter totals ({'read_files_done': 3, ...})."""
    rows = []
    for stage in STAGES:
        done_names, total_names, unit, error_stages = _ROWS[stage]
        total = _sum(totals, total_names) if total_names else None
        errors = _sum(totals, [f"{s}_error_" for s in error_stages])
        rows.append(StageProgress(stage, _sum(totals, done_names), total, unit, errors))
    return rows


def _eta(row: StageProgress, rate: float | None) -> str | None:
    if row.total is None or not rate or row.done >= row.total:
        return None
    return f"ETA {(row.total - row.done) / rate:.0f} s"


def format_line(elapsed_s: float, rows: list[StageProgress], rates: dict[str, float]) -> str:
    """'12 s: read 340/990 files (ETA 30 s), fetch 0/0 requests, extract 300 documents (2
    errors), ...': the plain-text progress line."""
    parts = []
    for row in rows:
        count = f"{row.done}/{row.total}" if row.total is not None else f"{row.done}"
        details = [f"{row.errors} errors"] if row.errors else []
        eta = _eta(row, rates.get(row.stage))
        if eta:
            details.append(eta)
        parts.append(f"{row.stage} {count} {row.unit}" +
                     (f" ({', '.join(details)})" if details else ""))
    return f"{elapsed_s:.0f} s: " + ", ".join(parts)


def counters_of(result) -> dict[str, int]:
    """The job's newsbeam counters ({name: value}, summed over workers), committed values where
    the runner has them; none (and a warning) from a runner that cannot tell them."""
    from apache_beam.metrics.metric import MetricsFilter
    try:
        queried = result.metrics().query(MetricsFilter().with_namespace(metrics.NAMESPACE))
    except Exception as error:  # noqa: BLE001 - the run is committed; only its costs are unknown
        _LOG.warning("the runner's metrics could not be read (%s): the manifest records no "
                     "time per stage", error)
        return {}
    counters: dict[str, int] = {}
    for counter in queried["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + value
    return dict(sorted(counters.items()))


def stage_costs(counters: dict[str, int]) -> dict:
    """What the manifest records of a run's cost: wall and CPU seconds per stage (time spent
    in each stage's own code, summed over workers; the rest of the elapsed time is the runner's:
    start-up, shuffles, moving data between stages) and every counter."""
    return {"stage_seconds": metrics.stage_seconds(counters),
            "stage_cpu_seconds": metrics.stage_seconds(counters, metrics.CPU_SUFFIX),
            "counters": counters}


def is_local_runner(runner) -> bool:
    """Whether `runner` (a name, a class path or a runner object) runs its workers here."""
    name = (runner if isinstance(runner, str) else type(runner).__name__).rsplit(".", 1)[-1]
    name = name.lower()
    return (name[:-len("runner")] if name.endswith("runner") else name) in _LOCAL_RUNNERS


# --- The display ---------------------------------------------------------------------------------


class _Rates:
    """Items per second of each stage, since the stage's first item."""

    def __init__(self):
        self._first: dict[str, tuple[float, int]] = {}

    def update(self, rows: list[StageProgress], now: float) -> dict[str, float]:
        rates = {}
        for row in rows:
            if row.done and row.stage not in self._first:
                self._first[row.stage] = (now, row.done)
            if row.stage in self._first:
                since, first = self._first[row.stage]
                if now > since and row.done > first:
                    rates[row.stage] = (row.done - first) / (now - since)
        return rates


class Watch:
    """Shows a running job's progress from the totals in `folder` (see the module's doc):
    a rich display on a terminal, a log line every `interval_s` elsewhere."""

    def __init__(self, folder: str, interval_s: float, terminal: bool, stream=None):
        self._folder = folder
        self._interval_s = interval_s
        self._terminal = terminal
        self._stream = stream or sys.stderr
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._rates = _Rates()
        self._thread: threading.Thread | None = None
        self._progress = None
        self._tasks: dict[str, int] = {}

    def __enter__(self):
        if self._terminal:
            self._start_display()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="newsbeam-progress-watch")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._progress is not None:
            self._stop_display()

    def finish(self, totals: dict[str, int]) -> None:
        """Shows the job's final counts (the runner's, exact) before the display stops."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._show(totals, final=True)

    def _loop(self) -> None:
        period = min(self._interval_s, _TERMINAL_REFRESH_S) if self._terminal else self._interval_s
        due = time.monotonic() + period
        # On a fixed schedule (not a pause after each line), so that lines never drift apart.
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            self._show(metrics.read_totals(self._folder))
            due = max(due + period, time.monotonic())

    def _show(self, totals: dict[str, int], final: bool = False) -> None:
        now = time.monotonic()
        rows = stage_progress(totals)
        rates = self._rates.update(rows, now)
        if self._progress is not None:
            self._update_display(rows, final)
        elif not final:
            _LOG.info("progress %s", format_line(now - self._started, rows, rates))

    # rich, on a terminal

    def _start_display(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
        console = Console(file=self._stream)
        self._progress = Progress(
            TextColumn("{task.description:<9}"), BarColumn(bar_width=32),
            TextColumn("{task.fields[count]}"), TimeRemainingColumn(),
            console=console, refresh_per_second=4, redirect_stderr=False, redirect_stdout=False)
        self._progress.start()
        for stage in STAGES:
            self._tasks[stage] = self._progress.add_task(stage, total=None, count="waiting")
        # Log lines (warnings) print above the display instead of breaking it.
        self._handlers = [h for h in logging.getLogger().handlers
                          if isinstance(h, logging.StreamHandler) and h.stream is self._stream]
        for handler in self._handlers:
            handler.setStream(_ConsoleWriter(self._progress.console))

    def _update_display(self, rows: list[StageProgress], final: bool) -> None:
        for row in rows:
            count = f"{row.done}/{row.total} {row.unit}" if row.total is not None \
                else f"{row.done} {row.unit}"
            if row.errors:
                count += f", {row.errors} errors"
            total, completed = row.total, row.done
            if final:  # every stage is complete: its bar full, however much it had to do
                total = completed = max(completed, 1)
            self._progress.update(self._tasks[row.stage], completed=completed, total=total,
                                  count=count)
        self._progress.refresh()

    def _stop_display(self) -> None:
        self._progress.stop()
        for handler in self._handlers:
            handler.setStream(self._stream)


class _ConsoleWriter:
    """A stream for logging's StreamHandler that prints through rich's live console."""

    def __init__(self, console):
        self._console = console

    def write(self, text: str) -> None:
        if text.strip():
            self._console.print(text.rstrip("\n"), markup=False, highlight=False)

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def watching(interval_s: float, runner, stream=None):
    """While a job runs: its progress (a Watch) when the runner is local and `interval_s` > 0;
    yields the Watch, or None. The totals' folder and its variable are gone afterwards."""
    if interval_s <= 0 or not is_local_runner(runner):
        if interval_s > 0:
            _LOG.info("progress: the runner's own console shows the live counters "
                      "(namespace %s)", metrics.NAMESPACE)
        yield None
        return
    stream = stream or sys.stderr
    folder = tempfile.mkdtemp(prefix="newsbeam-progress-")
    before = os.environ.get(metrics.PROGRESS_DIR_ENV)
    os.environ[metrics.PROGRESS_DIR_ENV] = folder
    try:
        with Watch(folder, interval_s, _is_terminal(stream), stream) as watch:
            yield watch
    finally:
        if before is None:
            os.environ.pop(metrics.PROGRESS_DIR_ENV, None)
        else:
            os.environ[metrics.PROGRESS_DIR_ENV] = before
        shutil.rmtree(folder, ignore_errors=True)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
