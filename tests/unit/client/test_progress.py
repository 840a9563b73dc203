"""The status line: numbers formatted for people, redrawn on a tty, plain and rare elsewhere."""

from __future__ import annotations

import io

import pytest

from app.client.progress import StatusLine, format_bytes, format_clock, transfer_status

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536 * 1024, "1.5 MiB"),
        (64 * MiB, "64.0 MiB"),
        (1024 * MiB, "1.0 GiB"),
        (3 * 1024**4, "3.00 TiB"),
    ],
)
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0:00"), (7.4, "0:07"), (754, "12:34"), (3723, "1:02:03"), (-1, "0:00")],
)
def test_format_clock(seconds: float, text: str) -> None:
    assert format_clock(seconds) == text


def test_transfer_status_with_a_known_total() -> None:
    assert transfer_status(50 * MiB, 100 * MiB, 10.0, width=10) == (
        "[#####-----]  50%  50.0 MiB / 100.0 MiB  5.0 MiB/s  ETA 0:10"
    )
    assert transfer_status(0, 100, 0.0, width=4).endswith("ETA -:--")
    assert transfer_status(165, 100 * MiB, 0.001, width=4).endswith("0.0 MiB/s  ETA -:--")
    assert transfer_status(0, 0, 1.0, width=4).startswith("[####] 100%")


def test_a_resumed_transfer_counts_earlier_bytes_in_the_bar_not_the_rate() -> None:
    # 80 MiB were stored by an earlier run; this one sent 10 MiB in 10 s.
    assert transfer_status(90 * MiB, 100 * MiB, 10.0, width=10, resumed_from=80 * MiB) == (
        "[#########-]  90%  90.0 MiB / 100.0 MiB  1.0 MiB/s  ETA 0:10"
    )


def test_transfer_status_without_a_total() -> None:
    assert transfer_status(3 * MiB, None, 2.0) == "3.0 MiB  1.5 MiB/s  0:02"


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def written(
    stream: io.StringIO, shows: list[tuple[float, str]], final: str, **intervals: float
) -> str:
    """What a StatusLine writes to `stream` for show(text) at each (clock, text), then
    close(final) at the last clock."""
    now = 0.0
    line = StatusLine(stream, clock=lambda: now, **intervals)
    for at, text in shows:
        now = at
        line.show(text)
    line.close(final)
    return stream.getvalue()


def test_on_a_tty_the_line_is_redrawn_in_place_at_most_every_interval() -> None:
    shows = [(0.0, "first long line"), (0.5, "skipped"), (1.0, "second")]
    assert written(FakeTty(), shows, "done", interval=1.0) == (
        "\rfirst long line\rsecond         \rdone  \n"
    )


def test_off_a_tty_lines_are_plain_and_the_first_waits_an_interval() -> None:
    shows = [(0.0, "at start"), (10.0, "ten seconds in"), (15.0, "too soon")]
    assert written(io.StringIO(), shows, "final", interval=1.0, plain_interval=10.0) == (
        "ten seconds in\nfinal\n"
    )
