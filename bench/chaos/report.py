"""The chaos run's figures: each attempt's answer classified, the storage checked against the
answers, memory per instance, and the pass line.

The pass line is the issue's: nothing lost (every 201 names objects that hold exactly the bytes
sent), nothing left behind (no object that no 201 answered, unless the client sent the whole
body and saw no answer from the service: see `StorageCheck`; no incomplete multipart upload
after the sweep), no 500, and each instance's RSS growth within UPLOAD_MEMORY_BUDGET plus an
allowance for the process itself. Everything else (nginx's 502 pages, storage errors under
injected faults) is reported, not judged.

A 500 is told apart by where it comes from: the service's JSON, the ASGI server's own plain
text (an exception that escaped the app's handlers), or nginx's page; each fails the run.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Sequence

from bench.chaos.clients import Behaviour, Outcome
from bench.chaos.faults import FaultEvent

MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class StoredObject:
    size: int
    sha256: str


@dataclasses.dataclass
class StorageCheck:
    """Every object in the bucket against the answers, and every 201 against the bucket."""

    #: Attempts answered 201 whose files are all stored exactly as sent.
    intact: list[Outcome]
    #: (attempt, what is wrong) for a 201 whose object is missing or holds other bytes.
    lost: list[tuple[Outcome, str]]
    #: (key, attempt): stored intact for a client that sent its whole body but saw no answer
    #: from the service (it went away, or nginx answered instead). The service commits a
    #: body that arrived whole (docs/clients.md, Retrying): not left behind.
    unseen: list[tuple[str, Outcome]]
    #: (key, why) for any other object.
    left: list[tuple[str, str]]


def check_storage(outcomes: Iterable[Outcome], stored: dict[str, StoredObject]) -> StorageCheck:
    check = StorageCheck([], [], [], [])
    accounted: set[str] = set()
    by_filename: dict[str, Outcome] = {}
    for outcome in outcomes:
        by_filename[outcome.attempt.filename] = outcome
        if outcome.status != 201:
            continue
        problems = []
        for file in (outcome.answer or {}).get("files", []):
            key = file["key"]
            accounted.add(key)
            expected = StoredObject(outcome.attempt.size, outcome.sha256 or "")
            if (file["size"], file["sha256"]) != (expected.size, expected.sha256):
                problems.append(f"{key}: answered {file['size']} B {file['sha256']}")
            elif key not in stored:
                problems.append(f"{key}: not in the bucket")
            elif stored[key] != expected:
                problems.append(f"{key}: stored {stored[key].size} B {stored[key].sha256}")
        if not (outcome.answer or {}).get("files"):
            problems.append("201 without files")
        if problems:
            check.lost.append((outcome, "; ".join(problems)))
        else:
            check.intact.append(outcome)
    for key, obj in sorted(stored.items()):
        if key in accounted:
            continue
        sender = by_filename.get(key.rsplit("/", 1)[-1])
        why = _why_left(obj, sender)
        if why is not None:
            check.left.append((key, why))
        elif sender is not None:
            check.unseen.append((key, sender))
    return check


def _why_left(obj: StoredObject, sender: Outcome | None) -> str | None:
    """Why an object no 201 named counts as left behind; None if the service may have
    committed it: a whole, well-formed body, intact, with no error answer from the service."""
    if sender is None:
        return "no attempt sent this filename"
    if not sender.whole_body_sent:
        return f"{sender.sent} of {sender.length} body bytes sent"
    if sender.code is not None:
        return f"stored although answered {answer_label(sender)}"
    if sender.attempt.behaviour not in (Behaviour.GOOD, Behaviour.DISCONNECT):
        return f"stored from a {sender.attempt.behaviour.value} body"
    if obj != StoredObject(sender.attempt.size, sender.sha256 or ""):
        return f"stored {obj.size} B {obj.sha256}, not the bytes sent"
    return None


def answer_label(outcome: Outcome) -> str:
    """The answer as the client saw it: `201`, `400 malformed_multipart`, `502 nginx page`,
    `500 not JSON: Internal Server Error`, or why there was none."""
    if outcome.status == 201:
        return "201"
    if outcome.status is not None:
        if outcome.code is not None:
            return f"{outcome.status} {outcome.code}"
        if is_nginx_page(outcome):
            return f"{outcome.status} nginx page"
        first_line = (outcome.text or "").strip().split("\n", 1)[0][:40]
        return f"{outcome.status} not JSON: {first_line}"
    if not outcome.finished:
        return "cut at the end of the run"
    if outcome.attempt.behaviour is Behaviour.DISCONNECT:
        return "went away (as planned)"
    return outcome.error or "no answer"


def is_nginx_page(outcome: Outcome) -> bool:
    return outcome.code is None and "nginx" in (outcome.text or "")


@dataclasses.dataclass
class InstanceLife:
    """One app process from start to stop (a restarted instance has two lives)."""

    name: str
    pid: int
    start_rss: int = 0
    peak_rss: int = 0
    #: upload_requests_total by "outcome code", read from /metrics just before the stop.
    requests: dict[str, float] = dataclasses.field(default_factory=dict)
    ended: str = ""

    @property
    def growth(self) -> int:
        return max(0, self.peak_rss - self.start_rss)

    @property
    def internal_errors(self) -> float:
        return self.requests.get("failed internal_error", 0.0)


@dataclasses.dataclass
class ChaosFigures:
    outcomes: list[Outcome]
    storage: StorageCheck
    #: Keys of the multipart uploads still incomplete once both instances had stopped (an
    #: abort that could not reach the store): what the sweep is for.
    incomplete_after_stop: list[str]
    incomplete_after_sweep: int
    lives: list[InstanceLife]
    events: list[FaultEvent]
    memory_budget: int
    rss_allowance: int
    broken_calls: int
    restart: str
    seconds: float
    #: `python -m app sweep`'s exit status and last line.
    sweep: str
    #: What kept the run from doing its job (a restart that failed): the run fails.
    errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def answered_500(self) -> int:
        """500s in the service's JSON shape."""
        return sum(o.status == 500 and o.code is not None for o in self.outcomes)

    @property
    def plain_500(self) -> int:
        """500s in neither the service's shape nor nginx's: the ASGI server's own."""
        return sum(
            o.status == 500 and o.code is None and not is_nginx_page(o) for o in self.outcomes
        )

    @property
    def nginx_500(self) -> int:
        return sum(o.status == 500 and is_nginx_page(o) for o in self.outcomes)

    @property
    def counted_500(self) -> float:
        """upload_requests_total{code="internal_error"} over every instance life."""
        return sum(life.internal_errors for life in self.lives)

    def rss_ok(self, life: InstanceLife) -> bool:
        return life.growth <= self.memory_budget + self.rss_allowance

    def failures(self) -> list[str]:
        """Why the run fails its pass line; empty when it passes."""
        reasons = [f"the run itself failed: {error}" for error in self.errors]
        if not self.storage.intact:
            reasons.append("no upload was stored at all")
        if self.storage.lost:
            reasons.append(f"{len(self.storage.lost)} answered 201 but not stored intact")
        if self.storage.left:
            reasons.append(f"{len(self.storage.left)} object(s) left that no 201 answered")
        if self.incomplete_after_sweep:
            reasons.append(f"{self.incomplete_after_sweep} incomplete upload(s) after the sweep")
        if self.answered_500 or self.counted_500:
            reasons.append(
                f"500 from the service: {self.answered_500} answered, "
                f"{self.counted_500:.0f} counted by the service"
            )
        if self.plain_500:
            reasons.append(f"500 not JSON from the app's server: {self.plain_500} answered")
        if self.nginx_500:
            reasons.append(f"500 from nginx (its own page): {self.nginx_500} answered")
        for life in self.lives:
            if not self.rss_ok(life):
                reasons.append(f"{life.name}: RSS grew {life.growth / MiB:.1f} MiB")
        return reasons

    @property
    def passed(self) -> bool:
        return not self.failures()

    def pass_line(self) -> str:
        if self.passed:
            return (
                f"PASS: nothing lost ({len(self.storage.intact)} of "
                f"{len(self.storage.intact)} answered 201 intact), nothing left behind, no 500, "
                f"RSS growth within {self.memory_budget // MiB} + "
                f"{self.rss_allowance // MiB} MiB on every instance"
            )
        return "FAIL: " + "; ".join(self.failures())


