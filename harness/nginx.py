"""nginx from the project's own templates (nginx/*.template), rendered for a loopback port."""

from __future__ import annotations

import os
import shutil
import signal
import string
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from harness.processes import ROOT, Process, free_port

TEMPLATES = ROOT / "nginx"


def render_template(template: Path, values: dict[str, str]) -> str:
    """Fill the named placeholders only, as `envsubst '${A} ${B}'` does (nginx/README.md).

    string.Template.safe_substitute leaves nginx's own `$host`, `$request_id`... alone. When
    envsubst is installed, its output for the same explicit list must be identical: the
    rendering tested is the one the README tells operators to run.
    """
    text = template.read_text()
    for name in values:
        if f"${{{name}}}" not in text:
            raise ValueError(f"{template.name} has no ${{{name}}}")
    rendered = string.Template(text).safe_substitute(values)
    envsubst = shutil.which("envsubst")
    if envsubst is not None:
        shell_format = " ".join(f"${{{name}}}" for name in values)
        result = subprocess.run(
            [envsubst, shell_format],
            input=text,
            env={"PATH": os.environ.get("PATH", ""), **values},
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        if result.stdout != rendered:
            raise ValueError(f"{template.name}: envsubst and string.Template disagree")
    return rendered


class Nginx(Process):
    """nginx in front of `upstreams` (address:port each), its files under `prefix`."""

    def __init__(
        self,
        binary: str,
        prefix: Path,
        upstreams: Sequence[str],
        *,
        client_max_body_size: str = "0",
        cors_origins: str = "",
        cors_credentials: str = "",
        name: str = "nginx",
    ) -> None:
        self.binary = binary
        self.prefix = prefix
        self.upstreams = list(upstreams)
        self.client_max_body_size = client_max_body_size
        #: UPLOAD_CORS_ORIGINS and UPLOAD_CORS_CREDENTIALS, as the app instances have them.
        self.cors_origins = cors_origins
        self.cors_credentials = cors_credentials
        super().__init__(
            name,
            self.command("-g", "daemon off;"),
            free_port(),
            prefix / "stderr.log",
            # SIGQUIT is nginx's graceful stop (open requests finish), SIGTERM its fast one.
            stop_signals=((signal.SIGQUIT, 10), (signal.SIGTERM, 5)),
        )

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def body_temp(self) -> Path:
        return self.prefix / "client_body_temp"

    def command(self, *extra: str) -> list[str]:
        return [self.binary, "-p", str(self.prefix), "-c", str(self.conf), "-e", "stderr", *extra]

    def render(self) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        upload_conf = render_template(
            TEMPLATES / "upload.conf.template",
            {
                # An address:port is valid in `listen` and keeps nginx off other interfaces.
                "LISTEN_PORT": self.address,
                "APP_UPSTREAMS": "\n".join(f"server {a};" for a in self.upstreams),
                "CLIENT_MAX_BODY_SIZE": self.client_max_body_size,
                "UPLOAD_CORS_ORIGINS": self.cors_origins,
                "UPLOAD_CORS_CREDENTIALS": self.cors_credentials,
            },
        )
        nginx_conf = render_template(
            TEMPLATES / "nginx.conf.template", {"NGINX_PREFIX": str(self.prefix)}
        )
        if os.geteuid() == 0:
            # As root, nginx's workers would switch to `nobody`, which cannot enter the 0700
            # temporary directories its prefix lives in. For this rendering only.
            nginx_conf = "user root;\n" + nginx_conf
        (self.prefix / "upload.conf").write_text(upload_conf)
        self.conf.write_text(nginx_conf)

    def start(self) -> Self:
        self.render()
        check = subprocess.run(
            self.command("-t"), capture_output=True, text=True, timeout=30, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{check.stderr}")
        return super().start()

    def error_log(self) -> str:
        return "".join(
            path.read_text(errors="replace")
            for path in (self.prefix / "stderr.log", self.prefix / "error.log")
            if path.exists()
        )

    def access_log(self) -> str:
        path = self.prefix / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def body_temp_files(self) -> list[Path]:
        """Whatever nginx spooled to disk: must stay empty with proxy_request_buffering off."""
        return [p for p in self.body_temp.rglob("*") if p.is_file()]


class PlainNginx(Nginx):
    """nginx as a newcomer sets it up instead of the shipped config: one `location` with
    `proxy_pass` and `proxy_request_buffering off`, every other directive left at its
    default (HTTP/1.0 to the app, no auth_request, no error pages of its own)."""

    def render(self) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        user = "user root;\n" if os.geteuid() == 0 else ""
        prefix = self.prefix
        temp_paths = " ".join(
            f"{kind}_temp_path {prefix}/{kind}_temp;"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        upstreams = " ".join(f"server {address};" for address in self.upstreams)
        self.conf.write_text(
            f"{user}worker_processes 1;\npid {prefix}/nginx.pid;\n"
            f"error_log {prefix}/error.log warn;\nevents {{ worker_connections 256; }}\n"
            f"http {{\n  access_log {prefix}/access.log;\n  {temp_paths}\n"
            f"  upstream app {{ {upstreams} }}\n"
            f"  server {{\n    listen {self.address};\n"
            f"    client_max_body_size {self.client_max_body_size};\n"
            "    location / {\n      proxy_pass http://app;\n"
            "      proxy_request_buffering off;\n    }\n  }\n}\n"
        )
