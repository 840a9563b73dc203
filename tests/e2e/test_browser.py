"""The upload page in a real headless browser: Debian's chromium, driven by Playwright, against
a real app process on `rclone serve s3`. Progress and result, cancel, an error answer shown
from the JSON, and the plain form with JavaScript turned off.

Chrome's own network throttling (DevTools' Network.emulateNetworkConditions) slows the
uploads down, so that progress events surely happen and Cancel surely lands mid-upload.
Set UPLOAD_PAGE_SCREENSHOT=docs/upload-page.png to refresh the README's screenshot.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pytest

from app.client.formbody import quote
from app.forms.keys import ORIGINAL_NAME_KEY
from harness.forms import write_generated
from harness.nginx import PlainNginx
from harness.processes import wait_until
from harness.store import Bucket, MiB
from tests.e2e.conftest import Capture

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

TOKEN = "browser-token-0123456789abcdef"
# What the page shows while a file goes up: "42 % · 11.8 MiB/s · 1 s left".
PROGRESS_TEXT = re.compile(r"^\d+ % · \d+\.\d MiB/s · (\d+ s|\d+ min \d+ s|\?) left$")


def throttle_uploads(page: Page, bytes_per_second: int) -> None:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": bytes_per_second,
        },
    )


def record_statuses(page: Page) -> None:
    """Keep every text the uploads' status lines show (window.statuses), however briefly."""
    # Injected over DevTools, which the page's Content-Security-Policy does not restrict.
    page.evaluate(
        """() => {
            window.statuses = [];
            new MutationObserver((records) => {
                for (const record of records) {
                    if (!record.target.classList || !record.target.classList.contains("status"))
                        continue;
                    for (const node of record.addedNodes) window.statuses.push(node.data);
                }
            }).observe(document.getElementById("uploads"), { childList: true, subtree: true });
        }"""
    )


def start_upload(page: Page) -> Locator:
    """Click Upload and return the list item this click creates (one file chosen).

    Items are only ever appended, so this click's item is the one after those already
    listed; "the last item" would match the previous, finished one until it appears.
    """
    index = page.locator("li.upload").count()
    page.click("#upload-button")
    item = page.locator(f"li.upload:nth-child({index + 1})")
    item.wait_for(state="attached")
    return item


def wait_finished(item: Locator, timeout_ms: float = 90_000) -> tuple[str, str]:
    """The upload's final state and status text, once it is no longer uploading."""
    item.page.wait_for_function(
        "item => item.dataset.state !== 'uploading'",
        arg=item.element_handle(),
        timeout=timeout_ms,
    )
    return str(item.get_attribute("data-state")), item.locator(".status").inner_text()


@pytest.mark.parametrize("via", ["app", "nginx"])
def test_upload_shows_progress_and_the_stored_result(
    bucket: Bucket,
    start_app: Callable[..., Any],
    new_page: Callable[..., Page],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    via: str,
) -> None:
    app = start_app(bucket, part_size=5 * MiB)
    url = f"http://{app.address}"
    if via == "nginx":
        # The project's nginx config in front (only this case needs nginx installed).
        url = request.getfixturevalue("start_nginx")([app.address]).url
    path = tmp_path / "holiday video.bin"
    digest = write_generated(path, 24 * MiB)
    page = new_page()
    page.goto(f"{url}/")
    assert page.locator("#token").is_visible()  # shown only when the script runs
    throttle_uploads(page, 12 * MiB)
    record_statuses(page)

    page.fill("#title", "holiday")
    page.set_input_files("#file", path)
    item = start_upload(page)
    state, status = wait_finished(item)
    assert (state, status) == ("stored", "stored")

    assert item.locator(".name").inner_text() == "holiday video.bin"
    assert item.locator("progress").evaluate("bar => bar.value") == 100
    statuses: list[str] = page.evaluate("window.statuses")
    progress = [text for text in statuses if PROGRESS_TEXT.match(text)]
    assert len(progress) >= 3, statuses
    assert "100 % sent · storing…" in statuses

    key = item.locator("dd.key").inner_text()
    shown_sha = item.locator("dd.sha256").inner_text()
    assert re.fullmatch(r"uploads/[0-9a-f-]{36}/holiday video\.bin", key), key
    assert item.locator("dd.size").inner_text() == f"24.0 MiB ({24 * MiB} bytes)"
    assert shown_sha == digest
    assert bucket.sha256(key) == digest
    assert bucket.keys() == [key]
    assert bucket.incomplete_uploads() == []

    screenshot = os.environ.get("UPLOAD_PAGE_SCREENSHOT")
    if screenshot and via == "app":
        page.screenshot(path=screenshot)


