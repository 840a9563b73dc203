"""A status line on stderr for the upload CLI and the load test, and the numbers in it.

On a terminal the line is redrawn in place; when stderr is a file or a pipe (CI logs, cron)
carriage returns would make a mess, so plain lines are written, and far less often.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

MiB = 1024 * 1024


def format_bytes(n: float) -> str:
    """`512 B`, `12.0 KiB`, `1.5 MiB`, `2.00 GiB`."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit, scale in (("KiB", 1024), ("MiB", MiB), ("GiB", 1024 * MiB)):
        if n < 1024 * scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / (1024 * 1024 * MiB):.2f} TiB"


def format_rate(bytes_per_second: float) -> str:
    return f"{bytes_per_second / MiB:.1f} MiB/s"


def format_clock(seconds: float) -> str:
    """`0:07`, `12:34`, `1:02:03`: for an ETA or an elapsed time."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def transfer_status(
    sent: int, total: int | None, elapsed: float, width: int = 20, *, resumed_from: int = 0
) -> str:
    """`[#####-----]  50%  5.0 MiB / 10.0 MiB  2.5 MiB/s  ETA 0:02`; no bar for an unknown total.

    `resumed_from`: bytes already there when `elapsed` began (a resumed upload), which count
    towards the bar but not the rate.
    """
    # The first moments' rate is noise (part headers sent in microseconds): no ETA from it.
    rate = (sent - resumed_from) / elapsed if elapsed >= 0.5 else 0.0
    if total is None:
        return f"{format_bytes(sent)}  {format_rate(rate)}  {format_clock(elapsed)}"
    fraction = min(1.0, sent / total) if total else 1.0
    filled = int(fraction * width)
    eta = format_clock((total - sent) / rate) if rate > 0 else "-:--"
    return (
        f"[{'#' * filled}{'-' * (width - filled)}] {fraction:4.0%}  "
        f"{format_bytes(sent)} / {format_bytes(total)}  {format_rate(rate)}  ETA {eta}"
    )


class StatusLine:
    """Shows the latest status at most every `interval` seconds (`plain_interval` off a tty)."""

    def __init__(
        self,
        stream: TextIO,
        *,
        interval: float = 0.2,
        plain_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = interval if self.tty else plain_interval
        self.clock = clock
        # Off a tty the first line waits a whole interval: short runs print only the final one.
        self._last_shown: float | None = None if self.tty else clock()
        self._width = 0

    def show(self, text: str, *, force: bool = False) -> None:
        now = self.clock()
        if not force and self._last_shown is not None and now - self._last_shown < self.interval:
            return
        self._last_shown = now
        if self.tty:
            # Pad over the rest of a longer previous line instead of relying on escape codes.
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self, final: str | None = None) -> None:
        """Show `final` (if any) and end the line, so what follows starts on its own line."""
        if final is not None:
            self.show(final, force=True)
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
        self._width = 0
