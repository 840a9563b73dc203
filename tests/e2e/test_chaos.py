"""Chaos (../shared/TESTING.md): the short version of `python -m bench chaos`, run in CI.

30 s of up to 8 clients at once (files of 1 KiB to 32 MiB; good uploads, disconnects at a
random byte, stalls past a 5 s idle timeout, malformed bodies) through the shipped nginx to two
uvicorn instances over `rclone serve s3` behind the fault proxy (5xx bursts, dropped
connections, the store unreachable for seconds), the second instance SIGTERMed and restarted
mid-run. What it asserts holds whatever the timing: every 201 read back intact, no object
that no 201 answered unless its client sent the whole body and saw no answer from the service,
no incomplete multipart upload after the sweep, no 500, RSS growth within the budget plus
allowance. How many of each answer it sees depends on the timing; it prints them.
"""

from __future__ import annotations

import pytest

from bench.chaos.faults import FaultEvent
from bench.chaos.report import ChaosFigures, render
from bench.chaos.run import ChaosConfig, run_chaos

MiB = 1024 * 1024
CONFIG = ChaosConfig(duration=30, concurrency=8, max_size=32 * MiB, seed=12, grace=30)


@pytest.fixture(scope="module")
def chaos(nginx_bin: str, tmp_path_factory: pytest.TempPathFactory) -> ChaosFigures:
    """One short run shared by the tests below; its report is printed."""
    figures = run_chaos(CONFIG, tmp_path_factory.mktemp("chaos"), nginx_bin)
    print("\n" + render(figures, "Chaos run (CI)", []))
    return figures


@pytest.mark.slow
def test_chaos_run_loses_nothing_leaves_nothing_and_stays_within_memory(
    chaos: ChaosFigures,
) -> None:
    report = render(chaos, "Chaos run (CI)", [])
    assert chaos.failures() == [], report
    # The run did what it promises: every fault kind and the restart happened.
    assert {event.kind for event in chaos.events} == set(FaultEvent.KINDS)
    assert chaos.restart.startswith("app-2 SIGTERMed at"), chaos.restart
    assert [life.name for life in chaos.lives] == [
        "app-1",
        "app-2 (first life)",
        "app-2 (restarted)",
    ]
