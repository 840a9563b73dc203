"""`python -m bench`: run every contender against one `rclone serve s3`, write the report.
`python -m bench chaos` runs the chaos run of bench/chaos/ instead, with its own options;
`python -m bench resumable` compares resumable and form uploads (bench/resumable.py);
`python -m bench hooks` measures what the pre-create hook adds to an answer (bench/hooks.py).

Each round runs every contender once, in an order rotated from round to round, so a slow
spell of the machine spreads over all of them instead of hitting one; the report gives
medians. Test files live in a temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from app.ops.localstore import find_rclone
from app.settings import Settings
from app.storage.providers import PROFILES
from app.units import parse_size
from bench.chaos import cli as chaos
from bench.contenders import (
    BenchError,
    Sample,
    Target,
    TestFile,
    concurrent_uploads,
    curl_upload,
    direct_upload,
)
from bench.report import GiB, MiB, Results, RunSettings, machine, render, size_text
from harness.forms import write_file
from harness.nginx import Nginx
from harness.processes import Process
from harness.servers import BEHIND_NGINX, AppServer
from harness.store import Bucket, RcloneStore

# Debian puts nginx in /usr/sbin, which is not on every user's PATH.
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
#: uvicorn as the project ships it; the loop and parser are named so that a missing uvloop or
#: httptools fails here instead of silently falling back to asyncio and h11.
UVICORN_OPTIONS = ("--loop", "uvloop", "--http", "httptools", *BEHIND_NGINX, "--no-access-log")
WARMUP_SIZE = 64 * MiB
# The report replaces whatever follows this line in --out, keeping the hand-written intro.
MARKER = "<!-- bench results: written by `python -m bench`, everything below is replaced -->"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--size", default="1GiB", help="file size for the main tables")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="markdown report (default: stdout only)")
    parser.add_argument(
        "--flat-size", help="also upload a file this big (e.g. 4GiB) to check RSS stays flat"
    )
    parser.add_argument("--concurrency", default="1,4,16", help="uploads at once, per batch")
    parser.add_argument("--concurrent-size", default="256MiB", help="file size per upload")
    parser.add_argument("--rate", default="150M", help="curl --limit-rate for the lag test")
    parser.add_argument(
        "--servers",
        default="uvicorn,granian,hypercorn",
        help="ASGI servers to compare (uvicorn always runs: it is the service)",
    )
    parser.add_argument(
        "--profiles",
        default="",
        help="S3_PROVIDER profiles (e.g. generic,aws) to also run the service under, "
        "each as its own app + nginx: one more row per profile, same store and settings",
    )
    parser.add_argument("--label", default="Benchmark run", help="heading of the report")
    parser.add_argument("--tmp-dir", type=Path, help="where test files and the store live")
    return parser.parse_args(argv)


def generate(path: Path, size: int) -> TestFile:
    """Random (incompressible) bytes, written once; their SHA-256 checks every upload."""
    blocks = (os.urandom(min(size - at, 4 * MiB)) for at in range(0, size, 4 * MiB))
    return TestFile(path, size, write_file(path, blocks))


def check_disk(directory: Path, need: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < need:
        raise SystemExit(
            f"{directory}: {free / GiB:.1f} GiB free, the run needs about {need / GiB:.1f} GiB"
        )


P = TypeVar("P", bound=Process)


class Run:
    """Everything a benchmark run starts, and stops again in close()."""

    def __init__(self, work: Path, servers: list[str], profiles: list[str]) -> None:
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir()
        self.started: list[Process] = []
        self.store = self._start(RcloneStore(work / "s3", self.logs / "rclone.log"))
        self.endpoint = self.store.endpoint
        self.targets: dict[str, Target] = {}
        self.failed: dict[str, str] = {}
        # The service as `python -m app serve` runs over its loopback store: the `local`
        # profile, no per-part digest (the seed design and direct compute none either).
        local = {"S3_PROVIDER": "local"}
        self._server("service", "uvicorn", "app.main:app", "uvicorn-direct", extra=local)
        self._server("seed", "uvicorn", "bench.seed_app:app", direct=None, behind="seed")
        for server in servers:
            if server != "uvicorn":
                # The documented factory: hypercorn cannot see the lazily built app.main:app.
                self._server(
                    server,
                    server,
                    "app.main:from_env",
                    f"{server}-direct",
                    factory=True,
                    extra=local,
                )
        for profile in profiles:
            label = f"profile-{profile}"
            extra = {"S3_PROVIDER": profile}
            self._server(label, "uvicorn", "app.main:app", None, behind=label, extra=extra)

    def _start(self, proc: P) -> P:
        self.started.append(proc)
        return proc.start()

    def _server(
        self,
        label: str,
        server: str,
        app: str,
        direct: str | None,
        behind: str | None = None,
        *,
        factory: bool = False,
        extra: dict[str, str] | None = None,
    ) -> None:
        """One app process over its own bucket, reachable directly and through nginx.

        `direct` and `behind` are the report keys of the two ways in; the service behind
        nginx is plain "service". `extra`: settings on top of the ones every contender has.
        """
        behind = behind or ("service" if label == "service" else f"{label}-nginx")
        bucket = Bucket(self.endpoint, label)
        # As `python -m app serve` runs against its loopback store: no SHA-256 payload
        # signature (botocore skips it over https anyway); every contender does the same.
        settings = {**bucket.environment(), "S3_PAYLOAD_SIGNING": "off", **(extra or {})}
        options = UVICORN_OPTIONS if server == "uvicorn" else ()
        log = self.logs / f"{label}.log"
        try:
            app_server = AppServer(
                label, log, settings, *options, server=server, target=app, factory=factory
            )
            proc = self._start(app_server)
            prefix = self.work / f"nginx-{label}"
            front = self._start(Nginx(NGINX, prefix, [proc.address], name=f"nginx-{label}"))
        except RuntimeError as exc:
            for key in (direct, behind):
                if key is not None:
                    self.failed[key] = str(exc)
            print(f"{label}: {exc}", file=sys.stderr)
            return
        if direct is not None:
            self.targets[direct] = Target(f"{label}, no nginx", proc, bucket)
        self.targets[behind] = Target(f"{label} + nginx", proc, bucket, front)

    def close(self) -> None:
        for proc in reversed(self.started):
            with contextlib.suppress(Exception):
                proc.stop()


def contenders(
    run: Run, args: argparse.Namespace, files: dict[str, TestFile]
) -> list[tuple[str, Callable[[], Sample]]]:
    """(report key, measured upload) for everything one round runs."""
    store, main = run.store, files["main"]
    t = run.targets
    direct_bucket = Bucket(run.endpoint, "direct")
    plan: list[tuple[str, Callable[[], Sample]]] = [
        ("direct", lambda: direct_upload(direct_bucket, main, store)),
    ]

    def through(key: str, target: str, file: TestFile, rate: str | None = None) -> None:
        if target in t:
            plan.append((key, lambda: curl_upload(t[target], file, store, rate)))
        else:
            plan.append((key, _fails(run.failed.get(target, "did not start"))))

    through("seed", "seed", main)
    through("service", "service", main)
    through("uvicorn-direct", "uvicorn-direct", main)
    for server in ("granian", "hypercorn"):
        if server in args.servers:
            through(f"{server}-direct", f"{server}-direct", main)
            through(f"{server}-nginx", f"{server}-nginx", main)
    for profile in args.profiles:
        through(f"profile-{profile}", f"profile-{profile}", main)
    through("seed-rate", "seed", main, args.rate)
    through("service-rate", "service", main, args.rate)
    if "flat" in files:
        through("service-flat", "service", files["flat"])
    for n in args.concurrency:
        if "service" in t:
            batch = functools.partial(
                concurrent_uploads, t["service"], files["concurrent"], n, store
            )
            plan.append((f"concurrent-{n}", batch))
        else:
            plan.append((f"concurrent-{n}", _fails(run.failed.get("service", "did not start"))))
    return plan


def _fails(message: str) -> Callable[[], Sample]:
    def run() -> Sample:
        raise BenchError(message)

    return run


def rotated(
    items: list[tuple[str, Callable[[], Sample]]], by: int
) -> Iterator[tuple[str, Callable[[], Sample]]]:
    by %= len(items)
    yield from items[by:] + items[:by]


def write_report(out: Path | None, text: str) -> None:
    print(text)
    if out is None:
        return
    intro = out.read_text() if out.exists() else ""
    head = intro.split(MARKER)[0].rstrip() + "\n\n" if MARKER in intro else intro
    out.write_text(f"{head}{MARKER}\n\n{text.rstrip()}\n" if head else f"{MARKER}\n\n{text}\n")


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["chaos"]:
        return chaos.main(argv[1:])
    if argv[:1] == ["resumable"]:
        from bench import resumable

        return resumable.main(argv[1:])
    if argv[:1] == ["hooks"]:
        from bench import hooks

        return hooks.main(argv[1:])
    args = parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.concurrency = [int(n) for n in args.concurrency.split(",")]
    args.profiles = [p.strip().lower() for p in args.profiles.split(",") if p.strip()]
    unknown = [p for p in args.profiles if p not in PROFILES]
    if unknown:
        raise SystemExit(f"--profiles: unknown {', '.join(unknown)} (one of {', '.join(PROFILES)})")
    size, concurrent_size = parse_size(args.size), parse_size(args.concurrent_size)
    flat_size = parse_size(args.flat_size) if args.flat_size else None
    for tool in ("curl", NGINX):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (Debian: apt-get install nginx curl)")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="streaming-upload-bench-", dir=args.tmp_dir))
    run: Run | None = None
    try:
        # Test files, the store's copy of the biggest batch, the seed design's spool file.
        biggest = max(size, flat_size or 0, concurrent_size * max(args.concurrency))
        check_disk(work, size + (flat_size or 0) + concurrent_size + biggest + size + GiB)
        files = {
            "main": generate(work / "main.bin", size),
            "concurrent": generate(work / "concurrent.bin", concurrent_size),
            "warmup": generate(work / "warmup.bin", WARMUP_SIZE),
        }
        if flat_size:
            files["flat"] = generate(work / "flat.bin", flat_size)
        os.environ["TMPDIR"] = str(work)  # the seed design's spool files go here too
        run = Run(work, args.servers, args.profiles)
        for key, target in run.targets.items():
            if not key.endswith("-direct"):
                curl_upload(target, files["warmup"], run.store)  # imports, pools, first parts
        results = Results()
        plan = contenders(run, args, files)
        for round_number in range(args.rounds):
            for key, upload in rotated(plan, round_number):
                try:
                    sample = upload()
                except BenchError as exc:
                    results.fail(key, str(exc))
                    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    print(f"round {round_number + 1} {key}: FAILED {first_line}", file=sys.stderr)
                    continue
                results.add(key, sample)
                print(
                    f"round {round_number + 1} {key}: {sample.wall:.2f} s, "
                    f"app CPU {sample.app.cpu_seconds:.2f} s, "
                    + (
                        f"loop thread {sample.app.loop_cpu_seconds:.2f} s, "
                        if sample.app.loop_cpu_seconds is not None
                        else ""
                    )
                    + f"RSS +{sample.app.peak_rss_growth / MiB:.1f} MiB"
                    + (f", lag {sample.lag:.2f} s" if sample.lag is not None else ""),
                    file=sys.stderr,
                )
        results.seconds = time.monotonic() - started
        settings = RunSettings(
            size=size,
            flat_size=flat_size,
            concurrent_size=concurrent_size,
            concurrency=args.concurrency,
            rounds=args.rounds,
            rate=args.rate,
            part_size=Settings.from_env({"S3_BUCKET": "bench"}).part_size,
            label=args.label,
            profiles=args.profiles,
            command=shlex.join(["python", "-m", "bench", *(argv or sys.argv[1:])]),
        )
        write_report(args.out, render(settings, results, machine(find_rclone(), NGINX)))
    finally:
        if run is not None:
            run.close()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"done in {(time.monotonic() - started) / 60:.1f} min ({size_text(size)})", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
