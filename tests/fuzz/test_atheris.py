"""Runs tests/fuzz/multipart_atheris.py (coverage-guided, libFuzzer via atheris) for a
bounded number of inputs, seeded with valid bodies; any finding fails the test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.client.formbody import FormField
from app.forms.multipart import MultipartStream
from harness.forms import FilePart, multipart_body
from tests.fuzz import multipart_atheris as harness

ROOT = Path(__file__).resolve().parents[2]
B = harness.BOUNDARY


def seeds() -> list[bytes]:
    """Valid bodies with the shapes the parser finds hard, each behind a chunk-size byte."""
    bodies = [
        multipart_body([FormField("a", "v"), FilePart("f", "x.bin", b"--" + B.encode() + b"-")], B),
        multipart_body([FilePart("f", "a.txt", b"\r\n\r\n--\r\n-")], B),
        multipart_body([FormField("t", "x"), FormField("t", "y"), FilePart("g", "", b"")], B),
        multipart_body([FilePart("f", "e", b"-")], B) + b"\r\nepilogue",
    ]
    return [harness.fuzz_input(size, body) for body in bodies for size in (1, 2, 7)]


def test_the_oracle_catches_chunk_dependent_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without MultipartStream's minimum feed (its workaround for a parser bug), the harness's
    check fails on a body split inside a boundary prefix: the fuzzer can find such bugs."""
    body = multipart_body([FormField("a", "v"), FilePart("f", "x", b"--" + B.encode() + b"!")], B)
    sizes = range(1, 17)  # chunks that can fall wholly inside the 15-byte boundary prefix
    for size in sizes:
        harness.test_one_input(harness.fuzz_input(size, body))  # fine with the workaround
    original = MultipartStream.__init__

    def without_minimum(self: MultipartStream, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        self._min_feed = 1

    monkeypatch.setattr(MultipartStream, "__init__", without_minimum)
    caught = []
    for size in sizes:
        try:
            harness.test_one_input(harness.fuzz_input(size, body))
        except AssertionError as exc:
            caught.append((size, str(exc)))
    assert caught and all("parse differently" in message for _, message in caught)


@pytest.mark.slow
def test_fuzzing_the_multipart_glue_finds_nothing(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for number, seed in enumerate(seeds()):
        (corpus / f"seed{number}").write_bytes(seed)
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "fuzz" / "multipart_atheris.py"),
            str(corpus),
            "-runs=20000",
            "-seed=20261127",  # the same inputs on every run: CI is not a lottery
            "-max_total_time=90",
            f"-artifact_prefix={tmp_path}/",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    findings = list(tmp_path.glob("crash-*"))
    assert result.returncode == 0 and not findings, result.stderr[-4000:]
    assert "Done 20000 runs" in result.stderr or "max_total_time" in result.stderr
