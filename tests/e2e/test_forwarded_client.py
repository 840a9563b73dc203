"""The app logs the client's address as nginx forwards it, trusting only the proxy's hop."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support import Bucket, MiB


def test_app_logs_the_address_nginx_forwards(
    bucket: Bucket,
    start_app: Callable[..., Any],
    start_nginx: Callable[..., Any],
    curl_bin: str,
    tmp_path: Path,
) -> None:
    # The app trusts X-Forwarded-* from 127.0.0.1 (nginx here). nginx appends its own peer to
    # what the client sent; the right-most address not trusted is taken as the client.
    app = start_app(bucket, part_size=5 * MiB)
    nginx = start_nginx([app.address])
    path = tmp_path / "small.txt"
    path.write_bytes(b"hello")
    out = subprocess.run(
        [
            curl_bin,
            "--silent",
            "--noproxy",
            "*",
            "--max-time",
            "30",
            "--header",
            "X-Forwarded-For: 203.0.113.7",
            "--write-out",
            "%{http_code}",
            "--output",
            "/dev/null",
            "--form",
            f"file=@{path}",
            f"{nginx.url}/uploads",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out == "201"
    assert "upload stored: client=203.0.113.7 " in app.log()