def test_cancel_aborts_the_upload(
    bucket: Bucket, start_app: Callable[..., Any], new_page: Callable[..., Page], tmp_path: Path
) -> None:
    app = start_app(bucket, part_size=5 * MiB)
    path = tmp_path / "large.bin"
    write_generated(path, 96 * MiB)
    page = new_page()
    page.goto(f"http://{app.address}/")
    throttle_uploads(page, 8 * MiB)  # 12 s for the whole file: Cancel lands well before

    page.set_input_files("#file", path)
    item = start_upload(page)
    # A second part has begun: the app holds an open multipart upload in storage.
    assert wait_until(lambda: bool(bucket.incomplete_uploads()), timeout=30)
    item.locator(".cancel").click()
    state, status = wait_finished(item, timeout_ms=10_000)
    assert (state, status) == ("cancelled", "cancelled")
    assert item.locator(".cancel").is_disabled()

    # The browser closed the connection; the app aborted what it had started.
    assert wait_until(lambda: not bucket.incomplete_uploads(), timeout=30), app.log()
    assert bucket.keys() == []
    assert wait_until(lambda: "client_disconnected" in app.log(), timeout=10), app.log()


def test_errors_are_shown_from_the_json_answers(
    bucket: Bucket, start_app: Callable[..., Any], new_page: Callable[..., Page], tmp_path: Path
) -> None:
    app = start_app(
        bucket,
        part_size=5 * MiB,
        env={"UPLOAD_AUTH_TOKENS": TOKEN, "UPLOAD_ALLOWED_TYPES": "text/plain,.txt"},
    )
    page = new_page()
    page.goto(f"http://{app.address}/")
    notes = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"remember the milk\n"}

    # A wrong token: refused by GET /auth before any upload starts.
    page.fill("#token", "wrong-token-0123456789abcdef")
    page.set_input_files("#file", files=[notes])
    page.click("#upload-button")
    page.wait_for_selector("#notice:not(:empty)")
    assert page.inner_text("#notice") == "unauthorized: the bearer token is not valid"
    assert page.locator("li.upload").count() == 0

    # The right token but a refused file type: the POST's own JSON error.
    page.fill("#token", TOKEN)
    page.set_input_files(
        "#file",
        files=[{"name": "tool.exe", "mimeType": "application/x-msdownload", "buffer": b"MZ" * 64}],
    )
    state, status = wait_finished(start_upload(page))
    assert state == "failed"
    assert status.startswith("file_type_not_allowed: 'tool.exe' (application/x-msdownload)")
    assert page.inner_text("#notice") == ""
    bucket.assert_clean()

    # And with both right, the token goes along as the Authorization header. This time the
    # file is dropped on the page instead of chosen.
    page.evaluate(
        """() => {
            const data = new DataTransfer();
            data.items.add(new File(["remember the milk\\n"], "notes.txt", { type: "text/plain" }));
            document.getElementById("drop-zone").dispatchEvent(
                new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true })
            );
        }"""
    )
    assert page.locator("#file").evaluate("input => input.files[0].name") == "notes.txt"
    item = start_upload(page)
    assert wait_finished(item) == ("stored", "stored")
    key = item.locator("dd.key").inner_text()
    assert bucket.read(key) == b"remember the milk\n"


