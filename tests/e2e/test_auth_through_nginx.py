"""With tokens configured, nginx asks the app (auth_request) before reading any body, so a
refused client never sends its upload, even though nginx answers `Expect: 100-continue`."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.processes import write_generated
from tests.support import Bucket, MiB

TOKEN = "e2e-token-0123456789abcdef"


def curl_upload(curl_bin: str, url: str, path: Path, *headers: str) -> tuple[int, Any, int]:
    """(status, JSON answer, bytes of body curl actually sent)."""
    command = [curl_bin, "--silent", "--show-error", "--noproxy", "*", "--max-time", "60"]
    for header in headers:
        command += ["--header", header]
    command += ["--write-out", "\n%{http_code} %{size_upload}", "--form", f"file=@{path}", url]
    out = subprocess.run(command, capture_output=True, text=True, timeout=90, check=True).stdout
    body, _, tail = out.rpartition("\n")
    status, sent = tail.split()
    try:
        answer = json.loads(body)
    except ValueError:
        raise AssertionError(f"not JSON ({status}): {body[:300]!r}") from None
    return int(status), answer, int(float(sent))


def test_refused_client_never_sends_its_body(
    bucket: Bucket,
    start_app: Callable[..., Any],
    start_nginx: Callable[..., Any],
    curl_bin: str,
    tmp_path: Path,
) -> None:
    app = start_app(bucket, part_size=5 * MiB, env={"UPLOAD_AUTH_TOKENS": TOKEN})
    nginx = start_nginx([app.address])
    path = tmp_path / "upload.bin"
    sha = write_generated(path, 64 * MiB)
    url = f"{nginx.url}/uploads"

    for headers in [(), ("Authorization: Bearer wrong-token-0123456789abc",)]:
        status, answer, sent = curl_upload(curl_bin, url, path, *headers)
        assert status == 401
        assert answer["error"]["code"] == "unauthorized"
    # nginx read nothing past the request headers of either refused upload (curl may have
    # pushed some of the body into the loopback socket's buffers; nobody read it).
    refused = [line for line in nginx.access_log().splitlines() if '" 401 ' in line]
    assert len(refused) == 2
    for line in refused:
        received = int(re.search(r" received=(\d+) ", line).group(1))  # type: ignore[union-attr]
        assert received < 4096, line
    bucket.assert_clean()

    status, answer, sent = curl_upload(curl_bin, url, path, f"Authorization: Bearer {TOKEN}")
    assert status == 201, answer
    assert sent > 64 * MiB
    stored = answer["files"][0]
    assert stored["sha256"] == sha and stored["size"] == 64 * MiB
    assert bucket.incomplete_uploads() == []
