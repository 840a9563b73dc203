"""Locust load test of the upload service, for teams that already run Locust.

Each task posts one generated file of LOCUST_UPLOAD_SIZE bytes (default 64MiB; units as in the
service's settings) as multipart/form-data, streamed from a generator with an exact
Content-Length, and counts it a success only on 201 with the `sha256` of the bytes sent.
UPLOAD_TOKEN, when set, goes as a bearer token. The bodies come from the same code as
`python -m app loadtest` (app/client/formbody.py, app/client/generated.py), so run it where
`app` imports:

    .venv/bin/pip install locust
    .venv/bin/locust -f bench/locustfile.py --host http://127.0.0.1:8000 \\
        --headless --users 4 --spawn-rate 4 --run-time 1m

`python -m app loadtest` needs no extra package and also reports completion lag and the
server's memory; this file is for dashboards and distributed runs that Locust already has.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterable, Iterator

from locust import HttpUser, constant, task

from app.client.formbody import FormFile, MultipartBody
from app.client.generated import generated_chunks
from app.units import parse_size

SIZE = parse_size(os.environ.get("LOCUST_UPLOAD_SIZE", "64MiB"))
TOKEN = os.environ.get("UPLOAD_TOKEN")


class SizedStream:
    """An iterable body with a length. requests sends a plain generator chunked; given a
    length it sends Content-Length and still streams the chunks as they are made."""

    def __init__(self, chunks: Iterable[bytes], length: int) -> None:
        self.chunks = chunks
        self.length = length

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def __len__(self) -> int:
        return self.length


def hashed(chunks: Iterable[bytes], digest: hashlib._Hash) -> Iterator[bytes]:
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


class Uploader(HttpUser):
    # Back to back: the point is sustained upload load, not think time.
    wait_time = constant(0)

    @task
    def upload(self) -> None:
        seed = random.getrandbits(48)  # distinct files across users and worker processes
        digest = hashlib.sha256()
        data = hashed(generated_chunks(seed, SIZE), digest)
        body = MultipartBody([], [FormFile("file", f"locust-{seed}.bin", data, SIZE)])
        headers = body.headers()
        if TOKEN:
            headers["Authorization"] = f"Bearer {TOKEN}"
        length = body.content_length
        assert length is not None  # generated files have a known size
        with self.client.post(
            "/uploads",
            data=SizedStream(body.chunks(), length),
            headers=headers,
            name="POST /uploads",
            catch_response=True,
        ) as response:
            if response.status_code != 201:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            stored = response.json()["files"][0]
            if stored.get("sha256") != digest.hexdigest() or stored.get("size") != SIZE:
                response.failure("the stored file differs from the one sent (sha256 or size)")
            else:
                response.success()
