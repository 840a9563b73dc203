"""Every refusal reaches the client, with its status and JSON error, whether the client talks
to uvicorn directly, through nginx as a newcomer sets it up (`proxy_pass` with
`proxy_request_buffering off`), or through the shipped config (../shared/TESTING.md,
"Refusals"; app/lingering.py says why this needs care).

Each refusal is tried 20 times per route with `curl`, bodies of 8 to 64 MiB: most are answered
before the body is read (curl and nginx are still sending when the answer comes), a few after
(the digest, checked once every byte is in). Without the lingering close, most tries through
nginx got nginx's own 502 HTML page.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from harness.clients import Curl, get_metric
from harness.forms import write_generated
from harness.nginx import Nginx, PlainNginx
from harness.processes import free_port, wait_until
from harness.servers import BEHIND_NGINX, AppServer
from harness.store import Bucket, MiB, RcloneStore
from tests.e2e.conftest import RunCurl, StartApp

TOKEN = "refusals-token-0123456789abcdef"
AUTH = f"Authorization: Bearer {TOKEN}"
TRIES = 20
SIZES = [8 * MiB, 16 * MiB, 32 * MiB, 64 * MiB]
ROUTES = ["direct", "plain nginx", "shipped nginx"]
TAKEN_KEY = "taken/key.bin"  # under S3_KEY_PREFIX, "uploads/" by default
TAKEN_OBJECT = f"uploads/{TAKEN_KEY}"


@dataclasses.dataclass(frozen=True)
class Refusal:
    """One refusal: the app it needs, curl's arguments for a body of size N, the answer."""

    app: str
    arguments: Callable[[Path, Path], list[str]]  # (body file, small file) -> curl arguments
    status: int
    code: str


def form(*fields: str) -> list[str]:
    return [argument for field in fields for argument in ("--form", field)]


REFUSALS = {
    "wrong token": Refusal(
        "main",
        lambda big, small: [
            "-H",
            "Authorization: Bearer wrong-0123456789abcdef",
            *form(f"file=@{big}"),
        ],
        401,
        "unauthorized",
    ),
    "declared size over the limit": Refusal(
        "small", lambda big, small: ["-H", AUTH, *form(f"file=@{big}")], 413, "body_too_large"
    ),
    "chunked body over the limit": Refusal(
        "small",
        lambda big, small: ["-H", AUTH, "-H", "Transfer-Encoding: chunked", *form(f"file=@{big}")],
        413,
        "body_too_large",
    ),
    "not multipart": Refusal(
        "main",
        lambda big, small: [
            "-H",
            AUTH,
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            f"@{big}",
        ],
        415,
        "unsupported_media_type",
    ),
    "bad boundary": Refusal(
        "main",
        lambda big, small: [
            "-H",
            AUTH,
            "-H",
            f"Content-Type: multipart/form-data; boundary={'b' * 71}",
            "--data-binary",
            f"@{big}",
        ],
        400,
        "malformed_multipart",
    ),
    "file type not allowed": Refusal(
        "main",
        lambda big, small: [
            "-H",
            AUTH,
            *form(f"file=@{big};filename=tool.exe;type=application/x-msdownload"),
        ],
        415,
        "file_type_not_allowed",
    ),
    "key exists": Refusal(
        "no overwrite",
        lambda big, small: [
            "-H",
            AUTH,
            *form(f"first.key={TAKEN_KEY}", f"first=@{small}", f"second=@{big}"),
        ],
        409,
        "key_exists",
    ),
    "digest mismatch": Refusal(
        "main",
        lambda big, small: ["-H", AUTH, *form(f"file.sha256={'0' * 64}", f"file=@{big}")],
        422,
        "digest_mismatch",
    ),
    "busy": Refusal(
        "busy", lambda big, small: ["-H", AUTH, *form(f"file=@{big}")], 503, "server_busy"
    ),
    "storage down": Refusal(
        "no store",
        lambda big, small: ["-H", AUTH, *form(f"small=@{small}", f"file=@{big}")],
        502,
        "storage_error",
    ),
}


@dataclasses.dataclass
class Deployment:
    """One app process, and both nginx setups in front of it."""

    app: AppServer
    plain: Nginx
    shipped: Nginx

    def url(self, route: str) -> str:
        server = {"direct": self.app, "plain nginx": self.plain, "shipped nginx": self.shipped}
        return f"{server[route].url}/uploads"

    def stop(self) -> None:
        for process in (self.shipped, self.plain, self.app):
            process.stop()


