"""Chaos (../shared/TESTING.md): the short version of `python -m bench chaos`, run in CI.

30 s of up to 8 clients at once (files of 1 KiB to 32 MiB; good uploads, disconnects at a
random byte, stalls past a 5 s idle timeout, malformed bodies) through the shipped nginx to two
uvicorn instances over `rclone serve s3` behind the fault proxy (5xx bursts, dropped
connections, the store unreachable for seconds), the second instance SIGTERMed and restarted
mid-run. What it asserts holds whatever the timing: every 201 read back intact, no object
that no 201 answered unless its client sent the whole body and saw no answer from the service,
no incomplete multipart upload after the sweep, no 500, RSS growth within the budget plus
allowance. How many of each answer it sees depends on the timing; it prints them. One kind of
500 does not keep to the pass line yet (the app server's plain text after a cancelled abort):
it has its own test below, marked as a finding.
"""

from __future__ import annotations

import pytest

from bench.chaos.faults import FaultEvent
from bench.chaos.report import FINDINGS, ChaosFigures, render
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
    """The pass line, but for the app server's plain-text 500s: the next test."""
    report = render(chaos, "Chaos run (CI)", [])
    assert chaos.failures(set_apart=FINDINGS) == [], report
    # The run did what it promises: every fault kind and the restart happened.
    assert {event.kind for event in chaos.events} == set(FaultEvent.KINDS)
    assert chaos.restart.startswith("app-2 SIGTERMed at"), chaos.restart
    assert [life.name for life in chaos.lives] == [
        "app-1",
        "app-2 (first life)",
        "app-2 (restarted)",
    ]


@pytest.mark.slow
@pytest.mark.xfail(
    reason="finding (docs/testing.md, Findings): when uvicorn's graceful shutdown runs out "
    "while a failed upload awaits its abort (app/endpoints.py, the except clause), the "
    "CancelledError escapes the handler and uvicorn answers its own text/plain 500. It needs "
    "an abort under way at that very moment, hence not strict.",
    strict=False,
)
def test_chaos_run_gets_no_plain_500_from_the_app_server(chaos: ChaosFigures) -> None:
    assert chaos.plain_500 == 0
