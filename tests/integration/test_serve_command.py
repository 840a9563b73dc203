"""The README's run command and start-up validation, as real processes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "UPLOAD_"))}
    env.update(extra)
    return env


def test_serve_with_nothing_configured_uses_the_embedded_store(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "s3"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        cwd=ROOT,
        env=clean_env(),
    )
    try:
        wait_for_port(port, proc=proc, timeout=30)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            assert http.get("/readyz").status_code == 200
            data = os.urandom(100_000)
            response = http.post("/uploads", files={"file": ("notes.txt", data, "text/plain")})
        assert response.status_code == 201, response.text
        stored = response.json()["files"][0]
        on_disk = data_dir / "uploads" / stored["key"]
        assert hashlib.sha256(on_disk.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_invalid_setting_stops_start_up_naming_the_variable() -> None:
    for command in (
        [sys.executable, "-m", "app", "serve"],
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(free_port())],
    ):
        result = subprocess.run(
            command,
            cwd=ROOT,
            env=clean_env(
                S3_BUCKET="b", S3_ENDPOINT_URL="http://127.0.0.1:9", UPLOAD_PART_SIZE="1MiB"
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
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
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]"