class UploadHolder:
    """An upload that has sent its headers and a first chunk, then waits: it holds the one
    upload slot of an app with UPLOAD_MAX_CONCURRENT=1 for as long as the test needs."""

    def __init__(self, port: int) -> None:
        body_start = b"--b\r\nContent-Disposition: form-data; name=f; filename=a.bin\r\n\r\n"
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(
            b"POST /uploads HTTP/1.1\r\nHost: t\r\n"
            + f"{AUTH}\r\n".encode()
            + b"Content-Type: multipart/form-data; boundary=b\r\n"
            + f"Content-Length: {1024 * MiB}\r\n\r\n".encode()
            + body_start
            + b"x" * 1024
        )

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def deployments(
    rclone: RcloneStore, nginx_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Deployment]]:
    """The app `name` (started on first use) with both nginx setups in front of it."""
    root = tmp_path_factory.mktemp("refusals")
    bucket = Bucket(rclone.endpoint)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    taken = Bucket(f"http://{host}:{port}")
    taken.s3.put_object(Bucket=taken.name, Key=TAKEN_OBJECT, Body=b"already here")
    common = {**bucket.environment(), "UPLOAD_AUTH_TOKENS": TOKEN, "UPLOAD_PART_SIZE": str(5 * MiB)}
    settings = {
        "main": {
            "UPLOAD_ALLOWED_TYPES": "application/octet-stream,.bin",
            # Longer than the Expect test's socket timeout: a drain there would fail it.
            "UPLOAD_LINGER_SECONDS": "40",
        },
        # moto, unlike rclone, enforces If-None-Match: * on writes.
        "no overwrite": {
            **taken.environment(),
            "UPLOAD_CLIENT_KEYS": "on",
            "UPLOAD_NO_OVERWRITE": "on",
        },
        "small": {"UPLOAD_MAX_BYTES": str(4 * MiB)},
        "busy": {"UPLOAD_MAX_CONCURRENT": "1", "UPLOAD_IDLE_TIMEOUT": "0"},
        "no store": {
            # Nothing listens there: the first file's PutObject fails at once.
            "S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
            "S3_MAX_ATTEMPTS": "1",
        },
    }
    started: dict[str, Deployment] = {}
    holders: list[UploadHolder] = []

    def deployment(name: str) -> Deployment:
        if name not in started:
            label = name.replace(" ", "-")
            app = AppServer(
                f"app-{label}", root / f"{label}.log", {**common, **settings[name]}, *BEHIND_NGINX
            ).start()
            plain = PlainNginx(nginx_bin, root / f"{label}-plain", [app.address]).start()
            shipped = Nginx(nginx_bin, root / f"{label}-shipped", [app.address]).start()
            started[name] = Deployment(app, plain, shipped)
            if name == "busy":
                holders.append(UploadHolder(app.port))
                assert wait_until(
                    lambda: get_metric(app.port, "upload_requests_in_flight") == 1, timeout=10
                )
        return started[name]

    yield deployment
    for holder in holders:
        holder.close()
    for each in started.values():
        each.stop()
    try:
        assert bucket.keys() == []
        assert bucket.incomplete_uploads() == []
        assert taken.keys() == [TAKEN_OBJECT]
        assert taken.incomplete_uploads() == []
    finally:
        bucket.purge()
        moto.stop()


