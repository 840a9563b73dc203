"""What the end-to-end tests of /files/ share: tus requests made by hand, the state an upload
keeps in the bucket, and tuspy run as a user's script.

`python -m tests.e2e.tus ENDPOINT FILE URLS CHUNK [paced] [plain]` uploads FILE with tuspy
(sha1 Upload-Checksum on every PATCH unless `plain`; the upload's URL kept in the FileStorage
file URLS, so that a run after a killed one continues the upload). It prints
`url <URL> offset <N>` once, then `offset <N>` after each chunk; `paced`: it reads a line
from stdin before each chunk, so the test decides when each PATCH starts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from app.settings import RESUMABLE_PREFIX
from harness.clients import get_metric
from harness.store import Bucket

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {"Content-Type": "application/offset+octet-stream"}


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def checksum(algorithm: str, data: bytes) -> dict[str, str]:
    """The Upload-Checksum header of `data` as tus clients send it."""
    digest = hashlib.new(algorithm, data).digest()
    return {"Upload-Checksum": f"{algorithm} {base64.b64encode(digest).decode()}"}


def create(base_url: str, length: int, filename: str = "a.bin") -> str:
    """POST /files/ on the instance at `base_url`: the new upload's path (/files/<id>)."""
    response = httpx.post(
        f"{base_url}/files/",
        headers={
            **TUS,
            "Upload-Length": str(length),
            "Upload-Metadata": metadata(filename=filename),
        },
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return str(response.headers["location"])


def patch(
    base_url: str, path: str, offset: int, data: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.patch(
        f"{base_url}{path}",
        content=data,
        headers={**TUS, **OCTETS, "Upload-Offset": str(offset), **(headers or {})},
        timeout=60,
    )


def head_offset(base_url: str, path: str) -> int:
    response = httpx.head(f"{base_url}{path}", headers=TUS, timeout=30)
    assert response.status_code == 200, response.status_code
    return int(response.headers["upload-offset"])


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """The documented error answer: `status`, and a JSON error with `code` and a message."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]


def metric(port: int, name: str, labels: dict[str, str] | None = None) -> float:
    """A sample of the app's /metrics; 0 for a labelled one not counted yet."""
    try:
        return get_metric(port, name, labels)
    except KeyError:
        return 0.0


def cut_off_patches(port: int) -> float:
    """PATCHes the app has seen cut off by their client (and answered, the lease given back)."""
    labels = {"method": "PATCH", "status": "400", "code": "client_disconnected"}
    return metric(port, "upload_resumable_requests_total", labels)


def upload_id(url_or_path: str) -> str:
    return url_or_path.rstrip("/").rsplit("/", 1)[1]


def upload_state(bucket: Bucket, url_or_path: str) -> dict[str, Any]:
    """The upload's state.json as the service keeps it in the bucket."""
    key = f"{RESUMABLE_PREFIX}{upload_id(url_or_path)}/state.json"
    state: dict[str, Any] = json.loads(bucket.read(key))
    return state


def tails(bucket: Bucket) -> list[str]:
    stored = bucket.keys()
    return [key for key in stored if key.startswith(RESUMABLE_PREFIX) and "/tail-" in key]


def assert_completed(bucket: Bucket, url_or_path: str, data: bytes) -> dict[str, Any]:
    """The upload is complete and intact: its object holds `data` (SHA-256 read back), its
    state records the same digest, and neither a multipart upload nor a tail is left."""
    return assert_completed_as(bucket, url_or_path, len(data), hashlib.sha256(data).hexdigest())


def assert_completed_as(bucket: Bucket, url_or_path: str, size: int, digest: str) -> dict[str, Any]:
    """assert_completed for `size` bytes of SHA-256 `digest` (a body too large to keep)."""
    record: dict[str, Any] = upload_state(bucket, url_or_path)["completed"]
    assert record is not None, "the upload is not complete"
    assert record["size"] == size
    assert record["sha256"] == digest
    assert bucket.sha256(record["key"]) == digest
    assert bucket.incomplete_uploads() == []
    assert tails(bucket) == []
    return record


def run_tuspy(argv: list[str]) -> None:
    """The script of the module docstring."""
    from tusclient.client import TusClient
    from tusclient.storage.filestorage import FileStorage

    endpoint, path, urls, chunk, *flags = argv
    # A path, not an open file: with store_url, tuspy 1.1 closes a given stream when it takes
    # the file's fingerprint.
    uploader = TusClient(endpoint).uploader(
        path,
        chunk_size=int(chunk),
        metadata={"filename": Path(path).name},
        store_url=True,
        url_storage=FileStorage(urls),
        upload_checksum="plain" not in flags,
    )
    if uploader.url is None:  # a first run; a later one found the URL and asked its offset
        uploader.set_url(uploader.create_url())
    print(f"url {uploader.url} offset {uploader.offset}", flush=True)
    while uploader.offset < uploader.stop_at:
        if "paced" in flags:
            sys.stdin.readline()
        uploader.upload_chunk()
        print(f"offset {uploader.offset}", flush=True)


if __name__ == "__main__":
    run_tuspy(sys.argv[1:])
