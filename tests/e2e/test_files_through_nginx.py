"""The shipped nginx config's `location /files/` (resumable uploads), with hand-made tus
requests: OPTIONS reaches the app without a token (tus discovery and CORS preflights), HEAD
passes as HEAD, a PATCH streams through unbuffered, a refused PATCH never sends its body, and
nginx's own answers are the app's JSON with `Tus-Resumable`. tus-js-client through the same
config: test_tus_js_client.py."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import httpx

from harness.forms import write_generated
from harness.processes import wait_until
from harness.store import Bucket, MiB
from tests.e2e.conftest import RunCurl, StartApp, StartNginx

TOKEN = "files-token-0123456789abcdef"
TUS = {"Tus-Resumable": "1.0.0"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ORIGIN = "http://app.example"


def create(url: str, length: int) -> str:
    """A tus upload of `length` bytes named upload.bin, created through nginx; its URL."""
    metadata = f"filename {base64.b64encode(b'upload.bin').decode()}"
    answer = httpx.post(
        f"{url}/files/",
        headers={**TUS, **AUTH, "Upload-Length": str(length), "Upload-Metadata": metadata},
    )
    assert answer.status_code == 201, answer.text
    location = answer.headers["Location"]
    assert re.fullmatch(r"/files/[0-9a-f]{32}", location), location
    return f"{url}{location}"


def curl_patch(
    run_curl: RunCurl, url: str, path: Path, headers: dict[str, str], dump: Path
) -> tuple[int, httpx.Headers, str]:
    """PATCH the file's bytes with curl (Content-Length, `Expect: 100-continue` as curl
    sends it for large bodies): status, answer headers, answer body."""
    options = ["--request", "PATCH", "--data-binary", f"@{path}", "--dump-header", str(dump)]
    options += [
        "--header",
        "Content-Type: application/offset+octet-stream",
        *(o for name, value in headers.items() for o in ("--header", f"{name}: {value}")),
    ]
    result = run_curl(url, None, max_time=60, options=options).wait(timeout=90)
    assert result.returncode == 0, result.stderr
    # The last header block: the final answer, after any "100 Continue".
    block = dump.read_text().replace("\r\n", "\n").strip().split("\n\n")[-1]
    lines = block.splitlines()[1:]
    pairs = [line.partition(": ") for line in lines]
    answer_headers = httpx.Headers([(name, value) for name, _, value in pairs])
    return result.status, answer_headers, result.body


def test_options_reaches_the_app_without_a_token(
    bucket: Bucket, start_app: StartApp, start_nginx: StartNginx
) -> None:
    app = start_app(
        bucket,
        part_size=5 * MiB,
        env={
            "UPLOAD_AUTH_TOKENS": TOKEN,
            "UPLOAD_CORS_ORIGINS": ORIGIN,
            "UPLOAD_MAX_BYTES": str(64 * MiB),
        },
    )
    nginx = start_nginx([app.address], cors_origins=ORIGIN)

    # tus discovery: no token, no CORS headers.
    discovery = httpx.options(f"{nginx.url}/files/")
    assert discovery.status_code == 204, discovery.text
    assert discovery.headers["Tus-Version"] == "1.0.0"
    assert "creation" in discovery.headers["Tus-Extension"].split(",")
    assert discovery.headers["Tus-Max-Size"] == str(64 * MiB)

    # A page on the listed origin asks before its PATCH.
    preflight = httpx.options(
        f"{nginx.url}/files/{'0' * 32}",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization,tus-resumable,upload-offset",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"]


def test_head_passes_through_as_head(
    bucket: Bucket, start_app: StartApp, start_nginx: StartNginx
) -> None:
    app = start_app(bucket, part_size=5 * MiB, env={"UPLOAD_AUTH_TOKENS": TOKEN})
    nginx = start_nginx([app.address])
    url = create(nginx.url, 3 * MiB)

    head = httpx.head(url, headers={**TUS, **AUTH})
    assert head.status_code == 200
    assert (head.headers["Upload-Offset"], head.headers["Upload-Length"]) == ("0", str(3 * MiB))
    assert head.headers["Cache-Control"] == "no-store"
    unknown = httpx.head(f"{nginx.url}/files/{'0' * 32}", headers={**TUS, **AUTH})
    assert unknown.status_code == 404
    assert unknown.headers["Tus-Resumable"] == "1.0.0"
    # The app saw HEAD, not a GET made of it.
    assert wait_until(lambda: nginx.access_log().count('"HEAD /files/') == 2, timeout=10)
    assert app.log().count('"HEAD /files/') == 2, app.log()


def test_patch_streams_through_and_a_refused_one_is_never_sent(
    bucket: Bucket, start_app: StartApp, start_nginx: StartNginx, run_curl: RunCurl, tmp_path: Path
) -> None:
    app = start_app(bucket, part_size=5 * MiB, env={"UPLOAD_AUTH_TOKENS": TOKEN})
    nginx = start_nginx([app.address])
    path = tmp_path / "upload.bin"
    digest = write_generated(path, 64 * MiB)
    url = create(nginx.url, 64 * MiB)
    dump = tmp_path / "headers.txt"

    # No token: nginx's 401 before reading the body, in JSON, with tus's header.
    status, headers, body = curl_patch(run_curl, url, path, {**TUS, "Upload-Offset": "0"}, dump)
    assert status == 401, body
    assert httpx.Response(401, content=body).json()["error"]["code"] == "unauthorized"
    assert headers["Tus-Resumable"] == "1.0.0"

    def refused() -> list[str]:
        return [line for line in nginx.access_log().splitlines() if '" 401 ' in line]

    assert wait_until(lambda: len(refused()) == 1, timeout=10), nginx.access_log()
    received = int(re.search(r" received=(\d+) ", refused()[0]).group(1))  # type: ignore[union-attr]
    assert received < 4096, refused()
    assert bucket.parts_stored() == 0

    # With the token, the whole file in one PATCH: streamed, nothing on nginx's disk.
    status, headers, body = curl_patch(
        run_curl, url, path, {**TUS, **AUTH, "Upload-Offset": "0"}, dump
    )
    assert status == 204, body
    assert headers["Upload-Offset"] == str(64 * MiB)
    assert nginx.body_temp_files() == []
    id_ = url.rsplit("/", 1)[1]
    assert bucket.sha256(f"uploads/{id_}/upload.bin") == digest
    assert bucket.incomplete_uploads() == []


def test_nginx_own_answers_are_json_with_tus_resumable(
    bucket: Bucket, start_app: StartApp, start_nginx: StartNginx, run_curl: RunCurl, tmp_path: Path
) -> None:
    app = start_app(bucket, part_size=5 * MiB, env={"UPLOAD_AUTH_TOKENS": TOKEN})
    nginx = start_nginx([app.address], client_max_body_size="1m")
    path = tmp_path / "upload.bin"
    write_generated(path, 2 * MiB)
    url = create(nginx.url, 2 * MiB)
    dump = tmp_path / "headers.txt"

    # Over client_max_body_size: refused on Content-Length, before "100 Continue".
    status, headers, body = curl_patch(
        run_curl, url, path, {**TUS, **AUTH, "Upload-Offset": "0"}, dump
    )
    assert status == 413, body
    assert httpx.Response(413, content=body).json()["error"]["code"] == "body_too_large"
    assert headers["Tus-Resumable"] == "1.0.0"

    # No app: 502 in JSON; a request without tus's header gets no Tus-Resumable.
    app.stop()
    gone = httpx.head(url, headers={**TUS, **AUTH})
    assert gone.status_code == 502
    assert gone.headers["Tus-Resumable"] == "1.0.0"
    plain = httpx.post(f"{nginx.url}/files/", headers=AUTH)
    assert plain.status_code == 502
    assert plain.json()["error"]["code"] == "no_app_instance"
    assert "Tus-Resumable" not in plain.headers
