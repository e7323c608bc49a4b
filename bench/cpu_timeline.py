"""Where a run's cores go: CPU seconds per process of a command's tree, over time.

Runs a command and samples /proc every --every_s seconds: each process's user + system time,
named by its role (the launcher that coordinates the job, each Beam SDK worker, each extraction
child, anything else by its program). Prints, per process, CPU seconds, seconds alive and the
share of that time it was busy; then a timeline in --bin_s bins of the cores each role used, so a
phase in which one worker works and the other waits shows as a row with one column near 1 and
the rest near 0. The machine's other load shows in the last column (cores busy outside the tree,
from /proc/stat), so a timeline measured beside other work can be read for what it is.

    python bench/cpu_timeline.py [--bin_s 2] [--json out.json] -- newsbeam run --input ... \\
        --direct_num_workers=2 --direct_running_mode=multi_processing

CPU seconds of processes that end between two samples are missed for that last interval (at
most --every_s each).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _read_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            return stream.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def role_of(command_line: str, is_root: bool) -> str:
    """What a process of a newsbeam run is, from its command line."""
    if is_root:
        return "launcher"
    if "sdk_worker_main" in command_line:
        return "sdk worker"
    if "timelimit import serve" in command_line:
        return "extraction child"
    return Path(command_line.split(" ", 1)[0]).name or "?"


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, /proc/stat), for the load
    outside the tree."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / _TICKS


def sample_tree(root: int) -> dict[int, tuple[int, float]]:
    """{pid: (parent, CPU seconds)} of `root` and its descendants."""
    table: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _read_stat(int(entry))
            if found is not None:
                table[int(entry)] = found
    tree, todo = {}, [root]
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    while todo:
        pid = todo.pop()
        if pid in table:
            tree[pid] = table[pid]
            todo += children.get(pid, [])
    return tree


def run_sampled(command: list[str], every_s: float = 0.25) -> dict:
    """Runs `command`; returns its processes ({pid: role, first/last seen, CPU s}) and the
    samples [(seconds since start, {pid: CPU s}, machine busy s)]."""
    started = time.perf_counter()
    process = subprocess.Popen(command)
    processes: dict[int, dict] = {}
    samples = []
    while True:
        now = time.perf_counter() - started
        tree = sample_tree(process.pid)
        for pid, (_, cpu) in tree.items():
            known = processes.get(pid)
            if known is None:
                known = processes[pid] = {"pid": pid, "role": role_of(
                    _cmdline(pid), pid == process.pid), "first_s": now, "cpu_s": 0.0}
            known["last_s"], known["cpu_s"] = now, cpu
        samples.append((now, {pid: cpu for pid, (_, cpu) in tree.items()}, machine_busy_s()))
        if process.poll() is not None:
            break
        time.sleep(every_s)
    return {"seconds": time.perf_counter() - started, "returncode": process.returncode,
            "processes": processes, "samples": samples}


def _numbered(processes: dict[int, dict]) -> dict[int, str]:
    """Each pid's label: its role, numbered when several processes share it."""
    by_role: dict[str, list[int]] = {}
    for pid, info in sorted(processes.items(), key=lambda item: item[1]["first_s"]):
        by_role.setdefault(info["role"], []).append(pid)
    labels = {}
    for role, pids in by_role.items():
        for number, pid in enumerate(pids, 1):
            labels[pid] = role if len(pids) == 1 else f"{role} {number}"
    return labels


def timeline(run: dict, bin_s: float) -> tuple[list[str], list[list[float]]]:
    """Columns (process labels, most CPU first, then 'other load') and rows [bin start, cores
    used by each column over the bin]."""
    labels = _numbered(run["processes"])
    order = sorted(labels, key=lambda pid: -run["processes"][pid]["cpu_s"])
    rows = []
    samples = run["samples"]
    start_index = 0
    bin_start = 0.0
    while start_index < len(samples) - 1:
        end_index = start_index
        while end_index < len(samples) - 1 and samples[end_index][0] < bin_start + bin_s:
            end_index += 1
        (t0, cpu0, busy0), (t1, cpu1, busy1) = samples[start_index], samples[end_index]
        span = max(t1 - t0, 1e-9)
        used = [(cpu1.get(pid, run["processes"][pid]["cpu_s"] if pid in cpu0 else 0.0)
                 - cpu0.get(pid, 0.0)) / span for pid in order]
        tree_cores = sum(used)
        rows.append([round(t0, 1)] + [round(u, 2) for u in used]
                    + [round(max(0.0, (busy1 - busy0) / span - tree_cores), 2)])
        start_index, bin_start = end_index, bin_start + bin_s
    return [labels[pid] for pid in order] + ["other load"], rows


def summary(run: dict) -> list[dict]:
    labels = _numbered(run["processes"])
    rows = []
    for pid, info in sorted(run["processes"].items(), key=lambda item: -item[1]["cpu_s"]):
        alive = max(info["last_s"] - info["first_s"], 1e-9)
        rows.append({"process": labels[pid], "cpu_s": round(info["cpu_s"], 1),
                     "alive_s": round(alive, 1), "busy": round(info["cpu_s"] / alive, 2)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every_s", type=float, default=0.25)
    parser.add_argument("--bin_s", type=float, default=2.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    run = run_sampled(command, args.every_s)
    rows = summary(run)
    total_cpu = sum(r["cpu_s"] for r in rows)
    print(f"\n{run['seconds']:.1f} s wall, {total_cpu:.1f} CPU s in {len(rows)} processes "
          f"({total_cpu / run['seconds']:.2f} cores on average); exit {run['returncode']}")
    print(f"{'process':<22} {'CPU s':>8} {'alive s':>8} {'busy':>6}")
    for row in rows:
        print(f"{row['process']:<22} {row['cpu_s']:>8} {row['alive_s']:>8} {row['busy']:>6}")
    columns, bins = timeline(run, args.bin_s)
    shown = [i for i, r in enumerate(rows) if r["cpu_s"] >= 0.5] + [len(columns) - 1]
    print("\ncores used per bin of %g s" % args.bin_s)
    print(f"{'t s':>6} " + " ".join(f"{columns[i][:10]:>10}" for i in shown))
    for row in bins:
        print(f"{row[0]:>6} " + " ".join(f"{row[1 + i]:>10}" for i in shown))
    if args.json:
        args.json.write_text(json.dumps({"seconds": run["seconds"], "processes": rows,
                                         "columns": columns, "timeline": bins}, indent=1))
    return run["returncode"]


if __name__ == "__main__":
    sys.exit(main())
