"""Child processes that listen on a loopback port: started, awaited, stopped.

Everything listens on 127.0.0.1 only, every wait has a deadline, and each process is stopped
by whoever started it (a fixture, the benchmark's run), also when a test or a run fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Self

from app.ops.localstore import free_port, wait_for_port

__all__ = ["ROOT", "Process", "free_port", "wait_for_port", "wait_until"]

#: The repository: the working directory of every process started here.
ROOT = Path(__file__).resolve().parents[1]


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds have passed; its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class Process:
    """A child process that listens on `port` and logs to `log_path`.

    `stop()` sends `stop_signals` in turn, each with its time to exit, then kills the whole
    process group: the child runs in a session of its own so that the last resort also
    reaches its workers (nginx, granian and hypercorn run the work in child processes).
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        port: int,
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        stop_signals: Sequence[tuple[signal.Signals, float]] = ((signal.SIGTERM, 15),),
    ) -> None:
        self.name = name
        self.argv = list(command)
        self.port = port
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.stop_signals = list(stop_signals)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> Self:
        """Start the process (again, after a stop) and return once it listens."""
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
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

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def send_signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        """The exit status once the process has ended, None if it still runs after `timeout`."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for sig, timeout in self.stop_signals:
                self.proc.send_signal(sig)
                if self.wait(timeout) is not None:
                    break
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
