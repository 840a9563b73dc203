"""plan_part_size: the part size that keeps a multipart upload within S3's limits; and
growing_part_size, the growing parts of an object whose length is unknown.

Modelled on tusd's calcOptimalPartSize tests: boundaries around configured * max_parts, and a
sweep of object sizes checked against every rule S3 imposes on parts.
"""

from __future__ import annotations

import itertools
import math

import pytest

from app.storage.partsize import (
    MAX_OBJECT_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    ObjectTooLarge,
    growing_part_size,
    largest_growing_object,
    plan_part_size,
)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

MIN_PART = 5 * MiB
MAX_PART = 5 * GiB

#: Part sizes a deployment may configure (Settings allows 5 MiB to 5 GiB).
CONFIGURED_SIZES = [5 * MiB, 8 * MiB, 10 * MiB, 16 * MiB, 64 * MiB, 100 * MiB]


def human(size: int) -> str:
    """A readable test id: 10MiB, 5TiB+1, 6TiB."""
    for unit, name in ((TiB, "TiB"), (GiB, "GiB"), (MiB, "MiB")):
        whole, rest = divmod(size, unit)
        if whole and rest in (0, 1):
            return f"{whole}{name}" + ("+1" if rest else "")
        if whole and rest == MiB:
            return f"{whole}{name}+1MiB"
    return str(size)


