"""Fixtures for the end-to-end suite: uvicorn app processes over `rclone serve s3` (the
session's, from tests/conftest.py), nginx from the project's own templates, curl and headless
Chromium, all on 127.0.0.1 and all stopped at teardown.

nginx and curl are system packages (Debian: nginx, curl; envsubst from gettext-base). When
one is missing the tests that need it are skipped on a developer's machine but fail under
CI=true, where .ci/run installs them.
"""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from harness.clients import Curl
from harness.nginx import Nginx
from harness.servers import BEHIND_NGINX, AppServer
from harness.store import Bucket, RcloneStore

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

#: `start_app(bucket, part_size=..., parts_in_flight=1, graceful_shutdown=10, env=None)`
StartApp = Callable[..., AppServer]
#: `start_nginx(["127.0.0.1:PORT", ...], server_class=Nginx, client_max_body_size="0")`
StartNginx = Callable[..., Nginx]
#: `run_curl(url, path, **options)`: the options of harness.clients.Curl
RunCurl = Callable[..., Curl]


def require_tool(name: str) -> str:
    """The tool's path; fail under CI=true when it is missing, skip elsewhere."""
    # Debian installs nginx in /usr/sbin, which a non-root PATH often lacks.
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        message = f"{name} is not installed (Debian: apt-get install nginx curl; .ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    return require_tool("nginx")


@pytest.fixture(scope="session")
def curl_bin() -> str:
    return require_tool("curl")


@pytest.fixture
def bucket(rclone: RcloneStore) -> Iterator[Bucket]:
    """A fresh bucket; emptied at teardown so gigabytes do not pile up in the tmp dirs."""
    created = Bucket(rclone.endpoint)
    yield created
    created.purge()


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[StartApp]:
    """Runs one uvicorn process over a bucket, as deployed behind nginx; all stop at teardown."""
    started: list[AppServer] = []

    def start(
        bucket: Bucket,
        *,
        part_size: int,
        parts_in_flight: int = 1,
        graceful_shutdown: int = 10,
        env: dict[str, str] | None = None,
    ) -> AppServer:
        settings = {
            **bucket.environment(),
            "UPLOAD_PART_SIZE": str(part_size),
            "UPLOAD_PARTS_IN_FLIGHT": str(parts_in_flight),
            **(env or {}),
        }
        app = AppServer(
            f"app-{len(started)}",
            tmp_path / f"app-{len(started)}.log",
            settings,
            *BEHIND_NGINX,
            *("--timeout-graceful-shutdown", str(graceful_shutdown), "--log-level", "info"),
            grace=graceful_shutdown + 35,
        )
        started.append(app)
        return app.start()

    yield start
    for app in started:
        app.stop()


@pytest.fixture
def run_curl(curl_bin: str) -> Iterator[RunCurl]:
    """Starts `curl --form file=@path url`; killed at teardown if still running."""
    started: list[Curl] = []

    def run(url: str, path: Path, **options: Any) -> Curl:
        curl = Curl(url, path, binary=curl_bin, **options)
        started.append(curl)
        return curl

    yield run
    for curl in started:
        curl.kill()


@pytest.fixture
def start_nginx(nginx_bin: str, tmp_path: Path) -> Iterator[StartNginx]:
    """Renders the templates in front of the given upstreams and runs nginx."""
    started: list[Nginx] = []

    def start(
        upstreams: Sequence[str], *, server_class: type[Nginx] = Nginx, **options: Any
    ) -> Nginx:
        prefix = tmp_path / f"nginx-{len(started)}"
        server = server_class(nginx_bin, prefix, upstreams, **options)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


class Capture:
    """A loopback HTTP server that keeps the bodies POSTed to it (and serves an empty page on
    GET, for a browser to post from): what a client writes, byte for byte."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        bodies = self.bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(b"<!doctype html><title>capture</title>")

            def do_POST(self) -> None:
                bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self._answer(b"")

            def _answer(self, page: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, format: str, *args: object) -> None:
                del format, args

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def capture() -> Iterator[Capture]:
    server = Capture()
    yield server
    server.stop()


# --- headless Chromium (Debian's), driven by Playwright -----------------------------------

CHROMIUM = "/usr/bin/chromium"
# Headless in a container as root, and nothing that phones home or updates itself mid-test.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def missing(message: str) -> NoReturn:
    """As tests/e2e/conftest.py's require_tool: skip on a developer's machine, fail in CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        missing("chromium is not installed (Debian: apt-get install chromium; .ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        # Debian's build, not one from `playwright install` (no downloads in CI).
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """`new_page(javascript=True)`: a fresh context (no shared state) at 1280x800."""
    contexts: list[Any] = []

    def make(*, javascript: bool = True) -> Page:
        context = browser.new_context(
            viewport={"width": 1280, "height": 800}, java_script_enabled=javascript
        )
        context.set_default_timeout(30_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()
