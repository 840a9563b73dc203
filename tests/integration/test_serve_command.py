"""The README's run command and start-up validation, as real processes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.ops.localstore import local_s3
from app.settings import Settings
from harness.processes import ROOT, Process, free_port
from harness.servers import run_app_command, service_environment


def test_serve_with_nothing_configured_uses_the_embedded_store(tmp_path: Path) -> None:
    data_dir = tmp_path / "s3"
    port = free_port()
    serve = [sys.executable, "-m", "app", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    log = tmp_path / "serve.log"
    server = Process("app serve", serve, port, log, env=service_environment()).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.get("/readyz").status_code == 200
            data = os.urandom(100_000)
            response = http.post("/uploads", files={"file": ("notes.txt", data, "text/plain")})
        assert response.status_code == 201, response.text
        stored = response.json()["files"][0]
        on_disk = data_dir / "uploads" / stored["key"]
        assert hashlib.sha256(on_disk.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
        assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    finally:
        server.send_signal(signal.SIGTERM)
        exit_status = server.wait(timeout=30)
        server.stop()
    assert exit_status == 0
    assert "S3_PROVIDER=local," in server.log()


def test_the_embedded_store_asks_for_the_local_profile_unless_the_user_chose_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("S3_PROVIDER", raising=False)
    monkeypatch.delenv("S3_PAYLOAD_SIGNING", raising=False)
    with local_s3(tmp_path / "default") as env:
        assert env["S3_PROVIDER"] == "local" and env["S3_PAYLOAD_SIGNING"] == "off"
        provider = Settings.from_env(env).provider
        assert (provider.name, provider.part_checksum) == ("local", "none")
    monkeypatch.setenv("S3_PROVIDER", "generic")
    with local_s3(tmp_path / "chosen") as env:
        assert Settings.from_env(env).provider.name == "generic"


def test_invalid_setting_stops_start_up_naming_the_variable() -> None:
    settings = {
        "S3_BUCKET": "b",
        "S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "UPLOAD_PART_SIZE": "1MiB",
    }
    uvicorn = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(free_port())]
    for result in (
        run_app_command("serve", env=settings, timeout=60),
        subprocess.run(
            uvicorn,
            cwd=ROOT,
            env=service_environment(settings),
            capture_output=True,
            text=True,
            timeout=60,
        ),
    ):
        assert result.returncode != 0
        assert "UPLOAD_PART_SIZE" in result.stderr


def test_client_commands_do_not_import_the_server_stack() -> None:
    # `python -m app upload` and `loadtest` start in a fraction of a second only while the
    # server's heavy imports (uvicorn, Starlette, aioboto3) stay inside `serve` and `sweep`.
    heavy = ("uvicorn", "starlette", "aioboto3", "botocore")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, app.__main__; print([m for m in {heavy!r} if m in sys.modules])",
        ],
        cwd=ROOT,
        env=service_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]"