@pytest.fixture(scope="module")
def bodies(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    root = tmp_path_factory.mktemp("bodies")
    big = []
    for size in SIZES:
        path = root / f"{size // MiB}MiB.bin"
        write_generated(path, size)
        big.append(path)
    small = root / "small.bin"
    write_generated(small, 64 * 1024, seed=1)
    return big, small


def curl(curl_bin: str, url: str, arguments: list[str]) -> tuple[int, str]:
    """(status, body) of one request; curl's own failure (a reset, say) fails the test."""
    result = Curl(url, None, binary=curl_bin, max_time=60, options=arguments).wait(timeout=90)
    assert result.returncode == 0, result.stderr
    return result.status, result.body


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("name", list(REFUSALS))
def test_every_try_gets_the_refusal(
    name: str,
    route: str,
    deployments: Callable[[str], Deployment],
    bodies: tuple[list[Path], Path],
    curl_bin: str,
) -> None:
    refusal = REFUSALS[name]
    url = deployments(refusal.app).url(route)
    big, small = bodies
    answers = []
    for attempt in range(TRIES):
        status, body = curl(curl_bin, url, refusal.arguments(big[attempt % len(big)], small))
        try:
            code = json.loads(body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = f"not JSON: {body[:80]!r}"
        answers.append((status, code))
    assert answers == [(refusal.status, refusal.code)] * TRIES


def test_a_client_waiting_for_100_continue_is_refused_without_being_asked_for_its_body(
    deployments: Callable[[str], Deployment],
) -> None:
    """No `100 Continue`, no drain: the answer, then the connection closes at once (were
    the app to drain, it would wait UPLOAD_LINGER_SECONDS, 40 s, for a body that never
    comes, and the socket's 20 s timeout would fail the test)."""
    app = deployments("main").app
    with socket.create_connection(("127.0.0.1", app.port), timeout=20) as sock:
        sock.sendall(
            b"POST /uploads HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
            b"Authorization: Bearer wrong-0123456789abcdef\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            + f"Content-Length: {64 * MiB}\r\n\r\n".encode()
        )
        received = b""
        while chunk := sock.recv(65536):  # until the app closes the connection
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 "), received
    assert b"100 Continue" not in received
    assert json.loads(body)["error"]["code"] == "unauthorized"


def test_nginx_refuses_a_body_over_client_max_body_size_in_json(
    deployments: Callable[[str], Deployment],
    start_nginx: Callable[..., Nginx],
    bodies: tuple[list[Path], Path],
    curl_bin: str,
) -> None:
    nginx = start_nginx([deployments("main").app.address], client_max_body_size="1m")
    big, _ = bodies
    answers = []
    for attempt in range(TRIES):
        arguments = ["-H", AUTH, *form(f"file=@{big[attempt % len(big)]}")]
        status, body = curl(curl_bin, f"{nginx.url}/uploads", arguments)
        answers.append((status, json.loads(body)["error"]["code"]))
    assert answers == [(413, "body_too_large")] * TRIES


def test_nginx_answers_in_json_when_no_app_instance_answers(
    start_nginx: Callable[..., Nginx], bodies: tuple[list[Path], Path], curl_bin: str
) -> None:
    nobody = f"127.0.0.1:{free_port()}"  # nothing listens there
    nginx = start_nginx([nobody])
    _, small = bodies
    status, body = curl(curl_bin, f"{nginx.url}/uploads", ["-H", AUTH, *form(f"file=@{small}")])
    assert (status, json.loads(body)["error"]["code"]) == (502, "no_app_instance")
    status, body = curl(curl_bin, f"{nginx.url}/healthz", [])
    assert (status, json.loads(body)["error"]["code"]) == (502, "no_app_instance")


class ShortReadTimeoutNginx(Nginx):
    """The shipped config with a 1 s read timeout for everything but uploads."""

    def render(self) -> None:
        super().render()
        conf = self.prefix / "upload.conf"
        text = conf.read_text()
        location = "    location / {\n"
        assert text.count(location) == 1, "the template's catch-all location changed"
        conf.write_text(text.replace(location, location + "        proxy_read_timeout 1s;\n"))


def test_nginx_answers_in_json_when_the_app_does_not_answer_in_time(
    start_nginx: Callable[..., Nginx], curl_bin: str
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        nginx = start_nginx(
            [f"127.0.0.1:{silent.getsockname()[1]}"], server_class=ShortReadTimeoutNginx
        )
        status, body = curl(curl_bin, f"{nginx.url}/healthz", [])
    assert (status, json.loads(body)["error"]["code"]) == (504, "app_timeout")


@pytest.mark.parametrize("route", ROUTES)
def test_an_upload_cut_off_by_shutdown_gets_503(
    route: str,
    bucket: Bucket,
    start_app: StartApp,
    start_nginx: Callable[..., Nginx],
    run_curl: RunCurl,
    bodies: tuple[list[Path], Path],
) -> None:
    """uvicorn's graceful-shutdown time runs out mid-upload: the upload is aborted and the
    client, still sending, gets 503 `shutting_down` in JSON."""
    app = start_app(bucket, part_size=5 * MiB, graceful_shutdown=1)
    url = app.url
    if route != "direct":
        server_class = PlainNginx if route == "plain nginx" else Nginx
        url = start_nginx([app.address], server_class=server_class).url
    big, _ = bodies
    upload = run_curl(f"{url}/uploads", big[-1], limit_rate="2M", max_time=60)
    assert wait_until(lambda: get_metric(app.port, "upload_received_bytes_total") > 0, 30)
    app.send_signal(signal.SIGTERM)
    result = upload.wait(timeout=90)
    assert result.returncode == 0, result.stderr
    assert (int(result.written), result.json()["error"]["code"]) == (503, "shutting_down")
    assert app.wait(timeout=60) is not None
    bucket.assert_clean()
