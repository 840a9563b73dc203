"""bench/report.py's per-profile table (`python -m bench --profiles`), from made-up samples:
the figures are the bench's to measure, the table's shape is checked here."""

from __future__ import annotations

import dataclasses

from bench.contenders import Sample
from bench.report import GiB, Results, RunSettings, render
from harness.usage import Usage


def settings(profiles: list[str]) -> RunSettings:
    return RunSettings(
        size=GiB,
        flat_size=None,
        concurrent_size=GiB // 4,
        concurrency=[1],
        rounds=2,
        rate="150M",
        part_size=10 * 1024 * 1024,
        label="run",
        command="python -m bench",
        profiles=profiles,
    )


def sample(app_cpu: float) -> Sample:
    return Sample(wall=4.0, size=GiB, app=Usage(app_cpu, 0, 0), store_cpu=2.0, nginx_cpu=0.5)


def test_each_profile_gets_a_row_with_its_app_cpu_per_gib() -> None:
    results = Results()
    for app_cpu in (3.0, 3.2):
        results.add("profile-local", sample(app_cpu))
    results.add("profile-generic", sample(5.0))
    results.fail("profile-aws", "HTTP 502")
    text = render(settings(["local", "generic", "aws"]), results, [])
    assert "### This service + nginx per S3_PROVIDER profile, one 1 GiB file" in text
    assert "| `local` | 4.00 (4.00..4.00) | 3.10 (3.00..3.20) | 0.50 (0.50..0.50) |" in text
    assert "| `generic` | 4.00 | 5.00 | 0.50 | 2.00 |" in text
    assert "| `aws` | failed | failed | failed | failed |" in text


def test_without_profiles_the_report_has_no_profile_table() -> None:
    results = Results()
    results.add("service", sample(5.0))
    assert "S3_PROVIDER profile" not in render(settings([]), results, [])


def test_targets_are_judged_from_the_medians_of_what_ran() -> None:
    results = Results()
    results.add("service", sample(2.4))
    results.add("seed", Sample(wall=5.0, size=GiB, app=Usage(2.0, 0, 0), store_cpu=2.0))
    results.add("profile-generic", sample(3.7))
    text = render(settings(["generic"]), results, [])
    assert "| app CPU per GiB, 1 GiB through nginx, `local` profile ≤ 2.5 | 2.40 s/GiB | met |" in (
        text
    )
    assert "| app CPU per GiB, `generic` profile (MD5) ≤ 3.6 | 3.70 s/GiB | **not met** |" in text
    assert "≤ 0.9 x seed design | 0.80 x (4.00 s vs 5.00 s) | met |" in text
    assert "`aws` profile" not in text and "x direct upload_file" not in text


def test_rss_targets_take_the_process_s_first_upload_not_the_warm_median() -> None:
    mib = 1024 * 1024
    results = Results()
    for growth in (17 * mib, 0, 0):  # the first upload faults in the pooled buffers
        results.add("service", Sample(wall=4.0, size=GiB, app=Usage(2.0, growth, 0), store_cpu=1.0))
    results.add(
        "uvicorn-direct", Sample(wall=4.0, size=GiB, app=Usage(2.0, 6 * mib, 0), store_cpu=1.0)
    )
    results.add(
        "service-flat", Sample(wall=16.0, size=4 * GiB, app=Usage(8.0, 6 * mib, 0), store_cpu=1.0)
    )
    run = dataclasses.replace(settings([]), flat_size=4 * GiB)
    text = render(run, results, [])
    assert "first 1 GiB upload (largest over rounds) ≤ 25 MiB | 17.00 MiB | met |" in text
    assert "| RSS growth flat 1 GiB → 4 GiB | 17.0 → 6.0 MiB | met |" in text