def test_form_without_javascript_gets_an_html_answer(
    bucket: Bucket, start_app: Callable[..., Any], new_page: Callable[..., Page], tmp_path: Path
) -> None:
    app = start_app(bucket, part_size=5 * MiB)
    path = tmp_path / "scan.bin"
    digest = write_generated(path, 12 * MiB)
    note = tmp_path / "<b>note<b> & co.txt"  # markup in a name: shown as text, not parsed
    note.write_bytes(b"plain\n")
    page = new_page(javascript=False)
    page.goto(f"http://{app.address}/")
    assert not page.locator("#token").is_visible()  # no way to send a header without JS

    page.fill("#title", "<i>scans</i>")
    page.set_input_files("#file", files=[path, note])
    with page.expect_navigation():
        page.click("#upload-button")
    assert page.title() == "Upload stored"
    assert page.inner_text("p.ok") == "Stored 2 files."
    items = page.locator("li.upload")
    assert items.count() == 2
    # The names show as text, exactly as sent: escaped, not interpreted as markup.
    assert items.nth(0).locator(".name").inner_text() == "scan.bin"
    assert items.nth(1).locator(".name").inner_text() == note.name
    assert page.locator("b, i, script").count() == 0
    assert page.inner_text("table.fields td") == "<i>scans</i>"

    keys = [items.nth(i).locator("dd.key").inner_text() for i in range(2)]
    assert keys[1].endswith(f"/{note.name}")
    assert items.nth(0).locator("dd.sha256").inner_text() == digest
    assert items.nth(0).locator("dd.size").inner_text() == f"12.0 MiB ({12 * MiB} bytes)"
    assert bucket.sha256(keys[0]) == digest
    assert bucket.read(keys[1]) == b"plain\n"
    assert sorted(bucket.keys()) == sorted(keys)
    assert bucket.incomplete_uploads() == []

    page.click("text=Back to the upload page")
    assert page.title() == "Upload files"


#: Names for File objects, as a user's files may be named; the field names too.
FETCHED_FILES = [
    ("file", 'my "best" photo\\x.txt', "text/plain"),
    ("file", "back\\\\slash\\", "application/octet-stream"),
    ("file", "line\r\nbreak\rcr\nlf.txt", "text/plain"),
    ("file", "ünïcödé €.txt", "text/plain"),
    ("file", "😀 🎉 👩\u200d💻.png", "image/png"),
    ('fi"eld\\x', "semi;colon, comma=x.txt", "text/plain"),
]


#: fetch + FormData in the page: FETCHED_FILES-like [field, name, type] triples as File objects
#: of 3000 bytes each (fetched_bytes), posted to the URL; the answer's status and JSON.
POST_FORMDATA = """async ([url, files]) => {
    const form = new FormData();
    files.forEach(([field, name, type], index) => {
        const bytes = new Uint8Array(3000).map((_, i) => (i * 31 + index) & 255);
        form.append(field, new File([bytes], name, { type }));
    });
    const response = await fetch(url, { method: "POST", body: form });
    const text = await response.text();
    return { status: response.status, answer: text ? JSON.parse(text) : null };
}"""


def fetched_bytes(index: int, size: int = 3000) -> bytes:
    """What the page puts in FETCHED_FILES[index] (the same formula in JavaScript)."""
    return bytes((i * 31 + index) & 255 for i in range(size))


