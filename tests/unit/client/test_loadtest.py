"""The load test harness without a server: generated files, the report's arithmetic, and
run_load against an in-process fake service (httpx.MockTransport) that parses each body as
the real one does. tests/e2e/test_client_cli.py runs it against a real service."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import statistics
from collections.abc import Awaitable, Callable

import httpx
import pytest

from app.client import loadtest
from app.client.generated import generated_chunks
from app.client.loadstats import MemoryReport, Outcome, Summary, percentile
from app.client.loadtest import LoadPlan, run_load
from app.client.memwatch import parse_resident_memory, read_vmrss
from app.client.upload import UsageError
from app.forms.multipart import MultipartStream, PartEnd, PartStart
from app.units import MiB

# --- generated files ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, MiB - 1, MiB, MiB + 1, 3 * MiB + 5])
def test_generated_files_have_the_exact_size_in_bounded_chunks(size: int) -> None:
    chunks = list(generated_chunks(7, size))
    assert sum(map(len, chunks)) == size
    assert all(0 < len(chunk) <= MiB for chunk in chunks)


def test_generated_files_depend_only_on_the_seed() -> None:
    def digest(seed: int, chunk_size: int = MiB) -> str:
        h = hashlib.sha256()
        for chunk in generated_chunks(seed, 3 * MiB, chunk_size):
            h.update(chunk)
        return h.hexdigest()

    assert digest(1) == digest(1)
    assert len({digest(seed) for seed in range(5)}) == 5
    # Chunks within one file differ too, so a reordered upload would not verify.
    first, second = list(generated_chunks(3, 2 * MiB))
    assert first != second


def test_generated_files_do_not_compress() -> None:
    import zlib

    chunk = next(generated_chunks(0, MiB))
    assert len(zlib.compress(chunk)) > 0.99 * len(chunk)


# --- the report's arithmetic ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, None),
        ([3.0], 99, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([4.0, 1.0, 3.0, 2.0], 0, 1.0),
        ([4.0, 1.0, 3.0, 2.0], 100, 4.0),
        ([1.0, 2.0], 95, 1.95),
        ([float(i) for i in range(1, 101)], 99, 99.01),
    ],
)
def test_percentile(values: list[float], q: float, expected: float | None) -> None:
    result = percentile(values, q)
    assert result == pytest.approx(expected) if expected is not None else result is None


def test_percentile_agrees_with_statistics_inclusive_quantiles() -> None:
    values = [((i * 7919) % 1000) / 10 for i in range(257)]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    for q in (1, 25, 50, 95, 99):
        assert percentile(values, q) == pytest.approx(cuts[q - 1])


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def summary() -> Summary:
    outcomes = [Outcome(201, "ok", 1.0 + i / 10, 0.05 + i / 100, 8 * MiB) for i in range(8)]
    outcomes += [
        Outcome(413, "body_too_large", 0.01, None, 0),
        Outcome(201, "integrity_mismatch", 2.0, 0.1, 8 * MiB),
        Outcome(None, "ReadTimeout", 300.0, None, MiB),
    ]
    return Summary(
        url="http://127.0.0.1:8000/uploads",
        concurrency=4,
        size=8 * MiB,
        outcomes=outcomes,
        cancelled=1,
        elapsed=10.0,
        sent=100 * MiB,
        memory=[
            MemoryReport("pid 42", start=80 * MiB, peak=110 * MiB, end=82 * MiB, samples=50),
            MemoryReport("http://x/metrics", note="LookupError: answered HTTP 404"),
        ],
    )


def test_summary_as_json() -> None:
    data = summary().as_dict()
    assert data["requests"] == {
        "finished": 11,
        "ok": 8,
        "failed": 3,
        "cancelled": 1,
        "by_status": {"201": 9, "413": 1, "no-answer": 1},
        "failures": {
            "201 integrity_mismatch": 1,
            "413 body_too_large": 1,
            "no-answer ReadTimeout": 1,
        },
    }
    assert data["integrity"] == {"verified": 8, "mismatches": 1}
    assert data["mib_per_second"] == 10.0
    # 0.01, 1.0 ... 1.7, 2.0, 300: failed requests count too, they are part of what users see
    assert data["latency_seconds"]["p50"] == pytest.approx(1.4)
    assert data["completion_lag_seconds"]["max"] == pytest.approx(0.12)
    assert data["server_memory"][0]["growth"] == 30 * MiB
    assert data["server_memory"][1]["peak"] is None
    json.dumps(data)  # plain JSON types only
    assert not summary().passed


def test_summary_as_text() -> None:
    text = summary().format()
    assert "8 ok, 3 failed, 1 cancelled (by status: 201: 9, 413: 1, no-answer: 1)" in text
    assert "1 x 201 integrity_mismatch" in text
    assert "100.0 MiB sent in 10.00 s = 10.0 MiB/s" in text
    assert "p50 1.400 s" in text
    assert "pid 42: start 80.0 MiB, peak 110.0 MiB (+30.0 MiB), end 82.0 MiB, 50 samples" in text
    assert "http://x/metrics: no readings (LookupError: answered HTTP 404)" in text


def test_nothing_finished_is_not_a_pass() -> None:
    empty = Summary("u", 1, 1, [], cancelled=2, elapsed=1.0, sent=0)
    assert not empty.passed
    assert "p50 -" in empty.format()


def test_parse_resident_memory() -> None:
    text = (
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\n"
        "process_resident_memory_bytes 8.4054016e+07\n"
        "process_resident_memory_bytes_total 1\n"
        'process_resident_memory_bytes{worker="2"} 1000 1700000000\n'
    )
    assert parse_resident_memory(text) == 84054016 + 1000
    with pytest.raises(LookupError):
        parse_resident_memory("up 1\n")


def test_vmrss_of_this_process() -> None:
    assert 1 * MiB < read_vmrss(os.getpid()) < 4096 * MiB


# --- command line ---------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    loadtest.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--url", "http://h", "--size", "8MiB"], "--count, --duration or both"),
        (["--url", "http://h", "--count", "0"], "--count must be"),
        (["--url", "http://h", "--count", "1", "--size", "8 parsecs"], "not a size"),
        (["--url", "http://h", "--count", "1", "--concurrency", "0"], "--concurrency"),
        (["--url", "http://h", "--duration", "100000"], "--duration"),
        (["--count", "1"], "no URL"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UPLOAD_URL", raising=False)
    err = io.StringIO()
    assert loadtest.run(parse(*argv), stdout=io.StringIO(), stderr=err) == 2
    assert message in err.getvalue()


@pytest.mark.parametrize(
    ("text", "size"), [("8MiB", 8 * MiB), ("1GiB", 1024 * MiB), ("10MB", 10**7)]
)
def test_sizes_are_parsed_as_the_services_settings_are(text: str, size: int) -> None:
    args = parse("--url", "http://h", "--count", "1", "--size", text)
    assert loadtest.parse_size(args.size) == size


def test_a_plan_needs_an_end() -> None:
    with pytest.raises(UsageError):
        LoadPlan("http://h/uploads", concurrency=1, size=1, count=None, duration=None)


# --- run_load against a fake service --------------------------------------------------------


Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


async def stored_digest(request: httpx.Request) -> tuple[str, int, str]:
    """The file's SHA-256 and size as the service would compute them, and its filename."""
    stream = MultipartStream(request.headers, max_part_header_bytes=16384)
    digest = hashlib.sha256()
    size = 0
    filename = ""
    for event in stream.feed(await request.aread()):
        if isinstance(event, PartStart):
            filename = event.filename or ""
        elif not isinstance(event, PartEnd):
            digest.update(event)
            size += len(event)
    stream.finish()
    return digest.hexdigest(), size, filename


