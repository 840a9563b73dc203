"""POST /uploads through the ASGI app against a real S3 API server (moto) on loopback."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.client.formbody import FormField
from app.settings import Settings
from harness.forms import FilePart, chunked, content_type, multipart_body, part_head
from harness.store import Bucket, sha256
from tests.integration.conftest import PART, THRESHOLD, app_client, assert_error

pytestmark = pytest.mark.anyio

KEY_RE = re.compile(r"^uploads/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}/")
SIZES = [0, 1, PART - 1, PART, PART + 1, THRESHOLD - 1, THRESHOLD, THRESHOLD + 1, 3 * PART + 1]


def payload(size: int) -> bytes:
    # Cheap but not constant, and full of CR/LF and dashes like a real binary file.
    unit = b"\r\n--\x00\xff" + bytes(range(256))
    return (unit * (size // len(unit) + 1))[:size]


def expected_strategy(file_size: int, body_size: int | None) -> tuple[str, int]:
    """The documented rule: known small body -> one PutObject; else multipart past one part."""
    if body_size is not None and body_size < THRESHOLD:
        return "single", 1
    if file_size <= PART:
        return "single", 1
    return "multipart", -(-file_size // PART)


async def post(
    http: httpx.AsyncClient, body: bytes, *, stream: bool = False, boundary: str | None = None
) -> httpx.Response:
    headers = {"content-type": content_type() if boundary is None else content_type(boundary)}
    content: Any = chunked(body) if stream else body
    return await http.post("/uploads", content=content, headers=headers)


@pytest.mark.parametrize("stream", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("size", SIZES)
async def test_sizes_around_part_and_threshold(
    client: httpx.AsyncClient, bucket: Bucket, size: int, stream: bool
) -> None:
    data = payload(size)
    body = multipart_body([FilePart("file", "clip.mp4", data, "video/mp4")])
    response = await post(client, body, stream=stream)

    assert response.status_code == 201, response.text
    stored = response.json()["files"][0]
    bucket.assert_intact(stored, data)
    strategy, parts = expected_strategy(size, None if stream else len(body))
    assert (stored["strategy"], stored["parts"]) == (strategy, parts)
    assert stored["content_type"] == "video/mp4"
    assert bucket.head(stored["key"])["ContentType"] == "video/mp4"
    assert KEY_RE.match(stored["key"]) and stored["key"].endswith("/clip.mp4")
    assert bucket.keys() == [stored["key"]]


async def test_several_files_and_fields_in_one_form(
    client: httpx.AsyncClient, bucket: Bucket
) -> None:
    big, small, empty = payload(2 * PART + 3), payload(100), b""
    body = multipart_body(
        [
            FormField("title", "holiday ✈"),
            FilePart("video", "a.mp4", big, "video/mp4"),
            FormField("note", "between"),
            FilePart("thumb", "a.png", small, "image/png"),
            FilePart("extra", "empty.txt", empty, "text/plain"),
            FormField("tag", "x"),
            FormField("tag", "y"),
        ]
    )
    response = await post(client, body, stream=True)

    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["fields"] == {"title": "holiday ✈", "note": "between", "tag": ["x", "y"]}
    files = answer["files"]
    assert [(f["field"], f["filename"]) for f in files] == [
        ("video", "a.mp4"),
        ("thumb", "a.png"),
        ("extra", "empty.txt"),
    ]
    for stored, data in zip(files, [big, small, empty], strict=True):
        bucket.assert_intact(stored, data)
    assert [f["content_type"] for f in files] == ["video/mp4", "image/png", "text/plain"]
    assert (files[0]["strategy"], files[0]["parts"]) == ("multipart", 3)
    assert sorted(bucket.keys()) == sorted(f["key"] for f in files)


async def test_httpx_files_form_like_a_browser(client: httpx.AsyncClient, bucket: Bucket) -> None:
    data = payload(PART + 10)
    response = await client.post(
        "/uploads",
        files={"upload": ("report.pdf", data, "application/pdf")},
        data={"title": "Q3"},
    )
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["fields"] == {"title": "Q3"}
    bucket.assert_intact(answer["files"][0], data)


async def test_empty_filename_part_is_ignored(client: httpx.AsyncClient, bucket: Bucket) -> None:
    data = payload(1000)
    body = multipart_body([FilePart("first", "", b""), FilePart("second", "b.bin", data)])
    response = await post(client, body)
    assert response.status_code == 201, response.text
    files = response.json()["files"]
    assert [f["field"] for f in files] == ["second"]
    bucket.assert_intact(files[0], data)
    assert len(bucket.keys()) == 1


@pytest.mark.parametrize(
    "parts",
    [[FormField("title", "no file here")], [FilePart("file", "", b"")], []],
    ids=["fields-only", "no-file-chosen", "empty-form"],
)
async def test_no_file_is_400(client: httpx.AsyncClient, bucket: Bucket, parts: list[Any]) -> None:
    response = await post(client, multipart_body(parts))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "no_file"
    bucket.assert_clean()


async def test_epilogue_after_closing_boundary_is_ignored(
    client: httpx.AsyncClient, bucket: Bucket
) -> None:
    data = payload(PART + 1)
    body = multipart_body([FilePart("file", "a.bin", data)]) + b"an epilogue\r\n" * 10
    response = await post(client, body)
    assert response.status_code == 201, response.text
    bucket.assert_intact(response.json()["files"][0], data)


async def test_filename_cannot_escape_the_prefix(client: httpx.AsyncClient, bucket: Bucket) -> None:
    body = multipart_body([FilePart("file", "../../etc/pass\u202ewd", b"x")])
    response = await post(client, body)
    assert response.status_code == 201, response.text
    stored = response.json()["files"][0]
    assert stored["filename"] == "../../etc/pass\u202ewd"
    assert KEY_RE.match(stored["key"]) and stored["key"].endswith("/passwd")
    bucket.assert_intact(stored, b"x")


# --- errors: documented status and code, nothing left in the bucket -------------------------


@pytest.mark.parametrize(
    "headers",
    [{"content-type": "application/json"}, {"content-type": "text/plain"}, {}],
    ids=["json", "text", "none"],
)
async def test_not_multipart_is_415(
    client: httpx.AsyncClient, bucket: Bucket, headers: dict[str, str]
) -> None:
    response = await client.post("/uploads", content=b'{"a": 1}', headers=headers)
    assert_error(response, 415, "unsupported_media_type")
    bucket.assert_clean()


@pytest.mark.parametrize(
    "header",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        f"multipart/form-data; boundary={'b' * 71}",
    ],
    ids=["no-boundary", "empty-boundary", "over-long-boundary"],
)
async def test_bad_boundary_is_400(client: httpx.AsyncClient, bucket: Bucket, header: str) -> None:
    body = multipart_body([FilePart("file", "a.bin", b"abc")])
    response = await client.post("/uploads", content=body, headers={"content-type": header})
    assert_error(response, 400, "malformed_multipart")
    bucket.assert_clean()


MALFORMED = {
    "garbage": b"this is not a multipart body at all",
    "wrong-boundary": multipart_body([FilePart("file", "a.bin", b"abc")], boundary="other"),
    "missing-closing-boundary": multipart_body([FilePart("file", "a.bin", b"abc")])[:-8],
    "cut-inside-headers": part_head(FilePart("file", "a.bin", b""))[:40],
    "cut-after-delimiter": multipart_body([FilePart("file", "a.bin", b"abc")])[:-10]
    + b"\r\n--"
    + b"----streaming-upload-test-7Qk2\r\n",
    "non-utf8-header": b"--"
    + b"----streaming-upload-test-7Qk2"
    + b'\r\nContent-Disposition: form-data; name="f"; filename="\xff\xfe"\r\n\r\nabc\r\n--'
    + b"----streaming-upload-test-7Qk2--\r\n",
    "not-form-data-disposition": b"--"
    + b"----streaming-upload-test-7Qk2"
    + b'\r\nContent-Disposition: attachment; name="f"; filename="a"\r\n\r\nabc\r\n--'
    + b"----streaming-upload-test-7Qk2--\r\n",
}


@pytest.mark.parametrize("stream", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_body_is_400(
    client: httpx.AsyncClient, bucket: Bucket, body: bytes, stream: bool
) -> None:
    response = await post(client, body, stream=stream)
    assert_error(response, 400, "malformed_multipart")
    bucket.assert_clean()
    assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize(
    "cut", [PART - 1, PART + 1, 3 * PART + 17], ids=["in-part-1", "in-part-2", "in-part-4"]
)
async def test_file_cut_short_aborts_the_multipart_upload(
    client: httpx.AsyncClient, bucket: Bucket, cut: int
) -> None:
    body = multipart_body([FilePart("file", "a.bin", payload(4 * PART))])
    response = await post(client, body[:cut], stream=True)
    assert_error(response, 400, "malformed_multipart")
    bucket.assert_clean()


async def test_failure_after_a_finished_file_deletes_nothing_left(
    client: httpx.AsyncClient, bucket: Bucket
) -> None:
    """The first file streamed completely, the second was cut: neither may remain."""
    first = multipart_body(
        [FilePart("a", "a.bin", payload(3 * PART)), FilePart("b", "b.bin", payload(10))]
    )
    cut = first[: first.rindex(b"\r\n--")]  # drop the final boundary
    response = await post(client, cut, stream=True)
    assert_error(response, 400, "malformed_multipart")
    bucket.assert_clean()


async def test_header_section_too_large_is_400(client: httpx.AsyncClient, bucket: Bucket) -> None:
    head = part_head(FilePart("file", "a.bin", b""))
    body = head[:-4] + b"\r\nX-Padding: " + b"a" * (64 * 1024) + b"\r\n\r\nabc\r\n--"
    body += b"----streaming-upload-test-7Qk2--\r\n"
    response = await post(client, body, stream=True)
    assert_error(response, 400, "part_headers_too_large")
    bucket.assert_clean()


async def test_too_many_fields_and_field_too_large(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    async with app_client(settings_for(max_fields=2, max_field_bytes=10)) as http:
        many = multipart_body(
            [FormField(f"f{i}", "v") for i in range(3)] + [FilePart("f", "a", b"x")]
        )
        assert_error(await post(http, many), 400, "too_many_fields")
        long = multipart_body([FormField("f", "v" * 11), FilePart("f", "a", b"x")])
        assert_error(await post(http, long), 400, "field_too_large")
    bucket.assert_clean()


async def test_too_many_files(settings_for: Callable[..., Settings], bucket: Bucket) -> None:
    async with app_client(settings_for(max_files=2)) as http:
        body = multipart_body([FilePart("f", f"{i}.bin", b"x" * 10) for i in range(3)])
        assert_error(await post(http, body), 400, "too_many_files")
    bucket.assert_clean()


async def test_body_over_limit_by_content_length_is_413_before_reading(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    pulled = 0

    async def body() -> Any:
        nonlocal pulled
        for chunk in [b"x" * 1024] * 100:
            pulled += 1
            yield chunk

    pulled_at_answer: list[int] = []
    settings = settings_for(max_body_bytes=50_000)
    async with app_client(settings, on_answer=lambda: pulled_at_answer.append(pulled)) as http:
        headers = {"content-type": content_type(), "content-length": "102400"}
        response = await http.post("/uploads", content=body(), headers=headers)
    assert_error(response, 413, "body_too_large")
    assert pulled_at_answer[0] <= 1  # httpx may pull one chunk to start; the app read none
    bucket.assert_clean()


async def test_chunked_body_over_limit_is_413_mid_stream(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    data = payload(3 * PART)
    async with app_client(settings_for(max_body_bytes=2 * PART + 100)) as http:
        response = await post(http, multipart_body([FilePart("f", "a.bin", data)]), stream=True)
    assert_error(response, 413, "body_too_large")
    bucket.assert_clean()


async def test_storage_failure_is_502(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    async with app_client(settings_for(s3_bucket="no-such-bucket-here")) as http:
        for size in (10, 2 * PART):
            body = multipart_body([FilePart("f", "a.bin", payload(size))])
            assert_error(await post(http, body, stream=True), 502, "storage_error")
        assert (await http.get("/readyz")).status_code == 503
        assert (await http.get("/healthz")).status_code == 200
    bucket.assert_clean()


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


async def test_unknown_route_and_method_are_json(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/nope"), 404, "not_found")
    assert_error(await client.get("/uploads"), 405, "method_not_allowed")
    assert_error(await client.post("/healthz"), 405, "method_not_allowed")


async def test_sha256_is_of_the_stored_bytes(client: httpx.AsyncClient, bucket: Bucket) -> None:
    data = payload(PART * 2 + 12345)
    response = await post(client, multipart_body([FilePart("f", "x.bin", data)]), stream=True)
    stored = response.json()["files"][0]
    assert stored["sha256"] == sha256(bucket.read(stored["key"])) == sha256(data)


async def test_small_files_held_for_the_end_are_capped_at_the_threshold(
    client: httpx.AsyncClient, bucket: Bucket
) -> None:
    """Finished small files wait in memory for the closing boundary; past the threshold in
    total, the largest is sent ahead as a one-part multipart upload instead."""
    # Three fit under the 12 MiB threshold together; the fourth pushes the total over it.
    files = [payload(4 * 1024 * 1024 - i) for i in range(4)]
    body = multipart_body([FilePart(f"f{i}", f"{i}.bin", d) for i, d in enumerate(files)])
    response = await post(client, body, stream=True)
    assert response.status_code == 201, response.text
    stored = response.json()["files"]
    for entry, data in zip(stored, files, strict=True):
        bucket.assert_intact(entry, data)
    strategies = [(f["strategy"], f["parts"]) for f in stored]
    # The largest (the first) goes ahead; the rest stay under the threshold.
    assert strategies == [("multipart", 1), ("single", 1), ("single", 1), ("single", 1)]


async def test_several_parts_in_flight(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    data = payload(5 * PART + 3)
    async with app_client(settings_for(parts_in_flight=3)) as http:
        response = await post(http, multipart_body([FilePart("f", "a.bin", data)]), stream=True)
    assert response.status_code == 201, response.text
    stored = response.json()["files"][0]
    assert (stored["strategy"], stored["parts"]) == ("multipart", 6)
    bucket.assert_intact(stored, data)


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("size", [100, 2 * PART + 1], ids=["single", "multipart"])
async def test_client_digest_field_is_checked(
    client: httpx.AsyncClient, bucket: Bucket, where: str, size: int
) -> None:
    data = payload(size)
    good = FormField("video.sha256", sha256(data).upper())
    bad = FormField("video.sha256", sha256(data + b"x"))
    for digest, status in [(bad, 422), (good, 201)]:
        file = FilePart("video", "v.mp4", data)
        parts = [digest, file] if where == "before" else [file, digest]
        response = await post(client, multipart_body(parts), stream=True)
        assert response.status_code == status, response.text
        if status == 422:
            assert response.json()["error"]["code"] == "digest_mismatch"
            bucket.assert_clean()  # the mismatching object is not kept
    bucket.assert_intact(response.json()["files"][0], data)


async def test_malformed_client_digest_is_400(client: httpx.AsyncClient, bucket: Bucket) -> None:
    body = multipart_body([FormField("f.sha256", "abc"), FilePart("f", "a.bin", b"data")])
    assert_error(await post(client, body), 400, "invalid_digest")
    bucket.assert_clean()


async def test_too_many_parts(settings_for: Callable[..., Settings], bucket: Bucket) -> None:
    """Parts with no file chosen store nothing, but still count against UPLOAD_MAX_PARTS."""
    parts: list[Any] = [FilePart("empty", "", b"") for _ in range(5)]
    body = multipart_body([*parts, FilePart("f", "a.bin", b"x" * 100)])
    async with app_client(settings_for(max_parts=5)) as http:
        assert_error(await post(http, body), 400, "too_many_parts")
    bucket.assert_clean()


@pytest.mark.parametrize(
    ("filename", "part_type", "allowed"),
    [
        ("a.png", "image/png", True),
        ("a.jpeg", "image/jpeg", True),  # image/*
        ("report.PDF", "application/octet-stream", True),  # .pdf, any case
        ("a.exe", "application/x-msdownload", False),
        ("a.pdf.exe", "application/octet-stream", False),
        ("noext", "text/plain", False),
    ],
)
async def test_allowed_types(
    settings_for: Callable[..., Settings],
    bucket: Bucket,
    filename: str,
    part_type: str,
    allowed: bool,
) -> None:
    data = payload(2 * PART + 5)  # large enough that parts would go out before the end
    body = multipart_body([FilePart("f", filename, data, part_type)])
    settings = settings_for(allowed_types=("image/*", ".pdf", "video/mp4"))
    async with app_client(settings) as http:
        response = await post(http, body, stream=True)
    if allowed:
        assert response.status_code == 201, response.text
        bucket.assert_intact(response.json()["files"][0], data)
    else:
        assert_error(response, 415, "file_type_not_allowed")
        bucket.assert_clean()


async def test_control_characters_in_a_part_content_type(
    client: httpx.AsyncClient, bucket: Bucket
) -> None:
    """Found by the fuzzer: a NUL in a part's Content-Type used to reach storage as a header
    (502). Now the object is stored with a safe default type."""
    body = multipart_body([FilePart("f", "a.bin", b"data", "text/pl\x00ain")])
    response = await post(client, body)
    assert response.status_code == 201, response.text
    stored = response.json()["files"][0]
    assert stored["content_type"] == "application/octet-stream"
    bucket.assert_intact(stored, b"data")
