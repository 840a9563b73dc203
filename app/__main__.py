"""Command line: `python -m app serve` runs the service; `python -m app sweep` cleans up;
`python -m app upload FILE...` sends files to a running service (app/client/upload.py) and
`python -m app loadtest` puts one under load and checks what it stored (app/client/loadtest.py).

`serve` and `sweep` live in app/ops/serve.py, the client commands in app/client/.
"""

from __future__ import annotations

import argparse
import os
import sys

from app.client import loadtest, upload
from app.logs import configure_logging

# The service's modules (uvicorn, Starlette, aioboto3) are imported by the commands that use
# them: they take most of a second to import, which `upload` and `loadtest` need not pay.


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the upload service")
    run.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    run.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    run.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")))
    run.add_argument(
        "--graceful-shutdown",
        type=int,
        default=int(os.environ.get("SHUTDOWN_GRACE_SECONDS", "30")),
        help="seconds in-flight uploads may take to finish on shutdown before being aborted",
    )
    run.add_argument(
        "--data-dir",
        default=os.environ.get("LOCAL_S3_DIR", "var/s3"),
        help="where the embedded local store keeps objects (when no S3 is configured)",
    )
    sweeper = commands.add_parser(
        "sweep", help="list (or --apply: abort) incomplete multipart uploads left behind"
    )
    sweeper.add_argument(
        "--older-than", default="24h", help="only uploads started this long ago (default 24h)"
    )
    sweeper.add_argument("--apply", action="store_true", help="abort them (default: list)")
    upload.add_arguments(
        commands.add_parser(
            "upload",
            help="send files to the service in one streamed request, or one file resumably",
        )
    )
    loadtest.add_arguments(
        commands.add_parser("loadtest", help="concurrent generated uploads, verified by SHA-256")
    )
    args = parser.parse_args(argv)
    # The client commands report on stdout and stderr themselves; the service's log setup
    # would add a JSON line per HTTP request (httpx logs them at INFO).
    if args.command == "upload":
        return upload.run(args)
    if args.command == "loadtest":
        return loadtest.run(args)
    configure_logging()
    from app.ops.serve import run_serve, run_sweep

    if args.command == "serve":
        return run_serve(args)
    if args.command == "sweep":
        return run_sweep(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