def test_fetch_formdata_filenames_are_answered_and_stored_as_named(
    bucket: Bucket, start_app: Callable[..., Any], new_page: Callable[..., Page]
) -> None:
    """fetch + FormData with files named with quotes, backslashes, CR/LF, Unicode and emoji:
    Chromium writes the names as the HTML standard says, as the project's encoder does, and
    the JSON answer and each object's metadata carry them as the page named them."""
    app = start_app(bucket, part_size=5 * MiB)
    page = new_page()
    page.goto(f"http://{app.address}/")
    sent: list[bytes] = []
    page.on(
        "request",
        lambda request: (
            sent.append(request.post_data_buffer or b"")
            if request.url.endswith("/uploads")
            else None
        ),
    )
    result = page.evaluate(
        """async (files) => {
            const form = new FormData();
            files.forEach(([field, name, type], index) => {
                const bytes = new Uint8Array(3000).map((_, i) => (i * 31 + index) & 255);
                form.append(field, new File([bytes], name, { type }));
            });
            const response = await fetch("/uploads", { method: "POST", body: form });
            return { status: response.status, answer: await response.json() };
        }""",
        FETCHED_FILES,
    )
    assert result["status"] == 201, result
    stored_files = result["answer"]["files"]
    assert [(f["field"], f["filename"]) for f in stored_files] == [
        (field, name) for field, name, _ in FETCHED_FILES
    ]
    for index, (stored, (_, name, media_type)) in enumerate(
        zip(stored_files, FETCHED_FILES, strict=True)
    ):
        data = fetched_bytes(index)
        assert stored["content_type"] == media_type
        assert stored["sha256"] == hashlib.sha256(data).hexdigest() == bucket.sha256(stored["key"])
        metadata = {k.lower(): v for k, v in bucket.head(stored["key"])["Metadata"].items()}
        assert unquote(metadata[ORIGINAL_NAME_KEY]) == name
    assert bucket.incomplete_uploads() == []


def test_chromium_writes_names_as_the_project_s_encoder_does(
    new_page: Callable[..., Page], capture: Capture
) -> None:
    """The same FormData posted to a server that keeps the bytes: Chromium's part headers
    are what app/client/formbody.py writes for the same names (and what the corpus of
    tests/unit/forms/test_differential.py is made of)."""
    page = new_page()
    page.goto(capture.url)
    assert page.evaluate(POST_FORMDATA, [capture.url, FETCHED_FILES])["status"] == 200
    assert len(capture.bodies) == 1
    for field, name, media_type in FETCHED_FILES:
        line = f"Content-Disposition: form-data; name={quote(field)}; filename={quote(name)}\r\n"
        expected = (line + f"Content-Type: {media_type}\r\n\r\n").encode()
        assert expected in capture.bodies[0], capture.bodies[0]


@pytest.mark.parametrize("route", ["direct", "plain nginx"])
def test_refusals_sent_while_the_file_goes_up_are_shown(
    bucket: Bucket,
    start_app: Callable[..., Any],
    request: pytest.FixtureRequest,
    new_page: Callable[..., Page],
    tmp_path: Path,
    route: str,
) -> None:
    """The page shows the service's answer, not a network error, when the service refuses
    while Chromium is still sending the file: from Content-Length (too large), and a token
    refused by the POST itself. The file is larger than the service drains after a refusal.

    Chromium reads the answer only once it has sent the body or failed to: directly, the
    service closes the connection after UPLOAD_LINGER_BYTES (4 MiB here) and Chromium reads
    the answer after its failed write. Through nginx it is nginx that must read the answer
    before the service closes, which the default 64 MiB leaves ample time for."""
    linger = {"UPLOAD_LINGER_BYTES": str(4 * MiB)} if route == "direct" else {}
    app = start_app(
        bucket,
        part_size=5 * MiB,
        env={"UPLOAD_AUTH_TOKENS": TOKEN, "UPLOAD_MAX_BYTES": str(1 * MiB), **linger},
    )
    url = app.url
    if route == "plain nginx":
        url = request.getfixturevalue("start_nginx")([app.address], server_class=PlainNginx).url
    path = tmp_path / "big.bin"
    write_generated(path, 96 * MiB)
    page = new_page()
    page.goto(f"{url}/")

    page.fill("#token", TOKEN)
    page.set_input_files("#file", str(path))
    state, status = wait_finished(start_upload(page))
    assert (state, status.split(":")[0]) == ("failed", "body_too_large"), status

    # The page asks GET /auth before it sends a file; here /auth is made to say yes (a
    # token revoked between that check and the upload), so that the POST itself refuses.
    page.route("**/auth", lambda route: route.fulfill(status=204))
    page.fill("#token", "revoked-token-0123456789abcdef")
    page.set_input_files("#file", str(path))
    state, status = wait_finished(start_upload(page))
    assert (state, status) == ("failed", "unauthorized: the bearer token is not valid")
    bucket.assert_clean()
