"""What a process and its descendants cost over a stretch of time: CPU, peak memory, disk writes,
and the CPU of the root process's main thread.

granian and hypercorn run the app in worker processes under a supervisor, and nginx in workers
under a master, so every reading sums the process tree; for uvicorn with one worker the tree is
the one process. psutil reads CPU times and I/O counters; the resident set comes from the load
test's own reading (app/client/memwatch.py), so both report the same number. The peak is the
kernel's high-water mark, VmHWM, which psutil does not read: reset at the start through
/proc/PID/clear_refs, it catches a peak however short-lived, which sampling would miss.

The main thread of a uvicorn worker runs the event loop, which every upload of that worker
shares; worker threads (hashing) show in the process's CPU but not in that thread's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import psutil

from app.client.memwatch import read_vmrss


def reset_peak_rss(pid: int) -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def read_peak_rss(pid: int) -> int:
    """The highest resident set size since start or the last reset, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise ProcessLookupError(f"pid {pid} has no VmHWM (it has exited)")


@dataclasses.dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    #: The highest resident set (summed over the tree) minus the one at the start.
    peak_rss_growth: int
    #: Bytes the processes caused to be written to storage (page cache writes count).
    write_bytes: int
    #: User and system CPU time of the root process's main thread (uvicorn's event loop).
    loop_cpu_seconds: float | None = None


class ProcessUsage:
    """A process tree's cost from creation on (create it after the caller's warm-up).

    The tree is taken at creation: workers started later are not counted.
    """

    def __init__(self, pid: int) -> None:
        root = psutil.Process(pid)
        self.processes = [root, *root.children(recursive=True)]
        for process in self.processes:
            reset_peak_rss(process.pid)
        self._rss = self._sum(lambda p: read_vmrss(p.pid))
        self._cpu = self._sum(_cpu_seconds)
        self._written = self._sum(lambda p: p.io_counters().write_bytes)
        self._read = self._sum(lambda p: p.io_counters().read_chars)
        self._loop_cpu = thread_cpu_seconds(pid, pid)

    def _sum(self, reading: Callable[[psutil.Process], float]) -> float:
        """`reading` summed over the tree. A worker that has exited counts no more; the root
        process must still be there (its readings would be meaningless otherwise)."""
        root, *descendants = self.processes
        total = reading(root)
        for process in descendants:
            with contextlib.suppress(psutil.NoSuchProcess, OSError):
                total += reading(process)
        return total

    def rss_growth(self) -> int:
        """The highest resident set since creation, minus the one at creation."""
        return int(self._sum(lambda p: read_peak_rss(p.pid)) - self._rss)

    def cpu_seconds(self) -> float:
        """User and system CPU time since creation, all threads."""
        return self._sum(_cpu_seconds) - self._cpu

    def loop_cpu_seconds(self) -> float:
        """CPU time of the root process's main thread since creation."""
        root = self.processes[0].pid
        return thread_cpu_seconds(root, root) - self._loop_cpu

    def disk_writes(self) -> int:
        """Bytes written to storage since creation (`write_bytes` of /proc/PID/io)."""
        return int(self._sum(lambda p: p.io_counters().write_bytes) - self._written)

    def bytes_read(self) -> int:
        """Bytes read since creation through read() and the like, from sockets too (`rchar`)."""
        return int(self._sum(lambda p: p.io_counters().read_chars) - self._read)

    def read(self) -> Usage:
        return Usage(
            self.cpu_seconds(), self.rss_growth(), self.disk_writes(), self.loop_cpu_seconds()
        )


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def thread_cpu_seconds(pid: int, tid: int) -> float:
    """User and system CPU time of one thread (the main thread's id is the pid), read from
    /proc/PID/task/TID/stat in clock ticks (10 ms on most kernels)."""
    stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    # Fields after the command name, which is in parentheses and may hold spaces: state is
    # field 3, utime and stime fields 14 and 15.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
