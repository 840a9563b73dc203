"""bench/chaos/faults.py against a real `rclone serve s3`: the schedule a seed draws, and each
kind of event as the storage calls behind the proxy see it (a boto3 client with one attempt
per call, so that every broken call shows)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from bench.chaos.faults import FaultEvent, FaultInjector, ProxyThread, fault_schedule
from harness.store import Bucket, RcloneStore, s3_client


@pytest.fixture
def proxy_thread(rclone: RcloneStore) -> Iterator[ProxyThread]:
    thread = ProxyThread(rclone.endpoint).start()
    yield thread
    thread.stop()


def client(proxy: ProxyThread) -> Any:
    return s3_client(proxy.endpoint, Config(retries={"total_max_attempts": 1}))


def test_a_seed_draws_the_same_schedule_with_every_kind_first() -> None:
    events = fault_schedule(5, 180)
    assert events == fault_schedule(5, 180)
    assert {e.kind for e in events[:3]} == set(FaultEvent.KINDS)
    assert events[0].at >= 3 and events[-1].at < 177
    assert all(b.at - a.at >= 3 for a, b in itertools.pairwise(events))


def test_a_burst_answers_the_next_calls_then_lets_them_through(
    rclone: RcloneStore, proxy_thread: ProxyThread
) -> None:
    bucket, s3 = Bucket(rclone.endpoint), client(proxy_thread)
    injector = FaultInjector(proxy_thread)
    s3.put_object(Bucket=bucket.name, Key="before", Body=b"x")  # counted: the burst follows it
    injector.begin(FaultEvent(0, "burst", "PutObject", calls=2, status_kind="slowdown"))
    for _ in range(2):
        with pytest.raises(ClientError) as refused:
            s3.put_object(Bucket=bucket.name, Key="during", Body=b"x")
        assert refused.value.response["Error"]["Code"] == "SlowDown"
    s3.put_object(Bucket=bucket.name, Key="after", Body=b"x")
    assert sorted(bucket.keys()) == ["after", "before"]
    assert injector.broken() == 2


def test_the_store_down_drops_every_call_until_the_event_ends(
    rclone: RcloneStore, proxy_thread: ProxyThread
) -> None:
    bucket, s3 = Bucket(rclone.endpoint), client(proxy_thread)
    injector = FaultInjector(proxy_thread)
    fault = injector.begin(FaultEvent(0, "down", seconds=1))
    for call in (
        lambda: s3.put_object(Bucket=bucket.name, Key="k", Body=b"x"),
        lambda: s3.list_objects_v2(Bucket=bucket.name),
    ):
        with pytest.raises(ConnectionClosedError):
            call()
    injector.end(fault)
    s3.put_object(Bucket=bucket.name, Key="k", Body=b"x")
    assert bucket.keys() == ["k"]
    assert injector.broken() == 2
