"""An ASGI app (the service, or the benchmark's seed design) as its own process under uvicorn,
granian or hypercorn, configured from the environment as in production."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from harness.processes import ROOT, Process, free_port
from harness.store import aws_environment

#: uvicorn's flags behind nginx, as docs/deployment.md runs it: trust X-Forwarded-* from the
#: proxy on loopback only.
BEHIND_NGINX = ("--proxy-headers", "--forwarded-allow-ips", "127.0.0.1")


def service_environment(settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without the developer's S3_* and UPLOAD_* settings, with the loopback
    store's credentials, and `settings` on top."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "UPLOAD_"))}
    return {**inherited, **aws_environment(), **(settings or {})}


def run_app_command(
    *argv: str, env: Mapping[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`python -m app ARGV` as an operator runs it, in service_environment(env); its exit
    status and output as text."""
    return subprocess.run(
        [sys.executable, "-m", "app", *argv],
        cwd=ROOT,
        env=service_environment(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def server_command(
    server: str, target: str, port: int, *options: str, factory: bool = False
) -> list[str]:
    """`target` (module:attribute) under uvicorn, granian or hypercorn, one worker.

    With `factory`, `target` names a function that returns the app (`app.main:from_env`).
    hypercorn needs that for this service: it resolves a target with `eval` on the module's
    namespace, which never reaches the module `__getattr__` that builds `app.main:app`.
    """
    bindir = Path(sys.executable).parent
    loopback = ["--host", "127.0.0.1", "--port", str(port)]
    factory_flag = ["--factory"] if factory else []
    if server == "uvicorn":
        return [sys.executable, "-m", "uvicorn", target, *loopback, *options, *factory_flag]
    if server == "granian":
        granian = str(bindir / "granian")
        return [granian, "--interface", "asgi", *loopback, *options, *factory_flag, target]
    if server == "hypercorn":
        # No --factory flag: hypercorn evaluates `module:expression`, so call the factory.
        hypercorn = [str(bindir / "hypercorn"), "--bind", f"127.0.0.1:{port}", *options]
        return [*hypercorn, f"{target}()" if factory else target]
    raise ValueError(f"unknown ASGI server {server!r}")


class AppServer(Process):
    """One app process on 127.0.0.1 with `settings` in its environment, logging to a file.

    `grace` is how long stop() waits after SIGTERM before killing: the server's own graceful
    shutdown time and some.
    """

    def __init__(
        self,
        name: str,
        log_path: Path,
        settings: Mapping[str, str],
        *options: str,
        server: str = "uvicorn",
        target: str = "app.main:app",
        factory: bool = False,
        grace: float = 15,
    ) -> None:
        port = free_port()
        super().__init__(
            name,
            server_command(server, target, port, *options, factory=factory),
            port,
            log_path,
            env=service_environment(settings),
            stop_signals=((signal.SIGTERM, grace),),
        )
