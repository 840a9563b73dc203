"""The processes a benchmark run starts: `rclone serve s3`, ASGI servers, nginx.

Everything listens on 127.0.0.1, every wait has a deadline, and each process is stopped by
the object that started it (`stop()`), also when the run fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import string
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from app.ops.localstore import find_rclone, free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "nginx"
ACCESS_KEY = "bench-access-key"
SECRET_KEY = "bench-secret-key"


def aws_environment() -> dict[str, str]:
    """Credentials for the loopback store; no AWS configuration of the machine leaks in."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


class Process:
    """A child process logging to a file, stopped with SIGTERM, then SIGKILL."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        port: int,
        log_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.port = port
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> Process:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own process group, so that a last-resort kill also reaches its workers
            # (granian and hypercorn run the app in child processes).
            start_new_session=True,
        )
        try:
            wait_for_port(self.port, self.proc, timeout=30)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {exc}\n{self.log()[-3000:]}") from exc
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, signals: Sequence[tuple[int, float]] = ((signal.SIGTERM, 15),)) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for sig, timeout in signals:
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout=timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None


def rclone(root: Path, log_dir: Path) -> Process:
    """`rclone serve s3` over `root`: each top-level folder is a bucket, objects are files."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        find_rclone(),
        "serve",
        "s3",
        "--addr",
        f"127.0.0.1:{port}",
        "--auth-key",
        f"{ACCESS_KEY},{SECRET_KEY}",
        "--config",
        os.devnull,
        str(root),
    ]
    return Process("rclone serve s3", command, port, log_dir / "rclone.log")


def asgi_server(
    name: str,
    server: str,
    target: str,
    env: dict[str, str],
    log_dir: Path,
    *,
    factory: bool = False,
) -> Process:
    """`target` (module:attribute) under uvicorn, granian or hypercorn, one worker.

    With `factory`, `target` names a function that returns the app (`app.main:from_env`).
    hypercorn needs that for this service: it resolves a target with `eval` on the module's
    namespace, which never reaches the module `__getattr__` that builds `app.main:app`.
    """
    port = free_port()
    bindir = Path(sys.executable).parent
    commands = {
        # What the project ships; the loop and parser are named so that a missing uvloop or
        # httptools fails here instead of silently falling back to asyncio and h11.
        "uvicorn": [
            sys.executable,
            "-m",
            "uvicorn",
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--proxy-headers",
            "--forwarded-allow-ips",
            "127.0.0.1",
            "--no-access-log",
            *(["--factory"] if factory else []),
        ],
        "granian": [
            str(bindir / "granian"),
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *(["--factory"] if factory else []),
            target,
        ],
        # hypercorn has no --factory flag: it evaluates `module:expression`, so call it.
        "hypercorn": [
            str(bindir / "hypercorn"),
            "--bind",
            f"127.0.0.1:{port}",
            f"{target}()" if factory else target,
        ],
    }
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "UPLOAD_"))}
    return Process(
        name,
        commands[server],
        port,
        log_dir / f"{name.replace(' ', '-')}.log",
        env={**inherited, **aws_environment(), **env},
    )


def render_template(template: Path, values: dict[str, str]) -> str:
    """Fill the named placeholders only, as `envsubst '${A} ${B}'` does (nginx/README.md).

    safe_substitute leaves nginx's own `$host`, `$request_id`... alone.
    """
    text = template.read_text()
    for name in values:
        if f"${{{name}}}" not in text:
            raise ValueError(f"{template.name} has no ${{{name}}}")
    return string.Template(text).safe_substitute(values)


def nginx(binary: str, prefix: Path, upstream: str, name: str) -> Process:
    """nginx from the project's templates, in front of one app instance."""
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    upload_conf = render_template(
        TEMPLATES / "upload.conf.template",
        {
            "LISTEN_PORT": f"127.0.0.1:{port}",
            "APP_UPSTREAMS": f"server {upstream};",
            "CLIENT_MAX_BODY_SIZE": "0",
        },
    )
    nginx_conf = render_template(TEMPLATES / "nginx.conf.template", {"NGINX_PREFIX": str(prefix)})
    if os.geteuid() == 0:
        # As root, the workers would switch to `nobody`, which cannot enter the 0700 temp dir.
        nginx_conf = "user root;\n" + nginx_conf
    (prefix / "upload.conf").write_text(upload_conf)
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_conf)
    base = [binary, "-p", str(prefix), "-c", str(conf), "-e", "stderr"]
    check = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30, check=False)
    if check.returncode != 0:
        raise RuntimeError(f"nginx -t failed:\n{check.stderr}")
    return Process(name, [*base, "-g", "daemon off;"], port, prefix / "stderr.log")


def stop_nginx(proc: Process) -> None:
    # SIGQUIT is nginx's graceful stop; SIGTERM its fast one.
    proc.stop(((signal.SIGQUIT, 10), (signal.SIGTERM, 5)))
