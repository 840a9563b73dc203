"""bench/chaos/clients.py: the attempts a seed plans, and the bodies they send, without a
server (the run itself is tests/e2e/test_chaos.py)."""

from __future__ import annotations

import hashlib

from app.client.generated import generated_chunks
from bench.chaos.clients import MALFORMED_MAX, Attempt, AttemptPlan, Behaviour, Request

KiB, MiB = 1024, 1024 * 1024


def plan(seed: int, count: int = 400) -> list[Attempt]:
    attempts = AttemptPlan(seed, KiB, 512 * MiB)
    return [attempts.next() for _ in range(count)]


def test_the_same_seed_plans_the_same_attempts() -> None:
    assert plan(7) == plan(7)
    assert plan(7) != plan(8)


def test_planned_sizes_and_cut_points_stay_in_range() -> None:
    attempts = plan(3, 2000)
    assert {a.behaviour for a in attempts} == set(Behaviour)
    for attempt in attempts:
        assert KiB <= attempt.size <= 512 * MiB
        if attempt.behaviour not in (Behaviour.GOOD, Behaviour.DISCONNECT, Behaviour.STALL):
            assert attempt.size <= MALFORMED_MAX
        length = Request.build(attempt).length
        if attempt.behaviour is Behaviour.DISCONNECT:
            assert attempt.cut_at is not None and 0 <= attempt.cut_at <= length
        elif attempt.behaviour is Behaviour.STALL:
            assert attempt.cut_at is not None and 0 < attempt.cut_at < length
        else:
            assert attempt.cut_at is None
    whole = [a for a in attempts if a.behaviour is Behaviour.DISCONNECT and a.cut_at is not None]
    assert any(a.cut_at == Request.build(a).length for a in whole)  # some after the last byte


def test_a_good_body_is_its_content_length_and_the_digest_is_the_files() -> None:
    attempt = Attempt(1, Behaviour.GOOD, 3 * MiB + 5)
    request = Request.build(attempt)
    body = b"".join(request.chunks)
    assert len(body) == request.length
    assert body.endswith(b"--\r\n")
    assert request.content_type.startswith("multipart/form-data; boundary=")
    expected = hashlib.sha256(b"".join(generated_chunks(attempt.seed, attempt.size)))
    assert request.digest.hexdigest() == expected.hexdigest()


def test_a_truncated_body_lacks_only_its_closing_delimiter() -> None:
    attempt = Attempt(2, Behaviour.TRUNCATED, 100 * KiB)
    request = Request.build(attempt)
    body = b"".join(request.chunks)
    assert len(body) == request.length
    delimiter = body.split(b"\r\n", 1)[0]
    file_data = b"".join(generated_chunks(attempt.seed, attempt.size))
    assert body.endswith(file_data + b"\r\n")  # the file whole, then nothing
    assert body.count(delimiter) == 1


def test_bad_boundary_and_not_multipart_content_types() -> None:
    none = Request.build(Attempt(3, Behaviour.BAD_BOUNDARY, KiB))
    wrong = Request.build(Attempt(3, Behaviour.BAD_BOUNDARY, KiB, wrong_boundary=True))
    raw = Request.build(Attempt(3, Behaviour.NOT_MULTIPART, KiB))
    assert none.content_type == "multipart/form-data"
    assert wrong.content_type == "multipart/form-data; boundary=x-not-in-it"
    assert b"x-not-in-it" not in b"".join(wrong.chunks)
    assert (raw.content_type, raw.length, len(b"".join(raw.chunks))) == (
        "application/octet-stream",
        KiB,
        KiB,
    )
