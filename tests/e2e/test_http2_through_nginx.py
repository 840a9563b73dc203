"""HTTP/2 through nginx (../shared/TESTING.md, "Sizes and shapes"): `curl -F` over HTTP/2 to
nginx, HTTP/1.1 from nginx to the app, the body streamed all the way.

nginx/upload.conf.template listens plain HTTP/1.1 (TLS and HTTP/2 are left to the operator)
and has no switch for HTTP/2. So the test renders it as the other e2e tests do, then adds
`http2` to the rendered `listen` line: on a plain port that is h2c with prior knowledge
(nginx 1.22, Debian bookworm; `curl --http2-prior-knowledge`). Everything else in the server
block, `proxy_request_buffering off` above all, is the template's own.
"""

from __future__ import annotations

import time
from pathlib import Path

from harness.forms import write_generated
from harness.nginx import Nginx
from harness.store import Bucket, MiB
from tests.e2e.conftest import RunCurl, StartApp, StartNginx

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


def test_curl_http2_upload_streams_through_nginx(
    bucket: Bucket, start_app: StartApp, start_nginx: StartNginx, run_curl: RunCurl, tmp_path: Path
) -> None:
    app = start_app(bucket, part_size=PART)
    nginx = start_nginx([app.address], server_class=H2cNginx)
    path = tmp_path / "h2.bin"
    sha = write_generated(path, SIZE)

    curl = run_curl(
        f"{nginx.url}/uploads",
        path,
        write_out="%{http_code} %{http_version}",
        max_time=120,
        options=["--http2-prior-knowledge"],
    )
    spooled: set[str] = set()
    deadline = time.monotonic() + 120
    while curl.running() and time.monotonic() < deadline:
        spooled.update(str(p) for p in nginx.body_temp_files())
        time.sleep(0.05)
    result = curl.wait(timeout=max(deadline - time.monotonic(), 1))
    spooled.update(str(p) for p in nginx.body_temp_files())

    assert result.returncode == 0, (result.stderr, nginx.error_log())
    assert result.written == "201 2", (result.written, result.body)  # 201, over HTTP/2
    stored = result.json()["files"][0]
    assert stored["strategy"] == "multipart" and stored["parts"] == -(-SIZE // PART)
    bucket.assert_stored(stored, SIZE, sha)
    assert '"POST /uploads HTTP/2.0" 201' in nginx.access_log(), nginx.access_log()
    assert spooled == set(), "nginx spooled the HTTP/2 body to client_body_temp"
    assert nginx.body_temp_files() == []
