"""A resumable upload's state as it is kept in the bucket: what is written is read back, the
offset is the parts' and the tail's bytes, and parts are cut the same on every instance."""

from __future__ import annotations

import pytest

from app.resumable.state import Lease, ResumableState, StoredPart, Tail, state_key, tail_key
from app.storage.partsize import MIN_PART_SIZE
from app.units import MiB


def state(**changes: object) -> ResumableState:
    values: dict[str, object] = {
        "id": "0" * 32,
        "key": "uploads/0/a.bin",
        "upload_id": "mpu",
        "length": 30 * MiB,
        "part_size": 10 * MiB,
        "part_cap": 64 * MiB,
        "growing": False,
        "metadata": "filename YS5iaW4=",
        "filename": "a.bin",
        "content_type": "application/octet-stream",
        "owner": None,
        "protocol": "tus",
        "created": 1.0,
        "expires": 2.0,
    }
    values.update(changes)
    return ResumableState(**values)  # type: ignore[arg-type]


def test_the_state_reads_back_as_written() -> None:
    written = state(
        parts=[StoredPart(1, 10 * MiB, '"e1"', {"ContentMD5": "x"})],
        tail=Tail(tail_key("0" * 32, 13 * MiB), 3 * MiB, '"t"'),
        lease=Lease("holder", 5.0),
        sha256_state="abc",
    )
    assert ResumableState.from_json(written.to_json()) == written
    assert written.offset == 13 * MiB and written.parts_size == 10 * MiB


def test_a_state_of_another_version_is_not_read() -> None:
    raw = state(version=99).to_json()
    with pytest.raises(ValueError):
        ResumableState.from_json(raw)


def test_parts_are_a_pure_function_of_the_state() -> None:
    fixed = state()
    assert {fixed.part_size_of(n, 10_000) for n in (1, 500, 10_000)} == {10 * MiB}
    growing = state(length=None, growing=True, part_size=MIN_PART_SIZE)
    sizes = [growing.part_size_of(n, 10_000) for n in (1, 1000, 1001, 2001, 10_000)]
    assert sizes == sorted(sizes) and sizes[0] == MIN_PART_SIZE and sizes[-1] <= 64 * MiB


def test_bookkeeping_keys_are_under_the_reserved_prefix() -> None:
    assert state_key("ab" * 16) == f".upload-resumable/{'ab' * 16}/state.json"
    assert tail_key("ab" * 16, 12345).endswith("/tail-12345")


def test_expiry_and_leases_are_judged_against_a_time() -> None:
    assert state(expires=10.0).expired(10.0) and not state(expires=10.0).expired(9.9)
    assert Lease("h", 10.0).held(9.0) and not Lease("h", 10.0).held(10.0)
