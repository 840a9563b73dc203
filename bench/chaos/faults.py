"""Storage faults over the run's time: 5xx bursts, dropped connections, the store unreachable
for seconds; and the moment one app instance is restarted.

The faults come from harness/faulty_s3.py, a proxy between the app instances and the store,
run on an event loop of its own in a thread: the clients' loop, busy generating and hashing
bodies, does not delay the storage calls it forwards. The schedule is drawn from the run's
seed up front, so a run is reproducible in what it injects and when.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, ClassVar, TypeVar

from harness.faulty_s3 import Fault, FaultyS3

T = TypeVar("T")

#: Operations a burst or a drop may hit: the ones an upload makes.
UPLOAD_CALLS = ("UploadPart", "PutObject", "CreateMultipartUpload", "CompleteMultipartUpload")


class ProxyThread:
    """A FaultyS3 in front of `upstream`, serving from its own thread until stop()."""

    def __init__(self, upstream: str) -> None:
        # aiohttp logs a traceback for each connection the proxy drops on purpose.
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
        self.proxy = FaultyS3(upstream)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="faulty-s3", daemon=True)

    def start(self) -> ProxyThread:
        self.thread.start()
        self._call(self.proxy.start()).result(timeout=30)
        return self

    @property
    def endpoint(self) -> str:
        return self.proxy.endpoint

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def inside(self, action: Callable[[FaultyS3], T]) -> T:
        """Run `action` on the proxy's own thread (its state is that loop's), return its result."""

        async def run() -> T:
            return action(self.proxy)

        return self._call(run()).result(timeout=30)

    def stop(self) -> None:
        if self.thread.is_alive():
            self._call(self.proxy.stop()).result(timeout=30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
        self.loop.close()


@dataclasses.dataclass
class FaultEvent:
    """One injection: at `at` seconds into the run, for `seconds` (down) or `calls` calls."""

    #: "burst" (5xx answers), "drop" (connections closed unanswered), "down" (every call
    #: dropped for `seconds`).
    KINDS: ClassVar[tuple[str, ...]] = ("burst", "drop", "down")

    at: float
    kind: str
    operation: str = "*"
    calls: int = 0
    status_kind: str = "drop"
    seconds: float = 0.0
    #: Calls the proxy broke while this event was the one in force (filled in by the run).
    broken: int = 0

    def describe(self) -> str:
        if self.kind == "down":
            return f"store unreachable for {self.seconds:.1f} s (every call dropped)"
        if self.kind == "burst":
            status = {"slowdown": "503 SlowDown", "internal": "500 InternalError"}
            return f"{status[self.status_kind]} to the next {self.calls} {self.operation}"
        return f"connection dropped on the next {self.calls} {self.operation}"


def fault_schedule(seed: int, duration: float) -> list[FaultEvent]:
    """Events every 3-8 s from 3 s in until 3 s before the end; the first three are one of each
    kind, so that even a short run has all of them."""
    rng = random.Random(f"faults-{seed}")
    kinds = list(FaultEvent.KINDS)
    rng.shuffle(kinds)
    events: list[FaultEvent] = []
    at = 3.0
    while at < duration - 3:
        kind = kinds[len(events)] if len(events) < 3 else rng.choice(FaultEvent.KINDS)
        if kind == "down":
            events.append(FaultEvent(at, kind, seconds=round(rng.uniform(3, 6), 1)))
        elif kind == "burst":
            operation = rng.choice(UPLOAD_CALLS)
            status_kind = rng.choice(["slowdown", "internal"])
            events.append(FaultEvent(at, kind, operation, rng.randint(1, 4), status_kind))
        else:
            operation = rng.choice(("UploadPart", "PutObject", "CompleteMultipartUpload"))
            events.append(FaultEvent(at, kind, operation, rng.randint(1, 2), "drop"))
        at += rng.uniform(3, 8)
    return events


def restart_time(seed: int, duration: float) -> float:
    """When the second instance gets its SIGTERM: somewhere in the middle of the run."""
    return round(random.Random(f"restart-{seed}").uniform(0.3, 0.55) * duration, 1)


def as_fault(event: FaultEvent, counts: dict[str, int]) -> Fault:
    """The proxy's Fault for an event starting now (`counts`: calls seen per operation)."""
    if event.kind == "down":
        return Fault("*", first=1, last=None, kind="drop")
    first = counts.get(event.operation, 0) + 1
    return Fault(event.operation, first=first, last=first + event.calls - 1, kind=event.status_kind)


class FaultInjector:
    """Applies events to a running proxy and counts what each broke."""

    def __init__(self, proxy: ProxyThread) -> None:
        self.proxy = proxy

    def begin(self, event: FaultEvent) -> Fault:
        def add(proxy: FaultyS3) -> Fault:
            fault = as_fault(event, proxy.counts)
            proxy.faults = [*proxy.faults, fault]
            return fault

        return self.proxy.inside(add)

    def end(self, fault: Fault) -> None:
        def remove(proxy: FaultyS3) -> None:
            proxy.faults = [f for f in proxy.faults if f is not fault]

        self.proxy.inside(remove)

    def broken(self) -> int:
        return self.proxy.inside(lambda proxy: len(proxy.broken))

    def clear(self) -> None:
        def clear(proxy: FaultyS3) -> None:
            proxy.faults = []

        self.proxy.inside(clear)
