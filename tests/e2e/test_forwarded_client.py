"""The app logs the client's address as nginx forwards it, trusting only the proxy's hop."""

from __future__ import annotations

from pathlib import Path

from harness.store import Bucket, MiB
from tests.e2e.conftest import RunCurl, StartApp, StartNginx


def test_app_logs_the_address_nginx_forwards(
    bucket: Bucket, start_app: StartApp, start_nginx: StartNginx, run_curl: RunCurl, tmp_path: Path
) -> None:
    # The app trusts X-Forwarded-* from 127.0.0.1 (nginx here). nginx appends its own peer to
    # what the client sent; the right-most address not trusted is taken as the client.
    app = start_app(bucket, part_size=5 * MiB)
    nginx = start_nginx([app.address])
    path = tmp_path / "small.txt"
    path.write_bytes(b"hello")
    forwarded = ("--header", "X-Forwarded-For: 203.0.113.7")
    result = run_curl(f"{nginx.url}/uploads", path, max_time=30, options=forwarded).wait(60)
    assert (result.returncode, result.status) == (0, 201), result
    assert "upload stored: client=203.0.113.7 " in app.log()