def sweep(limit: int) -> list[int]:
    """A few hundred object sizes from 0 to `limit`, dense at the small end, plus edges."""
    sizes = {0, 1, MiB - 1, MiB, MiB + 1, limit - 1, limit}
    steps = 400
    for i in range(steps + 1):
        sizes.add(limit * i**3 // steps**3)  # cubic spacing: many small, some huge
        sizes.add(limit * i // steps)  # linear spacing: even coverage of the top end
    return sorted(size for size in sizes if 0 <= size <= limit)


def check_plan(configured: int, size: int, max_parts: int, result: int) -> None:
    """Every rule a planned part size must satisfy."""
    base = max(configured, MIN_PART)
    context = f"configured={configured} size={size} max_parts={max_parts} result={result}"
    assert result >= MIN_PART, context
    assert result <= MAX_PART, context
    assert math.ceil(size / result) <= max_parts, context
    if size <= base * max_parts:
        assert result == base, context
    else:
        assert result > base, context
        assert result % MiB == 0, context
        # The smallest whole MiB that fits: one MiB less would need too many parts.
        assert math.ceil(size / (result - MiB)) > max_parts, context


def test_constants() -> None:
    assert MAX_PARTS == 10_000
    assert MAX_OBJECT_SIZE == 5 * TiB == 5_497_558_138_880


def test_object_too_large_is_a_value_error() -> None:
    assert issubclass(ObjectTooLarge, ValueError)


@pytest.mark.parametrize("configured", CONFIGURED_SIZES)
def test_unknown_size_keeps_the_configured_size(configured: int) -> None:
    assert plan_part_size(configured, None) == configured


@pytest.mark.parametrize("configured", [5 * MiB, 10 * MiB, 1 * GiB, 5 * GiB])
def test_unknown_size_never_raises(configured: int) -> None:
    assert plan_part_size(configured, None, max_parts=1) == configured


@pytest.mark.parametrize("configured", CONFIGURED_SIZES)
@pytest.mark.parametrize("size", [0, 1, 5 * MiB, 10 * MiB, 1 * GiB])
def test_small_objects_keep_the_configured_size(configured: int, size: int) -> None:
    assert plan_part_size(configured, size) == configured


@pytest.mark.parametrize("configured", CONFIGURED_SIZES)
def test_exactly_max_parts_parts_keeps_the_configured_size(configured: int) -> None:
    size = configured * MAX_PARTS
    assert plan_part_size(configured, size) == configured
    assert plan_part_size(configured, size - 1) == configured


@pytest.mark.parametrize("configured", CONFIGURED_SIZES)
def test_one_byte_more_than_max_parts_parts_grows_by_one_mib(configured: int) -> None:
    size = configured * MAX_PARTS + 1
    result = plan_part_size(configured, size)
    assert result == configured + MiB
    assert math.ceil(size / result) <= MAX_PARTS
    # The configured size really would have needed one part too many.
    assert math.ceil(size / configured) == MAX_PARTS + 1


def test_boundary_with_ten_mib_parts() -> None:
    boundary = 10 * MiB * 10_000  # 100,000 MiB
    assert plan_part_size(10 * MiB, boundary - 1) == 10 * MiB
    assert plan_part_size(10 * MiB, boundary) == 10 * MiB
    assert plan_part_size(10 * MiB, boundary + 1) == 11 * MiB


def test_500_gib_with_10_mib_parts_uses_52_mib_parts() -> None:
    size = 500 * GiB
    result = plan_part_size(10 * MiB, size)
    assert result == 52 * MiB
    assert math.ceil(size / result) == 9_847
    # 51 MiB would not do: it needs 10,040 parts.
    assert math.ceil(size / (51 * MiB)) > MAX_PARTS


def test_largest_object_with_10_mib_parts() -> None:
    result = plan_part_size(10 * MiB, MAX_OBJECT_SIZE)
    assert result == 525 * MiB
    assert math.ceil(MAX_OBJECT_SIZE / result) <= MAX_PARTS


@pytest.mark.parametrize("configured", CONFIGURED_SIZES)
def test_largest_object_fits_for_every_configured_size(configured: int) -> None:
    result = plan_part_size(configured, MAX_OBJECT_SIZE)
    check_plan(configured, MAX_OBJECT_SIZE, MAX_PARTS, result)


@pytest.mark.parametrize("configured", CONFIGURED_SIZES)
def test_sweep_up_to_5_tib(configured: int) -> None:
    sizes = sweep(MAX_OBJECT_SIZE)
    assert len(sizes) > 300
    previous = 0
    for size in sizes:
        result = plan_part_size(configured, size)
        check_plan(configured, size, MAX_PARTS, result)
        assert result >= previous, f"part size shrank at size={size}"
        previous = result


def test_sweep_with_ten_mib_parts_around_every_mib_step() -> None:
    """Just below, at and just above each size where the 10 MiB plan steps up by one MiB."""
    for mib in range(10, 526):
        edge = mib * MiB * MAX_PARTS
        for size in (edge - 1, edge, edge + 1):
            if size > MAX_OBJECT_SIZE:
                continue
            result = plan_part_size(10 * MiB, size)
            check_plan(10 * MiB, size, MAX_PARTS, result)
            expected = mib * MiB if size <= edge else (mib + 1) * MiB
            assert result == expected, f"size={size}"


@pytest.mark.parametrize("configured", [0, 1, MiB, 4 * MiB, MIN_PART - 1])
def test_configured_size_below_5_mib_is_raised_to_5_mib(configured: int) -> None:
    assert plan_part_size(configured, None) == MIN_PART
    assert plan_part_size(configured, 0) == MIN_PART
    assert plan_part_size(configured, MIN_PART * MAX_PARTS) == MIN_PART
    assert plan_part_size(configured, MIN_PART * MAX_PARTS + 1) == 6 * MiB


def test_configured_size_that_is_not_a_whole_mib_is_kept_until_it_must_grow() -> None:
    configured = 7_000_000
    assert plan_part_size(configured, None) == configured
    assert plan_part_size(configured, configured * MAX_PARTS) == configured
    grown = plan_part_size(configured, configured * MAX_PARTS + 1)
    assert grown == 7 * MiB  # 7,000,001 bytes rounded up to a whole MiB
    check_plan(configured, configured * MAX_PARTS + 1, MAX_PARTS, grown)


@pytest.mark.parametrize("configured", [*CONFIGURED_SIZES, 525 * MiB, 1 * GiB, 5 * GiB], ids=human)
@pytest.mark.parametrize(
    "size", [MAX_OBJECT_SIZE + 1, MAX_OBJECT_SIZE + MiB, 6 * TiB, 10 * TiB], ids=human
)
def test_objects_over_5_tib_raise(configured: int, size: int) -> None:
    """S3 stores nothing over 5 TiB, whatever part size is configured."""
    with pytest.raises(ObjectTooLarge, match="5 TiB"):
        plan_part_size(configured, size)


@pytest.mark.parametrize("configured", [1 * GiB, 5 * GiB])
def test_5_tib_exactly_is_allowed_with_large_configured_parts(configured: int) -> None:
    assert plan_part_size(configured, MAX_OBJECT_SIZE) == configured


def test_custom_max_parts_boundaries() -> None:
    assert plan_part_size(10 * MiB, 10 * MiB * 1000, max_parts=1000) == 10 * MiB
    assert plan_part_size(10 * MiB, 10 * MiB * 1000 + 1, max_parts=1000) == 11 * MiB
    # 100 GiB in at most 1,000 parts: 102.4 MiB, rounded up to 103 MiB.
    assert plan_part_size(10 * MiB, 100 * GiB, max_parts=1000) == 103 * MiB


@pytest.mark.parametrize("configured", [5 * MiB, 10 * MiB, 64 * MiB])
def test_custom_max_parts_sweep(configured: int) -> None:
    max_parts = 1000
    limit = MAX_PART * max_parts  # the most 1,000 parts of 5 GiB can carry
    previous = 0
    for size in sweep(limit):
        result = plan_part_size(configured, size, max_parts=max_parts)
        check_plan(configured, size, max_parts, result)
        assert result >= previous
        previous = result
    assert plan_part_size(configured, limit, max_parts=max_parts) == MAX_PART


def test_custom_max_parts_beyond_5_gib_parts_raises() -> None:
    limit = MAX_PART * 1000
    with pytest.raises(ObjectTooLarge, match="1000 parts"):
        plan_part_size(10 * MiB, limit + 1, max_parts=1000)
    with pytest.raises(ObjectTooLarge):
        plan_part_size(10 * MiB, MAX_OBJECT_SIZE, max_parts=1000)


def test_single_part_plan() -> None:
    assert plan_part_size(10 * MiB, 10 * MiB, max_parts=1) == 10 * MiB
    assert plan_part_size(10 * MiB, 10 * MiB + 1, max_parts=1) == 11 * MiB
    assert plan_part_size(10 * MiB, MAX_PART, max_parts=1) == MAX_PART
    with pytest.raises(ObjectTooLarge):
        plan_part_size(10 * MiB, MAX_PART + 1, max_parts=1)


# --- growing_part_size: parts of an object whose length is unknown -------------------------


@pytest.mark.parametrize(
    ("base", "max_parts", "cap"),
    [(10 * MiB, 10_000, 256 * MiB), (5 * MiB, 20, 32 * MiB), (7 * MiB + 3, 1000, 5 * GiB)],
)
def test_growing_parts_start_at_the_base_double_each_tenth_and_stop_at_the_cap(
    base: int, max_parts: int, cap: int
) -> None:
    sizes = [growing_part_size(n, base, max_parts, cap) for n in range(1, max_parts + 1)]
    tenth = max_parts // 10
    assert sizes[:tenth] == [base] * tenth
    assert all(a <= b for a, b in itertools.pairwise(sizes))
    assert all(MIN_PART_SIZE <= s <= max(cap // MiB * MiB, base) for s in sizes)
    for n in range(tenth, max_parts, tenth):  # each tenth doubles, until the cap
        assert sizes[n] in (2 * sizes[n - 1], sizes[n - 1], cap // MiB * MiB)
    assert largest_growing_object(base, max_parts, cap) == min(sum(sizes), MAX_OBJECT_SIZE)


def test_the_defaults_carry_an_unknown_length_object_of_1_5_tib() -> None:
    """10 MiB parts, 10,000 of them, and a 512 MiB budget with one part in flight (a part
    of at most 256 MiB): the figure docs/scaling.md gives."""
    largest = largest_growing_object(10 * MiB, MAX_PARTS, 256 * MiB)
    assert largest == (10 + 20 + 40 + 80 + 160 + 5 * 256) * 1000 * MiB
    assert largest > 1.5 * 1024 * GiB
    assert growing_part_size(1000, 10 * MiB, MAX_PARTS, 256 * MiB) == 10 * MiB
    assert growing_part_size(1001, 10 * MiB, MAX_PARTS, 256 * MiB) == 20 * MiB


def test_growing_parts_never_pass_s3_limits() -> None:
    assert growing_part_size(MAX_PARTS, 10 * MiB, MAX_PARTS, 100 * GiB) == MAX_PART_SIZE
    assert largest_growing_object(10 * MiB, MAX_PARTS, 100 * GiB) == MAX_OBJECT_SIZE
    assert growing_part_size(1, 1, 10, 1) == MIN_PART_SIZE  # a part is never below 5 MiB
