"""HTTP/2 through nginx (../shared/TESTING.md, "Sizes and shapes"): `curl -F` over HTTP/2 to
nginx, HTTP/1.1 from nginx to the app, the body streamed all the way.

nginx/upload.conf.template listens plain HTTP/1.1 (TLS and HTTP/2 are left to the operator)
and has no switch for HTTP/2. So the test renders it as the other e2e tests do, then adds
`http2` to the rendered `listen` line: on a plain port that is h2c with prior knowledge
(nginx 1.22, Debian bookworm; `curl --http2-prior-knowledge`). Everything else in the server
block, `proxy_request_buffering off` above all, is the template's own.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.e2e.processes import AppProcess, Nginx, write_generated
from tests.support import Bucket, MiB, stored_sha256

PART = 5 * MiB
SIZE = 64 * MiB


class H2cNginx(Nginx):
    """The template as rendered for the other tests, listening for HTTP/2 without TLS."""

    def render(self) -> None:
        super().render()
        conf = self.prefix / "upload.conf"
        text = conf.read_text()
        listen = f"listen 127.0.0.1:{self.port};"
        assert text.count(listen) == 1, "the template's listen line changed"
        conf.write_text(text.replace(listen, f"listen 127.0.0.1:{self.port} http2;"))


@pytest.fixture
def h2c_nginx(nginx_bin: str, tmp_path: Path) -> Iterator[Callable[[Sequence[str]], Nginx]]:
    """Like conftest's start_nginx, with H2cNginx; stopped at teardown."""
    started: list[Nginx] = []

    def start(upstreams: Sequence[str]) -> Nginx:
        server = H2cNginx(nginx_bin, tmp_path / "nginx-h2c", upstreams)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


def test_curl_http2_upload_streams_through_nginx(
    bucket: Bucket,
    start_app: Callable[..., AppProcess],
    h2c_nginx: Callable[[Sequence[str]], Nginx],
    curl_bin: str,
    tmp_path: Path,
) -> None:
    app = start_app(bucket, part_size=PART)
    nginx = h2c_nginx([app.address])
    path = tmp_path / "h2.bin"
    sha = write_generated(path, SIZE)

    curl = subprocess.Popen(
        [
            curl_bin,
            "--http2-prior-knowledge",
            "--silent",
            "--show-error",
            "--noproxy",
            "*",
            "--max-time",
            "120",
            "--write-out",
            "\n%{http_code} %{http_version}",
            "--form",
            f"file=@{path}",
            f"{nginx.url}/uploads",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    spooled: set[str] = set()
    deadline = time.monotonic() + 120
    while curl.poll() is None and time.monotonic() < deadline:
        spooled.update(str(p) for p in nginx.body_temp_files())
        time.sleep(0.05)
    try:
        out, err = curl.communicate(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        curl.kill()
        out, err = curl.communicate(timeout=10)
    spooled.update(str(p) for p in nginx.body_temp_files())

    body, _, status_line = out.rpartition("\n")
    assert curl.returncode == 0, (err, nginx.error_log())
    assert status_line == "201 2", (status_line, body)  # status 201, over HTTP/2
    stored = json.loads(body)["files"][0]
    assert stored["size"] == SIZE and stored["sha256"] == sha
    assert stored["strategy"] == "multipart" and stored["parts"] == -(-SIZE // PART)
    assert stored_sha256(bucket, stored["key"]) == sha
    assert bucket.incomplete_uploads() == []
    assert '"POST /uploads HTTP/2.0" 201' in nginx.access_log(), nginx.access_log()
    assert spooled == set(), "nginx spooled the HTTP/2 body to client_body_temp"
    assert nginx.body_temp_files() == []
