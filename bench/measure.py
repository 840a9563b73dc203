"""What a process (and its children) spent on one upload, read from /proc.

granian and hypercorn run the app in worker processes under a supervisor, so every reading
sums the whole process tree; for uvicorn with one worker the tree is the one process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_INTERVAL = 0.05


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rpartition(")")[2].split()[1])
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    tree = _children()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            # Fields after the parenthesised command name: state is [0], utime [11], stime [12].
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def write_bytes(pids: list[int]) -> int:
    """Bytes the processes caused to be written to storage (page cache writes count)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                if line.startswith("write_bytes:"):
                    total += int(line.split()[1])
    return total


@dataclasses.dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    #: Highest sampled RSS (summed over the tree) minus the RSS just before the upload.
    peak_rss_growth: int
    write_bytes: int


class Watch:
    """Samples a process tree's RSS every 50 ms between start() and stop()."""

    def __init__(self, pid: int) -> None:
        self.pids = process_tree(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._rss_before = 0
        self._rss_peak = 0
        self._cpu_before = 0.0
        self._written_before = 0

    def start(self) -> Watch:
        self._rss_before = rss_bytes(self.pids)
        self._rss_peak = self._rss_before
        self._cpu_before = cpu_seconds(self.pids)
        self._written_before = write_bytes(self.pids)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            self._rss_peak = max(self._rss_peak, rss_bytes(self.pids))

    def stop(self) -> Usage:
        self._stop.set()
        self._thread.join(timeout=5)
        self._rss_peak = max(self._rss_peak, rss_bytes(self.pids))
        return Usage(
            cpu_seconds=cpu_seconds(self.pids) - self._cpu_before,
            peak_rss_growth=self._rss_peak - self._rss_before,
            write_bytes=write_bytes(self.pids) - self._written_before,
        )