def _counts(labels: Iterable[str]) -> str:
    counted = collections.Counter(labels)
    return ", ".join(f"{label} x{n}" for label, n in sorted(counted.items())) or "none"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render(figures: ChaosFigures, heading: str, settings: Sequence[str]) -> str:
    """The report in markdown, ending with the pass line."""
    f, outcomes = figures, figures.outcomes
    labels = [answer_label(o) for o in outcomes]
    sent = sum(o.sent for o in outcomes)
    intact_bytes = sum(o.attempt.size for o in f.storage.intact)
    lines = [f"## {heading}", "", *settings, ""]
    lines += [
        "### Uploads",
        "",
        f"- tried: {len(outcomes)} ({sent / MiB:,.0f} MiB of body sent in {f.seconds:.0f} s)",
        f"- answered 201 and verified intact (read back, SHA-256 compared): "
        f"{len(f.storage.intact)} ({intact_bytes / MiB:,.1f} MiB)",
        f"- refused (4xx): {_counts(x for x in labels if x[:1] == '4')}",
        f"- failed (5xx): {_counts(x for x in labels if x[:1] == '5' and _is_json(x))}",
        f"- not the service's JSON: "
        f"{_counts(x for x in labels if x[:1].isdigit() and not _is_json(x))}",
        f"- no answer: {_counts(x for x in labels if not x[:1].isdigit())}",
        "",
        *_table(
            ["behaviour", "tried", "answers"],
            [
                [
                    b.value,
                    str(sum(o.attempt.behaviour is b for o in outcomes)),
                    _counts(answer_label(o) for o in outcomes if o.attempt.behaviour is b),
                ]
                for b in Behaviour
            ],
        ),
        "",
        "### Storage after the run",
        "",
        f"- answered 201 but missing or different (lost): {len(f.storage.lost)}",
        *[f"  - attempt {o.attempt.number}: {why}" for o, why in f.storage.lost],
        f"- stored, answer not seen (whole body sent, intact): {len(f.storage.unseen)} "
        f"({_counts(answer_label(o) for _, o in f.storage.unseen)})",
        f"- objects left that no 201 answered: {len(f.storage.left)}",
        *[f"  - `{key}`: {why}" for key, why in f.storage.left],
        f"- incomplete multipart uploads once the instances had stopped: "
        f"{len(f.incomplete_after_stop)}",
        *[f"  - `{key}`: {_sender(key, outcomes)}" for key in f.incomplete_after_stop],
        "- incomplete multipart uploads after `python -m app sweep --older-than 0s --apply`: "
        f"{f.incomplete_after_sweep} (the sweep: {f.sweep})",
        "",
        "### Faults injected",
        "",
        *_table(
            ["at (s)", "fault", "calls broken"],
            [[f"{e.at:.1f}", e.describe(), str(e.broken)] for e in f.events],
        ),
        "",
        f"Storage calls broken in all: {f.broken_calls}. Instance restart: {f.restart}.",
        "",
        "### Memory and outcomes per instance",
        "",
        *_table(
            [
                "instance",
                "RSS at start",
                "peak RSS",
                "growth",
                "limit",
                "within",
                "ended",
                "upload_requests_total",
            ],
            [
                [
                    life.name,
                    f"{life.start_rss / MiB:.1f} MiB",
                    f"{life.peak_rss / MiB:.1f} MiB",
                    f"{life.growth / MiB:.1f} MiB",
                    f"{(f.memory_budget + f.rss_allowance) / MiB:.0f} MiB",
                    "yes" if f.rss_ok(life) else "**no**",
                    life.ended,
                    _counts_of(life.requests),
                ]
                for life in f.lives
            ],
        ),
        "",
        f"500s: {f.answered_500} answered by the service (JSON), {f.counted_500:.0f} counted by "
        'it (`upload_requests_total{outcome="failed",code="internal_error"}`), '
        f"{f.plain_500} answered by the app's ASGI server itself (not JSON), {f.nginx_500} by "
        "nginx itself (its page).",
        "",
        f"**{f.pass_line()}**",
    ]
    return "\n".join(lines) + "\n"


def _is_json(label: str) -> bool:
    """A label of a status with the service's JSON code (not a page, not a missing answer)."""
    return label[:1].isdigit() and "nginx page" not in label and "not JSON" not in label


def _sender(key: str, outcomes: Iterable[Outcome]) -> str:
    filename = key.rsplit("/", 1)[-1]
    for outcome in outcomes:
        if outcome.attempt.filename == filename:
            return f"attempt {outcome.attempt.number}, answered {answer_label(outcome)}"
    return "no attempt sent this filename"


def _counts_of(requests: dict[str, float]) -> str:
    return ", ".join(f"{k} x{v:.0f}" for k, v in sorted(requests.items()) if v) or "none"
