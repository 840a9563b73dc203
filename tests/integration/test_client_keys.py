"""UPLOAD_CLIENT_KEYS and UPLOAD_NO_OVERWRITE against moto on loopback, which honours
If-None-Match on PutObject and CompleteMultipartUpload as S3 does."""

from __future__ import annotations

import random
from collections.abc import Callable

import httpx
import pytest

from app.client.formbody import FormField
from app.settings import Settings
from harness.forms import FilePart, chunked, content_type, multipart_body
from harness.store import Bucket
from tests.integration.conftest import PART, THRESHOLD, app_client, assert_error

pytestmark = pytest.mark.anyio

SMALL = b"first version\n" * 100
BIG = random.Random(4).randbytes(THRESHOLD + PART)  # multipart


async def post(http: httpx.AsyncClient, key: str, data: bytes) -> httpx.Response:
    body = multipart_body([FormField("file.key", key), FilePart("file", "x.bin", data)])
    return await http.post(
        "/uploads", content=chunked(body), headers={"content-type": content_type()}
    )


async def test_a_chosen_key_is_used_under_the_prefix(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    async with app_client(settings_for(client_keys=True)) as http:
        response = await post(http, "reports/2026/q3 summary.csv", SMALL)
    assert response.status_code == 201, response.text
    stored = response.json()["files"][0]
    assert stored["key"] == "uploads/reports/2026/q3 summary.csv"
    bucket.assert_intact(stored, SMALL)


@pytest.mark.parametrize(
    "key", ["../escape", "a/../b", "a//b", "/abs", "a/.hidden/", "tab\there", "back\\slash", ""]
)
async def test_unsafe_chosen_keys_are_refused(
    settings_for: Callable[..., Settings], bucket: Bucket, key: str
) -> None:
    async with app_client(settings_for(client_keys=True)) as http:
        response = await post(http, key, SMALL)
    assert_error(response, 400, "invalid_key")
    bucket.assert_clean()


async def test_without_client_keys_the_field_is_only_a_field(
    client: httpx.AsyncClient, bucket: Bucket
) -> None:
    response = await post(client, "reports/a.csv", SMALL)
    assert response.status_code == 201
    answer = response.json()
    assert answer["files"][0]["key"] != "uploads/reports/a.csv"
    assert answer["fields"] == {"file.key": "reports/a.csv"}


@pytest.mark.parametrize("second", [SMALL[::-1], BIG], ids=["single-put", "multipart"])
async def test_no_overwrite_refuses_an_existing_key_and_keeps_the_object(
    settings_for: Callable[..., Settings], bucket: Bucket, second: bytes
) -> None:
    async with app_client(settings_for(client_keys=True, no_overwrite=True)) as http:
        first = await post(http, "same.bin", SMALL)
        assert first.status_code == 201, first.text
        again = await post(http, "same.bin", second)
        assert again.status_code == 409, again.text
        assert again.json()["error"]["code"] == "key_exists"
        other = await post(http, "other.bin", second)  # alive, and new keys still work
        assert other.status_code == 201, other.text
    bucket.assert_intact(first.json()["files"][0], SMALL)  # not replaced
    assert sorted(bucket.keys()) == ["uploads/other.bin", "uploads/same.bin"]
    assert bucket.incomplete_uploads() == []


async def test_without_no_overwrite_a_chosen_key_is_replaced(
    settings_for: Callable[..., Settings], bucket: Bucket
) -> None:
    async with app_client(settings_for(client_keys=True)) as http:
        assert (await post(http, "same.bin", SMALL)).status_code == 201
        again = await post(http, "same.bin", BIG)
    assert again.status_code == 201
    bucket.assert_intact(again.json()["files"][0], BIG)
