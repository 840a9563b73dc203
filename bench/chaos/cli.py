"""`python -m bench chaos`: the options, the run, the report on stdout (and in --out), and
the exit status: 0 only on PASS. A failed run keeps its logs (the app instances', nginx's,
rclone's) and says where; `--keep-logs` keeps them after a passing one too.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from app.units import parse_size
from bench.chaos.clients import KiB, MiB
from bench.chaos.report import render
from bench.chaos.run import ChaosConfig, run_chaos

MAX_CONCURRENCY = 32


def settings_lines(config: ChaosConfig, command: str, note: str) -> list[str]:
    lines = [
        f"Command: `{command}`",
        "",
        f"- {config.duration:.0f} s of load (then up to {config.grace:.0f} s for uploads in "
        f"flight), {config.concurrency} clients at once, files "
        f"{config.min_size // KiB} KiB to {config.max_size // MiB} MiB (log-uniform), "
        f"seed {config.seed}",
        f"- two uvicorn instances behind nginx (the shipped templates), each with "
        f"UPLOAD_MEMORY_BUDGET={config.memory_budget // MiB}MiB, UPLOAD_PART_SIZE="
        f"{config.part_size // MiB}MiB, UPLOAD_MULTIPART_THRESHOLD="
        f"{config.multipart_threshold // MiB}MiB, UPLOAD_IDLE_TIMEOUT={config.idle_timeout:g}, "
        f"--timeout-graceful-shutdown {config.graceful_shutdown:g}, S3_PROVIDER=local; storage: "
        "`rclone serve s3` behind harness/faulty_s3.py",
        f"- machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}",
    ]
    return [*lines, f"- {note}"] if note else lines


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench chaos", description=__doc__)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load (180)")
    parser.add_argument("--concurrency", type=int, default=32, help="clients at once (32, max 32)")
    parser.add_argument("--max-size", default="512MiB", help="largest file (512MiB)")
    parser.add_argument("--seed", type=int, default=0, help="seed of sizes, behaviours, faults")
    parser.add_argument("--memory-budget", default="64MiB", help="UPLOAD_MEMORY_BUDGET (64MiB)")
    parser.add_argument(
        "--rss-allowance", default="64MiB", help="RSS growth allowed beyond the budget (64MiB)"
    )
    parser.add_argument("--grace", type=float, default=120.0, help="seconds for stragglers")
    parser.add_argument("--label", default="Chaos run", help="heading of the report")
    parser.add_argument("--note", default="", help="a line about the machine, in the report")
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    parser.add_argument("--tmp-dir", type=Path, help="where the store and logs live")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the logs after a passing run too"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        parser.error(f"--concurrency must be 1 to {MAX_CONCURRENCY}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    config = ChaosConfig(
        duration=args.duration,
        concurrency=args.concurrency,
        max_size=parse_size(args.max_size),
        seed=args.seed,
        memory_budget=parse_size(args.memory_budget),
        rss_allowance=parse_size(args.rss_allowance),
        grace=args.grace,
    )
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if nginx is None:
        raise SystemExit("nginx is needed (Debian: apt-get install nginx)")
    work = Path(tempfile.mkdtemp(prefix="streaming-upload-chaos-", dir=args.tmp_dir))
    figures = run_chaos(config, work, nginx)
    command = shlex.join(["python", "-m", "bench", "chaos", *argv])
    text = render(figures, args.label, settings_lines(config, command, args.note))
    print(text)
    if figures.passed and not args.keep_logs:
        shutil.rmtree(work, ignore_errors=True)
    else:
        shutil.rmtree(work / "s3", ignore_errors=True)  # the bucket is empty by now
        print(f"logs kept in {work}", file=sys.stderr)
    if args.out is not None:
        args.out.write_text(text)
    return 0 if figures.passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
