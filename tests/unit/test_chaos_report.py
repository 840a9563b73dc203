"""bench/chaos/report.py: how objects in the bucket are matched to the answers, and the pass
line, from made-up outcomes (the run's own figures come from tests/e2e/test_chaos.py)."""

from __future__ import annotations

from typing import Any

from bench.chaos.clients import Attempt, Behaviour, Outcome
from bench.chaos.report import (
    ChaosFigures,
    InstanceLife,
    StoredObject,
    answer_label,
    check_storage,
    render,
)

MiB = 1024 * 1024
SHA = "a" * 64
NGINX_502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<center>nginx</center>"
OTHER = "b" * 64


def outcome(
    number: int,
    behaviour: Behaviour = Behaviour.GOOD,
    *,
    sent: int = 100,
    status: int | None = None,
    answer: dict[str, Any] | None = None,
    text: str | None = None,
    finished: bool = True,
) -> Outcome:
    return Outcome(
        Attempt(number, behaviour, 10),
        length=100,
        sent=sent,
        status=status,
        answer=answer,
        text=text,
        sha256=SHA if sent == 100 else None,
        finished=finished,
    )


def key(number: int, behaviour: Behaviour = Behaviour.GOOD) -> str:
    return f"uploads/u{number}/{Attempt(number, behaviour, 10).filename}"


def stored_201(number: int) -> Outcome:
    files = [{"key": key(number), "size": 10, "sha256": SHA}]
    return outcome(number, status=201, answer={"files": files})


def test_a_201_is_intact_only_when_the_bucket_holds_the_bytes_sent() -> None:
    outcomes = [stored_201(1), stored_201(2), stored_201(3)]
    stored = {key(1): StoredObject(10, SHA), key(2): StoredObject(10, OTHER)}
    check = check_storage(outcomes, stored)
    assert check.intact == [outcomes[0]]
    assert [(o.attempt.number, why.split(":")[1].strip()) for o, why in check.lost] == [
        (2, f"stored 10 B {OTHER}"),
        (3, "not in the bucket"),
    ]
    assert check.left == [] and check.unseen == []


def test_a_whole_body_whose_answer_was_not_seen_may_be_stored_intact() -> None:
    gone = outcome(4, Behaviour.DISCONNECT)
    nginx = outcome(5, status=502, text=NGINX_502)
    stored = {k: StoredObject(10, SHA) for k in (key(4, Behaviour.DISCONNECT), key(5))}
    check = check_storage([gone, nginx], stored)
    assert [o for _, o in check.unseen] == [gone, nginx]
    assert check.left == []


def test_objects_no_201_answered_are_left_behind() -> None:
    cut = outcome(6, Behaviour.DISCONNECT, sent=40)
    refused = outcome(7, status=502, answer={"error": {"code": "storage_error", "message": ""}})
    stalled = outcome(8, Behaviour.STALL, sent=40)
    changed = outcome(9, Behaviour.DISCONNECT)
    stored = {
        key(6, Behaviour.DISCONNECT): StoredObject(10, SHA),
        key(7): StoredObject(10, SHA),
        key(8, Behaviour.STALL): StoredObject(10, SHA),
        key(9, Behaviour.DISCONNECT): StoredObject(9, SHA),
        "uploads/x/unknown.bin": StoredObject(1, SHA),
    }
    check = check_storage([cut, refused, stalled, changed], stored)
    assert check.unseen == []
    assert sorted(why for _, why in check.left) == sorted(
        [
            "40 of 100 body bytes sent",
            "stored although answered 502 storage_error",
            "40 of 100 body bytes sent",
            f"stored 9 B {SHA}, not the bytes sent",
            "no attempt sent this filename",
        ]
    )


def test_answer_labels() -> None:
    assert answer_label(stored_201(1)) == "201"
    error = {"error": {"code": "idle_timeout", "message": "m"}}
    assert answer_label(outcome(1, Behaviour.STALL, status=408, answer=error)) == "408 idle_timeout"
    assert answer_label(outcome(1, status=502, text=NGINX_502)) == "502 nginx page"
    plain = outcome(1, status=500, text="Internal Server Error")
    assert answer_label(plain) == "500 not JSON: Internal Server Error"
    assert answer_label(outcome(1, Behaviour.DISCONNECT, sent=3)) == "went away (as planned)"
    assert answer_label(outcome(1, finished=False)) == "cut at the end of the run"


def figures(outcomes: list[Outcome], stored: dict[str, StoredObject], **kw: Any) -> ChaosFigures:
    values: dict[str, Any] = {
        "incomplete_after_stop": [key(1)],
        "incomplete_after_sweep": 0,
        "lives": [InstanceLife("app-1", 1, start_rss=80 * MiB, peak_rss=100 * MiB)],
        "events": [],
        "memory_budget": 64 * MiB,
        "rss_allowance": 64 * MiB,
        "broken_calls": 0,
        "restart": "app-2 SIGTERMed at 10 s",
        "seconds": 30.0,
        "sweep": "exit status 0",
        **kw,
    }
    return ChaosFigures(outcomes, check_storage(outcomes, stored), **values)


def test_the_pass_line() -> None:
    good = figures([stored_201(1)], {key(1): StoredObject(10, SHA)})
    assert good.passed, good.failures()
    assert (
        render(good, "Chaos", [])
        .rstrip()
        .endswith("RSS growth within 64 + 64 MiB on every instance**")
    )

    big = InstanceLife("app-2", 2, start_rss=80 * MiB, peak_rss=210 * MiB)
    bad = figures(
        [
            stored_201(1),
            outcome(2, status=500, answer={"error": {"code": "internal_error"}}),
            outcome(3, status=500, text=NGINX_502.replace("502 Bad Gateway", "500")),
            outcome(4, status=500, text="Internal Server Error"),
        ],
        {},
        incomplete_after_sweep=2,
        lives=[big],
    )
    assert bad.failures() == [
        "no upload was stored at all",
        "1 answered 201 but not stored intact",
        "2 incomplete upload(s) after the sweep",
        "500 from the service: 1 answered, 0 counted by the service",
        "500 not JSON from the app's server: 1 answered",
        "500 from nginx (its own page): 1 answered",
        "app-2: RSS grew 130.0 MiB",
    ]
    text = render(bad, "Chaos", [])
    assert "**FAIL: no upload was stored at all; " in text
    assert "- failed (5xx): 500 internal_error x1\n" in text
    assert (
        "- not the service's JSON: 500 nginx page x1, 500 not JSON: Internal Server Error x1\n"
        in text
    )
