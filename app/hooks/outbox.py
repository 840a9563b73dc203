"""post-finish and post-abort events, kept in the bucket until the hook takes them.

Recording an event is one small PutObject under `.upload-hooks/pending/`, made before the
client is answered; nothing else waits for the hook. Every instance runs a `Deliverer` that
lists that prefix and sends what is due, so an event outlives a restart of the instance that
made it and any instance may deliver it. A 2xx deletes the object. A failure rewrites it with
the next attempt's time (backoff doubling from UPLOAD_HOOK_BACKOFF up to UPLOAD_HOOK_BACKOFF_MAX);
after UPLOAD_HOOK_DELIVERY_ATTEMPTS it is logged with its event and moved to
`.upload-hooks/failed/`, reset so that moving it back to pending/ replays it.

Delivery is at least once: two instances may send the same event, and an instance stopped
between the 2xx and the delete sends it again. Receivers de-duplicate by the event's `id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from app import metrics
from app.errors import StorageFailed
from app.hooks.caller import HookCaller
from app.hooks.events import Event, encode
from app.settings import HOOKS_PREFIX, Settings
from app.storage import S3Client
from app.storage.failures import error_code

logger = logging.getLogger("app.hooks")

PENDING_PREFIX = HOOKS_PREFIX + "pending/"
FAILED_PREFIX = HOOKS_PREFIX + "failed/"
#: Deliveries one instance makes at once.
CONCURRENT_DELIVERIES = 8


@dataclasses.dataclass
class Delivery:
    """One pending object: the event, and how its delivery has gone so far."""

    event: Event
    attempts: int = 0  # failed attempts
    next_attempt_at: float = 0.0  # unix time; 0 = now
    last_error: str = ""

    def encode(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False).encode()

    @classmethod
    def decode(cls, data: bytes) -> Delivery:
        read: dict[str, Any] = json.loads(data)
        return cls(
            read["event"],
            int(read.get("attempts", 0)),
            float(read.get("next_attempt_at", 0.0)),
            str(read.get("last_error", "")),
        )


def pending_key(event: Event) -> str:
    return f"{PENDING_PREFIX}{event['id']}.json"


class Outbox:
    """Records events in the bucket and delivers them (`run` is each instance's deliverer)."""

    def __init__(
        self,
        storage: S3Client,
        caller: HookCaller,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.caller = caller
        self.settings = settings
        self.clock = clock
        self._wake = asyncio.Event()
        self._stopping = False
        #: Pending keys read and not yet due, with their time: not read again until then.
        self._not_before: dict[str, float] = {}
        #: Pending keys whose last read was not a delivery record.
        self._unreadable: set[str] = set()

    async def add(self, event: Event) -> None:
        """Record `event` for delivery and wake this instance's deliverer. If the bucket
        refuses, the event is logged (enough to replay it by hand) and counted, not raised:
        the upload itself is done."""
        try:
            await self._put(pending_key(event), Delivery(event))
        except StorageFailed as exc:
            metrics.HOOK_DELIVERIES.labels(event["type"], "unrecorded").inc()
            logger.error(
                "hook event not recorded (%s): %s",
                exc.message,
                encode(event).decode(),
                extra={"fields": {"event_id": event["id"], "event": event}},
            )
            return
        self._wake.set()

    def stop(self) -> None:
        """End `run` after what it is doing. Cancelling it is not enough on its own: a
        cancellation that arrives while httpx closes a connection can be absorbed there."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Deliver what is due, then wait for a new event, the next due time or the poll
        interval; until stopped. Storage or hook failures never end it."""
        while not self._stopping:
            self._wake.clear()
            try:
                await self.deliver_due()
            except StorageFailed as exc:
                logger.warning("hook deliveries: listing pending events failed: %s", exc.message)
            except Exception:
                logger.exception("hook deliveries: unexpected error; continuing")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_wait())

    def _next_wait(self) -> float:
        wait = self.settings.hook_poll_interval
        if self._not_before:
            wait = min(wait, min(self._not_before.values()) - self.clock())
        return max(wait, 0.01)

    async def deliver_due(self) -> None:
        """One round: every pending event whose time has come is sent once."""
        keys = await self._pending_keys()
        self._not_before = {k: t for k, t in self._not_before.items() if k in keys}
        now = self.clock()
        due = [key for key in keys if self._not_before.get(key, 0.0) <= now]
        slots = asyncio.Semaphore(CONCURRENT_DELIVERIES)

        async def deliver(key: str) -> None:
            async with slots:
                try:
                    await self._deliver(key)
                except StorageFailed as exc:
                    logger.warning("hook delivery of %s: storage failed: %s", key, exc.message)

        await asyncio.gather(*(deliver(key) for key in due))

    async def _deliver(self, key: str) -> None:
        delivery = await self._load(key)
        if delivery is None:
            self._not_before.pop(key, None)  # delivered by another instance meanwhile
            return
        if delivery.next_attempt_at > self.clock():
            self._not_before[key] = delivery.next_attempt_at
            return
        kind = str(delivery.event.get("type", ""))
        started = time.monotonic()
        try:
            response = await self.caller.send(delivery.event)
            error = "" if response.is_success else f"it answered {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        seconds = time.monotonic() - started
        metrics.HOOK_SECONDS.labels(kind, "failed" if error else "delivered").observe(seconds)
        if not error:
            await self.storage.delete(key)
            self._not_before.pop(key, None)
            metrics.HOOK_DELIVERIES.labels(kind, "delivered").inc()
            return
        delivery.attempts += 1
        delivery.last_error = error
        if delivery.attempts >= self.settings.hook_delivery_attempts:
            await self._give_up(key, delivery)
            return
        backoff = self.settings.hook_backoff * 2 ** (delivery.attempts - 1)
        delivery.next_attempt_at = self.clock() + min(backoff, self.settings.hook_backoff_max)
        await self._put(key, delivery)
        self._not_before[key] = delivery.next_attempt_at
        metrics.HOOK_DELIVERIES.labels(kind, "retry").inc()
        logger.info("hook delivery %s failed (attempt %d): %s", key, delivery.attempts, error)

    async def _give_up(self, key: str, delivery: Delivery) -> None:
        """Log the event in full, count it, and park it under failed/ ready to be replayed."""
        event = delivery.event
        metrics.HOOK_DELIVERIES.labels(str(event.get("type", "")), "failed").inc()
        logger.error(
            "hook delivery failed after %d attempts (%s); moved to %s: %s",
            delivery.attempts,
            delivery.last_error,
            FAILED_PREFIX,
            encode(event).decode(),
            extra={"fields": {"event_id": event.get("id"), "event": event}},
        )
        parked = Delivery(event, last_error=delivery.last_error)
        await self._put(FAILED_PREFIX + key.removeprefix(PENDING_PREFIX), parked)
        await self.storage.delete(key)
        self._not_before.pop(key, None)

    async def _pending_keys(self) -> set[str]:
        keys: set[str] = set()
        arguments: dict[str, Any] = {"Prefix": PENDING_PREFIX}
        while True:
            page = await self.storage.call(
                "ListObjectsV2", self.storage.client.list_objects_v2, **arguments
            )
            keys.update(item["Key"] for item in page.get("Contents", []))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return keys
            arguments["ContinuationToken"] = token

    async def _load(self, key: str) -> Delivery | None:
        """The pending object, or None if it is gone; an unreadable one is parked as failed."""
        try:
            response = await self.storage.client.get_object(Bucket=self.storage.bucket, Key=key)
            async with response["Body"] as stream:
                data: bytes = await stream.read()
        except Exception as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise StorageFailed(f"storage GetObject failed: {exc}") from exc
        try:
            delivery = Delivery.decode(data)
        except (ValueError, KeyError, TypeError):
            # Read once more before parking it: a store whose overwrites are not atomic (a
            # file system behind it) can show a record half rewritten by another instance.
            if key not in self._unreadable:
                self._unreadable.add(key)
                return None
            logger.error("hook delivery %s is not a delivery record; moved to failed/", key)
            await self._put_raw(FAILED_PREFIX + key.removeprefix(PENDING_PREFIX), data)
            await self.storage.delete(key)
            self._unreadable.discard(key)
            return None
        self._unreadable.discard(key)
        return delivery

    async def _put(self, key: str, delivery: Delivery) -> None:
        await self._put_raw(key, delivery.encode())

    async def _put_raw(self, key: str, data: bytes) -> None:
        await self.storage.call(
            "PutObject",
            self.storage.client.put_object,
            Key=key,
            Body=data,
            ContentType="application/json",
        )
