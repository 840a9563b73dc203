"""Command line: `python -m app serve` runs the service; `python -m app sweep` cleans up;
`python -m app upload FILE...` sends files to a running service (app/client.py) and
`python -m app loadtest` puts one under load and checks what it stored (app/loadtest.py).

With neither S3_ENDPOINT_URL nor S3_BUCKET set, `serve` starts an embedded local store
(app/localstore.py) with data under ./var/s3, so one command gives a working service.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from app import client, loadtest
from app.localstore import local_s3
from app.logs import configure_logging
from app.settings import Settings, SettingsError

# uvicorn, Starlette and aioboto3 (app.sweeper, app.errors) are imported by the commands that
# use them: they take most of a second to import, which `upload` and `loadtest` need not pay.


def serve(args: argparse.Namespace) -> int:
    # uvicorn re-raises SIGTERM after its graceful shutdown; as an exception rather than the
    # default action it lets the embedded store below be stopped too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    use_local = not os.environ.get("S3_ENDPOINT_URL") and not os.environ.get("S3_BUCKET")
    if use_local:
        data_dir = Path(args.data_dir).resolve()
        with local_s3(data_dir) as env:
            os.environ.update(env)
            print(
                f"local S3 store: {env['S3_ENDPOINT_URL']}, bucket {env['S3_BUCKET']}, "
                f"files under {data_dir}",
                file=sys.stderr,
            )
            return run_uvicorn(args)
    return run_uvicorn(args)


def run_uvicorn(args: argparse.Namespace) -> int:
    import uvicorn

    try:
        Settings.from_env()  # fail here, with the variable's name, not inside a worker
    except SettingsError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2
    print(f"uploads: POST http://{args.host}:{args.port}/uploads", file=sys.stderr)
    uvicorn.run(
        "app.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        timeout_graceful_shutdown=args.graceful_shutdown,
        log_level=os.environ.get("LOG_LEVEL", "info").lower(),
    )
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    from app.errors import StorageFailed
    from app.sweeper import parse_duration, sweep

    try:
        settings = Settings.from_env()
        older_than = parse_duration(args.older_than)
    except (SettingsError, ValueError) as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(sweep(settings, older_than, apply=args.apply))
    except StorageFailed as exc:
        print(exc.message, file=sys.stderr)
        return 1
    return 0


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
    client.add_arguments(
        commands.add_parser("upload", help="send files to the service as one streamed request")
    )
    loadtest.add_arguments(
        commands.add_parser("loadtest", help="concurrent generated uploads, verified by SHA-256")
    )
    args = parser.parse_args(argv)
    # The client commands report on stdout and stderr themselves; the service's log setup
    # would add a JSON line per HTTP request (httpx logs them at INFO).
    if args.command == "upload":
        return client.run(args)
    if args.command == "loadtest":
        return loadtest.run(args)
    configure_logging()
    if args.command == "serve":
        return serve(args)
    if args.command == "sweep":
        return run_sweep(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