def service(corrupt: set[str] = frozenset(), delay: float = 0.0) -> Handler:  # type: ignore[assignment]
    async def handle(request: httpx.Request) -> httpx.Response:
        assert int(request.headers["content-length"]) == len(await request.aread())
        sha, size, filename = await stored_digest(request)
        await asyncio.sleep(delay)
        if filename in corrupt:
            sha = "0" * 64
        return httpx.Response(201, json={"files": [{"sha256": sha, "size": size}], "fields": {}})

    return handle


@pytest.mark.anyio
async def test_every_request_is_verified() -> None:
    plan = LoadPlan("http://svc/uploads", concurrency=3, size=MiB + 123, count=7)
    summary = await run_load(plan, transport=httpx.MockTransport(service()))
    assert (summary.ok, summary.failed, summary.cancelled) == (7, 0, 0)
    assert summary.passed
    assert summary.sent > 7 * (MiB + 123)
    assert all(o.lag is not None and 0 <= o.lag <= o.latency for o in summary.outcomes)


@pytest.mark.anyio
async def test_a_digest_that_differs_is_a_failure() -> None:
    plan = LoadPlan("http://svc/uploads", concurrency=2, size=1000, count=4)
    transport = httpx.MockTransport(service(corrupt={"load-2.bin"}))
    summary = await run_load(plan, transport=transport)
    assert summary.as_dict()["requests"]["failures"] == {"201 integrity_mismatch": 1}
    assert not summary.passed


