"""What the benches share: running a command while sampling its whole process tree.

`measure(command)` gives wall seconds, CPU seconds (user + system of the command and every
descendant it waited for) and the peak resident memory summed over the process tree, sampled
from /proc every 20 ms — newsbeam's Beam worker processes and its extraction child included.
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(os.environ.get("NEWSBEAM_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results"


def tree_memory(root_pid: int) -> tuple[int, int]:
    """(resident bytes, number of processes) of a process and all its descendants (/proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(fields[21]) * page
    total, count, todo = 0, 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        count += pid in rss
        todo += children.get(pid, [])
    return total, count


def tree_rss_kib(root_pid: int) -> int:
    """Resident memory of a process and all its descendants, in KiB."""
    return tree_memory(root_pid)[0] // 1024


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(command: list[str], cwd: Path = ROOT, env: dict | None = None,
            sample_every_s: float = 0.02) -> dict:
    """Runs `command` to its end: wall and CPU seconds, peak tree RSS (MiB), the RSS samples
    over time ([seconds, MiB] every ~second) and its stdout. Raises if it fails."""
    cpu_before = _children_cpu_seconds()
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=cwd, env=env)
    peak, timeline = 0, []
    done = threading.Event()

    def sample():
        nonlocal peak
        last_kept = -1.0
        while not done.is_set():
            now_kib = tree_rss_kib(process.pid)
            peak = max(peak, now_kib)
            elapsed = time.perf_counter() - started
            if elapsed - last_kept >= 1.0:
                timeline.append([round(elapsed, 1), round(now_kib / 1024, 1)])
                last_kept = elapsed
            time.sleep(sample_every_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed ({process.returncode}):\n{stderr[-3000:]}")
    return {"seconds": elapsed, "cpu_seconds": _children_cpu_seconds() - cpu_before,
            "peak_rss_mib": peak / 1024, "rss_timeline_mib": timeline, "stdout": stdout}
