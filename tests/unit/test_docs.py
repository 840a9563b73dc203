"""The docs name real things: every test docs/testing.md cites exists, and every relative link
in README.md and docs/ leads to a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIERS = {"U": "tests/unit", "I": "tests/integration", "E": "tests/e2e", "F": "tests/fuzz"}
# `I/test_uploads.py::test_name[param]`, or `::test_name` for another test of the file before.
TEST_REFERENCE = re.compile(
    r"`(?:([UIEF])/)?((?:[\w-]+/)*[\w-]+\.py)?(?:::(\w+))?(?:\[[^\]`]*\])?`"
)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def cited_tests() -> list[tuple[str, str | None]]:
    """(file, test) for every test reference in docs/testing.md, in order."""
    cited: list[tuple[str, str | None]] = []
    for line in (ROOT / "docs" / "testing.md").read_text().splitlines():
        current: str | None = None
        for tier, path, test in TEST_REFERENCE.findall(line):
            if path and (tier or path.startswith(("tests/", "bench/"))):
                current = f"{TIERS[tier]}/{path}" if tier else path
                cited.append((current, test or None))
            elif test and current is not None:
                cited.append((current, test))
    return cited


def test_testing_md_cites_many_tests() -> None:
    assert len(cited_tests()) > 100  # the pattern still reads the page


@pytest.mark.parametrize(("path", "test"), cited_tests())
def test_every_test_cited_in_testing_md_exists(path: str, test: str | None) -> None:
    source = ROOT / path
    assert source.is_file(), f"docs/testing.md cites {path}, which does not exist"
    if test is not None:
        assert re.search(rf"def {test}\(", source.read_text()), (
            f"docs/testing.md cites {path}::{test}, which does not exist"
        )


@pytest.mark.parametrize(
    "page", [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name
)
def test_relative_links_lead_to_files_of_the_repository(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        resolved = (page.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{page.name} links outside the repository: {target}"
        assert resolved.exists(), f"{page.name} links to {target}, which does not exist"
