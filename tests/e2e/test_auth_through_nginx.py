"""With tokens configured, nginx asks the app (auth_request) before reading any body, so a
refused client never sends its upload, even though nginx answers `Expect: 100-continue`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness.forms import write_generated
from harness.processes import wait_until
from harness.store import Bucket, MiB
from tests.e2e.conftest import RunCurl, StartApp, StartNginx

TOKEN = "e2e-token-0123456789abcdef"


def curl_upload(run_curl: RunCurl, url: str, path: Path, *headers: str) -> tuple[int, Any, int]:
    """(status, JSON answer, bytes of body curl actually sent)."""
    options = [option for header in headers for option in ("--header", header)]
    curl = run_curl(
        url, path, write_out="%{http_code} %{size_upload}", max_time=60, options=options
    )
    result = curl.wait(timeout=90)
    assert result.returncode == 0, result.stderr
    status, sent = result.written.split()
    try:
        answer = result.json()
    except ValueError:
        raise AssertionError(f"not JSON ({status}): {result.body[:300]!r}") from None
    return int(status), answer, int(float(sent))


def test_refused_client_never_sends_its_body(
    bucket: Bucket, start_app: StartApp, start_nginx: StartNginx, run_curl: RunCurl, tmp_path: Path
) -> None:
    app = start_app(bucket, part_size=5 * MiB, env={"UPLOAD_AUTH_TOKENS": TOKEN})
    nginx = start_nginx([app.address])
    path = tmp_path / "upload.bin"
    sha = write_generated(path, 64 * MiB)
    url = f"{nginx.url}/uploads"

    for headers in [(), ("Authorization: Bearer wrong-token-0123456789abc",)]:
        status, answer, sent = curl_upload(run_curl, url, path, *headers)
        assert status == 401
        assert answer["error"]["code"] == "unauthorized"

    # nginx read nothing past the request headers of either refused upload (curl may have
    # pushed some of the body into the loopback socket's buffers; nobody read it). nginx logs
    # a request once it is done with its connection, which may be after curl has exited.
    def refused() -> list[str]:
        return [line for line in nginx.access_log().splitlines() if '" 401 ' in line]

    assert wait_until(lambda: len(refused()) == 2, timeout=10), nginx.access_log()
    for line in refused():
        received = int(re.search(r" received=(\d+) ", line).group(1))  # type: ignore[union-attr]
        assert received < 4096, line
    bucket.assert_clean()

    status, answer, sent = curl_upload(run_curl, url, path, f"Authorization: Bearer {TOKEN}")
    assert status == 201, answer
    assert sent > 64 * MiB
    stored = answer["files"][0]
    assert stored["sha256"] == sha and stored["size"] == 64 * MiB
    assert bucket.incomplete_uploads() == []
