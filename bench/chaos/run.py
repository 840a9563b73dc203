"""The chaos run (`python -m bench chaos`, bench/chaos/cli.py): a bounded run of mixed uploads
against two app instances behind the shipped nginx, over the embedded store (`rclone serve s3`)
reached through a fault proxy.

While clients upload (bench/chaos/clients.py), storage faults and one instance's SIGTERM and
restart come on schedule (bench/chaos/faults.py). Afterwards both instances are stopped (their
graceful shutdown is the clean-up), every object in the bucket is read back from the store and
checked against the answers, `python -m app sweep` runs, and bench/chaos/report.py counts the
figures and judges the pass line.

Each instance life gets its own PROMETHEUS_MULTIPROC_DIR, so its upload counters can be read
after it has exited, the requests of its graceful shutdown included.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from app.client.memwatch import read_vmrss
from bench.chaos.clients import AttemptPlan, KiB, MiB, Outcome, perform
from bench.chaos.faults import FaultInjector, ProxyThread, fault_schedule, restart_time
from bench.chaos.report import ChaosFigures, InstanceLife, StoredObject, check_storage
from harness.nginx import Nginx
from harness.processes import Process
from harness.servers import BEHIND_NGINX, AppServer, run_app_command
from harness.store import Bucket, RcloneStore
from harness.usage import read_peak_rss, reset_peak_rss

P = TypeVar("P", bound=Process)


@dataclasses.dataclass(frozen=True)
class ChaosConfig:
    duration: float = 180.0
    concurrency: int = 32
    max_size: int = 512 * MiB
    min_size: int = KiB
    seed: int = 0
    #: UPLOAD_MEMORY_BUDGET of each instance.
    memory_budget: int = 64 * MiB
    #: RSS growth allowed beyond the budget: the process's own (imports and pools made on the
    #: first uploads, connections, allocator slack).
    rss_allowance: int = 64 * MiB
    #: UPLOAD_IDLE_TIMEOUT: short, so that stalled clients hit it within the run.
    idle_timeout: float = 5.0
    part_size: int = 5 * MiB
    #: UPLOAD_MULTIPART_THRESHOLD: low enough that a short run with small files also makes
    #: multipart uploads, high enough that many files still go as one PutObject.
    multipart_threshold: int = 8 * MiB
    #: uvicorn --timeout-graceful-shutdown.
    graceful_shutdown: float = 10.0
    #: Seconds uploads still running at `duration` may take; then they are cut.
    grace: float = 120.0

    def settings(self) -> dict[str, str]:
        return {
            # As `python -m app serve` runs over its embedded store (and as the bench runs it).
            "S3_PROVIDER": "local",
            "S3_PAYLOAD_SIGNING": "off",
            "UPLOAD_PART_SIZE": str(self.part_size),
            "UPLOAD_MULTIPART_THRESHOLD": str(self.multipart_threshold),
            "UPLOAD_MEMORY_BUDGET": str(self.memory_budget),
            "UPLOAD_IDLE_TIMEOUT": str(self.idle_timeout),
        }


class ChaosRun:
    """The processes of one run, started by start() and stopped by close()."""

    def __init__(self, config: ChaosConfig, work: Path, nginx_binary: str) -> None:
        self.config = config
        self.work = work
        self.nginx_binary = nginx_binary
        self.logs = work / "logs"
        self.started: list[Process] = []
        self.proxy: ProxyThread | None = None
        self.bucket: Bucket | None = None
        self.lives: list[InstanceLife] = []
        self.life_dirs: list[Path] = []
        #: Each process's PROMETHEUS_MULTIPROC_DIR, by pid.
        self.metrics_dirs: dict[int, Path] = {}
        #: Errors of the run's own tasks (a restart that failed): the run cannot pass.
        self.errors: list[str] = []
        self.apps: list[AppServer] = []
        self.events = fault_schedule(config.seed, config.duration)
        self.restart_at = restart_time(config.seed, config.duration)
        self.restart = "not reached"
        self.outcomes: list[Outcome] = []
        self.seconds = 0.0

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        store = self._start(RcloneStore(self.work / "s3", self.logs / "rclone.log"))
        self.bucket = Bucket(store.endpoint, "chaos")
        self.proxy = ProxyThread(store.endpoint).start()
        self.apps = [self._app(f"app-{n}") for n in (1, 2)]
        upstreams = [app.address for app in self.apps]
        self.nginx = self._start(Nginx(self.nginx_binary, self.work / "nginx", upstreams))

    def _start(self, proc: P) -> P:
        self.started.append(proc)
        return proc.start()

    def _app(self, name: str) -> AppServer:
        assert self.proxy is not None and self.bucket is not None
        settings = {
            **self.bucket.environment(),
            "S3_ENDPOINT_URL": self.proxy.endpoint,
            **self.config.settings(),
        }
        options = ("--loop", "uvloop", "--http", "httptools", *BEHIND_NGINX, "--no-access-log")
        grace = self.config.graceful_shutdown
        app = AppServer(
            name,
            self.logs / f"{name}.log",
            settings,
            *options,
            *("--timeout-graceful-shutdown", str(int(grace))),
            grace=grace + 35,
        )
        self._begin_life(app)
        return self._start(app)

    def _begin_life(self, app: AppServer) -> None:
        """A fresh PROMETHEUS_MULTIPROC_DIR for the process about to start."""
        directory = self.work / "metrics" / f"{app.name}-{len(self.life_dirs)}"
        directory.mkdir(parents=True)
        assert app.env is not None
        app.env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
        self.life_dirs.append(directory)

    def _note_start(self, app: AppServer) -> InstanceLife:
        """Called once the process listens: its RSS now is what growth is measured from."""
        reset_peak_rss(app.pid)
        life = InstanceLife(app.name, app.pid, start_rss=read_vmrss(app.pid))
        life.peak_rss = life.start_rss
        assert app.env is not None
        self.metrics_dirs[app.pid] = Path(app.env["PROMETHEUS_MULTIPROC_DIR"])
        self.lives.append(life)
        return life

    def _sample(self) -> None:
        for life in self.lives:
            if not life.ended:
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    life.peak_rss = max(life.peak_rss, read_peak_rss(life.pid))

    def _end_life(self, index: int, app: AppServer, how: str) -> None:
        """SIGTERM and wait; then read the life's counters from its multiprocess files."""
        self._sample()
        started = time.monotonic()
        app.stop()
        life = self.lives[index]
        life.ended = f"{how}, exited {time.monotonic() - started:.1f} s later"
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.metrics_dirs[life.pid]))  # type: ignore[no-untyped-call]
        for family in registry.collect():
            for sample in family.samples:
                if sample.name == "upload_requests_total":
                    label = f"{sample.labels['outcome']} {sample.labels['code']}".strip()
                    life.requests[label] = life.requests.get(label, 0.0) + sample.value

    async def load(self) -> None:
        """Clients, faults and the restart until `duration`, then `grace` for the stragglers."""
        config = self.config
        for app in self.apps:
            self._note_start(app)
        plan = AttemptPlan(config.seed, config.min_size, config.max_size)
        started = time.monotonic()
        deadline = started + config.duration
        stall_wait = 3 * config.idle_timeout + 10

        async def client() -> None:
            while time.monotonic() < deadline:
                outcome = Outcome(plan.next())
                self.outcomes.append(outcome)
                try:
                    await perform(outcome, self.nginx.port, stall_wait)
                except Exception as exc:  # a bug of the client: visible in the report
                    outcome.error = f"client error: {type(exc).__name__}: {exc}"
                    outcome.finished = True

        async def sampler() -> None:
            while True:
                self._sample()
                await asyncio.sleep(0.25)

        clients = [asyncio.create_task(client()) for _ in range(config.concurrency)]
        restart = asyncio.create_task(self._restart_second(started))
        background = [
            asyncio.create_task(sampler()),
            asyncio.create_task(self._inject_faults(started)),
            restart,
        ]
        try:
            await asyncio.wait(clients, timeout=config.duration + config.grace)
            # A restart still under way completes: the checks need both instances settled.
            await asyncio.wait([restart])
        finally:
            for task in [*clients, *background]:
                task.cancel()
            results = await asyncio.gather(*clients, *background, return_exceptions=True)
            self.errors += [
                f"{type(r).__name__}: {r}"
                for r in results
                if isinstance(r, Exception) and not isinstance(r, asyncio.CancelledError)
            ]
            self.seconds = time.monotonic() - started
            assert self.proxy is not None
            FaultInjector(self.proxy).clear()

    async def _inject_faults(self, started: float) -> None:
        assert self.proxy is not None
        injector = FaultInjector(self.proxy)
        previous = None
        broken_before = 0
        try:
            for event in self.events:
                await asyncio.sleep(max(0.0, started + event.at - time.monotonic()))
                broken = await asyncio.to_thread(injector.broken)
                if previous is not None:
                    previous.broken = broken - broken_before
                previous, broken_before = event, broken
                fault = await asyncio.to_thread(injector.begin, event)
                if event.kind == "down":
                    await asyncio.sleep(event.seconds)
                    await asyncio.to_thread(injector.end, fault)
            await asyncio.sleep(max(0.0, started + self.config.duration - time.monotonic()))
        finally:
            if previous is not None:
                previous.broken = injector.broken() - broken_before

    async def _restart_second(self, started: float) -> None:
        """SIGTERM the second instance mid-run, wait for its graceful exit, start it again."""
        await asyncio.sleep(max(0.0, started + self.restart_at - time.monotonic()))
        app = self.apps[1]
        index = next(i for i, life in enumerate(self.lives) if life.pid == app.pid)
        at = time.monotonic() - started
        await asyncio.to_thread(self._end_life, index, app, f"SIGTERM at {at:.1f} s")
        self.lives[index].name += " (first life)"
        self._begin_life(app)
        await asyncio.to_thread(app.start)
        back = time.monotonic() - started
        self._note_start(app).name += " (restarted)"
        self.restart = (
            f"{app.name} SIGTERMed at {at:.1f} s, listening again at {back:.1f} s "
            f"({self.lives[index].ended.split(', ')[-1]})"
        )

    def finish(self) -> ChaosFigures:
        """Stop the instances (their shutdown is the clean-up), then check the storage."""
        for app in self.apps:
            index = next(i for i, life in enumerate(self.lives) if life.pid == app.pid)
            if not self.lives[index].ended:
                self._end_life(index, app, "SIGTERM at the end")
        assert self.bucket is not None and self.proxy is not None
        incomplete_after_stop = [upload["Key"] for upload in self.bucket.incomplete_uploads()]
        stored = read_back(self.bucket)
        sweep = run_app_command(
            "sweep", "--older-than", "0s", "--apply", env=self.bucket.environment(), timeout=120
        )
        last_line = (sweep.stdout.strip() or sweep.stderr.strip() or "no output").splitlines()[-1]
        return ChaosFigures(
            outcomes=self.outcomes,
            storage=check_storage(self.outcomes, stored),
            incomplete_after_stop=incomplete_after_stop,
            incomplete_after_sweep=len(self.bucket.incomplete_uploads()),
            lives=self.lives,
            events=self.events,
            memory_budget=self.config.memory_budget,
            rss_allowance=self.config.rss_allowance,
            broken_calls=FaultInjector(self.proxy).broken(),
            restart=self.restart,
            seconds=self.seconds,
            sweep=f"exit status {sweep.returncode}: {last_line}",
            errors=self.errors,
        )

    def close(self) -> None:
        """Stop everything started, emptying the bucket first (the figures keep the counts)."""
        if self.bucket is not None and self.started[0].proc is not None:
            self.bucket.purge()
        for proc in reversed(self.started):
            proc.stop()
        if self.proxy is not None:
            self.proxy.stop()


def read_back(bucket: Bucket) -> dict[str, StoredObject]:
    """Every object in the bucket, read whole from the store (not the proxy) and hashed."""

    def read(key: str) -> StoredObject:
        digest, size = hashlib.sha256(), 0
        stream = bucket.s3.get_object(Bucket=bucket.name, Key=key)["Body"]
        try:
            for block in iter(lambda: stream.read(MiB), b""):
                digest.update(block)
                size += len(block)
        finally:
            stream.close()
        return StoredObject(size, digest.hexdigest())

    keys = bucket.keys()
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(keys, pool.map(read, keys), strict=True))


def run_chaos(config: ChaosConfig, work: Path, nginx_binary: str) -> ChaosFigures:
    """One whole run with its processes and files in `work`."""
    run = ChaosRun(config, work, nginx_binary)
    try:
        run.start()
        asyncio.run(run.load())
        return run.finish()
    finally:
        run.close()
