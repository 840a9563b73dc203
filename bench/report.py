"""The markdown report: the machine, the settings, one table per question, the targets."""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import subprocess
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from bench.contenders import Sample

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclasses.dataclass
class RunSettings:
    size: int
    flat_size: int | None
    concurrent_size: int
    concurrency: list[int]
    rounds: int
    rate: str
    part_size: int
    label: str
    command: str
    #: S3_PROVIDER profiles the service also ran under (--profiles), one row each.
    profiles: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Results:
    samples: dict[str, list[Sample]] = dataclasses.field(default_factory=dict)
    errors: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    def add(self, key: str, sample: Sample) -> None:
        self.samples.setdefault(key, []).append(sample)

    def fail(self, key: str, message: str) -> None:
        self.errors.setdefault(key, []).append(message)

    def median(self, key: str, value: Callable[[Sample], float | None]) -> float | None:
        values = [v for s in self.samples.get(key, []) if (v := value(s)) is not None]
        return statistics.median(values) if values else None

    def largest(self, keys: Sequence[str], value: Callable[[Sample], float | None]) -> float | None:
        values = [v for k in keys for s in self.samples.get(k, []) if (v := value(s)) is not None]
        return max(values) if values else None


# --- the machine ---------------------------------------------------------------------------


def _first_line(command: Sequence[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except OSError:
        return "not found"
    return ((done.stdout or done.stderr).strip().splitlines() or ["?"])[0]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine(rclone: str, nginx: str) -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or "?",
    )
    meminfo = Path("/proc/meminfo").read_text().split()
    ram = int(meminfo[meminfo.index("MemTotal:") + 1]) * 1024
    packages = [
        "uvicorn",
        "uvloop",
        "httptools",
        "starlette",
        "python-multipart",
        "streaming-form-data",
        "granian",
        "hypercorn",
        "aioboto3",
        "aiobotocore",
        "boto3",
        "botocore",
    ]
    return [
        f"- CPU: {model}, {os.cpu_count()} cores; RAM {ram / GiB:.1f} GiB; "
        f"Linux {platform.release()}; Python {platform.python_version()}",
        "- " + ", ".join(f"{name} {_version(name)}" for name in packages),
        f"- {_first_line([rclone, 'version'])}; {_first_line([nginx, '-v'])}; "
        f"{' '.join(_first_line(['curl', '--version']).split()[:2])}",
    ]


# --- cells ---------------------------------------------------------------------------------


def _spread(values: list[float], fmt: str) -> str:
    if not values:
        return "n/a"
    median = format(statistics.median(values), fmt)
    if len(values) == 1:
        return median
    return f"{median} ({format(min(values), fmt)}..{format(max(values), fmt)})"


def _cell(
    results: Results, key: str, value: Callable[[Sample], float | None], fmt: str = ".2f"
) -> str:
    if key in results.errors and key not in results.samples:
        return "failed"
    values = [v for s in results.samples.get(key, []) if (v := value(s)) is not None]
    return _spread(values, fmt)


def _ratio(results: Results, key: str, base: str) -> str:
    top = results.median(key, lambda s: s.wall)
    bottom = results.median(base, lambda s: s.wall)
    return f"{top / bottom:.2f}" if top and bottom else "n/a"


def wall(s: Sample) -> float:
    return s.wall


def cpu_per_gib(s: Sample) -> float:
    return s.app.cpu_seconds / (s.size / GiB)


def loop_per_gib(s: Sample) -> float | None:
    """The event-loop thread's CPU: the app's main thread, for the uvicorn contenders."""
    loop = s.app.loop_cpu_seconds
    return None if loop is None else loop / (s.size / GiB)


def rss_mib(s: Sample) -> float:
    return s.app.peak_rss_growth / MiB


def written_mib(s: Sample) -> float:
    return s.app.write_bytes / MiB


def lag(s: Sample) -> float | None:
    return s.lag


def nginx_per_gib(s: Sample) -> float | None:
    return None if s.nginx_cpu is None else s.nginx_cpu / (s.size / GiB)


def store_per_gib(s: Sample) -> float:
    return s.store_cpu / (s.size / GiB)


def mib_per_s(s: Sample) -> float:
    return s.size / MiB / s.wall


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(head: Sequence[str], rows: list[list[str]]) -> list[str]:
    return [_row(head), _row(["---"] * len(head)), *(_row(r) for r in rows), ""]


def size_text(size: int) -> str:
    return f"{size / GiB:g} GiB" if size >= GiB else f"{size / MiB:g} MiB"


# --- the report ----------------------------------------------------------------------------

NAMES = {
    "direct": "direct: boto3 upload_file, 10 threads",
    "seed": "seed design (request.form(), then parts) + nginx",
    "service": "this service (`local` profile) + nginx",
    "uvicorn-direct": "uvicorn, no nginx",
    "service-uvicorn": "uvicorn + nginx",
    "granian-direct": "granian, no nginx",
    "granian-nginx": "granian + nginx",
    "hypercorn-direct": "hypercorn, no nginx",
    "hypercorn-nginx": "hypercorn + nginx",
    "seed-rate": "seed design + nginx",
    "service-rate": "this service (`local` profile) + nginx",
}


def render(settings: RunSettings, results: Results, machine_lines: list[str]) -> str:
    s = settings
    size = size_text(s.size)
    out = [
        f"## {s.label}: {size}, {s.rounds} round(s)",
        "",
        f"Command: `{s.command}` — took {results.seconds / 60:.1f} min.",
        "",
        *machine_lines,
        f"- Settings: file {size}, part size {size_text(s.part_size)} (service defaults), "
        f"rate limit `curl --limit-rate {s.rate}`, concurrent uploads "
        f"{', '.join(map(str, s.concurrency))} x {size_text(s.concurrent_size)}. "
        "Cells: median (min..max) over rounds.",
        "",
        f"### One {size} file, client at full speed",
        "",
    ]
    out += _table(
        [
            "contender",
            "wall s",
            "x direct",
            "x seed",
            "app CPU s/GiB",
            "loop thread CPU s/GiB",
            "peak RSS growth MiB",
            "disk written MiB",
            "completion lag s",
        ],
        [
            [
                NAMES[key],
                _cell(results, key, wall),
                _ratio(results, key, "direct"),
                _ratio(results, key, "seed"),
                _cell(results, key, cpu_per_gib),
                _cell(results, key, loop_per_gib) if key == "service" else "n/a",
                _cell(results, key, rss_mib, ".1f"),
                _cell(results, key, written_mib, ".0f"),
                _cell(results, key, lag),
            ]
            for key in ("direct", "seed", "service")
        ],
    )
    out += [
        "For direct, the CPU, RSS and disk columns are the client's own (boto3 in one "
        "process); for the others, the server process tree's.",
        "",
        f"### One {size} file, client rate-limited (`curl --limit-rate {s.rate}`)",
        "",
    ]
    out += _table(
        ["contender", "wall s", "x seed", "completion lag s", "app CPU s/GiB", "RSS growth MiB"],
        [
            [
                NAMES[key],
                _cell(results, key, wall),
                _ratio(results, key, "seed-rate"),
                _cell(results, key, lag),
                _cell(results, key, cpu_per_gib),
                _cell(results, key, rss_mib, ".1f"),
            ]
            for key in ("seed-rate", "service-rate")
        ],
    )
    out += [
        "### Concurrent uploads through nginx to this service (one uvicorn worker)",
        "",
    ]
    rows = []
    for n in s.concurrency:
        key = f"concurrent-{n}"
        growth = results.median(key, rss_mib)
        rows.append(
            [
                str(n),
                size_text(s.concurrent_size),
                _cell(results, key, wall),
                _cell(results, key, mib_per_s, ".0f"),
                _cell(results, key, rss_mib, ".1f"),
                f"{growth / n:.1f}" if growth is not None else "n/a",
                _cell(results, key, cpu_per_gib),
            ]
        )
    out += _table(
        [
            "uploads at once",
            "each",
            "wall s",
            "aggregate MiB/s",
            "app peak RSS growth MiB",
            "per upload MiB",
            "app CPU s/GiB",
        ],
        rows,
    )
    out += [f"### ASGI servers on this service's body path, one {size} file", ""]
    out += _table(
        ["server", "wall s", "app CPU s/GiB", "peak RSS growth MiB", "nginx CPU s/GiB"],
        [
            [
                NAMES[key if key != "service" else "service-uvicorn"],
                _cell(results, key, wall),
                _cell(results, key, cpu_per_gib),
                _cell(results, key, rss_mib, ".1f"),
                _cell(results, key, nginx_per_gib),
            ]
            for key in (
                "uvicorn-direct",
                "service",
                "granian-direct",
                "granian-nginx",
                "hypercorn-direct",
                "hypercorn-nginx",
            )
            # Servers left out with --servers have neither samples nor errors.
            if key in results.samples or key in results.errors
        ],
    )
    out += profiles(settings, results)
    out += ["### Where the CPU goes (s per GiB stored, medians)", ""]
    out += _table(
        ["contender", "app (or client)", "app's loop thread", "nginx", "rclone serve s3"],
        [
            [
                NAMES[key],
                _cell(results, key, cpu_per_gib),
                _cell(results, key, loop_per_gib)
                if key.startswith(("service", "uvicorn"))
                else "n/a",
                _cell(results, key, nginx_per_gib),
                _cell(results, key, store_per_gib),
            ]
            for key in ("direct", "seed", "service", "uvicorn-direct")
        ],
    )
    out += targets(settings, results)
    if results.errors:
        out += ["### Failures", ""]
        shown: dict[str, str] = {}
        for key, messages in results.errors.items():
            if messages[0] in shown:
                out.append(f"- {key}: {len(messages)} failed round(s), as {shown[messages[0]]}")
                continue
            shown[messages[0]] = key
            out += [f"- {key}: {len(messages)} failed round(s); first error:", ""]
            out += ["  ```", *("  " + line for line in messages[0].splitlines()[-15:]), "  ```"]
        out.append("")
    return "\n".join(out)


def profiles(s: RunSettings, results: Results) -> list[str]:
    """The service + nginx under each --profiles S3_PROVIDER: none without the option."""
    if not s.profiles:
        return []
    out = [
        f"### This service + nginx per S3_PROVIDER profile, one {size_text(s.size)} file",
        "",
        "Each profile is its own app process and nginx over the same store, with the same "
        "settings otherwise; the rows alternate with the others in every round.",
        "",
    ]
    return out + _table(
        ["S3_PROVIDER", "wall s", "app CPU s/GiB", "nginx CPU s/GiB", "rclone CPU s/GiB"],
        [
            [
                f"`{profile}`",
                _cell(results, f"profile-{profile}", wall),
                _cell(results, f"profile-{profile}", cpu_per_gib),
                _cell(results, f"profile-{profile}", nginx_per_gib),
                _cell(results, f"profile-{profile}", store_per_gib),
            ]
            for profile in s.profiles
        ],
    )


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def _ratio_row(
    target: str, seconds: float | None, baseline: float | None, limit: float
) -> list[list[str]]:
    """The row of a target "at most `limit` x the baseline's time"; none unless both ran."""
    if not seconds or not baseline:
        return []
    ratio = seconds / baseline
    measured = f"{ratio:.2f} x ({seconds:.2f} s vs {baseline:.2f} s)"
    return [[target, measured, _verdict(ratio <= limit)]]


def _cap_row(target: str, value: float | None, limit: float, unit: str) -> list[list[str]]:
    """The row of a target "at most `limit`"; none unless it was measured."""
    if value is None:
        return []
    return [[target, f"{value:.2f} {unit}", _verdict(value <= limit)]]


def targets(s: RunSettings, results: Results) -> list[str]:
    """Issue 11's targets, each from this run's medians (a row only for what ran)."""
    service = results.median("service", wall)
    seed = results.median("seed", wall)
    direct = results.median("direct", wall)
    rate_service = results.median("service-rate", wall)
    rate_seed = results.median("seed-rate", wall)
    # The service process's first upload grows it most (later ones reuse pooled buffers):
    # the largest growth over its uploads of the main size, through nginx or not.
    rss = results.largest(["service", "uvicorn-direct"], rss_mib)
    flat = results.largest(["service-flat"], rss_mib)
    size = size_text(s.size)
    rows = [
        *_cap_row(
            f"app CPU per GiB, {size} through nginx, `local` profile ≤ 2.5",
            results.median("service", cpu_per_gib),
            2.5,
            "s/GiB",
        ),
    ]
    for profile in ("aws", "minio"):
        rows += _cap_row(
            f"app CPU per GiB, `{profile}` profile (CRC32C) ≤ 2.8",
            results.median(f"profile-{profile}", cpu_per_gib),
            2.8,
            "s/GiB",
        )
    rows += [
        *_cap_row(
            "app CPU per GiB, `generic` profile (MD5) ≤ 3.6",
            results.median("profile-generic", cpu_per_gib),
            3.6,
            "s/GiB",
        ),
        *_cap_row(
            "event-loop thread CPU per GiB, `local` ≤ 1.5",
            results.median("service", loop_per_gib),
            1.5,
            "s/GiB",
        ),
        *_ratio_row(f"{size} through nginx, full speed: ≤ 0.9 x seed design", service, seed, 0.9),
        *_ratio_row(
            f"{size} through nginx, full speed: ≤ 1.25 x direct upload_file",
            service,
            direct,
            1.25,
        ),
        *_ratio_row(f"`--limit-rate {s.rate}`: ≤ 0.7 x seed design", rate_service, rate_seed, 0.7),
        *_cap_row(
            "completion lag at full speed ≤ 0.25 s",
            results.median("service", lag),
            0.25,
            "s",
        ),
        *_cap_row(
            f"peak RSS growth, the process's first {size} upload (largest over rounds) ≤ 25 MiB",
            rss,
            25,
            "MiB",
        ),
    ]
    if rss is not None and flat is not None and s.flat_size:
        # "Flat": the bigger file may grow the process at most 10 % (or 2 MiB) more than the
        # first upload of the main size did.
        bound = 2.5 * s.part_size / MiB
        ok = flat <= bound and flat <= max(rss * 1.1, rss + 2)
        rows.append(
            [
                f"RSS growth flat {size} → {size_text(s.flat_size)}",
                f"{rss:.1f} → {flat:.1f} MiB",
                _verdict(ok),
            ]
        )
    return ["### Targets (issue 11)", "", *_table(["target", "measured", "verdict"], rows)]
