"""Prometheus metrics for GET /metrics (prometheus-client).

Each process counts its own uploads. With several uvicorn workers in one container, set
PROMETHEUS_MULTIPROC_DIR to an empty directory (a tmpfs: it is written to constantly) and
/metrics adds up every worker's files; the gauges are declared for that mode ("livesum").
The recommended layout, one worker per instance behind nginx, needs neither.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess
from starlette.requests import Request
from starlette.responses import Response

UPLOADS = Counter(
    "upload_requests",
    "Upload requests by outcome (stored, failed) and error code ('' when stored).",
    ["outcome", "code"],
)
ABORTS = Counter(
    "upload_objects_aborted",
    "Objects whose multipart upload was aborted (or object deleted), by reason (error code).",
    ["reason"],
)
BYTES_RECEIVED = Counter("upload_received_bytes", "Request body bytes read from clients.")
BYTES_DISCARDED = Counter(
    "upload_discarded_bytes",
    "Request body bytes read and dropped after an early answer, so that the answer is delivered.",
)
BYTES_STORED = Counter("upload_stored_bytes", "File bytes stored in objects made visible.")
OBJECTS_STORED = Counter(
    "upload_objects_stored", "Objects made visible, by strategy.", ["strategy"]
)
RESUMABLE = Counter(
    "upload_resumable",
    "Resumable upload events: created, resumed (HEAD of an unfinished upload: a client "
    "resuming), completed, expired (a request found its upload expired), terminated, "
    "conflict (refused: another request held it).",
    ["event"],
)
RESUMABLE_REQUESTS = Counter(
    "upload_resumable_requests",
    "Requests at /files/ by method, answer status, and error code ('' when it succeeded).",
    ["method", "status", "code"],
)
RESUMABLE_BYTES = Counter(
    "upload_resumable_appended_bytes", "Bytes appended to resumable uploads and kept."
)
UPLOADS_IN_FLIGHT = Gauge(
    "upload_requests_in_flight", "Upload requests being handled.", multiprocess_mode="livesum"
)
UPLOADS_REFUSED = Counter(
    "upload_requests_refused", "Upload requests refused at UPLOAD_MAX_CONCURRENT (503)."
)
PARTS_IN_FLIGHT = Gauge(
    "upload_parts_in_flight", "UploadPart calls in progress.", multiprocess_mode="livesum"
)
PART_SECONDS = Histogram(
    "upload_part_seconds",
    "Duration of UploadPart and PutObject calls, retries included.",
    ["operation"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
BUFFERED_BYTES = Gauge(
    "upload_buffered_bytes",
    "Bytes of the memory budget reserved by part buffers.",
    multiprocess_mode="livesum",
)
BUDGET_BYTES = Gauge(
    "upload_memory_budget_bytes", "UPLOAD_MEMORY_BUDGET.", multiprocess_mode="livesum"
)
BUDGET_WAITS = Counter(
    "upload_memory_waits", "Times an upload paused reading its body to wait for the budget."
)

HOOK_SECONDS = Histogram(
    "upload_hook_seconds",
    "Duration of hook calls, retries included: pre-create by decision (allowed, refused, "
    "unavailable, fail_open, invalid_answer), deliveries by result (delivered, failed).",
    ["hook", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
HOOK_DELIVERIES = Counter(
    "upload_hook_deliveries",
    "post-finish and post-abort delivery attempts by event type and result: delivered (2xx), "
    "retry (failed, tried again later), failed (attempts used up: moved to failed/), "
    "unrecorded (the pending delivery could not be written to the bucket; logged).",
    ["event", "outcome"],
)


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


async def metrics(request: Request) -> Response:
    """GET /metrics: the Prometheus text format."""
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)
