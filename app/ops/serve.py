"""`python -m app serve` and `python -m app sweep`: the service under uvicorn, and the cleanup.

With neither S3_ENDPOINT_URL nor S3_BUCKET set, `serve` starts an embedded local store
(app/ops/localstore.py) with data under ./var/s3, so one command gives a working service.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from app.errors import StorageFailed
from app.ops.localstore import local_s3
from app.ops.sweep import parse_duration, sweep
from app.settings import Settings, SettingsError


def run_serve(args: argparse.Namespace) -> int:
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
                f"S3_PROVIDER={env['S3_PROVIDER']}, files under {data_dir}",
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
