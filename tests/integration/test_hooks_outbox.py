"""The outbox's schedule on a clock the test moves: each failed attempt doubles the wait up to
its cap and nothing is sent before its time; against moto and a real receiver on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from app.hooks.caller import HookCaller
from app.hooks.events import UploadContext, post_finish_event
from app.hooks.outbox import FAILED_PREFIX, PENDING_PREFIX, Outbox
from app.settings import Settings
from app.storage.session import open_storage
from harness.hooks import HookReceiver
from harness.store import Bucket

pytestmark = pytest.mark.anyio

CONTEXT = UploadContext("alice", "127.0.0.1", "req-1", 10)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def receiver() -> Iterator[HookReceiver]:
    server = HookReceiver(lambda event: (500, None)).start()
    yield server
    server.stop()


@pytest.fixture
async def outbox(
    settings_for: Callable[..., Settings], receiver: HookReceiver
) -> AsyncIterator[tuple[Outbox, Clock]]:
    settings = settings_for(
        hook_url=receiver.url,
        hook_secret="hook-secret-0123456789",
        hook_backoff=10.0,
        hook_backoff_max=25.0,
        hook_delivery_attempts=4,
    )
    clock = Clock()
    async with open_storage(settings) as storage, httpx.AsyncClient() as http:
        yield Outbox(storage, HookCaller(http, settings), settings, clock=clock), clock


def pending_record(bucket: Bucket) -> dict[str, object]:
    stored = bucket.keys()
    [key] = [k for k in stored if k.startswith(PENDING_PREFIX)]
    record: dict[str, object] = json.loads(bucket.read(key))
    return record


async def test_failed_attempts_back_off_doubling_to_the_cap_then_park(
    outbox: tuple[Outbox, Clock], receiver: HookReceiver, bucket: Bucket
) -> None:
    box, clock = outbox
    event = post_finish_event(CONTEXT, {"files": [], "fields": {}})
    await box.add(event)
    start = clock.now
    waits = []
    for attempt in (1, 2, 3):
        await box.deliver_due()
        assert len(receiver.received("post-finish")) == attempt
        record = pending_record(bucket)
        assert record["attempts"] == attempt and record["last_error"] == "it answered 500"
        due = float(record["next_attempt_at"])  # type: ignore[arg-type]
        waits.append(due - clock.now)
        clock.now = due - 0.001
        await box.deliver_due()  # not yet due: not sent
        assert len(receiver.received("post-finish")) == attempt
        clock.now = due
    assert waits == [10.0, 20.0, 25.0]
    assert clock.now == start + 55.0
    await box.deliver_due()  # the fourth and last attempt
    assert len(receiver.received("post-finish")) == 4
    keys = bucket.keys()
    assert [k for k in keys if k.startswith(PENDING_PREFIX)] == []
    [parked] = [k for k in keys if k.startswith(FAILED_PREFIX)]
    record = json.loads(bucket.read(parked))
    assert record["event"] == event and record["attempts"] == 0  # ready to replay


async def test_an_unreadable_pending_object_is_parked_at_its_second_reading(
    outbox: tuple[Outbox, Clock], receiver: HookReceiver, bucket: Bucket
) -> None:
    box, _ = outbox
    bucket.s3.put_object(Bucket=bucket.name, Key=PENDING_PREFIX + "junk.json", Body=b"{not json")
    await box.deliver_due()  # perhaps caught half rewritten: left for the next round
    assert bucket.keys() == [PENDING_PREFIX + "junk.json"]
    await box.deliver_due()
    assert receiver.all_calls() == []
    assert bucket.keys() == [FAILED_PREFIX + "junk.json"]
