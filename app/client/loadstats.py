"""The load test's arithmetic and report: outcomes in, percentiles and a summary out.

Kept apart from the code that sends requests so the numbers can be tested without a server.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from app.client.progress import format_bytes, format_rate


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), interpolated between the closest ranks; None if empty.

    The same definition as numpy's default and `statistics.quantiles(method="inclusive")`:
    p50 of [1, 2, 3, 4] is 2.5, p100 is the maximum.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be 0 to 100, got {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclasses.dataclass(frozen=True, slots=True)  # slots: a long run keeps many of them
class Outcome:
    """One finished request."""

    #: HTTP status, or None when no answer came (connection refused, reset, timeout).
    status: int | None
    #: "ok", the service's error code, "integrity_mismatch", or the transport error's name.
    code: str
    #: Seconds from sending the request line to having the whole answer.
    latency: float
    #: Seconds from the body's last byte leaving to the answer; None if it never all left.
    lag: float | None
    #: Body bytes handed to the connection.
    sent: int

    @property
    def ok(self) -> bool:
        return self.code == "ok"

    @property
    def label(self) -> str:
        """How failures are counted: `413 body_too_large`, `no-answer ConnectError`."""
        return f"{self.status if self.status is not None else 'no-answer'} {self.code}"


@dataclasses.dataclass(frozen=True)
class MemoryReport:
    """The server's resident memory over the run, from /proc or from its /metrics."""

    source: str
    start: int | None = None
    peak: int | None = None
    end: int | None = None
    samples: int = 0
    #: Why there are no (or fewer) numbers: process gone, endpoint missing...
    note: str | None = None

    @property
    def growth(self) -> int | None:
        """Peak over the first reading: what the load cost the server."""
        return None if self.start is None or self.peak is None else self.peak - self.start

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "growth": self.growth}

    def describe(self) -> str:
        if self.peak is None or self.start is None:
            return f"{self.source}: no readings ({self.note or 'unavailable'})"
        end = format_bytes(self.end) if self.end is not None else "?"
        line = (
            f"{self.source}: start {format_bytes(self.start)}, peak {format_bytes(self.peak)} "
            f"(+{format_bytes(self.growth or 0)}), end {end}, {self.samples} samples"
        )
        return f"{line} ({self.note})" if self.note else line


@dataclasses.dataclass(frozen=True)
class Summary:
    url: str
    concurrency: int
    size: int
    outcomes: Sequence[Outcome]
    #: Requests cut off by --duration's grace period: no verdict on them either way.
    cancelled: int
    elapsed: float
    #: Body bytes sent by every request, the cancelled ones too.
    sent: int
    memory: Sequence[MemoryReport] = ()

    @property
    def ok(self) -> int:
        return sum(1 for o in self.outcomes if o.ok)

    @property
    def failed(self) -> int:
        return len(self.outcomes) - self.ok

    @property
    def passed(self) -> bool:
        """What the exit status says: something finished and nothing failed."""
        return self.failed == 0 and self.ok > 0

    def as_dict(self) -> dict[str, Any]:
        latencies = [o.latency for o in self.outcomes]
        lags = [o.lag for o in self.outcomes if o.lag is not None]
        sent = self.sent
        return {
            "url": self.url,
            "concurrency": self.concurrency,
            "size": self.size,
            "requests": {
                "finished": len(self.outcomes),
                "ok": self.ok,
                "failed": self.failed,
                "cancelled": self.cancelled,
                "by_status": _counts(
                    str(o.status) if o.status is not None else "no-answer" for o in self.outcomes
                ),
                "failures": _counts(o.label for o in self.outcomes if not o.ok),
            },
            "integrity": {
                "verified": self.ok,
                "mismatches": sum(1 for o in self.outcomes if o.code == "integrity_mismatch"),
            },
            "elapsed_seconds": round(self.elapsed, 3),
            "bytes_sent": sent,
            "mib_per_second": round(sent / self.elapsed / 2**20, 2) if self.elapsed > 0 else 0,
            "latency_seconds": _rounded(
                {q: percentile(latencies, n) for q, n in (("p50", 50), ("p95", 95), ("p99", 99))}
            ),
            "completion_lag_seconds": _rounded(
                {
                    "p50": percentile(lags, 50),
                    "p95": percentile(lags, 95),
                    "max": max(lags, default=None),
                }
            ),
            "server_memory": [report.as_dict() for report in self.memory],
        }

    def format(self) -> str:
        """The human report: one topic per line, failures spelled out."""
        data = self.as_dict()
        requests = data["requests"]
        statuses = ", ".join(f"{k}: {v}" for k, v in requests["by_status"].items()) or "none"
        latency = data["latency_seconds"]
        lag = data["completion_lag_seconds"]
        rate = format_rate(data["bytes_sent"] / self.elapsed if self.elapsed > 0 else 0)
        lines = [
            f"loadtest:        {self.url}, {format_bytes(self.size)} per request, "
            f"concurrency {self.concurrency}",
            f"requests:        {self.ok} ok, {self.failed} failed, {self.cancelled} cancelled"
            f" (by status: {statuses})",
        ]
        lines += [f"  failed:        {n} x {label}" for label, n in requests["failures"].items()]
        lines += [
            f"integrity:       {data['integrity']['verified']} verified, "
            f"{data['integrity']['mismatches']} mismatches",
            f"throughput:      {format_bytes(data['bytes_sent'])} sent in "
            f"{self.elapsed:.2f} s = {rate}",
            f"latency:         p50 {_secs(latency['p50'])}  p95 {_secs(latency['p95'])}  "
            f"p99 {_secs(latency['p99'])}",
            f"completion lag:  p50 {_secs(lag['p50'])}  p95 {_secs(lag['p95'])}  "
            f"max {_secs(lag['max'])}",
        ]
        lines += [f"server RSS:      {report.describe()}" for report in self.memory]
        return "\n".join(lines)


def _counts(labels: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(labels).items()))


def _rounded(values: dict[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(v, 4) for k, v in values.items()}


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"
