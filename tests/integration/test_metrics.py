"""GET /metrics: Prometheus text with the upload counters moving as uploads happen."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.forms import FilePart, content_type, multipart_body
from tests.integration.conftest import PART

pytestmark = pytest.mark.anyio


async def scrape(http: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def delta(after: dict, before: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    key = (name, tuple(sorted(labels.items())))
    return float(after.get(key, 0.0) - before.get(key, 0.0))


async def test_counters_follow_stored_and_failed_uploads(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    big = bytes(range(256)) * (3 * PART // 256 + 7)  # past the threshold: 4 parts
    small = b"hello"
    body = multipart_body([FilePart("a", "big.bin", big), FilePart("b", "small.txt", small)])
    ok = await client.post("/uploads", content=body, headers={"content-type": content_type()})
    assert ok.status_code == 201
    broken = await client.post(
        "/uploads", content=body[: len(body) // 2], headers={"content-type": content_type()}
    )
    assert broken.status_code == 400
    after = await scrape(client)

    assert delta(after, before, "upload_requests_total", outcome="stored", code="") == 1
    failed = delta(
        after, before, "upload_requests_total", outcome="failed", code="malformed_multipart"
    )
    assert failed == 1
    assert delta(after, before, "upload_objects_aborted_total", reason="malformed_multipart") == 1
    assert delta(after, before, "upload_stored_bytes_total") == len(big) + len(small)
    assert delta(after, before, "upload_received_bytes_total") == len(body) + len(body) // 2
    assert delta(after, before, "upload_objects_stored_total", strategy="multipart") == 1
    assert delta(after, before, "upload_objects_stored_total", strategy="single") == 1
    # The four parts of the stored file were timed (the truncated body held its file for
    # one PutObject, so it never sent a part).
    parts = delta(after, before, "upload_part_seconds_count", operation="UploadPart")
    assert parts == 4
    assert after["upload_requests_in_flight", ()] == 0
    assert after["upload_parts_in_flight", ()] == 0
    assert after["upload_buffered_bytes", ()] == 0
    assert after["upload_memory_budget_bytes", ()] == 512 * 1024 * 1024
    assert ("process_resident_memory_bytes", ()) in after
