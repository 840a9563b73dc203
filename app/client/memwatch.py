"""The server's resident memory during a load test, from /proc/PID/status or its /metrics.

Sampled while the load runs rather than read once at the end: part buffers are freed as
uploads finish, so only samples taken under load show the peak.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from app.client.loadstats import MemoryReport


class MemoryWatch:
    """Samples a server's resident memory every `interval` seconds while the load runs."""

    def __init__(
        self,
        source: str,
        read: Callable[[], Awaitable[int]],
        interval: float,
        *,
        final_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self.source = source
        self.read = read
        self.interval = interval
        #: Errors after which sampling ends for good (the process is gone); others are noted
        #: and sampling goes on (a /metrics endpoint that is not deployed yet, a timeout).
        self.final_errors = final_errors
        self.values: list[int] = []
        self.note: str | None = None
        self.stopped = False

    async def sample(self) -> None:
        if self.stopped:
            return
        try:
            self.values.append(await self.read())
        except Exception as exc:
            self.note = f"{type(exc).__name__}: {exc}"
            self.stopped = isinstance(exc, self.final_errors)

    async def run(self) -> None:
        while not self.stopped:
            await asyncio.sleep(self.interval)
            await self.sample()

    def report(self) -> MemoryReport:
        if not self.values:
            return MemoryReport(self.source, note=self.note)
        return MemoryReport(
            self.source,
            start=self.values[0],
            peak=max(self.values),
            end=self.values[-1],
            samples=len(self.values),
            note=self.note,
        )


def read_vmrss(pid: int) -> int:
    """The process's resident set size in bytes, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ProcessLookupError(f"pid {pid} has no VmRSS (it has exited)")


_RESIDENT = re.compile(r"^process_resident_memory_bytes(?:\{[^}]*\})?\s+(\S+)", re.MULTILINE)


def parse_resident_memory(text: str) -> int:
    """`process_resident_memory_bytes` from Prometheus text, summed over its series (workers)."""
    values = [float(value) for value in _RESIDENT.findall(text)]
    if not values:
        raise LookupError("no process_resident_memory_bytes in the metrics")
    return int(sum(values))


def memory_watches(
    pid: int | None, metrics_url: str | None, metrics_client: httpx.AsyncClient
) -> list[MemoryWatch]:
    watches = []
    if pid is not None:

        async def from_proc() -> int:
            return read_vmrss(pid)

        watches.append(
            MemoryWatch(
                f"pid {pid}", from_proc, 0.2, final_errors=(FileNotFoundError, ProcessLookupError)
            )
        )
    if metrics_url is not None:

        async def from_metrics() -> int:
            response = await metrics_client.get(metrics_url)
            if response.status_code != 200:
                raise LookupError(f"answered HTTP {response.status_code}")
            return parse_resident_memory(response.text)

        watches.append(MemoryWatch(metrics_url, from_metrics, 1.0))
    return watches