@pytest.mark.anyio
async def test_error_answers_and_transport_errors_are_counted_by_code() -> None:
    calls = 0

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("refused")
        if calls == 2:
            return httpx.Response(413, json={"error": {"code": "body_too_large", "message": "x"}})
        if calls == 3:
            return httpx.Response(502, text="<html>bad gateway</html>")
        return await service()(request)

    plan = LoadPlan("http://svc/uploads", concurrency=1, size=10, count=4)
    summary = await run_load(plan, transport=httpx.MockTransport(handle))
    assert summary.as_dict()["requests"]["failures"] == {
        "413 body_too_large": 1,
        "502 unexpected_answer": 1,
        "no-answer ConnectError": 1,
    }
    assert summary.ok == 1


@pytest.mark.anyio
async def test_duration_stops_the_run_and_cancels_stragglers_after_the_grace() -> None:
    plan = LoadPlan(
        "http://svc/uploads", concurrency=2, size=100, count=None, duration=0.5, grace=0.3
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    summary = await run_load(plan, transport=httpx.MockTransport(service(delay=0.2)))
    assert loop.time() - started < 2.0
    # Two workers, 0.2 s per request: about 3 rounds before 0.5 s, none cancelled.
    assert 4 <= summary.ok <= 8
    assert summary.cancelled == 0

    slow = LoadPlan(
        "http://svc/uploads", concurrency=2, size=100, count=None, duration=0.2, grace=0.1
    )
    started = loop.time()
    summary = await run_load(slow, transport=httpx.MockTransport(service(delay=30)))
    assert loop.time() - started < 2.0
    assert (summary.ok, summary.failed, summary.cancelled) == (0, 0, 2)


@pytest.mark.anyio
async def test_count_bounds_the_run_whatever_the_concurrency() -> None:
    plan = LoadPlan("http://svc/uploads", concurrency=10, size=10, count=3)
    summary = await run_load(plan, transport=httpx.MockTransport(service()))
    assert len(summary.outcomes) == 3


@pytest.mark.anyio
async def test_memory_is_sampled_from_proc_and_a_missing_metrics_endpoint_is_tolerated() -> None:
    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/metrics":
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "-"}})
        return await service(delay=0.3)(request)

    plan = LoadPlan("http://svc/uploads", concurrency=1, size=10, count=2)
    summary = await run_load(
        plan,
        pid=os.getpid(),
        metrics_url="http://svc/metrics",
        transport=httpx.MockTransport(handle),
    )
    by_proc, by_metrics = summary.memory
    assert by_proc.source == f"pid {os.getpid()}"
    assert by_proc.samples >= 3  # baseline, every 0.2 s for 0.6 s, and the final one
    assert by_proc.peak is not None and by_proc.peak >= (by_proc.start or 0)
    assert by_metrics.peak is None and by_metrics.note == "LookupError: answered HTTP 404"
    assert summary.passed


@pytest.mark.anyio
async def test_a_pid_that_is_gone_is_noted() -> None:
    plan = LoadPlan("http://svc/uploads", concurrency=1, size=10, count=1)
    summary = await run_load(plan, pid=2**22 + 1, transport=httpx.MockTransport(service()))
    assert summary.memory[0].samples == 0
    assert "FileNotFoundError" in (summary.memory[0].note or "")


def test_the_command_prints_json_and_exits_by_the_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    real_run_load = loadtest.run_load

    async def fake_run_load(plan: LoadPlan, **kw: object) -> Summary:
        return await real_run_load(plan, transport=httpx.MockTransport(service()))

    monkeypatch.setattr(loadtest, "run_load", fake_run_load)
    out = io.StringIO()
    args = parse("--url", "http://svc", "--count", "2", "--size", "4KiB", "--json", "-q")
    assert loadtest.run(args, stdout=out, stderr=io.StringIO()) == 0
    data = json.loads(out.getvalue())
    assert data["url"] == "http://svc/uploads"
    assert data["size"] == 4096
    assert data["requests"]["ok"] == 2
